// From command-line options to a ready run: the layered configuration, the frozen model and
// tokenizer, the dataset lists and few-shot subset, and the prompt learner.
import CLIP
import Data
import Foundation
import PromptTuning
import Tensor
import Yams

/// What `train`, `eval` and friends accept on the command line (DESIGN §7).
public struct RunOptions: Sendable {
    public var dataset: String?
    public var method: String?
    public var configFile: String?
    public var dataRoot: String?
    public var model: String?
    public var vocab: String?
    public var seed: Int?
    public var output: String?
    public var fewshot: String?
    public var sets: [String] = []

    public init() {}
}

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

    public init(datasetName: String, imageRoot: String, classNames: [String], template: String, train: [Sample],
                val: [Sample], test: [Sample], fewshot: FewShotLists?, trainListName: String, spec: DatasetSpec? = nil) {
        self.datasetName = datasetName; self.imageRoot = imageRoot; self.classNames = classNames
        self.template = template; self.train = train; self.val = val; self.test = test
        self.fewshot = fewshot; self.trainListName = trainListName; self.spec = spec
    }

    /// The list evaluated under `eval.split`, with its name for messages.
    public func evaluationList(_ split: String) -> (samples: [Sample], name: String) {
        split == "val" ? (val, "few-shot val list") : (test, "\(datasetName) test split")
    }
}

public enum RunSetup {
    /// Layers: dataset YAML, method YAML, the user's config file, command-line flags, then `--set`.
    public static func config(_ o: RunOptions) throws -> Config {
        // A user config may name the dataset and method itself; read it first to find them.
        var user = Config()
        if let file = o.configFile { try user.merge(file: file, ignoring: ["dataset"]) }
        var c = Config()
        let datasetName = try o.dataset ?? o.configFile.flatMap(datasetNamed(in:))
        if let datasetName, !datasetName.isEmpty {
            let path = try datasetConfigPath(datasetName)
            try c.merge(file: path, ignoring: ["dataset"])
            try c.set("dataset.name", raw: try DatasetSpec(contentsOf: path).name, source: path)
            try c.set("dataset.config", raw: path, source: path)
        }
        let methodName = o.method ?? (user.sources["method.name"] != nil ? user.string("method.name") : nil)
        if let methodName, !methodName.isEmpty {
            try c.merge(file: try methodConfigPath(methodName))
        }
        if let file = o.configFile { try c.merge(file: file, ignoring: ["dataset"]) }
        if let v = o.dataRoot { try c.set("data.root", raw: v, source: "--data-root") }
        if let v = o.model { try c.set("model.path", raw: v, source: "--model") }
        if let v = o.vocab { try c.set("model.vocab", raw: v, source: "--vocab") }
        if let v = o.seed { try c.set("train.seed", raw: v, source: "--seed") }
        if let v = o.output { try c.set("output.dir", raw: v, source: "--output") }
        if let v = o.fewshot { try c.set("data.fewshot", raw: v, source: "--fewshot") }
        for assignment in o.sets { try c.apply(override: assignment) }
        return c
    }

    /// The dataset a user config names: `dataset: {name: eurosat}` names a shipped one; a full
    /// definition (`dataset: {name:, layout:, …}`) makes the file itself the dataset config.
    static func datasetNamed(in file: String) throws -> String? {
        guard let text = try? RegularFile.text(file),
              let top = (try? BoundedYAML.load(yaml: text)) as? [String: Any],
              let section = top["dataset"] as? [String: Any] else { return nil }
        if section["layout"] != nil { return file }
        guard let name = section["name"] as? String else {
            throw ConfigError.syntax(source: file, detail: "dataset: needs a name (or a full definition with layout, folder, …)")
        }
        return name
    }

    public static func datasetConfigPath(_ nameOrPath: String) throws -> String {
        try configPath(nameOrPath, folder: "datasets", kind: "dataset")
    }

    public static func methodConfigPath(_ nameOrPath: String) throws -> String {
        try configPath(nameOrPath, folder: "methods", kind: "method")
    }

    /// A YAML path as given, or `configs/<folder>/<name>.yaml` for a bare name.
    static func configPath(_ nameOrPath: String, folder: String, kind: String) throws -> String {
        if nameOrPath.hasSuffix(".yaml") || nameOrPath.contains("/") {
            guard FileManager.default.fileExists(atPath: nameOrPath) else {
                throw TrainingError.input("\(kind) config \(nameOrPath) does not exist")
            }
            return nameOrPath
        }
        let path = try ConfigLocator.configsDirectory() + "/\(folder)/\(nameOrPath).yaml"
        guard FileManager.default.fileExists(atPath: path) else {
            throw TrainingError.input("unknown \(kind) '\(excerpt(nameOrPath))' (known: \(known(folder)))")
        }
        return path
    }

    static func known(_ folder: String) -> String {
        let dir = ((try? ConfigLocator.configsDirectory()) ?? "configs") + "/" + folder
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        return names.joined(separator: ", ")
    }

    /// The frozen CLIP and its tokenizer.
    public static func model(_ c: Config) throws -> (CLIPModel, CLIPTokenizer) {
        let path = c.string("model.path")
        guard !path.isEmpty else {
            throw ConfigError.missing("model.path", hint: "pass --model PATH (a .safetensors file or a folder with model.safetensors)")
        }
        let (_, tensors) = try loadCLIPWeights(path: path)
        let model = try CLIPModel(tensors: tensors)
        let vocab = c.string("model.vocab")
        let tokenizer = try CLIPTokenizer(try findVocabulary(modelPath: path, override: vocab.isEmpty ? nil : vocab))
        guard tokenizer.vocabularySize <= model.text.vocabularySize else {
            throw TrainingError.input("the tokenizer's vocabulary (\(tokenizer.vocabularySize) ids) is larger than the model's token embedding (\(model.text.vocabularySize) rows); pass the vocabulary this model was trained with (--vocab)")
        }
        return (model, tokenizer)
    }

    /// Dataset lists and the few-shot subset (sampled with the run's seed, or read from data.fewshot).
    public static func data(_ c: Config) throws -> RunData {
        let specPath = c.string("dataset.config")
        guard !specPath.isEmpty else {
            throw ConfigError.missing("dataset.name", hint: "pass --dataset NAME or a config with dataset: {name: …}")
        }
        let root = c.string("data.root")
        guard !root.isEmpty else { throw ConfigError.missing("data.root", hint: "pass --data-root DIR") }
        let spec = try DatasetSpec(contentsOf: specPath)
        let splits = try loadDataset(spec: spec, dataRoot: root)
        let fewshotFile = c.string("data.fewshot")
        let lists: FewShotLists
        let listName: String
        if fewshotFile.isEmpty {
            lists = sampleFewShot(splits: splits, shots: c.int("train.shots"), seed: c.int("train.seed"))
            listName = "few-shot train list (\(c.int("train.shots")) shots, seed \(c.int("train.seed")))"
        } else {
            lists = try FewShotLists.read(from: fewshotFile)
            try lists.validate(against: splits, file: fewshotFile)
            listName = fewshotFile
        }
        var data = RunData(datasetName: spec.name, imageRoot: splits.imageRoot, classNames: splits.classNames,
                           template: spec.template, train: lists.train, val: lists.val, test: splits.test,
                           fewshot: lists, trainListName: listName, spec: spec)
        data.fewshotFile = fewshotFile.isEmpty ? "" : absolutePath(fewshotFile)
        return data
    }

    /// The checks run before any work (rank 0; a failure ends every rank): the lists are not empty,
    /// every class has training images, no test image is a training image, and every image to be
    /// read is a regular file inside the dataset. Returns warnings to print (an empty val list).
    public static func checkInputs(_ data: RunData, training: Bool, evalSplit: String) throws -> [String] {
        var warnings: [String] = []
        if training {
            try InputChecks.trainingList(data.train, classNames: data.classNames, list: data.trainListName)
            try InputChecks.disjoint(train: data.train, test: data.test, trainList: data.trainListName,
                                     testList: "the \(data.datasetName) test split")
            try InputChecks.images(data.train, imageRoot: data.imageRoot, list: data.trainListName)
            if data.val.isEmpty && evalSplit != "val" {
                warnings.append("the few-shot val list is empty (the dataset has no val split)")
            }
        }
        let (samples, name) = data.evaluationList(evalSplit)
        guard !samples.isEmpty else { throw TrainingError.input("\(name) is empty: nothing to evaluate") }
        if training || evalSplit == "val" {
            try InputChecks.images(data.val, imageRoot: data.imageRoot, list: "few-shot val list")
        }
        if evalSplit != "val" { try InputChecks.images(data.test, imageRoot: data.imageRoot, list: name) }
        return warnings
    }

    public static func learner(_ c: Config, model: CLIPModel, tokenizer: CLIPTokenizer,
                               classNames: [String], template: String) throws -> PromptLearner {
        let settings = MethodSettings(config: c)
        if settings.cavpt.queries == .learned && !settings.textPrompt && settings.usesCAVPT {
            throw ConfigError.badValue("cavpt.queries", value: "learned", expected: "template when method.textPrompt is false",
                                       source: c.sources["cavpt.queries"] ?? "config")
        }
        let prompts = try ClassPrompts(classNames: classNames, template: template, contextLength: settings.textLength) {
            tokenizer.tokenize($0, contextLength: model.text.contextLength)
        }
        return try PromptLearner(model: model, prompts: prompts, settings: settings, seed: UInt64(c.int("train.seed")))
    }
}
