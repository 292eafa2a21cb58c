// Loading a run for evaluation, written once: its configuration (a run's recorded one, a checkpoint's,
// or one built from a method preset), the command line's overrides, the lists, the frozen model, the
// learner and its trained tensors. `eval`, `zeroshot`, `predict`, `attention`, `gradients` and a
// sweep's new-class evaluation all load through `RunLoader.load`.
import CLIP
import Data
import Distributed
import Files
import Foundation
import PromptTuning
import Tensor

/// What to load and how.
public struct RunLoad {
    /// Where the configuration comes from.
    public enum Source {
        /// A run directory's config.yaml, a checkpoint's state, or (`configFile`) a config used
        /// instead of the recorded one.
        case saved(run: String?, checkpoint: Checkpoint?, configFile: String? = nil)
        /// Built as `train` builds it (a method preset, flags): zero-shot CLIP, `--method` with `--params`.
        case options(RunOptions)
        /// A configuration in hand, with the dataset definition it was built on (a sweep's job).
        case config(Config, definition: DatasetSpec?)
    }

    /// The classes the learner scores.
    public enum Classes {
        /// The dataset's (after the run's class half).
        case dataset
        /// Given names and a prompt template; no lists are loaded.
        case given(names: [String], template: String)
    }

    /// The trained tensors the learner gets.
    public enum Tensors {
        /// None: the learner's initial ones (zero-shot CLIP trains none).
        case none
        /// The source's checkpoint, else the newest checkpoint of its run that loads.
        case saved
        /// A safetensors file under canonical names (`--params`).
        case file(String)
        /// Tensors in hand (a sweep's job at the end of training).
        case values([String: Tensor])
    }

    public var source: Source
    /// Evaluate on another dataset's classes, template and test split (cross-dataset, domain
    /// generalisation): its definition replaces the run's, all its classes, the run's few-shot file
    /// (of its own dataset) dropped.
    public var dataset: String?
    /// Flags over the configuration, applied after the dataset switch: (field, value, the flag).
    public var overrides: [(field: PartialKeyPath<RunSettings>, value: Any, flag: String)] = []
    public var classes = Classes.dataset
    public var tensors = Tensors.none
    /// Skip the training-only tensors (CAVPT's class branch), so the evaluated classes may differ from
    /// the trained ones. `gradients` loads every tensor.
    public var forEvaluation = true
    /// With a communicator: the run's BLAS threads are set, rank 0 checks the evaluated list before the
    /// model loads, and only rank 0 warns.
    public var comm: Communicator?
    public var checksInputs = false
    /// A model and tokenizer already loaded (a sweep's job, a second column of `attention`).
    public var model: (CLIPModel, CLIPTokenizer)?

    public init(_ source: Source) { self.source = source }

    /// A flag's value (when given) over the field it sets.
    public mutating func override(_ field: PartialKeyPath<RunSettings>, _ value: String?, flag: String) {
        if let value { overrides.append((field, value, flag)) }
    }
}

/// A run ready to evaluate.
public struct LoadedRun {
    public var config: Config
    public var settings: RunSettings
    /// The lists (nil with given classes).
    public var data: RunData?
    public var classNames: [String]
    public var template: String
    public var model: CLIPModel
    public var tokenizer: CLIPTokenizer
    public var learner: PromptLearner
    /// What the tensors came from, for the report line: "checkpoint … (epoch 3 of 3)".
    public var tensorsLoaded: String
    /// The dataset and class half the configuration recorded, before a switch or override.
    public var recordedDataset: String
    public var recordedSubsample: ClassSubset
}

public enum RunLoader {
    public static func load(_ request: RunLoad) throws -> LoadedRun {
        let warn = request.comm.map { $0.rank == 0 } ?? true
        var (c, definition, checkpoint) = try configuration(request.source)
        let recorded = c.settings
        if let dataset = request.dataset { definition = try switchDataset(&c, to: dataset) }
        for (field, value, flag) in request.overrides { try c.set(field, raw: value, source: flag) }
        let settings = c.settings
        if let comm = request.comm { RunSetup.configureThreads(comm, settings: settings) }
        var data: RunData?
        let classNames: [String], template: String
        switch request.classes {
        case .dataset:
            let lists = try RunSetup.data(c, definition: definition)
            if request.checksInputs, request.comm?.rank ?? 0 == 0 {
                _ = try RunSetup.checkInputs(lists, training: false, evalSplit: settings.eval.split)
            }
            (data, classNames, template) = (lists, lists.classNames, lists.template)
        case let .given(names, given):
            (classNames, template) = (names, given)
        }
        let (model, tokenizer) = try request.model ?? RunSetup.model(c)
        let learner = try RunSetup.learner(
            c, model: model, tokenizer: tokenizer, classNames: classNames, template: template)
        var loaded = "zero-shot (no trained tensors)"
        switch request.tensors {
        case .none: break
        case .saved:
            guard case let .saved(run, _, _) = request.source else {
                preconditionFailure("saved tensors of a saved run")
            }
            loaded = try loadSavedTensors(
                into: learner, run: run, checkpoint: checkpoint, epochs: settings.train.epochs, warn: warn)
        case .file(let path):
            try learner.load(try readTensors(path), requireAll: true, forEvaluation: request.forEvaluation)
            loaded = "trained tensors \(path)"
        case .values(let tensors):
            try learner.load(tensors, requireAll: true, forEvaluation: request.forEvaluation)
            loaded = "the trained tensors at the end of training"
        }
        return LoadedRun(
            config: c, settings: settings, data: data, classNames: classNames, template: template, model: model,
            tokenizer: tokenizer, learner: learner, tensorsLoaded: loaded, recordedDataset: recorded.dataset.name,
            recordedSubsample: recorded.data.subsample)
    }

    /// The configuration of `source`, the dataset definition it holds, and the checkpoint it names.
    static func configuration(_ source: RunLoad.Source) throws -> (Config, DatasetSpec?, Checkpoint?) {
        switch source {
        case let .saved(run, checkpoint, configFile):
            let (c, definition) = try recordedConfig(run: run, checkpoint: checkpoint, override: configFile)
            return (c, definition, checkpoint)
        case .options(let options):
            return (try RunSetup.config(options), nil, nil)
        case let .config(c, definition):
            return (c, definition, nil)
        }
    }

    /// The configuration a run recorded (its config.yaml, or a checkpoint's state), or `override`;
    /// with the dataset definition it holds.
    public static func recordedConfig(
        run: String?, checkpoint: Checkpoint?, override: String?
    ) throws -> (Config, DatasetSpec?) {
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

    /// Another dataset for a run's trained tensors (cross-dataset evaluation, prediction): its
    /// definition, all its classes and its template; the run's method. The run's few-shot file belongs
    /// to its own dataset and is dropped.
    static func switchDataset(_ c: inout Config, to dataset: String) throws -> DatasetSpec {
        let path = try RunSetup.datasetConfigPath(dataset)
        let definition = try DatasetSpec(contentsOf: path)
        try c.set(\.dataset.name, raw: definition.name, source: "--dataset")
        try c.set(\.dataset.config, raw: path, source: "--dataset")
        try c.set(\.data.fewshot, raw: "", source: "--dataset")
        try c.set(\.data.subsample, raw: ClassSubset.all.rawValue, source: "--dataset")
        return definition
    }

    /// Sets the learner's trained tensors from `checkpoint`, else the newest checkpoint of `run` that
    /// loads (warning about each one skipped, and when it is not the last epoch). Returns what was
    /// loaded, for the report line.
    static func loadSavedTensors(
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
}

/// Every tensor of a safetensors file, by name.
public func readTensors(_ path: String) throws -> [String: Tensor] {
    let file = try SafeTensorsFile(path: path)
    var out: [String: Tensor] = [:]
    for name in file.names { out[name] = try file.tensor(name) }
    return out
}
