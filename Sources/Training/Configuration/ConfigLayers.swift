// From command-line options to the layered configuration: the dataset YAML, the method preset,
// the user's file, the flags, then `--set`; and where the shipped dataset and method YAML files are.
import Data
import Files
import Foundation
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

/// The method presets: each is defined by its file `configs/methods/NAME.yaml` (what `--method NAME`
/// layers in); this list only orders them (tables, help) and is what `method.name` accepts.
public enum MethodPresets {
    public static let names = [
        "zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_deep", "vlp_cavpt", "dpt_released",
    ]
    /// `method.name` of a run built from method keys alone.
    public static let custom = "custom"
}

extension RunSetup {
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
            try c.set(\.dataset.name, raw: try DatasetSpec(contentsOf: path).name, source: path)
            try c.set(\.dataset.config, raw: path, source: path)
        }
        let methodName = o.method ?? (user.isSet(\.methodName) ? user.settings.methodName : nil)
        if let methodName, !methodName.isEmpty {
            try c.merge(file: try methodConfigPath(methodName))
        }
        if let file = o.configFile { try c.merge(file: file, ignoring: ["dataset"]) }
        // A named dataset's partial overrides from the user's file (`dataset: {name: …, template: …}`).
        if let file = o.configFile, o.dataset == nil {
            for (key, value) in section?.overrides ?? [] { try c.set(key, raw: value, source: file) }
        }
        if let v = o.dataRoot { try c.set(\.data.root, raw: v, source: "--data-root") }
        if let v = o.model { try c.set(\.model.path, raw: v, source: "--model") }
        if let v = o.vocab { try c.set(\.model.vocab, raw: v, source: "--vocab") }
        if let v = o.seed { try c.set(\.train.seed, raw: v, source: "--seed") }
        if let v = o.output { try c.set(\.output.dir, raw: v, source: "--output") }
        if let v = o.fewshot { try c.set(\.data.fewshot, raw: v, source: "--fewshot") }
        if let v = o.precision { try c.set(\.runtime.precision, raw: v, source: "--precision") }
        for assignment in o.sets { try c.apply(override: assignment) }
        return c
    }

    /// The dataset a user config names: `dataset: {name: eurosat}` names a shipped one, optionally
    /// with partial overrides (`template`, `folder`, `images`, `splitFile`, `classFile`: returned
    /// under their keys); a full definition (`dataset: {name:, layout:, …}`) makes the file itself
    /// the dataset config.
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
            guard let override = ConfigSchema.datasetOverrides.first(where: { $0.field == key }) else {
                throw ConfigError.syntax(
                    source: file,
                    detail: "dataset.\(key) cannot override the named dataset '\(name)' "
                        + "(overridable: \(ConfigSchema.datasetOverrides.map(\.field).joined(separator: ", "))); "
                        + "give a full definition with layout instead"
                )
            }
            overrides.append((override.key, section[key]!))
        }
        return (name, overrides)
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

}
