// The lists a run trains and evaluates on: the dataset definition with the run's overrides, its
// splits, the few-shot subset (sampled with the run's seed or read back), the base/new class half,
// and the checks that run before any work.
import Data
import Foundation
import Tensor

/// The lists a run trains and evaluates on, with paths relative to `imageRoot`.
public struct RunData: Sendable {
    public var datasetName: String
    public var imageRoot: String
    public var classNames: [String]
    public var template: String
    public var train: [Sample]
    public var val: [Sample]
    public var test: [Sample]
    public var fewshot: FewShotLists?
    /// How errors name the train list (the few-shot file or split).
    public var trainListName: String
    /// The resolved dataset definition (written into the run's config.yaml).
    public var spec: DatasetSpec?
    /// Where the few-shot lists came from: the `--fewshot` file, or "" when sampled with the run's seed.
    public var fewshotFile: String = ""

    public init(
        datasetName: String, imageRoot: String, classNames: [String], template: String, train: [Sample],
        val: [Sample], test: [Sample], fewshot: FewShotLists?, trainListName: String, spec: DatasetSpec? = nil
    ) {
        self.datasetName = datasetName; self.imageRoot = imageRoot; self.classNames = classNames
        self.template = template; self.train = train; self.val = val; self.test = test
        self.fewshot = fewshot; self.trainListName = trainListName; self.spec = spec
    }

    /// The list evaluated under `eval.split`, with its name for messages.
    public func evaluationList(_ split: EvaluationSplit) -> (samples: [Sample], name: String) {
        split == .val ? (val, "few-shot val list") : (test, "\(datasetName) test split")
    }
}

/// Building a run from its configuration: its lists (here), its model and learner (ModelSetup.swift).
public enum RunSetup {
    /// `spec` with the run's `dataset.*` overrides applied (each checked like the definition's own).
    static func applyingOverrides(_ spec: DatasetSpec, _ c: Config) throws -> DatasetSpec {
        var spec = spec
        let overrides = c.settings.dataset
        func value(_ v: String) -> String? { v.isEmpty ? nil : v }
        if let template = value(overrides.template) {
            guard template.contains("{}") else {
                throw ConfigError.bad(
                    \.dataset.template, value: template, expected: "a template with {} for the class name",
                    source: c.source(of: \.dataset.template))
            }
            spec.template = template
        }
        if let folder = value(overrides.folder) { spec.folder = folder }
        if let images = value(overrides.images) { spec.images = images }
        if let split = value(overrides.splitFile) { spec.splitFile = split }
        if let classes = value(overrides.classFile) { spec.classFile = classes }
        return spec
    }

    /// Dataset lists and the few-shot subset (sampled with the run's seed, or read from data.fewshot).
    /// `definition` replaces the dataset YAML that `dataset.config` names (a run's recorded one).
    public static func data(_ c: Config, definition: DatasetSpec? = nil) throws -> RunData {
        let s = c.settings
        let specPath = s.dataset.config
        guard definition != nil || !specPath.isEmpty else {
            throw ConfigError.unset(\.dataset.name, hint: "pass --dataset NAME or a config with dataset: {name: …}")
        }
        let root = s.data.root
        guard !root.isEmpty else { throw ConfigError.unset(\.data.root, hint: "pass --data-root DIR") }
        let spec = try applyingOverrides(try definition ?? DatasetSpec(contentsOf: specPath), c)
        let splits = try loadDataset(spec: spec, dataRoot: root)
        let fewshotFile = s.data.fewshot
        let lists: FewShotLists
        let listName: String
        if fewshotFile.isEmpty {
            lists = sampleFewShot(splits: splits, shots: s.train.shots, seed: s.train.seed)
            listName = "few-shot train list (\(s.train.shots) shots, seed \(s.train.seed))"
        } else {
            lists = try FewShotLists.read(from: fewshotFile)
            try lists.validate(against: splits, file: fewshotFile)
            listName = fewshotFile
        }
        // Base-to-new (DESIGN §6b): the labels of the few-shot train list decide the halves; the
        // few-shot lists are kept whole (fewshot.json stays reusable), the run sees one half.
        let subset = s.data.subsample
        let (kept, classNames) = subset.apply(
            train: lists.train, lists: [lists.train, lists.val, splits.test],
            classNames: splits.classNames)
        var data = RunData(
            datasetName: spec.name, imageRoot: splits.imageRoot, classNames: classNames,
            template: spec.template, train: kept[0], val: kept[1], test: kept[2],
            fewshot: lists, trainListName: subset == .all ? listName : "\(listName), \(subset.rawValue) classes",
            spec: spec)
        data.fewshotFile = fewshotFile.isEmpty ? "" : absolutePath(fewshotFile)
        return data
    }

    /// The checks run before any work (rank 0; a failure ends every rank): the lists are not empty,
    /// every class has training images, no test image is a training image, and every image to be
    /// read is a regular file inside the dataset. Returns warnings to print (an empty val list).
    public static func checkInputs(_ data: RunData, training: Bool, evalSplit: EvaluationSplit) throws -> [String] {
        var warnings: [String] = []
        if training {
            try InputChecks.trainingList(data.train, classNames: data.classNames, list: data.trainListName)
            try InputChecks.disjoint(
                train: data.train, test: data.test, trainList: data.trainListName,
                testList: "the \(data.datasetName) test split")
            try InputChecks.images(data.train, imageRoot: data.imageRoot, list: data.trainListName)
            if data.val.isEmpty && evalSplit != .val {
                warnings.append("the few-shot val list is empty (the dataset has no val split)")
            }
        }
        let (samples, name) = data.evaluationList(evalSplit)
        guard !samples.isEmpty else { throw TrainingError.input("\(name) is empty: nothing to evaluate") }
        if training || evalSplit == .val {
            try InputChecks.images(data.val, imageRoot: data.imageRoot, list: "few-shot val list")
        }
        if evalSplit != .val { try InputChecks.images(data.test, imageRoot: data.imageRoot, list: name) }
        return warnings
    }

}
