// `cavpt-dist train`, `eval` and `zeroshot`: flags into a training job or an evaluation job (Training/Runs).
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
            "Method preset from configs/methods (\(MethodPresets.names.joined(separator: ", "))) or a YAML file."))
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
        // Every rank agreed on it (`FailurePolicy`): rank 0 says it once and all exit cleanly.
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
                resumeFrom: resumeFrom, scope: .solo, quiet: false,
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
            var load = RunLoad(
                .saved(
                    run: runDirectory, checkpoint: try checkpoint.map { try Checkpoints.read($0) }, configFile: config))
            load.dataset = dataset
            load.override(\.data.root, dataRoot, flag: "--data-root")
            load.override(\.model.path, model, flag: "--model")
            load.override(\.model.vocab, vocab, flag: "--vocab")
            load.override(\.eval.split, split, flag: "--split")
            load.override(\.data.subsample, subsample, flag: "--subsample")
            load.override(\.runtime.precision, precision, flag: "--precision")
            load.tensors = .saved
            var job = EvaluationJob(load: load)
            job.keptIn = checkpoint == nil ? runDirectory : nil
            job.out = out
            job.predictions = predictions
            try job.run(comm: comm)
        }
    }
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
            // As `--set` assignments: a bad value is named as one.
            if let split { options.sets.append("\(ConfigSchema.name(of: \.eval.split))=\(split)") }
            if let subsample { options.sets.append("\(ConfigSchema.name(of: \.data.subsample))=\(subsample)") }
            var job = EvaluationJob(load: RunLoad(.options(options)))
            job.zeroShot = true
            job.out = out
            job.predictions = predictions
            try job.run(comm: comm)
        }
    }
}
