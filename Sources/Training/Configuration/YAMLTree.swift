// The effective configuration written as nested YAML by hand (config.yaml, checkpoints' state): block
// mappings of plain keys and scalars that YAML 1.1 (PyYAML) and 1.2 (Yams) read alike.
import Data
import Foundation

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
