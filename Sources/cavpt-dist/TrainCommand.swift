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
    @Option(help: "Method preset from configs/methods (zsclip, coop, vpt_shallow, vpt_deep, vpt_cavpt, vlp_deep, vlp_cavpt, dpt_released) or a YAML file.")
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
    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set train.epochs=50 (repeatable).")
    var sets: [String] = []

    var options: RunOptions {
        var o = RunOptions()
        o.dataset = dataset; o.method = method; o.configFile = config; o.dataRoot = dataRoot; o.model = model
        o.vocab = vocab; o.seed = seed; o.output = output; o.fewshot = fewshot; o.sets = sets
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
    } catch {
        let line = String(describing: error).split(separator: "\n").joined(separator: " ")
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
        abstract: "Train a prompt-tuning method, data-parallel over MPI ranks (mpirun -np N cavpt-dist train …).")

    @OptionGroup var arguments: RunArguments
    @Flag(help: "Continue from the newest complete checkpoint in the run directory.")
    var resume = false
    @Option(name: .customLong("resume-from"), help: "Continue from this checkpoint folder.")
    var resumeFrom: String?
    @Flag(help: "Clear an existing run directory (one train wrote) and start afresh.")
    var overwrite = false

    func validate() throws {
        if overwrite && (resume || resumeFrom != nil) { throw ValidationError("--overwrite and --resume exclude each other") }
    }

    func run() throws {
        try withCommunicator { comm in
            let config = try RunSetup.config(arguments.options)
            configureThreads(comm, config: config)
            let data = try RunSetup.data(config)
            let directory = absolutePath(runDirectory(config))
            // Rank 0 checks every list and claims the run directory before the model loads: a bad
            // list or a busy directory costs seconds (and a failure here ends every rank).
            var lock: RunDirectoryLock?
            var warnings: [String] = []
            if comm.rank == 0 {
                warnings = try RunSetup.checkInputs(data, training: true, evalSplit: config.string("eval.split"))
                lock = try RunDirectory.prepare(directory, mode: resume || resumeFrom != nil ? .resume : overwrite ? .overwrite : .fresh)
            }
            let (model, tokenizer) = try RunSetup.model(config)
            let learner = try RunSetup.learner(config, model: model, tokenizer: tokenizer,
                                               classNames: data.classNames, template: data.template)
            var checkpoint: Checkpoint?
            if comm.rank == 0 && (resume || resumeFrom != nil) {
                checkpoint = try loadCheckpoint(directory: directory, config: config, dataset: data.spec)
                try RunDirectory.truncateMetrics(in: directory, toEpoch: checkpoint?.state.epoch ?? 0)
            }
            let output = comm.rank == 0
                ? try RunOutput(directory: directory, config: config, dataset: data.spec, fewshot: data.fewshot, lock: lock) : nil
            for warning in warnings { output?.say("warning: \(warning)") }
            output?.say("cavpt-dist \(cavptDistVersion): \(config.string("method.name")) on \(data.datasetName), "
                        + "\(data.train.count) training images, \(data.classNames.count) classes, \(comm.size) rank(s) "
                        + "× \(BLASRuntime.threads) BLAS thread(s) [\(BLASRuntime.coreName)], run \(directory)")
            if let warning = BLASRuntime.slowKernelWarning { output?.say("warning: \(warning)") }
            let trainer = Trainer(comm: comm, config: config, learner: learner, data: data, output: output)
            try trainer.synchronizeStart(resumeFrom: checkpoint)
            if let checkpoint { output?.say("resumed from \(checkpoint.path) at epoch \(checkpoint.state.epoch)") }
            let start = Date()
            try trainer.train()
            let trainSeconds = Date().timeIntervalSince(start)
            let split = config.string("eval.split")
            let result = try trainer.evaluate(samples: split == "val" ? data.val : data.test, listName: "\(split) split")
            if let output {
                try output.writeResults(result, classNames: data.classNames, split: split,
                                        extra: ["trainSeconds": trainSeconds, "ranks": comm.size,
                                                "epochs": config.int("train.epochs"),
                                                "shots": data.fewshot?.shots ?? config.int("train.shots"),
                                                "fewshot": data.fewshotFile.isEmpty ? "sampled (seed \(config.int("train.seed")))" : data.fewshotFile])
                output.say(String(format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)  results: %@/results.json",
                                  split, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                                  Int(result.confusion.total), directory))
            }
        }
    }

    /// The newest complete checkpoint (or --resume-from), checked against this run's configuration.
    func loadCheckpoint(directory: String, config: Config, dataset: DatasetSpec?) throws -> Checkpoint? {
        let checkpoint: Checkpoint
        if let resumeFrom {
            checkpoint = try Checkpoints.read(resumeFrom)
        } else if let newest = Checkpoints.newest(in: directory + "/checkpoints", skipped: { path, reason in
            print("warning: skipping checkpoint \(path): \(reason)")
        }) {
            checkpoint = newest
        } else {
            // Nothing saved yet (e.g. a sweep re-running a job that died in its first epoch): start over.
            print("--resume: no complete checkpoint in \(directory)/checkpoints; starting from epoch 0")
            return nil
        }
        var saved = Config()
        try saved.merge(savedRun: checkpoint.state.config, source: checkpoint.path + "/state.json")
        var differing = config.differences(from: saved)
        if let dataset, let savedSpec = try? DatasetSpec(yaml: checkpoint.state.config, file: checkpoint.path),
           savedSpec != dataset {
            differing.append("dataset (its definition: folder, split file, template or class names)")
        }
        guard differing.isEmpty else {
            let detail = differing.prefix(6).map { key in
                saved.values[key] == nil && config.values[key] == nil ? key
                    : "\(key): \(saved.values[key]?.description ?? "unset") → \(config.values[key]?.description ?? "unset")"
            }
            throw TrainingError.checkpoint("cannot resume from \(checkpoint.path): the configuration differs in "
                                           + detail.joined(separator: "; "))
        }
        return checkpoint
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
        abstract: "Evaluate a saved run (--run DIR) or a checkpoint (--checkpoint DIR --config FILE) on the test split.")

    @Option(name: .customLong("run"), help: "A run directory written by `train` (its config.yaml and newest checkpoint).")
    var runDirectory: String?
    @Option(help: "A checkpoint folder (runs/…/checkpoints/epoch-NNNN).")
    var checkpoint: String?
    @Option(help: "The run's config (with --checkpoint).")
    var config: String?
    @Option(name: .customLong("data-root"), help: "Override data.root.") var dataRoot: String?
    @Option(help: "Override model.path.") var model: String?
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "Split to evaluate: test or val.") var split: String?
    @Option(help: "Write the results JSON here.") var out: String?

    func validate() throws {
        guard (runDirectory != nil) != (checkpoint != nil) else { throw ValidationError("give either --run DIR or --checkpoint DIR --config FILE") }
        if checkpoint != nil && config == nil { throw ValidationError("--checkpoint needs --config FILE (the run's config.yaml)") }
    }

    func run() throws {
        try withCommunicator { comm in
            var c = Config()
            let configPath = config ?? (runDirectory! + "/config.yaml")
            let text: String
            do { text = try RegularFile.text(configPath) } catch let error as RegularFileError {
                throw TrainingError.input(error.missing
                    ? "\(configPath) does not exist; is \(runDirectory ?? configPath) a run directory?"
                    : "\(configPath): \(error.reason)")
            }
            try c.merge(savedRun: text, source: configPath, definitionFile: configPath)
            if let dataRoot { try c.set("data.root", raw: dataRoot, source: "--data-root") }
            if let model { try c.set("model.path", raw: model, source: "--model") }
            if let vocab { try c.set("model.vocab", raw: vocab, source: "--vocab") }
            if let split { try c.set("eval.split", raw: split, source: "--split") }
            configureThreads(comm, config: c)
            let data = try RunSetup.data(c)
            let (clip, tokenizer) = try RunSetup.model(c)
            let learner = try RunSetup.learner(c, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            var evaluated = "zero-shot (no trained tensors)"
            if !learner.parameters.isEmpty {
                let saved: Checkpoint
                if let checkpoint { saved = try Checkpoints.read(checkpoint) }
                else if let newest = Checkpoints.newest(in: runDirectory! + "/checkpoints", skipped: { path, reason in
                    if comm.rank == 0 { writeStandardError("warning: skipping checkpoint \(path): \(reason)\n") }
                }) { saved = newest }
                else { throw TrainingError.checkpoint("\(runDirectory!)/checkpoints holds no complete checkpoint that loads") }
                try learner.load(saved.parameters, requireAll: true)
                let epochs = c.int("train.epochs")
                evaluated = "checkpoint \(saved.path) (epoch \(saved.state.epoch) of \(epochs))"
                if saved.state.epoch < epochs, comm.rank == 0 {
                    writeStandardError("warning: \(saved.path) is from epoch \(saved.state.epoch), not the run's last (\(epochs))\n")
                }
            }
            if comm.rank == 0 { _ = try RunSetup.checkInputs(data, training: false, evalSplit: c.string("eval.split")) }
            let trainer = Trainer(comm: comm, config: c, learner: learner, data: data, output: nil)
            let which = c.string("eval.split")
            let result = try trainer.evaluate(samples: which == "val" ? data.val : data.test, listName: "\(which) split")
            if comm.rank == 0 {
                print(String(format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)  %@", which,
                             result.confusion.accuracy * 100, result.confusion.macroF1 * 100, Int(result.confusion.total), evaluated))
                if let out {
                    let record: [String: Any] = ["accuracy": result.confusion.accuracy, "macroF1": result.confusion.macroF1,
                                                 "evaluated": Int(result.confusion.total), "split": which, "checkpoint": evaluated]
                    try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
                        .write(to: URL(fileURLWithPath: out))
                }
            }
        }
    }
}

struct Zeroshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Zero-shot CLIP accuracy on a dataset's test split with its template.")

    @OptionGroup var arguments: RunArguments

    func run() throws {
        try withCommunicator { comm in
            var options = arguments.options
            options.method = "zsclip"
            let config = try RunSetup.config(options)
            configureThreads(comm, config: config)
            let data = try RunSetup.data(config)
            let (model, tokenizer) = try RunSetup.model(config)
            let learner = try RunSetup.learner(config, model: model, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            if comm.rank == 0 { _ = try RunSetup.checkInputs(data, training: false, evalSplit: "test") }
            let trainer = Trainer(comm: comm, config: config, learner: learner, data: data, output: nil)
            let result = try trainer.evaluate(samples: data.test, listName: "test split")
            if comm.rank == 0 {
                print(String(format: "zero-shot %@: accuracy %.2f%%  macro-F1 %.2f%%  (%d images, template \"%@\")",
                             data.datasetName, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                             Int(result.confusion.total), data.template))
            }
        }
    }
}
