// The configuration schema: every key a configuration may set, with its type, its meaning and the
// field of `RunSettings` it decodes into (its default is that field's initial value). The keys'
// names are written here and in the key tables beside it, nowhere else: other code names a key by
// its field (`ConfigSchema.name(of: \.train.epochs)`).
import Data
import Tensor

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

/// One configuration key and its binding to a field of `RunSettings`.
public struct ConfigKey: Sendable {
    public let name: String
    public let kind: ConfigKind
    /// What the key means, for `config --list` and the README's table.
    public let meaning: String
    /// Where and how fast a run goes, not what it computes: may differ on resume, ignored by the
    /// configuration hash and by the report's grouping.
    public let operational: Bool
    /// Holds a file or folder path (recorded absolute).
    public let isPath: Bool
    let field: PartialKeyPath<RunSettings> & Sendable
    let read: @Sendable (RunSettings) -> ConfigValue
    let write: @Sendable (inout RunSettings, ConfigValue) -> Void

    /// The key's default: its field in `RunSettings()`.
    public var defaultValue: ConfigValue { read(RunSettings()) }

    init(
        _ name: String, _ kind: ConfigKind, _ meaning: String, operational: Bool, isPath: Bool,
        field: PartialKeyPath<RunSettings> & Sendable, read: @escaping @Sendable (RunSettings) -> ConfigValue,
        write: @escaping @Sendable (inout RunSettings, ConfigValue) -> Void
    ) {
        self.name = name; self.kind = kind; self.meaning = meaning; self.operational = operational
        self.isPath = isPath; self.field = field; self.read = read; self.write = write
    }

    /// A key whose value is a field of type T, converted each way.
    static func field<T>(
        _ name: String, _ path: WritableKeyPath<RunSettings, T> & Sendable, _ kind: ConfigKind, _ meaning: String,
        operational: Bool = false, isPath: Bool = false, encode: @escaping @Sendable (T) -> ConfigValue,
        decode: @escaping @Sendable (ConfigValue) -> T?
    ) -> ConfigKey {
        ConfigKey(
            name, kind, meaning, operational: operational || isPath, isPath: isPath, field: path,
            read: { encode($0[keyPath: path]) },
            write: { settings, value in
                // `Config.set` has checked the value against the kind, so it decodes.
                if let decoded = decode(value) { settings[keyPath: path] = decoded }
            })
    }

    static func int(
        _ name: String, _ path: WritableKeyPath<RunSettings, Int> & Sendable, min: Int, _ meaning: String,
        operational: Bool = false
    ) -> ConfigKey {
        field(name, path, .int(min: min), meaning, operational: operational, encode: { .int($0) }, decode: \.integer)
    }

    static func double(
        _ name: String, _ path: WritableKeyPath<RunSettings, Double> & Sendable, min: Double, _ meaning: String
    ) -> ConfigKey {
        field(name, path, .double(min: min), meaning, encode: { .double($0) }, decode: \.number)
    }

    /// A number held as Float by the method (read as the configuration's double, rounded once).
    static func float(
        _ name: String, _ path: WritableKeyPath<RunSettings, Float> & Sendable, min: Double, _ meaning: String
    ) -> ConfigKey {
        field(name, path, .double(min: min), meaning, encode: { .double(Double($0)) }, decode: { Float($0.number) })
    }

    static func bool(
        _ name: String, _ path: WritableKeyPath<RunSettings, Bool> & Sendable, _ meaning: String
    ) -> ConfigKey {
        field(name, path, .bool, meaning, encode: { .bool($0) }, decode: \.flag)
    }

    static func string(
        _ name: String, _ path: WritableKeyPath<RunSettings, String> & Sendable, _ meaning: String,
        operational: Bool = false, isPath: Bool = false
    ) -> ConfigKey {
        field(
            name, path, .string, meaning, operational: operational, isPath: isPath, encode: { .string($0) },
            decode: \.description)
    }

    /// A string from a fixed list of names.
    static func choice(
        _ name: String, _ path: WritableKeyPath<RunSettings, String> & Sendable, _ options: [String],
        _ meaning: String
    ) -> ConfigKey {
        field(name, path, .choice(options), meaning, encode: { .string($0) }, decode: \.description)
    }

    /// One of an enumeration's cases, written as its raw value.
    static func choice<E: RawRepresentable & CaseIterable & Sendable>(
        _ name: String, _ path: WritableKeyPath<RunSettings, E> & Sendable, _ meaning: String,
        operational: Bool = false
    ) -> ConfigKey where E.RawValue == String {
        field(
            name, path, .choice(E.allCases.map(\.rawValue)), meaning, operational: operational,
            encode: { .string($0.rawValue) }, decode: { E(rawValue: $0.description) })
    }

    /// An integer from a fixed list (`cavpt.queryDepth`: 1 or 2).
    static func choice(
        _ name: String, _ path: WritableKeyPath<RunSettings, Int> & Sendable, _ options: [Int], _ meaning: String
    ) -> ConfigKey {
        field(name, path, .choice(options.map(String.init)), meaning, encode: { .int($0) }, decode: \.integer)
    }

    static func intList(
        _ name: String, _ path: WritableKeyPath<RunSettings, [Int]> & Sendable, _ meaning: String
    ) -> ConfigKey {
        field(name, path, .intList, meaning, encode: { .intList($0) }, decode: \.integers)
    }
}

extension ConfigValue {
    // Conversions for the decoding; `Config.set` has checked each value against its key's kind.
    var integer: Int {
        switch self {
        case .int(let v): return v
        case .double(let v): return Int(v)
        default: return Int(description) ?? 0
        }
    }
    var number: Double {
        switch self {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: return Double(description) ?? 0
        }
    }
    var flag: Bool {
        if case .bool(let v) = self { return v }
        return description == "true"
    }
    var integers: [Int] {
        if case .intList(let v) = self { return v }
        return []
    }
}

public enum ConfigSchema {
    /// Every key, in the order `config --list` and the README's table show them.
    public static let keys: [ConfigKey] = methodKeys + sourceKeys + methodNamespaceKeys + protocolKeys

    static let byName: [String: ConfigKey] = Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })

    public static func key(_ name: String) -> ConfigKey? { byName[name] }

    /// The key that decodes into `field` (every field a key decodes into has exactly one).
    public static func name(of field: PartialKeyPath<RunSettings>) -> String {
        guard let key = keys.first(where: { $0.field == field }) else {
            preconditionFailure("no configuration key decodes into \(field)")
        }
        return key.name
    }

    /// Keys that may differ on resume and never separate report groups.
    public static let operational: Set<String> = Set(keys.filter(\.operational).map(\.name))

    /// Keys holding file or folder paths.
    static let pathKeys: Set<String> = Set(keys.filter(\.isPath).map(\.name))

    /// `config --list`: every key with its default and meaning, as a Markdown table or plain lines.
    public static func listing(markdown: Bool) -> String {
        func shown(_ v: ConfigValue) -> String {
            if case .string(let s) = v, s.isEmpty { return "" }
            return YAMLTree.render(v).replacingOccurrences(of: "\"", with: "")
        }
        let sections = keys.reduce(into: [String]()) { order, key in
            let section = String(key.name.split(separator: ".")[0])
            if !order.contains(section) { order.append(section) }
        }
        let sorted = keys.map(\.name).sorted { a, b in
            let (sa, sb) = (String(a.split(separator: ".")[0]), String(b.split(separator: ".")[0]))
            return (sections.firstIndex(of: sa)!, a) < (sections.firstIndex(of: sb)!, b)
        }
        if markdown {
            return "| key | default | meaning |\n|---|---|---|\n"
                + sorted.map { "| `\($0)` | \(shown(byName[$0]!.defaultValue)) | \(byName[$0]!.meaning) |" }
                .joined(separator: "\n") + "\n"
        }
        let width = sorted.map(\.count).max() ?? 0
        let values = sorted.map { shown(byName[$0]!.defaultValue).isEmpty ? "-" : shown(byName[$0]!.defaultValue) }
        let valueWidth = values.map(\.count).max() ?? 0
        return zip(sorted, values).map { key, value in
            key + String(repeating: " ", count: width - key.count) + "  " + value
                + String(repeating: " ", count: valueWidth - value.count) + "  " + byName[key]!.meaning
        }.joined(separator: "\n") + "\n"
    }
}
