// What a prompt-tuning method trains and how (DESIGN §3): the knobs every preset sets. The presets
// themselves are the files configs/methods/*.yaml; Training decodes a run's configuration into these.

public enum VisualPromptMode: String, Sendable, Codable, CaseIterable {
    case none, shallow, deep
}

public enum CAVPTQueries: String, Sendable, Codable, CaseIterable { case template, learned }
public enum CAVPTResidual: String, Sendable, Codable, CaseIterable { case query, classToken }
public enum CAVPTNonTarget: String, Sendable, Codable, CaseIterable { case ignore, uniform }

public struct CAVPTSettings: Sendable, Equatable {
    /// 1-based image layers that carry a CAVPT module; negative counts from the end (-1 = last).
    /// Empty: no CAVPT.
    public var layers: [Int] = []
    /// K_N, the classes selected per image; 0 means all classes. Capped at K.
    public var topK: Int = 10
    public var queries: CAVPTQueries = .template
    public var queryDepth: Int = 2
    public var residual: CAVPTResidual = .classToken
    public var outputProjection: Bool = true
    public var nonTarget: CAVPTNonTarget = .uniform
    public var alpha: Float = 1.0
    /// Epochs of the released code's general-knowledge guidance (§3.3); 0 disables it.
    public var guidanceEpochs: Int = 0
    /// Width of the query/key projection inside the module (DESIGN §3.1: 32).
    public var attentionWidth: Int = 32
    /// Learnable extra key/value tokens per module (DESIGN §3.1: 10).
    public var extraTokens: Int = 10

    public init() {}
}

public struct MethodSettings: Sendable, Equatable {
    /// Learn a CoOp text context shared by all classes.
    public var textPrompt = false
    /// M, the learned context length.
    public var textLength = 16
    public var visualPrompt: VisualPromptMode = .none
    /// P, visual prompt tokens per layer.
    public var visualLength = 10
    public var cavpt = CAVPTSettings()

    public init() {}

    public var usesCAVPT: Bool { !cavpt.layers.isEmpty }
    public var trainsAnything: Bool { textPrompt || visualPrompt != .none || usesCAVPT }
}
