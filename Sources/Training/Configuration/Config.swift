// The run configuration as its files hold it: YAML layers (dataset, method, user file) and
// `--set key=value` overrides merged into one flat map of dotted keys, each checked against the
// schema. It is what a run records and what resuming compares; code reads it decoded
// (`RunSettings(config)`).
import Data
import Files
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

public enum ConfigError: Error, CustomStringConvertible {
    case unknownKey(String, source: String)
    case badValue(String, value: String, expected: String, source: String)
    case syntax(source: String, detail: String)
    case missing(String, hint: String)

    public var description: String {
        switch self {
        case .unknownKey(let key, let source):
            let near = ConfigSchema.keys.map(\.name).filter {
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

    /// A YAML document (within the size and alias limits), or the error naming `source`.
    static func parsing(yaml text: String, source: String) throws -> Any? {
        do { return try BoundedYAML.load(yaml: text) } catch let error as YAMLLimitError {
            throw ConfigError.syntax(source: source, detail: error.reason)
        } catch {
            throw ConfigError.syntax(
                source: source,
                detail: "not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
    }

    /// The key that decodes into `field` has no value where one is needed.
    public static func unset(_ field: PartialKeyPath<RunSettings>, hint: String) -> ConfigError {
        .missing(ConfigSchema.name(of: field), hint: hint)
    }

    /// The value of the key that decodes into `field` cannot be used.
    public static func bad(
        _ field: PartialKeyPath<RunSettings>, value: String, expected: String, source: String
    ) -> ConfigError {
        .badValue(ConfigSchema.name(of: field), value: value, expected: expected, source: source)
    }
}

public struct Config: Sendable, Equatable {
    public private(set) var values: [String: ConfigValue]
    /// Where each key's value came from (file path or `--set`), for messages.
    public private(set) var sources: [String: String] = [:]

    /// The schema defaults (the fields of `RunSettings()`).
    public init() {
        values = Dictionary(uniqueKeysWithValues: ConfigSchema.keys.map { ($0.name, $0.defaultValue) })
    }

    /// The decoded settings.
    public var settings: RunSettings { RunSettings(self) }

    /// Sets the key that decodes into `field` (a command-line flag: `--model` sets `\.model.path`),
    /// checked like any other value.
    public mutating func set(_ field: PartialKeyPath<RunSettings>, raw: Any, source: String) throws {
        try set(ConfigSchema.name(of: field), raw: raw, source: source)
    }

    /// Whether a layer set the key that decodes into `field` (rather than the default).
    public func isSet(_ field: PartialKeyPath<RunSettings>) -> Bool { sources[ConfigSchema.name(of: field)] != nil }

    /// Where the value of the key that decodes into `field` came from (a file, `--set`), for messages.
    public func source(of field: PartialKeyPath<RunSettings>) -> String {
        sources[ConfigSchema.name(of: field)] ?? "config"
    }

    /// Merges one YAML document (nested maps; dotted keys allowed) on top.
    public mutating func merge(yaml text: String, source: String, ignoring ignored: Set<String> = []) throws {
        let node = try ConfigError.parsing(yaml: text, source: source)
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
        if let name = dataset["name"] as? String { try set(\.dataset.name, raw: name, source: source) }
        if dataset["layout"] != nil {
            if let definitionFile { try set(\.dataset.config, raw: definitionFile, source: source) }
        } else if let file = dataset["config"] as? String {
            try set(\.dataset.config, raw: file, source: source)
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
        guard let kind = ConfigSchema.key(key)?.kind else { throw ConfigError.unknownKey(key, source: source) }
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
            if absolutePaths, ConfigSchema.pathKeys.contains(key), case .string(let path) = value, !path.isEmpty {
                value = .string(absolutePath(path))
            }
            root.insert(key.split(separator: ".").map(String.init), YAMLTree.scalar(value))
        }
        if let dataset { root.insert(["dataset"], dataset.yamlTree) }
        return root.lines(indent: "").joined(separator: "\n") + "\n"
    }

    /// "key: saved → this" for the first six of `keys` (a key neither configuration holds is named
    /// alone), for the messages that refuse a changed configuration.
    public func describe(_ keys: [String], from saved: Config) -> String {
        keys.prefix(6).map { key in
            saved.values[key] == nil && values[key] == nil
                ? key
                : "\(key): \(saved.values[key]?.description ?? "unset") → \(values[key]?.description ?? "unset")"
        }.joined(separator: "; ")
    }

    /// Keys (other than operational ones) whose values differ from `other`.
    public func differences(from other: Config) -> [String] {
        let keys = Set(values.keys).union(other.values.keys).subtracting(ConfigSchema.operational)
            .subtracting(ConfigSchema.datasetOverrides.map(\.key))
        return keys.filter { values[$0] != other.values[$0] }.sorted()
    }
}
