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
    /// `--precision fp32|bf16` (runtime.precision).
    public var precision: String?
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

    public init(
        datasetName: String, imageRoot: String, classNames: [String], template: String, train: [Sample],
        val: [Sample], test: [Sample], fewshot: FewShotLists?, trainListName: String, spec: DatasetSpec? = nil
    ) {
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
        let section = try o.configFile.map(datasetSection(in:))
        let datasetName = o.dataset ?? section?.nameOrFile
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
        // A named dataset's partial overrides from the user's file (`dataset: {name: …, template: …}`).
        if let file = o.configFile, o.dataset == nil {
            for (key, value) in section?.overrides ?? [] { try c.set("dataset." + key, raw: value, source: file) }
        }
        if let v = o.dataRoot { try c.set("data.root", raw: v, source: "--data-root") }
        if let v = o.model { try c.set("model.path", raw: v, source: "--model") }
        if let v = o.vocab { try c.set("model.vocab", raw: v, source: "--vocab") }
        if let v = o.seed { try c.set("train.seed", raw: v, source: "--seed") }
        if let v = o.output { try c.set("output.dir", raw: v, source: "--output") }
        if let v = o.fewshot { try c.set("data.fewshot", raw: v, source: "--fewshot") }
        if let v = o.precision { try c.set("runtime.precision", raw: v, source: "--precision") }
        for assignment in o.sets { try c.apply(override: assignment) }
        return c
    }

    /// The dataset a user config names: `dataset: {name: eurosat}` names a shipped one, optionally
    /// with partial overrides (`template`, `folder`, `images`, `splitFile`, `classFile`); a full
    /// definition (`dataset: {name:, layout:, …}`) makes the file itself the dataset config.
    static func datasetSection(in file: String) throws -> (nameOrFile: String?, overrides: [(String, Any)]) {
        guard let text = try? RegularFile.text(file),
            let top = (try? BoundedYAML.load(yaml: text)) as? [String: Any],
            let section = top["dataset"] as? [String: Any]
        else { return (nil, []) }
        if section["layout"] != nil { return (file, []) }
        guard let name = section["name"] as? String else {
            throw ConfigError.syntax(
                source: file, detail: "dataset: needs a name (or a full definition with layout, folder, …)")
        }
        var overrides: [(String, Any)] = []
        for key in section.keys.sorted() where key != "name" {
            guard ConfigSchema.datasetOverrides.contains(key) else {
                throw ConfigError.syntax(
                    source: file,
                    detail: "dataset.\(key) cannot override the named dataset '\(name)' "
                        + "(overridable: \(ConfigSchema.datasetOverrides.joined(separator: ", "))); give a full "
                        + "definition with layout instead"
                )
            }
            overrides.append((key, section[key]!))
        }
        return (name, overrides)
    }

    /// `spec` with the run's `dataset.*` overrides applied (each checked like the definition's own).
    static func applyingOverrides(_ spec: DatasetSpec, _ c: Config) throws -> DatasetSpec {
        var spec = spec
        func value(_ key: String) -> String? { let v = c.string("dataset." + key); return v.isEmpty ? nil : v }
        if let template = value("template") {
            guard template.contains("{}") else {
                throw ConfigError.badValue(
                    "dataset.template", value: template, expected: "a template with {} for the class name",
                    source: c.sources["dataset.template"] ?? "config")
            }
            spec.template = template
        }
        if let folder = value("folder") { spec.folder = folder }
        if let images = value("images") { spec.images = images }
        if let split = value("splitFile") { spec.splitFile = split }
        if let classes = value("classFile") { spec.classFile = classes }
        return spec
    }

    /// The dataset definition a recorded run configuration holds (`dataset:` with a layout), or nil
    /// (configurations written before 0.2 name the dataset YAML instead).
    public static func recordedDataset(in text: String, file: String) throws -> DatasetSpec? {
        guard let top = (try? BoundedYAML.load(yaml: text)) as? [String: Any],
            let section = top["dataset"] as? [String: Any],
            section["layout"] != nil
        else { return nil }
        return try DatasetSpec(yaml: text, file: file)
    }

    /// The name a dataset's definition gives it (a sweep's run folders use it, not the path).
    public static func datasetName(_ nameOrPath: String) throws -> String {
        try DatasetSpec(contentsOf: try datasetConfigPath(nameOrPath)).name
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
            throw ConfigError.missing(
                "model.path", hint: "pass --model PATH (a .safetensors file or a folder with model.safetensors)")
        }
        let precision = try Self.precision(c)
        // Bit-identical numbers whichever is chosen (DESIGN §3a), so it may change on resume.
        ResidualBlock.recompute = Recompute(rawValue: c.string("runtime.recompute")) ?? .none
        let (_, tensors) = try loadCLIPWeights(path: path)
        let model = try CLIPModel(tensors: tensors, precision: precision)
        let vocab = c.string("model.vocab")
        let tokenizer = try CLIPTokenizer(try findVocabulary(modelPath: path, override: vocab.isEmpty ? nil : vocab))
        guard tokenizer.vocabularySize <= model.text.vocabularySize else {
            throw TrainingError.input(
                "the tokenizer's vocabulary (\(tokenizer.vocabularySize) ids) is larger than the model's token "
                    + "embedding (\(model.text.vocabularySize) rows); pass the vocabulary this model was trained "
                    + "with (--vocab)"
            )
        }
        return (model, tokenizer)
    }

    /// runtime.precision, refused (one line naming the missing instruction set) where bf16 has no hardware.
    public static func precision(_ c: Config) throws -> Precision {
        try checkedPrecision(c.string("runtime.precision"))
    }

    public static func checkedPrecision(_ name: String) throws -> Precision {
        guard let precision = Precision(rawValue: name) else {
            throw ConfigError.badValue(
                "runtime.precision", value: name, expected: "one of fp32, bf16", source: "--precision")
        }
        if precision == .bf16, let reason = OneDNN.bf16Unsupported { throw TrainingError.input(reason) }
        return precision
    }

    /// What the start line says about the arithmetic: "fp32" or "bf16 (oneDNN 2.6.3, avx512_core_bf16)".
    public static func precisionSummary(_ precision: Precision) -> String {
        precision == .fp32
            ? "fp32"
            : "bf16 (oneDNN \(OneDNN.version), \(OneDNN.isaName)\(OneDNN.bf16Emulated ? ", emulated" : ""))"
    }

    /// Dataset lists and the few-shot subset (sampled with the run's seed, or read from data.fewshot).
    /// `definition` replaces the dataset YAML that `dataset.config` names (a run's recorded one).
    public static func data(_ c: Config, definition: DatasetSpec? = nil) throws -> RunData {
        let specPath = c.string("dataset.config")
        guard definition != nil || !specPath.isEmpty else {
            throw ConfigError.missing("dataset.name", hint: "pass --dataset NAME or a config with dataset: {name: …}")
        }
        let root = c.string("data.root")
        guard !root.isEmpty else { throw ConfigError.missing("data.root", hint: "pass --data-root DIR") }
        let spec = try applyingOverrides(try definition ?? DatasetSpec(contentsOf: specPath), c)
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
        // Base-to-new (DESIGN §6b): the labels of the few-shot train list decide the halves; the
        // few-shot lists are kept whole (fewshot.json stays reusable), the run sees one half.
        let subset = ClassSubset(rawValue: c.string("data.subsample")) ?? .all
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
    public static func checkInputs(_ data: RunData, training: Bool, evalSplit: String) throws -> [String] {
        var warnings: [String] = []
        if training {
            try InputChecks.trainingList(data.train, classNames: data.classNames, list: data.trainListName)
            try InputChecks.disjoint(
                train: data.train, test: data.test, trainList: data.trainListName,
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

    /// What results.json records about the model: architecture, the weights file and its CRC-32C.
    public static func modelRecord(_ c: Config, model: CLIPModel) -> [String: Any] {
        let (i, t) = (model.image, model.text)
        let known: [String: String] = [
            "768/12/32/224": "ViT-B/32", "768/12/16/224": "ViT-B/16", "1024/24/14/224": "ViT-L/14",
            "1024/24/14/336": "ViT-L/14@336px",
        ]
        let key = "\(i.width)/\(i.layers)/\(i.patch)/\(i.resolution)"
        let file = (try? resolveWeightsFile(c.string("model.path"))) ?? c.string("model.path")
        return [
            "architecture": known[key]
                ?? "ViT (width \(i.width), \(i.layers) layers, patch \(i.patch), \(i.resolution) px)",
            "vision": [
                "width": i.width, "layers": i.layers, "heads": i.heads, "patch": i.patch, "resolution": i.resolution,
            ],
            "text": [
                "width": t.width, "layers": t.layers, "heads": t.heads, "vocabulary": t.vocabularySize,
                "context": t.contextLength,
            ],
            "embedDim": i.embedDim, "weights": absolutePath(file), "weightsCRC32C": CRC32C.file(file) ?? "unreadable",
        ]
    }

    /// A group whose warm-up lasts the whole run never trains at its learning rate (a VPT run would
    /// end at zero-shot accuracy): say so before it starts.
    public static func scheduleWarnings(_ c: Config, groups: Set<ParameterGroup>) -> [String] {
        let epochs = c.int("train.epochs")
        return groups.sorted { $0.rawValue > $1.rawValue }.compactMap { group in
            let warmup = c.int("optim.\(group.rawValue).warmupEpochs")
            guard epochs > 0, epochs <= warmup else { return nil }
            return
                "train.epochs (\(epochs)) ≤ optim.\(group.rawValue).warmupEpochs (\(warmup)): the \(group.rawValue) "
                + "learning rate "
                + "stays at optim.\(group.rawValue).warmupLR (\(c.double("optim.\(group.rawValue).warmupLR"))) for "
                + "the whole run"
        }
    }

    public static func learner(
        _ c: Config, model: CLIPModel, tokenizer: CLIPTokenizer,
        classNames: [String], template: String
    ) throws -> PromptLearner {
        let settings = MethodSettings(config: c)
        if settings.cavpt.queries == .learned && !settings.textPrompt && settings.usesCAVPT {
            throw ConfigError.badValue(
                "cavpt.queries", value: "learned", expected: "template when method.textPrompt is false",
                source: c.sources["cavpt.queries"] ?? "config")
        }
        let prompts = try ClassPrompts(classNames: classNames, template: template, contextLength: settings.textLength) {
            tokenizer.tokenize($0, contextLength: model.text.contextLength)
        }
        return try PromptLearner(model: model, prompts: prompts, settings: settings, seed: UInt64(c.int("train.seed")))
    }
}
