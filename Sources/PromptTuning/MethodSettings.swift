// What a prompt-tuning method trains and how (DESIGN §3): the knobs every preset sets.

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

    /// The Table 1 rows and the released-code variant (DESIGN §3, §3.2).
    public static func preset(_ name: String) -> MethodSettings? {
        var m = MethodSettings()
        var paperCAVPT = CAVPTSettings()
        paperCAVPT.layers = [-1] // the last image layer, whatever the depth
        switch name {
        case "zsclip": break
        case "coop": m.textPrompt = true
        case "vpt_shallow": m.visualPrompt = .shallow
        case "vpt_deep": m.visualPrompt = .deep
        case "vpt_cavpt": m.visualPrompt = .deep; m.cavpt = paperCAVPT
        case "vlp_deep": m.textPrompt = true; m.visualPrompt = .deep
        case "vlp_cavpt": m.textPrompt = true; m.visualPrompt = .deep; m.cavpt = paperCAVPT
        case "dpt_released":
            m.textPrompt = true; m.visualPrompt = .deep
            m.cavpt.layers = [-1]; m.cavpt.topK = 10; m.cavpt.queries = .learned; m.cavpt.queryDepth = 1
            m.cavpt.residual = .query; m.cavpt.outputProjection = false; m.cavpt.nonTarget = .ignore
            m.cavpt.alpha = 0.3; m.cavpt.guidanceEpochs = 30
        default: return nil
        }
        return m
    }

    public static let presetNames = [
        "zsclip", "coop", "vpt_shallow", "vpt_deep", "vpt_cavpt",
        "vlp_deep", "vlp_cavpt", "dpt_released",
    ]
}
