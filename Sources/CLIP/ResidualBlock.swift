// One pre-LN transformer block of CLIP (shared by the image and text encoders), with the
// DESIGN §3 "exact shortcuts": the caller says which rows' outputs it needs, and only those rows
// get a query, an attention output, the out-projection and the MLP. Every row still provides
// keys and values.
//
// n samples, S tokens in, q rows out, d width.
import Tensor

/// Which rows of each sample's token sequence a block must output.
public enum OutputRows: Sendable, Equatable {
    /// Every row (ordinary layers).
    case all
    /// The first k rows: image tokens but not the appended prompt rows (deep VPT), or the class
    /// token alone (k = 1) in the last image layer.
    case prefix(Int)
    /// One row per sample at the given index (the EOT rows in the last text layer).
    case onePerSample([Int])
}

public struct ResidualBlock: Sendable {
    public let heads: Int
    public let width: Int
    let ln1: (Var, Var), ln2: (Var, Var)
    let queryWeight: Var, queryBias: Var          // rows 0..<d of in_proj
    let keyValueWeight: Var, keyValueBias: Var    // rows d..<3d of in_proj (views, no copy)
    let outWeight: Var, outBias: Var
    let fcWeight: Var, fcBias: Var, projWeight: Var, projBias: Var

    /// Frozen weights under `prefix` (e.g. `visual.transformer.resblocks.3.`), OpenAI names.
    public init(_ weights: [String: Tensor], prefix: String, heads: Int) throws {
        func w(_ name: String) throws -> Var {
            guard let t = weights[prefix + name] else { throw CLIPModelError.missingWeight(prefix + name) }
            return Var(t)
        }
        let inProj = try w("attn.in_proj_weight").value, inBias = try w("attn.in_proj_bias").value
        let d = inProj.lastDim
        guard inProj.shape == [3 * d, d], inBias.shape == [3 * d] else {
            throw CLIPModelError.shape(prefix + "attn.in_proj_weight", expected: [3 * d, d], found: inProj.shape)
        }
        width = d
        self.heads = heads
        ln1 = (try w("ln_1.weight"), try w("ln_1.bias"))
        ln2 = (try w("ln_2.weight"), try w("ln_2.bias"))
        queryWeight = Var(inProj.slice(0..<d)); queryBias = Var(inBias.slice(0..<d))
        keyValueWeight = Var(inProj.slice(d..<(3 * d))); keyValueBias = Var(inBias.slice(d..<(3 * d)))
        outWeight = try w("attn.out_proj.weight"); outBias = try w("attn.out_proj.bias")
        fcWeight = try w("mlp.c_fc.weight"); fcBias = try w("mlp.c_fc.bias")
        projWeight = try w("mlp.c_proj.weight"); projBias = try w("mlp.c_proj.bias")
    }

    /// Every block `prefix{0,1,…}.` present in `weights`, in order; heads = width / 64 as in CLIP.
    public static func stack(_ weights: [String: Tensor], prefix: String, width: Int) throws -> [ResidualBlock] {
        var count = 0
        while weights["\(prefix)\(count).ln_1.weight"] != nil { count += 1 }
        let heads = max(1, width / 64)
        return try (0..<count).map { try ResidualBlock(weights, prefix: "\(prefix)\($0).", heads: heads) }
    }

    /// x: [n, S, d] -> [n, q, d].   causal: text encoder (row j attends to keys 0…j).
    public func callAsFunction(_ x: Var, outputs: OutputRows = .all, causal: Bool = false) -> Var {
        let (n, S, d) = (x.shape[0], x.shape[1], x.shape[2])
        let h = layerNorm(x, ln1.0, ln1.1)
        let keysValues = linear(h, keyValueWeight, keyValueBias)              // [n, S, 2d]
        let (hq, xq, mask): (Var, Var, AttentionMask)
        switch outputs {
        case .all:
            (hq, xq, mask) = (h, x, causal ? .causal(offset: 0) : .none)
        case .prefix(let k):
            (hq, xq, mask) = (sliceTokens(h, 0..<k), sliceTokens(x, 0..<k), causal ? .causal(offset: 0) : .none)
        case .onePerSample(let rows):
            let flat = rows.enumerated().map { $0.offset * S + $0.element }
            hq = reshape(gatherRows(reshape(h, [n * S, d]), flat), [n, 1, d])
            xq = reshape(gatherRows(reshape(x, [n * S, d]), flat), [n, 1, d])
            mask = causal ? .prefix(rows.map { $0 + 1 }) : .none
        }
        let queries = linear(hq, queryWeight, queryBias)                      // [n, q, d]
        let attended = attention(queries, keysValues, heads: heads, mask: mask)
        let x1 = xq + linear(attended, outWeight, outBias)
        let hidden = quickGELU(linear(layerNorm(x1, ln2.0, ln2.1), fcWeight, fcBias))
        return x1 + linear(hidden, projWeight, projBias)
    }
}

public enum CLIPModelError: Error, CustomStringConvertible {
    case missingWeight(String)
    case shape(String, expected: [Int], found: [Int])
    case input(String)

    public var description: String {
        switch self {
        case .missingWeight(let name): return "missing weight \"\(name)\""
        case .shape(let name, let expected, let found): return "weight \"\(name)\" has shape \(found), expected \(expected)"
        case .input(let message): return message
        }
    }
}
