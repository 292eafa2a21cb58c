// Dataset definitions (`configs/datasets/<name>.yaml`): where a dataset lives under the data
// root, which layout reads it, its prompt template and CAVPT's K_N; and how `configs/` is found.
import Files
import Foundation
import Tensor
import Yams

/// How the files of a dataset are laid out (see `loadDataset`).
public enum DatasetLayout: String, Codable, Sendable, CaseIterable {
    /// CoOp's `split_zhou_*.json` with paths relative to the image folder.
    case coopSplit = "coop-split"
    /// FGVC-Aircraft: `variants.txt` + `images_variant_{train,val,test}.txt`, images `images/<id>.jpg`.
    case fgvcAircraft = "fgvc-aircraft"
    /// CoOp's ImageNet: `classnames.txt` ("wnid name" lines) + `images/{train,val}/<wnid>/*`.
    case imagenet = "imagenet"
    /// ImageNet-Sketch, -A and -R as CoOp reads them: `<images>/<wnid>/*` (label = index of the
    /// sorted wnid folders present, e.g. 200 for -A and -R) with names from ImageNet's
    /// `classnames.txt`; every split is the one image set (evaluation only).
    case wnidFolders = "wnid-folders"
    /// ImageNet-V2 as CoOp reads it: `<images>/<0…999>/*` (the folder number is the label, the
    /// n-th line of `classnames.txt` its name); evaluation only.
    case imagenetV2 = "imagenet-v2"
    /// `root/<class>/*.jpg`, or `root/{train,val,test}/<class>/*.jpg`.
    case imageFolder = "image-folder"
}

/// How class names are derived from the labels' names in the split files.
public struct ClassNameRules: Codable, Equatable, Sendable {
    /// CoOp's prompt learner replaces `_` by a space in every class name.
    public var replaceUnderscores: Bool
    /// Names replaced after the underscore rule (e.g. abbreviations a user wants spelled out).
    public var rename: [String: String]

    public init(replaceUnderscores: Bool = true, rename: [String: String] = [:]) {
        self.replaceUnderscores = replaceUnderscores
        self.rename = rename
    }

    public func apply(_ raw: String) -> String {
        let spaced = replaceUnderscores ? raw.replacingOccurrences(of: "_", with: " ") : raw
        return rename[spaced] ?? spaced
    }
}

/// One dataset's definition: the `dataset:` section of its YAML plus `cavpt.topK`.
public struct DatasetSpec: Codable, Equatable, Sendable {
    public var name: String
    public var layout: DatasetLayout
    /// Dataset folder under the data root ("" = the data root itself).
    public var folder: String
    /// Image folder under `folder` ("" = `folder` itself); split-file paths are relative to it.
    public var images: String
    /// coop-split: the JSON under `folder`; fgvc-aircraft: the list name with `{split}` for train/val/test.
    public var splitFile: String?
    /// fgvc-aircraft: `variants.txt`; imagenet: `classnames.txt` (under `folder`).
    public var classFile: String?
    /// The zero-shot / CAVPT template, with `{}` where the class name goes.
    public var template: String
    public var classNames: ClassNameRules
    /// `cavpt.topK` (K_N) for the paper presets; 0 = all classes; nil when the file sets none.
    public var topK: Int?

    public init(
        name: String, layout: DatasetLayout, folder: String, images: String, splitFile: String? = nil,
        classFile: String? = nil, template: String, classNames: ClassNameRules = ClassNameRules(),
        topK: Int? = nil
    ) {
        self.name = name
        self.layout = layout
        self.folder = folder
        self.images = images
        self.splitFile = splitFile
        self.classFile = classFile
        self.template = template
        self.classNames = classNames
        self.topK = topK
    }

    /// The prompt for one class name.
    public func prompt(for className: String) -> String {
        template.replacingOccurrences(of: "{}", with: className)
    }

    static let datasetKeys: Set<String> = [
        "name", "layout", "folder", "images", "splitFile", "classFile",
        "template", "classNames",
    ]
    static let classNameKeys: Set<String> = ["replaceUnderscores", "rename"]

    /// Parses a dataset YAML: `dataset:` (strict: unknown keys are errors) and `cavpt.topK`.
    /// Other top-level sections (`train:`, `optim:`, ...) belong to the trainer's config and are left alone.
    public init(yaml: String, file: String) throws {
        func fail(_ reason: String) -> DataError { .datasetConfig(file: file, reason: reason) }
        let root: Node?
        do { root = try BoundedYAML.compose(yaml: yaml) } catch let error as YAMLLimitError {
            throw fail(error.reason)
        } catch {
            throw fail(
                "not valid YAML: "
                    + excerpt(String(describing: error).split(separator: "\n").joined(separator: " "), limit: 200))
        }
        guard let root, let top = root.mapping else { throw fail("expected a mapping with a `dataset:` section") }
        guard let section = top["dataset"] else { throw fail("missing the `dataset:` section") }
        guard let dataset = section.mapping else { throw fail("`dataset` must be a mapping") }
        for key in dataset.keys {
            let name = key.string ?? "\(key)"
            if !Self.datasetKeys.contains(name) {
                throw fail(
                    "unknown key dataset.\(excerpt(name)) (known: \(Self.datasetKeys.sorted().joined(separator: ", ")))"
                )
            }
        }
        func string(_ key: String, required: Bool) throws -> String? {
            guard let node = dataset[key] else {
                if required { throw fail("missing dataset.\(key)") }
                return nil
            }
            guard let value = node.scalar?.string else { throw fail("dataset.\(key) must be a string") }
            return value
        }
        let name = try string("name", required: true) ?? ""
        let layoutName = try string("layout", required: true) ?? ""
        guard let layout = DatasetLayout(rawValue: layoutName) else {
            throw fail(
                "dataset.layout '\(excerpt(layoutName))' is not one of "
                    + DatasetLayout.allCases.map(\.rawValue).joined(separator: ", "))
        }
        let template = try string("template", required: true) ?? ""
        guard template.contains("{}") else {
            throw fail("dataset.template '\(excerpt(template))' has no {} for the class name")
        }
        var rules = ClassNameRules()
        if let node = dataset["classNames"] {
            guard let mapping = node.mapping else { throw fail("dataset.classNames must be a mapping") }
            for key in mapping.keys where !Self.classNameKeys.contains(key.string ?? "") {
                throw fail(
                    "unknown key dataset.classNames.\(excerpt(key.string ?? "?")) (known: replaceUnderscores, rename)")
            }
            if let flag = mapping["replaceUnderscores"] {
                guard let value = flag.bool else {
                    throw fail("dataset.classNames.replaceUnderscores must be true or false")
                }
                rules.replaceUnderscores = value
            }
            if let renames = mapping["rename"] {
                guard let pairs = renames.mapping else {
                    throw fail("dataset.classNames.rename must map names to names")
                }
                for (from, to) in pairs {
                    guard let f = from.string, let t = to.string else {
                        throw fail("dataset.classNames.rename must map names to names")
                    }
                    rules.rename[f] = t
                }
            }
        }
        var topK: Int?
        if let cavpt = top["cavpt"], let k = cavpt.mapping?["topK"] {
            guard let value = k.int, value >= 0 else { throw fail("cavpt.topK must be an integer >= 0") }
            topK = value
        }
        self.init(
            name: name, layout: layout, folder: try string("folder", required: true) ?? "",
            images: try string("images", required: false) ?? "",
            splitFile: try string("splitFile", required: false),
            classFile: try string("classFile", required: false),
            template: template, classNames: rules, topK: topK)
        switch layout {
        case .coopSplit where splitFile == nil: throw fail("layout coop-split needs dataset.splitFile")
        case .fgvcAircraft where splitFile == nil || classFile == nil:
            throw fail("layout fgvc-aircraft needs dataset.splitFile (with {split}) and dataset.classFile")
        case .fgvcAircraft where !(splitFile ?? "").contains("{split}"):
            throw fail("dataset.splitFile must contain {split} for layout fgvc-aircraft")
        case .imagenet where classFile == nil, .wnidFolders where classFile == nil, .imagenetV2 where classFile == nil:
            throw fail("layout \(layout.rawValue) needs dataset.classFile")
        default: break
        }
    }

    /// Reads a dataset YAML file.
    public init(contentsOf path: String) throws {
        let text: String
        do { text = try RegularFile.text(path) } catch let error as RegularFileError {
            throw DataError.datasetConfig(file: path, reason: error.briefReason)
        }
        try self.init(yaml: text, file: path)
    }
}

/// A dataset definition by name (`configs/datasets/<name>.yaml`) or by path to a `.yaml` file.
public func datasetSpec(named nameOrPath: String) throws -> DatasetSpec {
    if nameOrPath.contains("/") || nameOrPath.hasSuffix(".yaml") || nameOrPath.hasSuffix(".yml") {
        return try DatasetSpec(contentsOf: nameOrPath)
    }
    let folder = try ConfigLocator.configsDirectory() + "/datasets"
    let path = "\(folder)/\(nameOrPath).yaml"
    guard FileManager.default.fileExists(atPath: path) else {
        let known = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
        throw DataError.datasetConfig(
            file: path,
            reason: "unknown dataset '\(excerpt(nameOrPath))' (known: "
                + known.joined(separator: ", ") + "; or give a path to a .yaml file)")
    }
    return try DatasetSpec(contentsOf: path)
}

/// Finds the repository's `configs/` folder from any working directory.
public enum ConfigLocator {
    public static let environmentVariable = "CAVPT_DIST_CONFIGS"

    /// `$CAVPT_DIST_CONFIGS` when set; else the first folder holding `configs/datasets` above the
    /// running executable (symlinks resolved); else above the current directory.
    public static func configsDirectory() throws -> String {
        try configsDirectory(
            environment: ProcessInfo.processInfo.environment,
            executable: executablePath(),
            currentDirectory: FileManager.default.currentDirectoryPath)
    }

    static func configsDirectory(
        environment: [String: String], executable: String?,
        currentDirectory: String
    ) throws -> String {
        if let explicit = environment[environmentVariable], !explicit.isEmpty {
            guard isDirectory(explicit + "/datasets") else {
                throw DataError.configsNotFound(reason: "\(environmentVariable)=\(explicit) has no datasets/ folder")
            }
            return explicit
        }
        var starts: [String] = []
        if let executable { starts.append((executable as NSString).deletingLastPathComponent) }
        starts.append(currentDirectory)
        for start in starts {
            var folder = (start as NSString).standardizingPath
            while true {
                if isDirectory(folder + "/configs/datasets") { return folder + "/configs" }
                let parent = (folder as NSString).deletingLastPathComponent
                if parent == folder || parent.isEmpty { break }
                folder = parent
            }
        }
        throw DataError.configsNotFound(
            reason: "no configs/datasets above \(starts.joined(separator: " or ")); "
                + "set \(environmentVariable) to the configs folder")
    }

    /// The running executable with symlinks resolved (/proc/self/exe on Linux).
    static func executablePath() -> String? {
        #if os(Linux)
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return resolved
        }
        #endif
        return Bundle.main.executableURL?.resolvingSymlinksInPath().path
    }

    static func isDirectory(_ path: String) -> Bool {
        var flag: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
    }
}

/// A run config file as the `fewshot` command reads it: either a dataset definition of its own
/// (`dataset:` with `layout`, like the files in configs/datasets) or `dataset.name` naming a
/// shipped one, and `train.shots` when the file sets it.
public struct DatasetConfigFile: Sendable {
    public var spec: DatasetSpec
    public var shots: Int?

    public init(contentsOf path: String) throws {
        let text: String
        do { text = try RegularFile.text(path) } catch let error as RegularFileError {
            throw DataError.datasetConfig(file: path, reason: error.briefReason)
        }
        func fail(_ reason: String) -> DataError { .datasetConfig(file: path, reason: reason) }
        let root: Node?
        do { root = try BoundedYAML.compose(yaml: text) } catch let error as YAMLLimitError {
            throw fail(error.reason)
        } catch {
            throw fail(
                "not valid YAML: "
                    + excerpt(String(describing: error).split(separator: "\n").joined(separator: " "), limit: 200))
        }
        guard let top = root?.mapping, let dataset = top["dataset"]?.mapping else {
            throw fail("missing the `dataset:` section (a dataset definition, or `dataset: {name: NAME}`)")
        }
        if dataset["layout"] == nil {
            guard let name = dataset["name"]?.string, !name.isEmpty else {
                throw fail("`dataset:` needs either a full definition (layout, folder, ...) or a name")
            }
            spec = try datasetSpec(named: name)
        } else {
            spec = try DatasetSpec(yaml: text, file: path)
        }
        if let node = top["train"]?.mapping?["shots"] {
            guard let value = node.int else { throw fail("train.shots must be an integer") }
            shots = value
        }
    }
}
