// Bounds on YAML before Yams sees it: Yams composes and constructs recursively (thousands of
// nested levels overflow the stack), expands aliases into values ("billion laughs"), and traps
// on a mapping key that is not a scalar.
// CYaml is the libyaml copy Yams builds; its event parser keeps explicit stacks, so walking the
// events here is safe at any depth. (CYaml is not a Yams product; it is visible because Yams
// depends on it, and must be the same copy Yams parses with.)
import CYaml
import Yams

public enum YAMLLimits {
    /// Deepest nesting accepted, counted after alias expansion; configs in this repo nest 3 levels.
    public static let maxDepth = 64
    /// Most nodes a document may expand to, each alias counted at the full size of its anchor.
    public static let maxNodes = 100_000

    /// Why a text exceeds a limit, with the line where it does; nil when it is within them.
    /// A syntax error ends the scan quietly: Yams reports it with its own message, having
    /// composed only events that were checked here.
    public static func violation(in text: String) -> String? {
        let bytes = Array(text.utf8)
        if bytes.isEmpty { return nil }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return "libyaml could not allocate a parser" }
        defer { yaml_parser_delete(&parser) }
        return bytes.withUnsafeBufferPointer { buffer -> String? in
            yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return scan(&parser)
        }
    }

    /// Throws `YAMLLimitError` when `text` exceeds a limit.
    public static func check(_ text: String) throws {
        if let reason = violation(in: text) { throw YAMLLimitError(reason: reason) }
    }

    /// One open collection: nodes it expands to so far, its height (levels below it), and for a
    /// mapping whether the next child is a key.
    private struct Frame {
        var anchor: String?
        var isMapping: Bool
        var children = 0
        var size = 1
        var height = 1
    }

    /// An anchored node as an alias to it will add it.
    private struct Anchored {
        var size: Int, height: Int, isScalar: Bool
    }

    private static func scan(_ parser: inout yaml_parser_t) -> String? {
        var open: [Frame] = []
        var anchors: [String: Anchored] = [:]
        var event = yaml_event_t()
        // Adds a finished child (a scalar, alias or closed collection) to its parent.
        func add(_ child: Anchored, line: Int) -> String? {
            let (size, height) = (child.size, child.height)
            guard var parent = open.popLast() else { return nil }
            // Yams constructs every mapping key as a string and traps on any other ("? [a]: b").
            if parent.isMapping && parent.children % 2 == 0 && !child.isScalar {
                return "has a mapping key that is a list or mapping (line \(line)); keys must be plain names"
            }
            parent.children += 1
            parent.size = min(parent.size + size, maxNodes + 1)
            parent.height = max(parent.height, height + 1)
            open.append(parent)
            if open.count - 1 + parent.height > maxDepth {
                return "nests deeper than \(maxDepth) levels (line \(line))"
            }
            if parent.size > maxNodes {
                return "expands to more than \(maxNodes) nodes through aliases (line \(line))"
            }
            return nil
        }
        func name(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
            pointer.map { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
        }
        while true {
            guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
            defer { yaml_event_delete(&event) }
            let line = Int(event.start_mark.line) + 1
            switch event.type {
            case YAML_STREAM_END_EVENT:
                return nil
            case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                let anchor =
                    event.type == YAML_SEQUENCE_START_EVENT
                    ? name(event.data.sequence_start.anchor) : name(event.data.mapping_start.anchor)
                open.append(Frame(anchor: anchor, isMapping: event.type == YAML_MAPPING_START_EVENT))
                if open.count > maxDepth { return "nests deeper than \(maxDepth) levels (line \(line))" }
            case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                guard let done = open.popLast() else { return nil }
                let node = Anchored(size: done.size, height: done.height, isScalar: false)
                if let anchor = done.anchor { anchors[anchor] = node }
                if let reason = add(node, line: line) { return reason }
            case YAML_SCALAR_EVENT:
                let node = Anchored(size: 1, height: 1, isScalar: true)
                if let anchor = name(event.data.scalar.anchor) { anchors[anchor] = node }
                if let reason = add(node, line: line) { return reason }
            case YAML_ALIAS_EVENT:
                // An undefined alias is Yams's error to report; count it as one scalar.
                let target =
                    name(event.data.alias.anchor).flatMap { anchors[$0] }
                    ?? Anchored(size: 1, height: 1, isScalar: true)
                if open.isEmpty && target.height > maxDepth {
                    return "nests deeper than \(maxDepth) levels (line \(line))"
                }
                if let reason = add(target, line: line) { return reason }
            default:
                break
            }
        }
    }
}

/// A YAML text over `YAMLLimits`; `reason` is one line without any of the text.
public struct YAMLLimitError: Error, CustomStringConvertible, Sendable {
    public var reason: String
    public var description: String { reason }
}

/// `Yams.load` and `Yams.compose` behind the limits.
public enum BoundedYAML {
    public static func load(yaml text: String) throws -> Any? {
        try YAMLLimits.check(text)
        return try Yams.load(yaml: text)
    }

    public static func compose(yaml text: String) throws -> Node? {
        try YAMLLimits.check(text)
        return try Yams.compose(yaml: text)
    }
}
