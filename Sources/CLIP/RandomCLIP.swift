// Randomly initialised CLIP weights with OpenAI names: tiny models for tests and the demo,
// ViT-B/32-shaped ones for benchmarks. Not a trained model: features are meaningless.
import Tensor

#if canImport(Glibc)
import Glibc
#endif

public struct CLIPShape: Sendable {
    public var visionWidth = 768, visionLayers = 12, patch = 32, resolution = 224
    public var textWidth = 512, textLayers = 12, vocabularySize = 49408, contextLength = 77
    public var embedDim = 512

    public init() {}

    public static let vitB32 = CLIPShape()

    /// ViT-B/16: ViT-B/32's widths with 16-pixel patches (197 image tokens).
    public static let vitB16: CLIPShape = {
        var s = CLIPShape()
        s.patch = 16
        return s
    }()

    /// ViT-L/14: vision 1024 wide, 24 layers, 14-pixel patches (257 tokens); text 768 wide; embedding 768.
    public static let vitL14: CLIPShape = {
        var s = CLIPShape()
        s.visionWidth = 1024; s.visionLayers = 24; s.patch = 14
        s.textWidth = 768; s.embedDim = 768
        return s
    }()

    /// The released architectures by their OpenAI names (`bench --arch`).
    public static let named: [(name: String, shape: CLIPShape)] = [
        ("ViT-B/32", vitB32), ("ViT-B/16", vitB16), ("ViT-L/14", vitL14),
    ]

    /// Image tokens: the class token and the patches.
    public var imageTokens: Int { 1 + (resolution / patch) * (resolution / patch) }

    public static func tiny(vocabularySize: Int) -> CLIPShape {
        var s = CLIPShape()
        s.visionWidth = 128; s.visionLayers = 2; s.patch = 8; s.resolution = 32
        s.textWidth = 128; s.textLayers = 2; s.vocabularySize = vocabularySize; s.embedDim = 64
        return s
    }
}

public enum RandomCLIP {
    /// Weights drawn like open_clip's initialisation (scaled normals, unit LayerNorms).
    public static func make(_ s: CLIPShape, seed: UInt64) -> [String: Tensor] {
        var t: [String: Tensor] = [:]
        var next = seed
        func randn(_ shape: [Int], _ std: Float) -> Tensor {
            next &+= 0x9E37_79B9
            return .randn(shape, std: std, seed: next)
        }
        func block(_ prefix: String, _ d: Int, _ layers: Int) {
            let attnStd = 1 / Float(d).squareRoot(), projStd = attnStd / Float(2 * layers).squareRoot()
            t[prefix + "ln_1.weight"] = Tensor(shape: [d], repeating: 1); t[prefix + "ln_1.bias"] = Tensor(zeros: [d])
            t[prefix + "ln_2.weight"] = Tensor(shape: [d], repeating: 1); t[prefix + "ln_2.bias"] = Tensor(zeros: [d])
            t[prefix + "attn.in_proj_weight"] = randn([3 * d, d], attnStd)
            t[prefix + "attn.in_proj_bias"] = randn([3 * d], 0.01)
            t[prefix + "attn.out_proj.weight"] = randn([d, d], projStd)
            t[prefix + "attn.out_proj.bias"] = randn([d], 0.01)
            t[prefix + "mlp.c_fc.weight"] = randn([4 * d, d], 1 / Float(2 * d).squareRoot())
            t[prefix + "mlp.c_fc.bias"] = randn([4 * d], 0.01)
            t[prefix + "mlp.c_proj.weight"] = randn([d, 4 * d], projStd)
            t[prefix + "mlp.c_proj.bias"] = randn([d], 0.01)
        }
        let (dv, dt) = (s.visionWidth, s.textWidth)
        let grid = s.resolution / s.patch
        t["visual.conv1.weight"] = randn([dv, 3, s.patch, s.patch], 1 / Float(3 * s.patch * s.patch).squareRoot())
        t["visual.class_embedding"] = randn([dv], 1 / Float(dv).squareRoot())
        t["visual.positional_embedding"] = randn([grid * grid + 1, dv], 1 / Float(dv).squareRoot())
        t["visual.ln_pre.weight"] = Tensor(shape: [dv], repeating: 1); t["visual.ln_pre.bias"] = Tensor(zeros: [dv])
        for l in 0..<s.visionLayers { block("visual.transformer.resblocks.\(l).", dv, s.visionLayers) }
        t["visual.ln_post.weight"] = Tensor(shape: [dv], repeating: 1); t["visual.ln_post.bias"] = Tensor(zeros: [dv])
        t["visual.proj"] = randn([dv, s.embedDim], 1 / Float(dv).squareRoot())
        t["token_embedding.weight"] = randn([s.vocabularySize, dt], 0.02)
        t["positional_embedding"] = randn([s.contextLength, dt], 0.01)
        for l in 0..<s.textLayers { block("transformer.resblocks.\(l).", dt, s.textLayers) }
        t["ln_final.weight"] = Tensor(shape: [dt], repeating: 1); t["ln_final.bias"] = Tensor(zeros: [dt])
        t["text_projection"] = randn([dt, s.embedDim], 1 / Float(dt).squareRoot())
        t["logit_scale"] = Tensor(scalar: logf(1 / 0.07))
        return t
    }
}
