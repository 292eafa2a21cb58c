// One pre-LN transformer block of CLIP (shared by the image and text encoders), with the
// DESIGN §3 "exact shortcuts": the caller says which rows' outputs it needs, and only those rows
// get a query, an attention output, the out-projection and the MLP. Every row still provides
// keys and values.
//
// n samples, S tokens in, q rows out, d width.
import Foundation
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
    // Weight matrices in the run's precision (bf16: held only in bf16); biases and LayerNorms fp32.
    let queryWeight: FrozenMatrix, queryBias: Var // rows 0..<d of in_proj
    let keyValueWeight: FrozenMatrix, keyValueBias: Var // rows d..<3d of in_proj (views, no copy)
    let outWeight: FrozenMatrix, outBias: Var
    let fcWeight: FrozenMatrix, fcBias: Var, projWeight: FrozenMatrix, projBias: Var
    let inProjWeight: FrozenMatrix
    /// The same weights as the fused sublayers take them (DESIGN §3a).
    let attentionWeights: AttentionWeights, mlpWeights: MLPWeights

    /// runtime.recompute for every block of the process (set once by a run's set-up; DESIGN §3a).
    nonisolated(unsafe) public static var recompute: Recompute = .none

    /// The weight matrices, whole (tests check where they are held).
    public var matrices: [FrozenMatrix] { [inProjWeight, outWeight, fcWeight, projWeight] }

    /// Frozen weights under `prefix` (e.g. `visual.transformer.resblocks.3.`), OpenAI names.
    public init(_ weights: [String: Tensor], prefix: String, heads: Int, precision: Precision = .fp32) throws {
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
        func m(_ name: String) throws -> FrozenMatrix { FrozenMatrix(try w(name).value, precision: precision) }
        inProjWeight = FrozenMatrix(inProj, precision: precision)
        queryWeight = inProjWeight.slice(0..<d); queryBias = Var(inBias.slice(0..<d))
        keyValueWeight = inProjWeight.slice(d..<(3 * d)); keyValueBias = Var(inBias.slice(d..<(3 * d)))
        outWeight = try m("attn.out_proj.weight"); outBias = try w("attn.out_proj.bias")
        fcWeight = try m("mlp.c_fc.weight"); fcBias = try w("mlp.c_fc.bias")
        projWeight = try m("mlp.c_proj.weight"); projBias = try w("mlp.c_proj.bias")
        attentionWeights = AttentionWeights(
            heads: heads, ln: (ln1.0.value, ln1.1.value), query: queryWeight, queryBias: queryBias.value,
            keyValue: keyValueWeight, keyValueBias: keyValueBias.value, out: outWeight, outBias: outBias.value)
        mlpWeights = MLPWeights(
            ln: (ln2.0.value, ln2.1.value), fc: fcWeight, fcBias: fcBias.value, proj: projWeight,
            projBias: projBias.value)
    }

    /// Every block `prefix{0,1,…}.` present in `weights`, in order; heads = width / 64 as in CLIP.
    public static func stack(
        _ weights: [String: Tensor], prefix: String, width: Int,
        precision: Precision = .fp32
    ) throws -> [ResidualBlock] {
        var count = 0
        while weights["\(prefix)\(count).ln_1.weight"] != nil { count += 1 }
        let heads = max(1, width / 64)
        return try (0..<count).map {
            try ResidualBlock(weights, prefix: "\(prefix)\($0).", heads: heads, precision: precision)
        }
    }

    /// The attention probabilities of the first `queryRows` rows of each sample over all S keys
    /// (no mask: image layers), per head: [n, heads, queryRows, S]. The same ln_1 and projections as
    /// the forward pass (bf16 products in bf16 runs); for pictures, not for training.
    public func attentionProbabilities(_ x: Var, queryRows: Int) -> Tensor {
        let (n, S, d) = (x.shape[0], x.shape[1], x.shape[2])
        let bf16 = outWeight.precision == .bf16
        let h = layerNorm(Var(x.value), ln1.0, ln1.1, bf16Copy: bf16)
        let keys = linear(h, keyValueWeight, keyValueBias).value // [n, S, 2d]: keys, then values
        let queries = linear(sliceTokens(h, 0..<queryRows), queryWeight, queryBias).value // [n, q, d]
        let headDim = d / heads, scale = 1 / Float(headDim).squareRoot()
        let out = Tensor(zeros: [n, heads, queryRows, S])
        for i in 0..<n {
            for hd in 0..<heads {
                for r in 0..<queryRows {
                    let q = queries.data + (i * queryRows + r) * d + hd * headDim
                    let row = out.data + ((i * heads + hd) * queryRows + r) * S
                    for s in 0..<S {
                        let k = keys.data + (i * S + s) * 2 * d + hd * headDim
                        var dot: Float = 0
                        for c in 0..<headDim { dot += q[c] * k[c] }
                        row[s] = dot * scale
                    }
                    var top = -Float.infinity
                    for s in 0..<S { top = max(top, row[s]) }
                    var sum: Float = 0
                    for s in 0..<S { row[s] = expf(row[s] - top); sum += row[s] }
                    for s in 0..<S { row[s] /= sum }
                }
            }
        }
        return out
    }

    /// x: [n, S, d] -> [n, q, d].   causal: text encoder (row j attends to keys 0…j).
    public func callAsFunction(_ x: Var, outputs: OutputRows = .all, causal: Bool = false) -> Var {
        if FusedAttention.enabled {
            // Two ops, each keeping only what its backward reads (and less with runtime.recompute).
            let rows: RowSelection
            switch outputs {
            case .all: rows = .all
            case .prefix(let k): rows = .prefix(k)
            case .onePerSample(let r): rows = .onePerSample(r)
            }
            let mode = x.requiresGrad ? Self.recompute : .none
            let x1 = attentionSublayer(x, attentionWeights, rows: rows, causal: causal, recompute: mode != .none)
            return mlpSublayer(x1, mlpWeights, recompute: mode == .blocks)
        }
        return unfused(x, outputs: outputs, causal: causal)
    }

    /// The block as separate ops, attention keeping its probabilities (CAVPT_DIST_ATTENTION=unfused).
    func unfused(_ x: Var, outputs: OutputRows, causal: Bool) -> Var {
        let (n, S, d) = (x.shape[0], x.shape[1], x.shape[2])
        let bf16 = outWeight.precision == .bf16 // ln_1 also writes its output in bf16
        let h = layerNorm(x, ln1.0, ln1.1, bf16Copy: bf16)
        let keysValues = linear(h, keyValueWeight, keyValueBias) // [n, S, 2d]
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
        let queries = linear(hq, queryWeight, queryBias) // [n, q, d]
        let attended =
            bf16 && BF16Attention.batched
            ? attentionBF16(queries, keysValues, heads: heads, mask: mask)
            : attention(queries, keysValues, heads: heads, mask: mask)
        let x1 = xq + linear(attended, outWeight, outBias)
        // MLP. In bf16 the LayerNorm and QuickGELU outputs exist only as bf16 operands (fused ops).
        let preActivation = layerNormLinear(x1, ln2.0, ln2.1, fcWeight, fcBias)
        return x1 + geluLinear(preActivation, projWeight, projBias)
    }
}

public enum CLIPModelError: Error, CustomStringConvertible {
    case missingWeight(String)
    case shape(String, expected: [Int], found: [Int])
    case input(String)

    public var description: String {
        switch self {
        case .missingWeight(let name): return "missing weight \"\(name)\""
        case .shape(let name, let expected, let found):
            return "weight \"\(name)\" has shape \(found), expected \(expected)"
        case .input(let message): return message
        }
    }
}
