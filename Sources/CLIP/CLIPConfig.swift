// CLIP's architecture as read off tensor shapes, and the canonical (OpenAI / open_clip) names and
// shapes such an architecture must have.
//
// d vision width, D embedding width, t text width, g patch grid side, p patch size,
// m MLP hidden width, V vocabulary, C context length.

/// The hyper-parameters of an OpenAI-style CLIP (ViT image tower + causal text transformer).
public struct CLIPConfig: Sendable, Equatable, CustomStringConvertible {
    /// Every OpenAI CLIP uses 64-wide attention heads; heads = width / 64.
    public static let headDim = 64

    public var visionWidth: Int // d
    public var visionLayers: Int
    public var visionMLPWidth: Int // m (4·d in every released model)
    public var patchSize: Int // p
    public var imageResolution: Int // g·p
    public var embedDim: Int // D
    public var textWidth: Int // t
    public var textLayers: Int
    public var textMLPWidth: Int
    public var vocabularySize: Int // V
    public var contextLength: Int // C

    public init(
        visionWidth: Int, visionLayers: Int, visionMLPWidth: Int, patchSize: Int, imageResolution: Int,
        embedDim: Int, textWidth: Int, textLayers: Int, textMLPWidth: Int, vocabularySize: Int,
        contextLength: Int
    ) {
        self.visionWidth = visionWidth
        self.visionLayers = visionLayers
        self.visionMLPWidth = visionMLPWidth
        self.patchSize = patchSize
        self.imageResolution = imageResolution
        self.embedDim = embedDim
        self.textWidth = textWidth
        self.textLayers = textLayers
        self.textMLPWidth = textMLPWidth
        self.vocabularySize = vocabularySize
        self.contextLength = contextLength
    }

    public var visionHeads: Int { visionWidth / CLIPConfig.headDim }
    public var textHeads: Int { textWidth / CLIPConfig.headDim }
    /// Patches per image side (g).
    public var gridSize: Int { imageResolution / patchSize }
    /// Image tokens: the class token plus g² patches.
    public var imageTokens: Int { gridSize * gridSize + 1 }

    public var description: String {
        "CLIP(vision \(visionWidth)×\(visionLayers) layers, \(visionHeads) heads, patch \(patchSize), "
            + "resolution \(imageResolution); text \(textWidth)×\(textLayers) layers, \(textHeads) heads, "
            + "vocabulary \(vocabularySize), context \(contextLength); embedding \(embedDim))"
    }

    /// Every parameter an OpenAI-layout CLIP of this shape holds, in canonical names, with shapes.
    public var expectedShapes: [(name: String, shape: [Int])] {
        var list: [(name: String, shape: [Int])] = []
        func block(_ prefix: String, width w: Int, mlp m: Int) {
            list += [
                ("\(prefix).ln_1.weight", [w]), ("\(prefix).ln_1.bias", [w]),
                ("\(prefix).attn.in_proj_weight", [3 * w, w]), ("\(prefix).attn.in_proj_bias", [3 * w]),
                ("\(prefix).attn.out_proj.weight", [w, w]), ("\(prefix).attn.out_proj.bias", [w]),
                ("\(prefix).ln_2.weight", [w]), ("\(prefix).ln_2.bias", [w]),
                ("\(prefix).mlp.c_fc.weight", [m, w]), ("\(prefix).mlp.c_fc.bias", [m]),
                ("\(prefix).mlp.c_proj.weight", [w, m]), ("\(prefix).mlp.c_proj.bias", [w]),
            ]
        }
        let d = visionWidth, t = textWidth
        list += [
            ("visual.class_embedding", [d]),
            ("visual.positional_embedding", [imageTokens, d]),
            ("visual.conv1.weight", [d, 3, patchSize, patchSize]),
            ("visual.ln_pre.weight", [d]), ("visual.ln_pre.bias", [d]),
        ]
        for i in 0..<visionLayers { block("visual.transformer.resblocks.\(i)", width: d, mlp: visionMLPWidth) }
        list += [
            ("visual.ln_post.weight", [d]), ("visual.ln_post.bias", [d]),
            ("visual.proj", [d, embedDim]),
            ("token_embedding.weight", [vocabularySize, t]),
            ("positional_embedding", [contextLength, t]),
        ]
        for i in 0..<textLayers { block("transformer.resblocks.\(i)", width: t, mlp: textMLPWidth) }
        list += [
            ("ln_final.weight", [t]), ("ln_final.bias", [t]),
            ("text_projection", [t, embedDim]),
            ("logit_scale", []),
        ]
        return list
    }

    /// Reads the architecture off canonical-name shapes. Only the tensors that fix a dimension are
    /// consulted; whether everything else fits is the strict check's job.
    public static func infer(from shapes: [String: [Int]], file: String) throws -> CLIPConfig {
        func need(_ name: String, rank: Int) throws -> [Int] {
            guard let shape = shapes[name] else {
                throw WeightError.cannotInfer(file: file, reason: "tensor \"\(name)\" is missing")
            }
            guard shape.count == rank else {
                throw WeightError.cannotInfer(
                    file: file, reason: "tensor \"\(name)\" has shape \(shape), expected \(rank) dimensions")
            }
            return shape
        }
        func fail(_ reason: String) -> WeightError { .cannotInfer(file: file, reason: reason) }

        let conv = try need("visual.conv1.weight", rank: 4) // [d, 3, p, p]
        let d = conv[0], patch = conv[2]
        guard conv[1] == 3, conv[3] == patch, patch > 0 else {
            throw fail("visual.conv1.weight has shape \(conv), expected [width, 3, patch, patch]")
        }
        let visionPositions = try need("visual.positional_embedding", rank: 2) // [g²+1, d]
        let grid = integerSquareRoot(visionPositions[0] - 1)
        guard let grid, grid > 0 else {
            throw fail(
                "visual.positional_embedding has \(visionPositions[0]) rows; expected a square number of patches "
                    + "plus one"
            )
        }
        let tokenEmbedding = try need("token_embedding.weight", rank: 2) // [V, t]
        let textPositions = try need("positional_embedding", rank: 2) // [C, t]
        let t = tokenEmbedding[1]
        // D from whichever projection is consistent with its tower's width, so that one mis-shaped
        // projection is reported as such instead of making the other one look wrong too.
        let visualProjection = shapes["visual.proj"] ?? [] // [d, D]
        let textProjection = shapes["text_projection"] ?? [] // [t, D]
        let embedDim: Int
        if visualProjection.count == 2 && visualProjection[0] == d {
            embedDim = visualProjection[1]
        } else if textProjection.count == 2 && textProjection[0] == t {
            embedDim = textProjection[1]
        } else if visualProjection.count == 2 {
            embedDim = visualProjection[1]
        } else if textProjection.count == 2 {
            embedDim = textProjection[1]
        } else {
            throw fail("neither visual.proj nor text_projection is a matrix, so the embedding width is unknown")
        }

        for (name, width) in [("vision", d), ("text", t)] where width <= 0 || width % headDim != 0 {
            throw fail("\(name) width \(width) is not a positive multiple of the \(headDim)-wide attention heads")
        }
        let visionLayers = layerCount(prefix: "visual.transformer.resblocks.", in: shapes)
        let textLayers = layerCount(prefix: "transformer.resblocks.", in: shapes)
        guard visionLayers > 0 else { throw fail("no visual.transformer.resblocks.* tensors") }
        guard textLayers > 0 else { throw fail("no transformer.resblocks.* tensors") }

        return CLIPConfig(
            visionWidth: d, visionLayers: visionLayers,
            visionMLPWidth: shapes["visual.transformer.resblocks.0.mlp.c_fc.weight"]?.first ?? 4 * d,
            patchSize: patch, imageResolution: grid * patch,
            embedDim: embedDim,
            textWidth: t, textLayers: textLayers,
            textMLPWidth: shapes["transformer.resblocks.0.mlp.c_fc.weight"]?.first ?? 4 * t,
            vocabularySize: tokenEmbedding[0], contextLength: textPositions[0])
        // Whether visual.proj's rows, text_projection and everything else agree with d, t and D is
        // the strict check's business, so that all disagreements are reported together.
    }

    /// One more than the largest block index under `prefix` (gaps show up as missing keys later).
    /// Indices past 1000 are not layers of any CLIP; they stay unexpected keys instead of making the
    /// strict check list a million missing ones.
    static func layerCount(prefix: String, in shapes: [String: [Int]]) -> Int {
        var count = 0
        for name in shapes.keys where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]), index >= 0, index < 1000 {
                count = max(count, index + 1)
            }
        }
        return count
    }
}

func integerSquareRoot(_ n: Int) -> Int? {
    guard n >= 0 else { return nil }
    let r = Int(Double(n).squareRoot().rounded())
    return r * r == n ? r : nil
}
