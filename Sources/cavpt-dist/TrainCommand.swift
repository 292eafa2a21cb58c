// `cavpt-dist train` and `cavpt-dist eval`: the data-parallel trainer and the evaluation of a saved run.
import ArgumentParser
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor
import Training

/// Options shared by the commands that build a run (DESIGN §7).
struct RunArguments: ParsableArguments {
    @Option(help: "Dataset: a name from configs/datasets (eurosat, caltech101, …) or a dataset YAML file.")
    var dataset: String?
    @Option(
        help: ArgumentHelp(
            "Method preset from configs/methods (zsclip, coop, vpt_shallow, vpt_deep, vpt_cavpt, vlp_deep, "
                + "vlp_cavpt, dpt_released) or a YAML file."))
    var method: String?
    @Option(help: "A YAML config layered on top of the dataset and method configs.")
    var config: String?
    @Option(name: .customLong("data-root"), help: "Folder holding the datasets in CoOp layout.")
    var dataRoot: String?
    @Option(help: "CLIP weights: a .safetensors file or a folder with model.safetensors.")
    var model: String?
    @Option(help: "Tokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz, or vocab.json with merges.txt beside it).")
    var vocab: String?
    @Option(help: "Seed for the few-shot subset, data order, augmentation and initialisation.")
    var seed: Int?
    @Option(help: "Run directory (default runs/<dataset>/<method>/seed<seed>).")
    var output: String?
    @Option(help: "Reuse an exact few-shot subset (JSON written by `fewshot` or a previous run).")
    var fewshot: String?
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16 (runtime.precision).")
    var precision: String?
    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set train.epochs=50 (repeatable).")
    var sets: [String] = []

    var options: RunOptions {
        var o = RunOptions()
        o.dataset = dataset; o.method = method; o.configFile = config; o.dataRoot = dataRoot; o.model = model
        o.vocab = vocab; o.seed = seed; o.output = output; o.fewshot = fewshot; o.precision = precision; o.sets = sets
        return o
    }
}

/// Runs `body` with the job's communicator; any error ends every rank with one line and exit 1.
func withCommunicator(_ body: (Communicator) throws -> Void) throws {
    let comm: Communicator
    do { comm = try Communicators.makeDefault() } catch {
        writeStandardError("error: \(error)\n")
        throw ExitCode(1)
    }
    do {
        try body(comm)
        try Communicators.finalize()
    } catch let exit as ExitCode {
        throw exit
    } catch let failure as JobFailure where comm.size > 1 {
        // Every rank agreed on it (`agreeingOnFailure`): rank 0 says it once and all exit cleanly.
        if comm.rank == 0 {
            let line = "error: [rank \(failure.rank)] \(failure.message)\n"
            flushStandardOutput()
            RunLog.append(line)
            writeStandardError(line)
        }
        try? Communicators.finalize()
        throw ExitCode(1)
    } catch {
        let line = String(describing: error).split(separator: "\n").joined(separator: " ")
        RunLog.append("error: \(line)\n")
        comm.fail(line)
    }
}

/// BLAS threads per rank: CAVPT_DIST_BLAS_THREADS, else runtime.blasThreads, else cores ÷ ranks on the node.
func configureThreads(_ comm: Communicator, config: Config?) {
    let env = ProcessInfo.processInfo.environment["CAVPT_DIST_BLAS_THREADS"].flatMap(Int.init)
    let configured = config.map { $0.int("runtime.blasThreads") }.flatMap { $0 > 0 ? $0 : nil }
    BLASRuntime.setThreads(comm.defaultBLASThreads(override: env ?? configured))
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a prompt-tuning method, data-parallel over MPI ranks (mpirun -np N cavpt-dist train …).",
        discussion: """
            Layers: the dataset YAML, the method preset, --config, the flags, then --set key=value. \
            `cavpt-dist config --list` prints every configuration key with its default and meaning; \
            `cavpt-dist config <train options>` prints the configuration a run would record.
            """)

    @OptionGroup var arguments: RunArguments
    @Flag(help: "Continue from the newest complete checkpoint in the run directory.")
    var resume = false
    @Option(name: .customLong("resume-from"), help: "Continue from this checkpoint folder.")
    var resumeFrom: String?
    @Flag(help: "Clear an existing run directory (one train wrote) and start afresh.")
    var overwrite = false

    func validate() throws {
        if overwrite && (resume || resumeFrom != nil) {
            throw ValidationError("--overwrite and --resume exclude each other")
        }
    }

    func run() throws {
        try withCommunicator { comm in
            let job = TrainingJob(
                options: arguments.options,
                mode: resume || resumeFrom != nil ? .resume : overwrite ? .overwrite : .fresh,
                resumeFrom: resumeFrom, isolated: false, quiet: false,
                resumeCommand: {
                    resumeCommand(
                        arguments: CommandLine.arguments, ranks: comm.size,
                        workingDirectory: FileManager.default.currentDirectoryPath)
                })
            do { _ = try job.run(comm: comm) } catch let stop as TrainingStop {
                // No rank may exit before rank 0's records are complete: mpirun ends the job when one does.
                try comm.barrier()
                try Communicators.finalize()
                throw ExitCode(stop.exitCode)
            }
        }
    }
}

func runDirectory(_ c: Config) -> String {
    let given = c.string("output.dir")
    if !given.isEmpty { return given }
    let dataset = c.string("dataset.name").isEmpty ? "data" : c.string("dataset.name")
    return "runs/\(dataset)/\(c.string("method.name"))/seed\(c.int("train.seed"))"
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Evaluate a saved run (--run DIR) or checkpoint (--checkpoint DIR): on its test split, on its new "
            + "classes (--subsample new), or on another dataset (--dataset NAME)."
    )

    @Option(
        name: .customLong("run"), help: "A run directory written by `train` (its config.yaml and newest checkpoint).")
    var runDirectory: String?
    @Option(help: "A checkpoint folder (runs/…/checkpoints/epoch-NNNN); its state.json holds the configuration.")
    var checkpoint: String?
    @Option(help: "A config to use instead of the recorded one (with --checkpoint).")
    var config: String?
    @Option(
        help: "Evaluate on another dataset's classes, template and test split (cross-dataset, domain generalisation).")
    var dataset: String?
    @Option(help: "Classes to evaluate: all, base or new (base-to-new generalisation).")
    var subsample: String?
    @Option(name: .customLong("data-root"), help: "Override data.root.") var dataRoot: String?
    @Option(help: "Override model.path.") var model: String?
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "Split to evaluate: test or val.") var split: String?
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16 (runtime.precision).") var precision: String?
    @Option(help: "Write the results JSON here (accuracy, macro-F1, per-class accuracy, dataset, method, checkpoint).")
    var out: String?
    @Option(
        help: "Write one JSON line per evaluated image (path, label, prediction, top-5) and the confusion matrix here.")
    var predictions: String?

    func validate() throws {
        guard (runDirectory != nil) != (checkpoint != nil) else {
            throw ValidationError("give either --run DIR or --checkpoint DIR")
        }
        if let subsample, ClassSubset(rawValue: subsample) == nil {
            throw ValidationError("--subsample must be all, base or new, got '\(subsample)'")
        }
    }

    func run() throws {
        try withCommunicator { comm in
            let savedCheckpoint: Checkpoint? = try checkpoint.map { try Checkpoints.read($0) }
            var (c, definition) = try recordedRunConfig(
                run: runDirectory, checkpoint: savedCheckpoint, override: config)
            let savedDataset = c.string("dataset.name"), savedSubsample = c.string("data.subsample")
            if let dataset { definition = try switchDataset(&c, to: dataset, subsample: subsample ?? "all") }
            if let dataRoot { try c.set("data.root", raw: dataRoot, source: "--data-root") }
            if let model { try c.set("model.path", raw: model, source: "--model") }
            if let vocab { try c.set("model.vocab", raw: vocab, source: "--vocab") }
            if let split { try c.set("eval.split", raw: split, source: "--split") }
            if let subsample { try c.set("data.subsample", raw: subsample, source: "--subsample") }
            if let precision { try c.set("runtime.precision", raw: precision, source: "--precision") }
            configureThreads(comm, config: c)
            let data = try RunSetup.data(c, definition: definition)
            if comm.rank == 0 { _ = try RunSetup.checkInputs(data, training: false, evalSplit: c.string("eval.split")) }
            let (clip, tokenizer) = try RunSetup.model(c)
            let learner = try RunSetup.learner(
                c, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            let evaluated = try loadTrainedTensors(
                into: learner, run: runDirectory, checkpoint: savedCheckpoint,
                epochs: c.int("train.epochs"), warn: comm.rank == 0)
            let trainer = Trainer(comm: comm, config: c, learner: learner, data: data, output: nil)
            let which = c.string("eval.split")
            let (samples, listName) = data.evaluationList(which)
            let result = try trainer.evaluate(
                samples: samples, listName: listName, recordTop: predictions == nil ? 0 : 5)
            guard comm.rank == 0 else { return }
            let subset = c.string("data.subsample")
            print(
                String(
                    format: "%@ %@%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images, %d classes)  %.1f images/s  %@",
                    data.datasetName, which,
                    subset == "all" ? "" : " (\(subset) classes)", result.confusion.accuracy * 100,
                    result.confusion.macroF1 * 100, Int(result.confusion.total), data.classNames.count,
                    result.imagesPerSecond, evaluated))
            let json = try evaluationRecord(
                result, data: data, config: c, split: which,
                extra: [
                    "checkpoint": evaluated, "trainedOn": savedDataset, "trainedSubsample": savedSubsample,
                ])
            if let out { try writeDurably(json, to: out) }
            // Kept with the run, where `report` finds it (base-to-new and cross-dataset tables).
            if let runDirectory, checkpoint == nil {
                let folder = runDirectory + "/evaluations"
                try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try writeDurably(json, to: folder + "/\(data.datasetName)-\(which)-\(subset).json")
            }
            if let predictions {
                try writePredictions(result, samples: samples, data: data, to: predictions)
                print("predictions: \(predictions)")
            }
        }
    }
}

/// Another dataset for a run's trained tensors (cross-dataset evaluation, prediction): its
/// definition, its classes and template; the run's method. The run's few-shot file belongs to its
/// own dataset and is dropped.
func switchDataset(_ c: inout Config, to dataset: String, subsample: String) throws -> DatasetSpec {
    let path = try RunSetup.datasetConfigPath(dataset)
    let definition = try DatasetSpec(contentsOf: path)
    try c.set("dataset.name", raw: definition.name, source: "--dataset")
    try c.set("dataset.config", raw: path, source: "--dataset")
    try c.set("data.fewshot", raw: "", source: "--dataset")
    try c.set("data.subsample", raw: subsample, source: "--dataset")
    return definition
}

/// The configuration a run recorded (its config.yaml, or a checkpoint's state), or `override`;
/// with the dataset definition it holds.
func recordedRunConfig(run: String?, checkpoint: Checkpoint?, override: String?) throws -> (Config, DatasetSpec?) {
    var c = Config()
    let text: String, source: String
    func read(_ path: String, hint: String) throws -> String {
        do { return try RegularFile.text(path) } catch let error as RegularFileError {
            throw TrainingError.input(error.missing ? hint : "\(path): \(error.reason)")
        }
    }
    if let override {
        (text, source) = (try read(override, hint: "\(override): no such file"), override)
    } else if let checkpoint {
        (text, source) = (checkpoint.state.config, checkpoint.path + "/state.json")
    } else if let run {
        let path = run + "/config.yaml"
        (text, source) = (try read(path, hint: "\(path) does not exist; is \(run) a run directory?"), path)
    } else {
        throw TrainingError.input("give --run DIR or --checkpoint DIR")
    }
    try c.merge(savedRun: text, source: source, definitionFile: source.hasSuffix(".json") ? nil : source)
    return (c, try RunSetup.recordedDataset(in: text, file: source))
}

/// Sets the learner's trained tensors from `checkpoint`, else the newest checkpoint of `run` that
/// loads (warning about each one skipped, and when it is not the last epoch). Returns what was
/// loaded, for the report line.
func loadTrainedTensors(
    into learner: PromptLearner, run: String?, checkpoint: Checkpoint?, epochs: Int, warn: Bool
) throws -> String {
    guard !learner.parameters.isEmpty else { return "zero-shot (no trained tensors)" }
    let saved: Checkpoint
    if let checkpoint {
        saved = checkpoint
    } else if let run,
        let newest = Checkpoints.newest(
            in: run + "/checkpoints",
            skipped: { path, reason in
                if warn { writeStandardError("warning: skipping checkpoint \(path): \(reason)\n") }
            })
    {
        saved = newest
    } else {
        throw TrainingError.checkpoint("\(run ?? "?")/checkpoints holds no complete checkpoint that loads")
    }
    try learner.load(saved.parameters, requireAll: true, forEvaluation: true)
    if saved.state.epoch < epochs, warn {
        writeStandardError(
            "warning: \(saved.path) is from epoch \(saved.state.epoch), not the run's last (\(epochs))\n")
    }
    return "checkpoint \(saved.path) (epoch \(saved.state.epoch) of \(epochs))"
}

/// What an evaluation reports (`eval --out`, a run's evaluations/, `zeroshot --out`): accuracy,
/// macro-F1, per-class accuracy and what was evaluated, as pretty JSON.
func evaluationRecord(
    _ result: EvaluationResult, data: RunData, config c: Config, split: String,
    extra: [String: Any]
) throws -> Data {
    var perClass: [String: Any] = [:]
    for (name, acc) in zip(data.classNames, result.confusion.perClassAccuracy) { perClass[name] = acc ?? NSNull() }
    var record: [String: Any] = [
        "accuracy": result.confusion.accuracy, "macroF1": result.confusion.macroF1,
        "evaluated": Int(result.confusion.total),
        "split": split, "dataset": data.datasetName, "method": c.string("method.name"),
        "subsample": c.string("data.subsample"),
        "classes": data.classNames.count, "perClassAccuracy": perClass, "template": data.template,
        "seed": c.int("train.seed"), "shots": c.int("train.shots"),
        "precision": c.string("runtime.precision"), "onednnISA": OneDNN.isaName,
    ]
    record.merge(extra) { $1 }
    return try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
}

/// `eval --predictions`: a JSON line per image (path, label, prediction, top-5 with probabilities),
/// then one line with the class names and the confusion matrix (rows: truth, columns: prediction).
func writePredictions(_ result: EvaluationResult, samples: [Sample], data: RunData, to path: String) throws {
    var lines: [String] = []
    lines.reserveCapacity(samples.count + 1)
    for (sample, top) in zip(samples, result.top) {
        let record: [String: Any] = [
            "path": sample.path, "label": sample.label, "class": data.classNames[sample.label],
            "prediction": top.first?.label ?? -1, "predictedClass": top.first.map { data.classNames[$0.label] } ?? "",
            "top5": top.map {
                ["label": $0.label, "class": data.classNames[$0.label], "probability": $0.probability] as [String: Any]
            },
        ]
        lines.append(
            String(
                decoding: try JSONSerialization.data(
                    withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
    }
    let K = result.confusion.classes
    let matrix = (0..<K).map { t in (0..<K).map { Int(result.confusion.counts[t * K + $0]) } }
    lines.append(
        String(
            decoding: try JSONSerialization.data(
                withJSONObject: ["classes": data.classNames, "confusion": matrix],
                options: [.sortedKeys]), as: UTF8.self))
    try writeDurably(Data((lines.joined(separator: "\n") + "\n").utf8), to: path)
}

struct Zeroshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot CLIP accuracy on a dataset's test (or val) split with its template.")

    @Option(help: "Dataset: a name from configs/datasets or a dataset YAML file.") var dataset: String?
    @Option(help: "A YAML config (its dataset: section and keys such as eval.split).") var config: String?
    @Option(name: .customLong("data-root"), help: "Folder holding the datasets in CoOp layout.") var dataRoot: String?
    @Option(help: "CLIP weights: a .safetensors file or a folder with model.safetensors.") var model: String?
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "Split to evaluate: test or val (same as --set eval.split=…).") var split: String?
    @Option(help: "Classes to evaluate: all, base or new (base-to-new's zero-shot baseline).") var subsample: String?
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16 (runtime.precision).") var precision: String?
    @Option(
        name: .customLong("set"), help: "Override a config key (e.g. eval.split=val, dataset.template=…; repeatable).")
    var sets: [String] = []
    @Option(help: "Write the results JSON here (accuracy, macro-F1, per-class accuracy, dataset, template).") var out:
        String?
    @Option(help: "Write one JSON line per image (path, label, prediction, top-5) and the confusion matrix here.")
    var predictions: String?

    func run() throws {
        try withCommunicator { comm in
            var options = RunOptions()
            options.method = "zsclip"
            options.dataset = dataset; options.configFile = config; options.dataRoot = dataRoot
            options.model = model; options.vocab = vocab; options.sets = sets; options.precision = precision
            if let split { options.sets.append("eval.split=\(split)") }
            if let subsample { options.sets.append("data.subsample=\(subsample)") }
            let config = try RunSetup.config(options)
            configureThreads(comm, config: config)
            let data = try RunSetup.data(config)
            let which = config.string("eval.split")
            if comm.rank == 0 { _ = try RunSetup.checkInputs(data, training: false, evalSplit: which) }
            let (clip, tokenizer) = try RunSetup.model(config)
            let learner = try RunSetup.learner(
                config, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            let trainer = Trainer(comm: comm, config: config, learner: learner, data: data, output: nil)
            let (samples, listName) = data.evaluationList(which)
            let result = try trainer.evaluate(
                samples: samples, listName: listName, recordTop: predictions == nil ? 0 : 5)
            guard comm.rank == 0 else { return }
            print(
                String(
                    format:
                        "zero-shot %@ %@: accuracy %.2f%%  macro-F1 %.2f%%  (%d images, %d classes, template \"%@\")  "
                        + "%.1f images/s",
                    data.datasetName, which, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                    Int(result.confusion.total), data.classNames.count, data.template, result.imagesPerSecond))
            if let out {
                try writeDurably(
                    try evaluationRecord(
                        result, data: data, config: config, split: which,
                        extra: ["model": absolutePath(config.string("model.path"))]), to: out)
            }
            if let predictions { try writePredictions(result, samples: samples, data: data, to: predictions) }
        }
    }
}
