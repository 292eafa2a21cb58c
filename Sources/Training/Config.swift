// The run configuration: YAML layers (dataset, method, user file) and `--set key=value`
// overrides merged into one flat map of dotted keys, each checked against a schema.
import Data
import Foundation
import Tensor
import Yams

public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int), double(Double), bool(Bool), string(String), intList([Int])

    public var description: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v): return String(v)
        case .bool(let v): return String(v)
        case .string(let v): return v
        case .intList(let v): return "[" + v.map(String.init).joined(separator: ", ") + "]"
        }
    }
}

public enum ConfigKind: Sendable, Equatable {
    case int(min: Int)
    case double(min: Double)
    case bool
    case string
    case choice([String])
    case intList

    var expectation: String {
        switch self {
        case .int(let min): return "an integer ≥ \(min)"
        case .double(let min): return "a number ≥ \(min)"
        case .bool: return "true or false"
        case .string: return "a string"
        case .choice(let options): return "one of " + options.joined(separator: ", ")
        case .intList: return "a list of integers such as [1, 2]"
        }
    }
}

public enum ConfigError: Error, CustomStringConvertible {
    case unknownKey(String, source: String)
    case badValue(String, value: String, expected: String, source: String)
    case syntax(source: String, detail: String)
    case missing(String, hint: String)

    public var description: String {
        switch self {
        case .unknownKey(let key, let source):
            let near = ConfigSchema.keys.keys.filter {
                $0.hasSuffix("." + (key.split(separator: ".").last.map(String.init) ?? ""))
            }.sorted()
            return "\(source): unknown config key '\(excerpt(key))'"
                + (near.isEmpty ? "" : " (did you mean \(near.joined(separator: " or "))?)")
        case .badValue(let key, let value, let expected, let source):
            return "\(source): config key '\(key)' must be \(expected), got '\(excerpt(value))'"
        case .syntax(let source, let detail): return "\(source): \(detail)"
        case .missing(let key, let hint): return "config key '\(key)' is not set; \(hint)"
        }
    }
}

/// Every key a configuration may set, with its type and default. Keys documented in README.md.
public enum ConfigSchema {
    public static let methods = [
        "zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_deep", "vlp_cavpt", "dpt_released", "custom",
    ]

    public static let keys: [String: (ConfigKind, ConfigValue)] = [
        // What the run is.
        "method.name": (.choice(methods), .string("custom")),
        "method.textPrompt": (.bool, .bool(false)),
        "method.textLength": (.int(min: 1), .int(16)),
        "method.visualPrompt": (.choice(["none", "shallow", "deep"]), .string("none")),
        "method.visualLength": (.int(min: 1), .int(10)),
        "dataset.name": (.string, .string("")),
        "dataset.config": (.string, .string("")),
        "dataset.template": (.string, .string("")),
        "dataset.folder": (.string, .string("")),
        "dataset.images": (.string, .string("")),
        "dataset.splitFile": (.string, .string("")),
        "dataset.classFile": (.string, .string("")),
        "model.path": (.string, .string("")),
        "model.vocab": (.string, .string("")),
        "data.root": (.string, .string("")),
        "data.fewshot": (.string, .string("")),
        "data.subsample": (.choice(["all", "base", "new"]), .string("all")),
        "output.dir": (.string, .string("")),
        // CAVPT (DESIGN §3.1–3.3).
        "cavpt.layers": (.intList, .intList([])),
        "cavpt.topK": (.int(min: 0), .int(10)),
        "cavpt.queries": (.choice(["template", "learned"]), .string("template")),
        "cavpt.queryDepth": (.choice(["1", "2"]), .int(2)),
        "cavpt.residual": (.choice(["query", "classToken"]), .string("classToken")),
        "cavpt.outputProjection": (.bool, .bool(true)),
        "cavpt.nonTarget": (.choice(["ignore", "uniform"]), .string("uniform")),
        "cavpt.alpha": (.double(min: 0), .double(1.0)),
        "cavpt.guidanceEpochs": (.int(min: 0), .int(0)),
        // Training protocol (DESIGN §2, §4).
        "train.epochs": (.int(min: 0), .int(200)),
        "train.shots": (.int(min: 1), .int(16)),
        "train.batchSize": (.int(min: 1), .int(32)),
        "train.seed": (.int(min: 0), .int(1)),
        "train.workers": (.int(min: 1), .int(2)),
        "train.prefetch": (.int(min: 1), .int(2)),
        "train.logEvery": (.int(min: 1), .int(10)),
        "train.shardText": (.choice(["auto", "true", "false"]), .string("auto")),
        "optim.momentum": (.double(min: 0), .double(0.9)),
        "optim.weightDecay": (.double(min: 0), .double(5e-4)),
        "optim.visual.lr": (.double(min: 0), .double(0.01)),
        "optim.visual.warmupEpochs": (.int(min: 0), .int(10)),
        "optim.visual.warmupLR": (.double(min: 0), .double(1e-5)),
        "optim.text.lr": (.double(min: 0), .double(0.002)),
        "optim.text.warmupEpochs": (.int(min: 0), .int(1)),
        "optim.text.warmupLR": (.double(min: 0), .double(1e-5)),
        "checkpoint.every": (.int(min: 0), .int(10)),
        "checkpoint.keep": (.int(min: 1), .int(3)),
        "eval.batchSize": (.int(min: 1), .int(100)),
        "eval.split": (.choice(["test", "val"]), .string("test")),
        "eval.valEvery": (.int(min: 0), .int(0)),
        "runtime.blasThreads": (.int(min: 0), .int(0)),
        "runtime.precision": (.choice(["fp32", "bf16"]), .string("fp32")),
        "runtime.recompute": (.choice(["none", "attention", "blocks"]), .string("none")),
    ]

    /// What each key means, for `cavpt-dist config --list` and the README's table (which a test
    /// keeps equal to that list).
    public static let meanings: [String: String] = [
        "method.name": "preset name (informative; `--method` picks the preset)",
        "method.textPrompt": "learn a CoOp text context",
        "method.textLength": "M, learned context tokens",
        "method.visualPrompt":
            "`none`, `shallow` (prompts into layer 1, carried through) or `deep` (fresh prompts per layer)",
        "method.visualLength": "P, visual prompt tokens per layer",
        "dataset.name": "the dataset's name (set by `--dataset` or the config's `dataset:` section)",
        "dataset.config": "the dataset definition file (set by `--dataset`)",
        "dataset.template": "override the dataset's prompt template (must contain {})",
        "dataset.folder": "override the dataset's folder under the data root",
        "dataset.images": "override the dataset's image folder (under its folder)",
        "dataset.splitFile": "override the dataset's split file",
        "dataset.classFile": "override the dataset's class-name file",
        "model.path": "CLIP weights: a .safetensors file or a folder (`--model`)",
        "model.vocab": "tokenizer vocabulary (`--vocab`; default: found next to the weights, or the bundled one)",
        "data.root": "the folder holding the datasets (`--data-root`)",
        "data.fewshot": "a few-shot list file to train on instead of sampling (`--fewshot`)",
        "data.subsample": "`all`, `base` or `new`: the class half a run trains and evaluates on (base-to-new)",
        "output.dir": "the run directory (`--output`; default runs/<dataset>/<method>/seed<seed>)",
        "cavpt.layers": "1-based image layers with a CAVPT module; negative counts from the end (`[-1]` = last)",
        "cavpt.topK": "K_N, classes selected per image by zero-shot CLIP (0 = all; capped at K)",
        "cavpt.queries": "`template` (frozen template text features) or `learned` (learned-context features)",
        "cavpt.queryDepth": "query MLP layers (1 or 2)",
        "cavpt.residual": "`classToken` or `query`: what is added to the attention output before LN_b",
        "cavpt.outputProjection": "a Linear d→d after LN_b",
        "cavpt.nonTarget": "`uniform` or `ignore`: the CAVPT loss for slots whose class is not the label",
        "cavpt.alpha": "weight of the CAVPT loss",
        "cavpt.guidanceEpochs": "epochs of the released code's general-knowledge guidance loss",
        "train.epochs": "epochs",
        "train.shots": "few-shot K per class",
        "train.batchSize": "global batch B (split over the ranks)",
        "train.seed": "few-shot subset, data order, augmentation, initialisation",
        "train.workers": "JPEG decoding threads per rank",
        "train.prefetch": "batches decoded ahead",
        "train.logEvery": "steps between progress lines",
        "train.shardText":
            "split the learned-context text encoder over the ranks by class (`true`, `false`, or `auto` = with "
            + "several ranks and at least 32 classes, or in bf16); same numbers, text time and memory ÷ N",
        "optim.momentum": "SGD momentum",
        "optim.weightDecay": "weight decay on every trained tensor",
        "optim.visual.lr": "learning rate of the visual prompts and CAVPT",
        "optim.visual.warmupEpochs": "constant warm-up epochs of the visual group",
        "optim.visual.warmupLR": "the visual group's warm-up learning rate",
        "optim.text.lr": "learning rate of the text context",
        "optim.text.warmupEpochs": "constant warm-up epochs of the text group",
        "optim.text.warmupLR": "the text group's warm-up learning rate",
        "checkpoint.every": "epochs between checkpoints (0 = none; the last epoch is always saved)",
        "checkpoint.keep": "checkpoints kept (the newest, by epoch)",
        "eval.batchSize": "evaluation batch",
        "eval.split": "`test` or `val`: the list the final evaluation uses",
        "eval.valEvery":
            "evaluate the few-shot val list every N epochs and the last (0 = never); logged as valAccuracy",
        "runtime.blasThreads":
            "BLAS threads per rank (0 = cores on the node ÷ ranks on the node); oneDNN's threads follow it",
        "runtime.precision":
            "`fp32` or `bf16` (frozen-weight products in bf16 through oneDNN; see [Precision](#precision)); also "
            + "`--precision`",
        "runtime.recompute":
            "`none`, `attention` or `blocks`: activations the backward recomputes instead of keeping (same "
            + "numbers, less memory, more time; see [Performance](#performance))",
    ]

    /// `config --list`: every key with its default and meaning, as a Markdown table or plain lines.
    public static func listing(markdown: Bool) -> String {
        func shown(_ v: ConfigValue) -> String {
            if case .string(let s) = v, s.isEmpty { return "" }
            return YAMLTree.render(v).replacingOccurrences(of: "\"", with: "")
        }
        let order = [
            "method", "dataset", "data", "model", "output", "cavpt", "train", "optim", "checkpoint", "eval", "runtime",
        ]
        let sorted = keys.keys.sorted { a, b in
            let (sa, sb) = (String(a.split(separator: ".")[0]), String(b.split(separator: ".")[0]))
            return (order.firstIndex(of: sa) ?? order.count, a) < (order.firstIndex(of: sb) ?? order.count, b)
        }
        if markdown {
            return "| key | default | meaning |\n|---|---|---|\n"
                + sorted.map { "| `\($0)` | \(shown(keys[$0]!.1)) | \(meanings[$0] ?? "") |" }.joined(separator: "\n")
                + "\n"
        }
        let width = sorted.map(\.count).max() ?? 0
        let values = sorted.map { shown(keys[$0]!.1).isEmpty ? "-" : shown(keys[$0]!.1) }
        let valueWidth = values.map(\.count).max() ?? 0
        return zip(sorted, values).map { key, value in
            key + String(repeating: " ", count: width - key.count) + "  " + value
                + String(repeating: " ", count: valueWidth - value.count) + "  " + (meanings[key] ?? "")
        }.joined(separator: "\n") + "\n"
    }

    /// Partial overrides of a named dataset's definition (`dataset: {name: eurosat, template: …}` or
    /// `--set dataset.template=…`); "" keeps the definition's value. A run records the resolved
    /// definition, which is what resuming compares.
    public static let datasetOverrides = ["template", "folder", "images", "splitFile", "classFile"]

    /// Keys that describe where and how fast a run goes, not what it computes: they may differ on resume.
    public static let operational: Set<String> = [
        "train.workers", "train.prefetch", "train.logEvery", "train.shardText", "checkpoint.every", "checkpoint.keep",
        "model.path", "model.vocab", "data.root", "data.fewshot", "output.dir", "runtime.blasThreads",
        "dataset.config", "eval.batchSize", "eval.valEvery", "runtime.recompute",
    ]
}

public struct Config: Sendable, Equatable {
    public private(set) var values: [String: ConfigValue]
    /// Where each key's value came from (file path or `--set`), for messages.
    public private(set) var sources: [String: String] = [:]

    /// The schema defaults.
    public init() { values = ConfigSchema.keys.mapValues { $0.1 } }

    /// Merges one YAML document (nested maps; dotted keys allowed) on top.
    public mutating func merge(yaml text: String, source: String, ignoring ignored: Set<String> = []) throws {
        let node: Any?
        do { node = try BoundedYAML.load(yaml: text) } catch let error as YAMLLimitError {
            throw ConfigError.syntax(source: source, detail: error.reason)
        } catch {
            throw ConfigError.syntax(
                source: source,
                detail: "not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let node else { return }
        guard let map = node as? [String: Any] else {
            throw ConfigError.syntax(source: source, detail: "expected a mapping of config keys at the top level")
        }
        var flat: [(String, Any)] = []
        func walk(_ prefix: String, _ value: Any) {
            if let m = value as? [String: Any], !m.isEmpty {
                for (k, v) in m { walk(prefix.isEmpty ? k : prefix + "." + k, v) }
            } else {
                flat.append((prefix, value))
            }
        }
        walk("", map)
        for (key, raw) in flat.sorted(by: { $0.0 < $1.0 })
        where !ignored.contains(where: { key == $0 || key.hasPrefix($0 + ".") }) {
            try set(key, raw: raw, source: source)
        }
    }

    public mutating func merge(file path: String, ignoring ignored: Set<String> = []) throws {
        let text: String
        do { text = try RegularFile.text(path) } catch let error as RegularFileError {
            throw ConfigError.syntax(source: path, detail: "cannot read config file: \(error.reason)")
        }
        try merge(yaml: text, source: path, ignoring: ignored)
    }

    /// A run's saved configuration (its config.yaml, a checkpoint's state). The `dataset:` section is
    /// the resolved dataset definition (files written before 0.2: `name` and `config`); it is read
    /// apart from the keys: `dataset.name` from it, and `dataset.config` = `definitionFile` (the file
    /// itself serves as the dataset YAML) when it holds a full definition.
    public mutating func merge(savedRun text: String, source: String, definitionFile: String? = nil) throws {
        try merge(yaml: text, source: source, ignoring: ["dataset"])
        guard let top = (try? BoundedYAML.load(yaml: text)) as? [String: Any],
            let dataset = top["dataset"] as? [String: Any]
        else { return }
        if let name = dataset["name"] as? String { try set("dataset.name", raw: name, source: source) }
        if dataset["layout"] != nil {
            if let definitionFile { try set("dataset.config", raw: definitionFile, source: source) }
        } else if let file = dataset["config"] as? String {
            try set("dataset.config", raw: file, source: source)
        }
    }

    /// `key=value` with a YAML scalar or flow list value (`cavpt.layers=[11,12]`).
    public mutating func apply(override assignment: String) throws {
        guard let eq = assignment.firstIndex(of: "="), eq != assignment.startIndex else {
            throw ConfigError.syntax(source: "--set", detail: "expected key=value, got '\(excerpt(assignment))'")
        }
        let key = String(assignment[..<eq]).trimmingCharacters(in: .whitespaces)
        let text = String(assignment[assignment.index(after: eq)...])
        if let reason = YAMLLimits.violation(in: text) {
            throw ConfigError.syntax(source: "--set \(excerpt(key))", detail: "the value \(reason)")
        }
        let raw: Any = (try? Yams.load(yaml: text)).flatMap { $0 } ?? text
        try set(key, raw: raw, source: "--set")
    }

    public mutating func set(_ key: String, raw: Any, source: String) throws {
        guard let (kind, _) = ConfigSchema.keys[key] else { throw ConfigError.unknownKey(key, source: source) }
        let shown = Self.render(raw)
        func bad() -> ConfigError { .badValue(key, value: shown, expected: kind.expectation, source: source) }
        let value: ConfigValue
        switch kind {
        case .int(let min):
            guard let v = Self.integer(raw), v >= min else { throw bad() }
            value = .int(v)
        case .double(let min):
            guard let v = Self.number(raw), v >= min, v.isFinite else { throw bad() }
            value = .double(v)
        case .bool:
            guard let v = raw as? Bool else { throw bad() }
            value = .bool(v)
        case .string:
            guard let v = Self.string(raw) else { throw bad() }
            value = .string(v)
        case .choice(let options):
            guard let v = Self.string(raw) ?? Self.integer(raw).map(String.init) ?? (raw as? Bool).map({ String($0) }),
                options.contains(v)
            else { throw bad() }
            value = Self.integer(raw).map { .int($0) } ?? .string(v)
        case .intList:
            if let v = Self.integer(raw) {
                value = .intList([v])
            } else if let list = raw as? [Any] {
                let ints = list.compactMap(Self.integer)
                guard ints.count == list.count else { throw bad() }
                value = .intList(ints)
            } else {
                throw bad()
            }
        }
        values[key] = value
        sources[key] = source
    }

    static func integer(_ raw: Any) -> Int? {
        if raw is Bool { return nil }
        if let v = raw as? Int { return v }
        if let v = raw as? Double, v == v.rounded(), abs(v) < 1e15 { return Int(v) }
        return nil
    }
    static func number(_ raw: Any) -> Double? {
        if raw is Bool { return nil }
        if let v = raw as? Double { return v }
        if let v = raw as? Int { return Double(v) }
        return nil
    }
    static func string(_ raw: Any) -> String? {
        if let v = raw as? String { return v }
        return nil
    }
    static func render(_ raw: Any) -> String {
        if let list = raw as? [Any] { return "[" + list.map(render).joined(separator: ", ") + "]" }
        if raw is [String: Any] { return "a mapping" }
        return "\(raw)"
    }

    // MARK: Typed access (keys are schema keys; a typo is a programming error caught by tests)

    public func int(_ key: String) -> Int {
        if case .int(let v)? = values[key] { return v }
        if case .string(let s)? = values[key], let v = Int(s) { return v }
        preconditionFailure("config key \(key) is not an integer")
    }
    public func double(_ key: String) -> Double {
        switch values[key] {
        case .double(let v)?: return v
        case .int(let v)?: return Double(v)
        default: preconditionFailure("config key \(key) is not a number")
        }
    }
    public func bool(_ key: String) -> Bool {
        if case .bool(let v)? = values[key] { return v }
        preconditionFailure("config key \(key) is not a bool")
    }
    public func string(_ key: String) -> String {
        if let v = values[key] { return v.description }
        preconditionFailure("config key \(key) is missing")
    }
    public func intList(_ key: String) -> [Int] {
        if case .intList(let v)? = values[key] { return v }
        preconditionFailure("config key \(key) is not a list")
    }

    /// The effective configuration as nested YAML, each section once (written into the run directory
    /// and every checkpoint). With `dataset`, its resolved definition replaces `dataset.name`/`.config`,
    /// so the file alone describes the run (`train --config run/config.yaml`, `eval --run`) even after
    /// the dataset YAML moved; with `absolutePaths` relative paths are resolved against the working
    /// directory. Any YAML reader (PyYAML too) reads the same keys and values back.
    public func yaml(dataset: DatasetSpec? = nil, absolutePaths: Bool = false) -> String {
        var root = YAMLTree.map([])
        for key in values.keys.sorted() {
            if dataset != nil && key.hasPrefix("dataset.") { continue }
            var value = values[key]!
            if absolutePaths, Self.pathKeys.contains(key), case .string(let path) = value, !path.isEmpty {
                value = .string(absolutePath(path))
            }
            root.insert(key.split(separator: ".").map(String.init), YAMLTree.scalar(value))
        }
        if let dataset { root.insert(["dataset"], dataset.yamlTree) }
        return root.lines(indent: "").joined(separator: "\n") + "\n"
    }

    /// Keys holding file or folder paths.
    static let pathKeys: Set<String> = [
        "model.path", "model.vocab", "data.root", "data.fewshot", "output.dir", "dataset.config",
    ]

    /// Keys (other than operational ones) whose values differ from `other`.
    public func differences(from other: Config) -> [String] {
        let keys = Set(values.keys).union(other.values.keys).subtracting(ConfigSchema.operational)
            .subtracting(ConfigSchema.datasetOverrides.map { "dataset." + $0 })
        return keys.filter { values[$0] != other.values[$0] }.sorted()
    }
}

/// Nested YAML written by hand: block mappings of plain keys, every scalar in a form YAML 1.1
/// (PyYAML) and 1.2 (Yams) read alike: quoted strings, floats with a decimal point, flow lists.
indirect enum YAMLTree {
    case scalar(ConfigValue)
    case map([(String, YAMLTree)])

    mutating func insert(_ path: [String], _ leaf: YAMLTree) {
        guard case .map(var entries) = self, let head = path.first else { return }
        if path.count == 1 {
            entries.removeAll { $0.0 == head }
            entries.append((head, leaf))
        } else if let i = entries.firstIndex(where: { $0.0 == head }), case .map = entries[i].1 {
            entries[i].1.insert(Array(path.dropFirst()), leaf)
        } else {
            var child = YAMLTree.map([])
            child.insert(Array(path.dropFirst()), leaf)
            entries.removeAll { $0.0 == head }
            entries.append((head, child))
        }
        self = .map(entries)
    }

    func lines(indent: String) -> [String] {
        guard case .map(let entries) = self else { return [] }
        var out: [String] = []
        for (key, value) in entries {
            let name =
                key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) && !key.isEmpty
                ? key : Self.quoted(key)
            switch value {
            case .scalar(let v): out.append("\(indent)\(name): \(Self.render(v))")
            case .map(let children) where children.isEmpty: out.append("\(indent)\(name): {}")
            case .map: out.append("\(indent)\(name):"); out += value.lines(indent: indent + "  ")
            }
        }
        return out
    }

    static func render(_ value: ConfigValue) -> String {
        switch value {
        case .string(let s): return quoted(s)
        case .double(let d):
            // PyYAML reads 1e-05 as a string: give every float a decimal point.
            var text = String(d)
            if !text.contains(".") {
                if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
                    text.insert(contentsOf: ".0", at: e)
                } else {
                    text += ".0"
                }
            }
            return text
        default: return value.description
        }
    }

    /// A double-quoted YAML string; control characters (newlines in a path) escaped.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value) {
                    out += String(format: "\\x%02X", scalar.value)
                } else if scalar.value == 0x2028 || scalar.value == 0x2029 || scalar.value == 0xfeff {
                    out += String(format: "\\u%04X", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

extension DatasetSpec {
    /// The `dataset:` section of a definition, as `configs/datasets/*.yaml` writes it.
    var yamlTree: YAMLTree {
        var entries: [(String, YAMLTree)] = [
            ("name", .scalar(.string(name))), ("layout", .scalar(.string(layout.rawValue))),
            ("folder", .scalar(.string(folder))), ("images", .scalar(.string(images))),
        ]
        if let splitFile { entries.append(("splitFile", .scalar(.string(splitFile)))) }
        if let classFile { entries.append(("classFile", .scalar(.string(classFile)))) }
        entries.append(("template", .scalar(.string(template))))
        var rules: [(String, YAMLTree)] = [("replaceUnderscores", .scalar(.bool(classNames.replaceUnderscores)))]
        if !classNames.rename.isEmpty {
            rules.append(
                ("rename", .map(classNames.rename.keys.sorted().map { ($0, .scalar(.string(classNames.rename[$0]!))) }))
            )
        }
        entries.append(("classNames", .map(rules)))
        return .map(entries)
    }
}
