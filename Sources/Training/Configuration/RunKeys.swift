// The configuration keys of a run besides its method: where its inputs are (`dataset.*`, `model.*`,
// `data.*`, `output.*`) and how it trains, evaluates and runs (`train.*`, `optim.*`, `checkpoint.*`,
// `eval.*`, `runtime.*`; DESIGN §2, §4, §6), each bound to its field of `RunSettings`.

extension ConfigSchema {
    static let sourceKeys: [ConfigKey] = [
        .string(
            "dataset.name", \.dataset.name, "the dataset's name (set by `--dataset` or the config's `dataset:` section)"
        ),
        .string("dataset.config", \.dataset.config, "the dataset definition file (set by `--dataset`)", isPath: true),
        .string("dataset.template", \.dataset.template, "override the dataset's prompt template (must contain {})"),
        .string("dataset.folder", \.dataset.folder, "override the dataset's folder under the data root"),
        .string("dataset.images", \.dataset.images, "override the dataset's image folder (under its folder)"),
        .string("dataset.splitFile", \.dataset.splitFile, "override the dataset's split file"),
        .string("dataset.classFile", \.dataset.classFile, "override the dataset's class-name file"),
        .string("data.root", \.data.root, "the folder holding the datasets (`--data-root`)", isPath: true),
        .string(
            "data.fewshot", \.data.fewshot, "a few-shot list file to train on instead of sampling (`--fewshot`)",
            isPath: true),
        .choice(
            "data.subsample", \.data.subsample,
            "`all`, `base` or `new`: the class half a run trains and evaluates on (base-to-new)"),
        .string("model.path", \.model.path, "CLIP weights: a .safetensors file or a folder (`--model`)", isPath: true),
        .string(
            "model.vocab", \.model.vocab,
            "tokenizer vocabulary (`--vocab`; default: found next to the weights, or the bundled one)", isPath: true),
        .string(
            "output.dir", \.output.dir, "the run directory (`--output`; default runs/<dataset>/<method>/seed<seed>)",
            isPath: true),
    ]

    /// The `dataset.*` keys that partially override a named dataset's definition (`dataset: {name:
    /// eurosat, template: …}` or `--set dataset.template=…`); a run records the resolved definition,
    /// which is what resuming compares.
    public static let datasetOverrides: [(field: String, key: String)] = [
        \RunSettings.dataset.template, \.dataset.folder, \.dataset.images, \.dataset.splitFile, \.dataset.classFile,
    ].map { path in
        let name = ConfigSchema.name(of: path)
        return (String(name.dropFirst("dataset.".count)), name)
    }

    static let protocolKeys: [ConfigKey] = [
        .int("train.epochs", \.train.epochs, min: 0, "epochs"),
        .int("train.shots", \.train.shots, min: 1, "few-shot K per class"),
        .int("train.batchSize", \.train.batchSize, min: 1, "global batch B (split over the ranks)"),
        .int("train.seed", \.train.seed, min: 0, "few-shot subset, data order, augmentation, initialisation"),
        .int("train.workers", \.train.workers, min: 1, "JPEG decoding threads per rank", operational: true),
        .int("train.prefetch", \.train.prefetch, min: 1, "batches decoded ahead", operational: true),
        .int("train.logEvery", \.train.logEvery, min: 1, "steps between progress lines", operational: true),
        .choice(
            "train.shardText", \.train.shardText,
            "split the learned-context text encoder over the ranks by class (`true`, `false`, or `auto` = with "
                + "several ranks and at least 32 classes, or in bf16); same numbers, text time and memory ÷ N",
            operational: true),
        .double("optim.momentum", \.optim.momentum, min: 0, "SGD momentum"),
        .double("optim.weightDecay", \.optim.weightDecay, min: 0, "weight decay on every trained tensor"),
        .double("optim.visual.lr", \.optim.visual.lr, min: 0, "learning rate of the visual prompts and CAVPT"),
        .int(
            "optim.visual.warmupEpochs", \.optim.visual.warmupEpochs, min: 0,
            "constant warm-up epochs of the visual group"),
        .double("optim.visual.warmupLR", \.optim.visual.warmupLR, min: 0, "the visual group's warm-up learning rate"),
        .double("optim.text.lr", \.optim.text.lr, min: 0, "learning rate of the text context"),
        .int(
            "optim.text.warmupEpochs", \.optim.text.warmupEpochs, min: 0, "constant warm-up epochs of the text group"),
        .double("optim.text.warmupLR", \.optim.text.warmupLR, min: 0, "the text group's warm-up learning rate"),
        .int(
            "checkpoint.every", \.checkpoint.every, min: 0,
            "epochs between checkpoints (0 = none; the last epoch is always saved)", operational: true),
        .int(
            "checkpoint.keep", \.checkpoint.keep, min: 1, "checkpoints kept (the newest, by epoch)", operational: true),
        .int("eval.batchSize", \.eval.batchSize, min: 1, "evaluation batch", operational: true),
        .choice("eval.split", \.eval.split, "`test` or `val`: the list the final evaluation uses"),
        .int(
            "eval.valEvery", \.eval.valEvery, min: 0,
            "evaluate the few-shot val list every N epochs and the last (0 = never); logged as valAccuracy",
            operational: true),
        .int(
            "runtime.blasThreads", \.runtime.blasThreads, min: 0,
            "BLAS threads per rank (0 = cores on the node ÷ ranks on the node); oneDNN's threads follow it",
            operational: true),
        .choice(
            "runtime.precision", \.runtime.precision,
            "`fp32` or `bf16` (frozen-weight products in bf16 through oneDNN; see [Precision](#precision)); also "
                + "`--precision`"),
        .choice(
            "runtime.recompute", \.runtime.recompute,
            "`none`, `attention` or `blocks`: activations the backward recomputes instead of keeping (same "
                + "numbers, less memory, more time; see [Performance](#performance))",
            operational: true),
    ]
}
