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
            let near = ConfigSchema.keys.keys.filter { $0.hasSuffix("." + (key.split(separator: ".").last.map(String.init) ?? "")) }.sorted()
            return "\(source): unknown config key '\(excerpt(key))'" + (near.isEmpty ? "" : " (did you mean \(near.joined(separator: " or "))?)")
        case .badValue(let key, let value, let expected, let source):
            return "\(source): config key '\(key)' must be \(expected), got '\(excerpt(value))'"
        case .syntax(let source, let detail): return "\(source): \(detail)"
        case .missing(let key, let hint): return "config key '\(key)' is not set; \(hint)"
        }
    }
}

/// Every key a configuration may set, with its type and default. Keys documented in README.md.
public enum ConfigSchema {
    public static let methods = ["zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt", "vlp_deep", "vlp_cavpt", "dpt_released", "custom"]

    public static let keys: [String: (ConfigKind, ConfigValue)] = [
        // What the run is.
        "method.name": (.choice(methods), .string("custom")),
        "method.textPrompt": (.bool, .bool(false)),
        "method.textLength": (.int(min: 1), .int(16)),
        "method.visualPrompt": (.choice(["none", "shallow", "deep"]), .string("none")),
        "method.visualLength": (.int(min: 1), .int(10)),
        "dataset.name": (.string, .string("")),
        "dataset.config": (.string, .string("")),
        "model.path": (.string, .string("")),
        "model.vocab": (.string, .string("")),
        "data.root": (.string, .string("")),
        "data.fewshot": (.string, .string("")),
        "output.dir": (.string, .string("")),
        // CAVPT (SPEC §3.1–3.3).
        "cavpt.layers": (.intList, .intList([])),
        "cavpt.topK": (.int(min: 0), .int(10)),
        "cavpt.queries": (.choice(["template", "learned"]), .string("template")),
        "cavpt.queryDepth": (.choice(["1", "2"]), .int(2)),
        "cavpt.residual": (.choice(["query", "classToken"]), .string("classToken")),
        "cavpt.outputProjection": (.bool, .bool(true)),
        "cavpt.nonTarget": (.choice(["ignore", "uniform"]), .string("uniform")),
        "cavpt.alpha": (.double(min: 0), .double(1.0)),
        "cavpt.guidanceEpochs": (.int(min: 0), .int(0)),
        // Training protocol (SPEC §2, §4).
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
        "runtime.blasThreads": (.int(min: 0), .int(0)),
    ]

    /// Keys that describe where and how fast a run goes, not what it computes: they may differ on resume.
    public static let operational: Set<String> = [
        "train.workers", "train.prefetch", "train.logEvery", "train.shardText", "checkpoint.every", "checkpoint.keep",
        "model.path", "model.vocab", "data.root", "data.fewshot", "output.dir", "runtime.blasThreads",
        "dataset.config", "eval.batchSize",
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
            throw ConfigError.syntax(source: source, detail: "not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
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
        for (key, raw) in flat.sorted(by: { $0.0 < $1.0 }) where !ignored.contains(where: { key == $0 || key.hasPrefix($0 + ".") }) {
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
                  options.contains(v) else { throw bad() }
            value = Self.integer(raw).map { .int($0) } ?? .string(v)
        case .intList:
            if let v = Self.integer(raw) { value = .intList([v]) }
            else if let list = raw as? [Any] {
                let ints = list.compactMap(Self.integer)
                guard ints.count == list.count else { throw bad() }
                value = .intList(ints)
            } else { throw bad() }
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

    /// The effective configuration as nested YAML (written into the run directory).
    public func yaml() -> String {
        var lines: [String] = []
        var lastSection = ""
        for key in values.keys.sorted() {
            let parts = key.split(separator: ".").map(String.init)
            let section = parts.dropLast().joined(separator: ".")
            if section != lastSection {
                lines.append("\(section):")
                lastSection = section
            }
            let value: String
            switch values[key]! {
            case .string(let s): value = s.isEmpty ? "\"\"" : "\"\(s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\""
            default: value = values[key]!.description
            }
            lines.append("  \(parts.last!): \(value)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Keys (other than operational ones) whose values differ from `other`.
    public func differences(from other: Config) -> [String] {
        let keys = Set(values.keys).union(other.values.keys).subtracting(ConfigSchema.operational)
        return keys.filter { values[$0] != other.values[$0] }.sorted()
    }
}
