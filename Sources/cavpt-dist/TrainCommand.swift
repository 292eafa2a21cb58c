// `cavpt-dist train` and `cavpt-dist eval`: the data-parallel trainer and the evaluation of a saved run.
import ArgumentParser
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor
import Training

/// Options shared by the commands that build a run (SPEC §7).
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

    func run() throws {
        try withCommunicator { comm in
            let config = try RunSetup.config(arguments.options)
            configureThreads(comm, config: config)
            let data = try RunSetup.data(config)
            let (model, tokenizer) = try RunSetup.model(config)
            let learner = try RunSetup.learner(config, model: model, tokenizer: tokenizer,
                                               classNames: data.classNames, template: data.template)
            let directory = runDirectory(config)
            var checkpoint: Checkpoint?
            if comm.rank == 0 && (resume || resumeFrom != nil) {
                checkpoint = try loadCheckpoint(directory: directory, config: config)
            }
            let output = comm.rank == 0 ? try RunOutput(directory: directory, config: config, fewshot: data.fewshot) : nil
            output?.say("cavpt-dist \(cavptDistVersion): \(config.string("method.name")) on \(data.datasetName), "
                        + "\(data.train.count) training images, \(data.classNames.count) classes, \(comm.size) rank(s) "
                        + "× \(BLASRuntime.threads) BLAS thread(s) [\(BLASRuntime.coreName)], "
                        + "precision \(RunSetup.precisionSummary(model.precision)), run \(directory)")
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
                                                "epochs": config.int("train.epochs")])
                output.say(String(format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)  results: %@/results.json",
                                  split, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                                  Int(result.confusion.total), directory))
            }
        }
    }

    /// The newest complete checkpoint (or --resume-from), checked against this run's configuration.
    func loadCheckpoint(directory: String, config: Config) throws -> Checkpoint? {
        let checkpoint: Checkpoint
        if let resumeFrom {
            checkpoint = try Checkpoints.read(resumeFrom)
        } else if let newest = Checkpoints.newest(in: directory + "/checkpoints") {
            checkpoint = newest
        } else {
            // Nothing saved yet (e.g. a sweep re-running a job that died in its first epoch): start over.
            print("--resume: no complete checkpoint in \(directory)/checkpoints; starting from epoch 0")
            return nil
        }
        var saved = Config()
        try saved.merge(yaml: checkpoint.state.config, source: checkpoint.path + "/state.json")
        let differing = config.differences(from: saved)
        guard differing.isEmpty else {
            let detail = differing.prefix(6).map { "\($0): \(saved.values[$0]?.description ?? "unset") → \(config.values[$0]?.description ?? "unset")" }
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
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16 (runtime.precision).") var precision: String?
    @Option(help: "Write the results JSON here.") var out: String?

    func validate() throws {
        guard (runDirectory != nil) != (checkpoint != nil) else { throw ValidationError("give either --run DIR or --checkpoint DIR --config FILE") }
        if checkpoint != nil && config == nil { throw ValidationError("--checkpoint needs --config FILE (the run's config.yaml)") }
    }

    func run() throws {
        try withCommunicator { comm in
            var c = Config()
            let configPath = config ?? (runDirectory! + "/config.yaml")
            guard FileManager.default.fileExists(atPath: configPath) else {
                throw TrainingError.input("\(configPath) does not exist; is \(runDirectory ?? configPath) a run directory?")
            }
            try c.merge(file: configPath)
            if let dataRoot { try c.set("data.root", raw: dataRoot, source: "--data-root") }
            if let model { try c.set("model.path", raw: model, source: "--model") }
            if let vocab { try c.set("model.vocab", raw: vocab, source: "--vocab") }
            if let split { try c.set("eval.split", raw: split, source: "--split") }
            if let precision { try c.set("runtime.precision", raw: precision, source: "--precision") }
            configureThreads(comm, config: c)
            let data = try RunSetup.data(c)
            let (clip, tokenizer) = try RunSetup.model(c)
            let learner = try RunSetup.learner(c, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            if !learner.parameters.isEmpty {
                let saved: Checkpoint
                if let checkpoint { saved = try Checkpoints.read(checkpoint) }
                else if let newest = Checkpoints.newest(in: runDirectory! + "/checkpoints") { saved = newest }
                else { throw TrainingError.checkpoint("\(runDirectory!)/checkpoints holds no complete checkpoint") }
                try learner.load(saved.parameters, requireAll: true)
            }
            let trainer = Trainer(comm: comm, config: c, learner: learner, data: data, output: nil)
            let which = c.string("eval.split")
            let result = try trainer.evaluate(samples: which == "val" ? data.val : data.test, listName: "\(which) split")
            if comm.rank == 0 {
                print(String(format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)", which,
                             result.confusion.accuracy * 100, result.confusion.macroF1 * 100, Int(result.confusion.total)))
                if let out {
                    let record: [String: Any] = ["accuracy": result.confusion.accuracy, "macroF1": result.confusion.macroF1,
                                                 "evaluated": Int(result.confusion.total), "split": which,
                                                 "precision": c.string("runtime.precision"), "onednnISA": OneDNN.isaName]
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
