// Checkpoint naming schemes: the rules that turn Hugging Face CLIPModel names into the canonical
// OpenAI / open_clip names (kept in one place), their inverse, and the buffers every loader ignores.

/// How a tensor stored under a source name relates to the canonical tensor it feeds.
public enum WeightTransform: Sendable, Equatable {
    /// Stored as is.
    case none
    /// Stored transposed (HF keeps projections as Linear weights [out, in]; OpenAI keeps x @ proj).
    case transposed
    /// Stored as rows [i·r, (i+1)·r) of the canonical tensor, r = rows / n (HF splits the packed
    /// q, k, v projection that PyTorch's MultiheadAttention keeps as one `in_proj`).
    case part(Int, of: Int)
}

/// One rewrite of a checkpoint name. Rules are applied in order, each to the result of the previous.
public struct RenameRule: Sendable, Equatable {
    public enum Match: Sendable, Equatable {
        /// The whole name equals `from`.
        case exact
        /// The name starts with `from`.
        case prefix
        /// The name contains `from` (every occurrence is replaced).
        case infix
    }
    public let match: Match
    public let from: String
    public let to: String
    public let transform: WeightTransform

    public static func exact(_ from: String, _ to: String, _ transform: WeightTransform = .none) -> RenameRule {
        RenameRule(match: .exact, from: from, to: to, transform: transform)
    }
    public static func prefix(_ from: String, _ to: String) -> RenameRule {
        RenameRule(match: .prefix, from: from, to: to, transform: .none)
    }
    public static func replace(_ from: String, _ to: String, _ transform: WeightTransform = .none) -> RenameRule {
        RenameRule(match: .infix, from: from, to: to, transform: transform)
    }

    func applies(to name: String) -> Bool { Self.matches(name, match, from) }

    func apply(to name: String) -> String {
        switch match {
        case .exact: return to
        case .prefix: return to + name.dropFirst(from.count)
        case .infix: return name.replacingAll(from, with: to)
        }
    }

    /// The inverse rewrite, used to say which source names a canonical name comes from.
    func unapply(to name: String) -> String? {
        guard Self.matches(name, match, to) else { return nil }
        switch match {
        case .exact: return from
        case .prefix: return from + name.dropFirst(to.count)
        case .infix: return name.replacingAll(to, with: from)
        }
    }

    private static func matches(_ name: String, _ match: Match, _ pattern: String) -> Bool {
        switch match {
        case .exact: return name == pattern
        case .prefix: return name.hasPrefix(pattern)
        case .infix: return name.contains(pattern)
        }
    }
}

/// A checkpoint's naming scheme.
public enum WeightNaming: String, Sendable, CaseIterable {
    /// OpenAI CLIP / open_clip: the canonical names, no rewriting.
    case openAI = "OpenAI/open_clip"
    /// Hugging Face `transformers` CLIPModel.
    case huggingFace = "Hugging Face CLIPModel"

    public var rules: [RenameRule] {
        switch self {
        case .openAI: return []
        case .huggingFace: return WeightNaming.huggingFaceRules
        }
    }

    static let huggingFaceRules: [RenameRule] = [
        .exact("visual_projection.weight", "visual.proj", .transposed),
        .exact("text_projection.weight", "text_projection", .transposed),
        .exact("vision_model.embeddings.class_embedding", "visual.class_embedding"),
        .exact("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"),
        .exact("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"),
        .exact("text_model.embeddings.token_embedding.weight", "token_embedding.weight"),
        .exact("text_model.embeddings.position_embedding.weight", "positional_embedding"),
        .prefix("vision_model.pre_layrnorm.", "visual.ln_pre."), // sic: HF's spelling
        .prefix("vision_model.post_layernorm.", "visual.ln_post."),
        .prefix("text_model.final_layer_norm.", "ln_final."),
        .prefix("vision_model.encoder.layers.", "visual.transformer.resblocks."),
        .prefix("text_model.encoder.layers.", "transformer.resblocks."),
        .replace(".self_attn.q_proj.weight", ".attn.in_proj_weight", .part(0, of: 3)),
        .replace(".self_attn.k_proj.weight", ".attn.in_proj_weight", .part(1, of: 3)),
        .replace(".self_attn.v_proj.weight", ".attn.in_proj_weight", .part(2, of: 3)),
        .replace(".self_attn.q_proj.bias", ".attn.in_proj_bias", .part(0, of: 3)),
        .replace(".self_attn.k_proj.bias", ".attn.in_proj_bias", .part(1, of: 3)),
        .replace(".self_attn.v_proj.bias", ".attn.in_proj_bias", .part(2, of: 3)),
        .replace(".self_attn.out_proj.", ".attn.out_proj."),
        .replace(".layer_norm1.", ".ln_1."),
        .replace(".layer_norm2.", ".ln_2."),
        .replace(".mlp.fc1.", ".mlp.c_fc."),
        .replace(".mlp.fc2.", ".mlp.c_proj."),
    ]

    /// Non-parameter entries real checkpoints carry; accepted and ignored. `position_ids` (HF),
    /// `attn_mask` (some open_clip exports), and the three scalars OpenAI's TorchScript archives
    /// store next to the weights.
    public static func isIgnoredBuffer(_ name: String) -> Bool {
        name == "position_ids" || name.hasSuffix(".position_ids")
            || name == "attn_mask" || name.hasSuffix(".attn_mask")
            || name == "input_resolution" || name == "context_length" || name == "vocab_size"
    }

    /// The scheme a set of names is written in: Hugging Face if any name uses its top-level modules.
    public static func detect(_ names: [String]) -> WeightNaming {
        let huggingFaceRoots = ["vision_model.", "text_model.", "visual_projection.", "text_projection.weight"]
        let isHuggingFace = names.contains { name in huggingFaceRoots.contains { name.hasPrefix($0) } }
        return isHuggingFace ? .huggingFace : .openAI
    }

    /// The canonical name a source name maps to, and how its tensor must be transformed.
    public func canonical(_ source: String) -> (name: String, transform: WeightTransform) {
        var name = source
        var transform = WeightTransform.none
        for rule in rules where rule.applies(to: name) {
            name = rule.apply(to: name)
            if rule.transform != .none { transform = rule.transform }
        }
        return (name, transform)
    }

    /// The source names (with transforms) that produce `canonical` under this scheme: one name, or
    /// n names for a tensor stored in n parts. Found by undoing the rules in reverse order; rules that
    /// share a target (the q, k, v parts) are undone together, each giving its own source name.
    /// Candidates that do not map forward to `canonical` again are dropped.
    public func sources(of canonical: String) -> [(name: String, transform: WeightTransform)] {
        var candidates = [canonical]
        var undone = Set<Int>()
        for index in rules.indices.reversed() where !undone.contains(index) {
            let rule = rules[index]
            let group = rules.indices.filter { rules[$0].match == rule.match && rules[$0].to == rule.to }
            undone.formUnion(group)
            candidates = candidates.flatMap { name -> [String] in
                let alternatives = group.compactMap { rules[$0].unapply(to: name) }
                return alternatives.isEmpty ? [name] : alternatives
            }
        }
        return candidates.uniqued().compactMap { name in
            let forward = self.canonical(name)
            return forward.name == canonical ? (name, forward.transform) : nil
        }
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
