// The text side of every method: per-class token sequences for CoOp's learned context
// ("X X … X <classname>.") and for the frozen per-dataset template, and the template features
// computed once per run.
//
// K classes, L tokens, M context length, w text width, D embedding width.
import CLIP
import Tensor

public struct ClassPrompts: Sendable {
    public let classNames: [String]
    /// Template prompts, e.g. "a photo of a {}." -> ids [K][L]
    public let templateTokens: [[Int]]
    /// "X X … X <classname>." -> ids [K][L]; positions 1...M hold the X's that `text.ctx` replaces.
    public let contextTokens: [[Int]]
    public let contextLength: Int

    /// `tokenize` must return the padded 77-id sequence (SOT … EOT, 0-padded) of a string.
    public init(
        classNames: [String], template: String, contextLength M: Int,
        tokenize: (String) throws -> [Int]
    ) throws {
        self.classNames = classNames
        contextLength = M
        templateTokens = try classNames.map { try tokenize(template.replacingOccurrences(of: "{}", with: $0)) }
        let placeholder = Array(repeating: "X", count: M).joined(separator: " ")
        contextTokens = try classNames.map { try tokenize("\(placeholder) \($0).") }
        if M > 0, let first = contextTokens.first, let xId = first.dropFirst().first {
            for (k, seq) in contextTokens.enumerated() where Array(seq[1...M]) != Array(repeating: xId, count: M) {
                throw PromptError.tokenization(
                    "the CoOp prompt of class \"\(classNames[k])\" does not start with \(M) context tokens")
            }
        }
    }

    /// Frozen text features [K, D] of the template prompts (computed once per run).
    public func templateFeatures(_ text: TextEncoder) throws -> Tensor {
        try text(tokens: templateTokens).value
    }
}

/// CoOp's learned context in front of each class name: prefix (SOT) + ctx + suffix (name, ".", EOT).
public struct TextContextPrompts {
    let prefix: Tensor // [K, 1, w]
    let suffix: Tensor // [K, L' − 1 − M, w], truncated after the last EOT
    let eot: [Int]

    public init(_ prompts: ClassPrompts, text: TextEncoder) throws {
        let M = prompts.contextLength
        eot = TextEncoder.eotPositions(prompts.contextTokens)
        let used = (eot.max() ?? 0) + 1
        let embedded = try text.embed(prompts.contextTokens, length: used) // [K, used, w]
        let K = prompts.classNames.count, w = text.width
        prefix = Tensor(uninitialized: [K, 1, w])
        suffix = Tensor(uninitialized: [K, used - 1 - M, w])
        for k in 0..<K {
            (prefix.data + k * w).update(from: embedded.data + k * used * w, count: w)
            (suffix.data + k * (used - 1 - M) * w).update(
                from: embedded.data + (k * used + 1 + M) * w,
                count: (used - 1 - M) * w)
        }
    }

    /// Learned-prompt text features [K, D] for the context `ctx` [M, w]; gradients reach ctx.
    public func features(_ text: TextEncoder, context ctx: Var) -> Var {
        features(text, context: ctx, classes: 0..<prefix.shape[0])
    }

    /// The same for a contiguous range of classes (a rank's share when the text side is sharded):
    /// [classes.count, D], run on the shortest prefix holding those classes' EOTs.
    public func features(_ text: TextEncoder, context ctx: Var, classes: Range<Int>) -> Var {
        let n = classes.count
        let M = ctx.shape[0]
        let slotEOT = Array(eot[classes])
        let used = (slotEOT.max() ?? 0) + 1
        let full = prefix.shape[0] == n ? (prefix, suffix) : (prefix.slice(classes), suffix.slice(classes))
        var tail = Var(full.1)
        if used - 1 - M < suffix.shape[1] {
            // Drop the padding after the slice's last EOT (causal: it cannot change the EOT rows).
            tail = sliceTokens(tail, 0..<max(used - 1 - M, 0))
        }
        let tokens = concatTokens([Var(full.0), ctx, tail], samples: n)
        return text(embeddings: tokens, eot: slotEOT)
    }
}

public enum PromptError: Error, CustomStringConvertible {
    case tokenization(String)
    case parameter(String)
    case configuration(String)

    public var description: String {
        switch self {
        case .tokenization(let m), .parameter(let m), .configuration(let m): return m
        }
    }
}
