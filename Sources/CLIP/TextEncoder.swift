// CLIP's causal text encoder (DESIGN §1). It runs on the shortest prefix that holds every EOT: with a
// causal mask nothing after the EOT reaches it, so the numbers are identical and the work is less.
// In the last block only the EOT rows are computed, and only they reach ln_final.
//
// K sequences, L tokens, w width, D embedding width.
import Tensor

public struct TextEncoder: Sendable {
    public let width: Int, layers: Int, heads: Int, vocabularySize: Int, contextLength: Int, embedDim: Int
    public let blocks: [ResidualBlock]
    let tokenEmbedding: FrozenMatrix // [V, w]
    let positional: Tensor // [77, w]
    let lnFinal: (Var, Var)
    let projection: FrozenMatrix // [w, D]

    /// The frozen weight matrices (token embedding, projection, every block's), in the run's precision.
    public var matrices: [FrozenMatrix] { [tokenEmbedding, projection] + blocks.flatMap(\.matrices) }

    public init(_ weights: [String: Tensor], precision: Precision = .fp32) throws {
        func w(_ name: String) throws -> Tensor {
            guard let t = weights[name] else { throw CLIPModelError.missingWeight(name) }
            return t
        }
        let table = try w("token_embedding.weight")
        vocabularySize = table.shape[0]
        width = table.shape[1]
        tokenEmbedding = FrozenMatrix(table, precision: precision)
        positional = try w("positional_embedding")
        contextLength = positional.shape[0]
        blocks = try ResidualBlock.stack(weights, prefix: "transformer.resblocks.", width: width, precision: precision)
        heads = blocks.first?.heads ?? max(1, width / 64)
        layers = blocks.count
        let proj = try w("text_projection")
        embedDim = proj.lastDim
        projection = FrozenMatrix(proj, precision: precision)
        lnFinal = (Var(try w("ln_final.weight")), Var(try w("ln_final.bias")))
    }

    /// Position of the EOT token in each sequence: the largest id (DESIGN §1).
    public static func eotPositions(_ tokens: [[Int]]) -> [Int] {
        tokens.map { seq in seq.indices.max { seq[$0] < seq[$1] } ?? 0 }
    }

    /// Token embeddings [K, L, w] of id sequences (all of length L), from the frozen table.
    public func embed(_ tokens: [[Int]], length: Int? = nil) throws -> Tensor {
        let L = length ?? tokens.first?.count ?? 0
        let out = Tensor(uninitialized: [tokens.count, L, width])
        for (k, seq) in tokens.enumerated() {
            for j in 0..<L {
                let id = j < seq.count ? seq[j] : 0
                guard id >= 0 && id < vocabularySize else {
                    throw CLIPModelError.input("token id \(id) is outside the model's vocabulary of \(vocabularySize)")
                }
                let row = out.data + (k * L + j) * width
                switch tokenEmbedding {
                case .fp32(let t): row.update(from: t.data + id * width, count: width)
                case .bf16(let t): widenBF16(t.data + id * width, into: row, count: width)
                }
            }
        }
        return out
    }

    /// Text features [K, D] (unnormalised) from token embeddings [K, L, w] with EOT at `eot[k]`.
    /// Embeddings may carry learned rows (CoOp context); gradients flow back into them.
    public func callAsFunction(embeddings: Var, eot: [Int]) -> Var {
        let K = embeddings.shape[0]
        let used = (eot.max() ?? 0) + 1 // shortest prefix holding every EOT
        var x = sliceTokens(embeddings, 0..<used)
        x = addBroadcast(x, Var(positional.slice(0..<used)))
        for (l, block) in blocks.enumerated() {
            x = block(x, outputs: l == blocks.count - 1 ? .onePerSample(eot) : .all, causal: true)
        }
        let eotRows = reshape(x, [K, width])
        return matmul(layerNorm(eotRows, lnFinal.0, lnFinal.1), projection)
    }

    /// Text features of token id sequences (frozen, e.g. zero-shot templates).
    public func callAsFunction(tokens: [[Int]]) throws -> Var {
        let eot = Self.eotPositions(tokens)
        let used = (eot.max() ?? 0) + 1
        return self(embeddings: Var(try embed(tokens, length: used)), eot: eot)
    }
}
