// CLIP's ViT image encoder (DESIGN §1): patch conv, class token, positional embedding, ln_pre,
// L residual blocks, ln_post on the class token, projection. The embedding, the blocks and the
// head are exposed separately so prompt methods can insert tokens between blocks.
//
// n images, R resolution, p patch, g = R/p grid, T = 1 + g² tokens, d width, D embedding width.
import Tensor

public struct ImageEncoder: Sendable {
    public let width: Int, layers: Int, heads: Int, patch: Int, resolution: Int, embedDim: Int
    public let blocks: [ResidualBlock]
    let conv: FrozenMatrix // [d, 3, p, p]
    let classEmbedding: Var // [d]
    let positional: Var // [T, d]
    let lnPre: (Var, Var), lnPost: (Var, Var)
    let projection: FrozenMatrix // [d, D]

    /// The frozen weight matrices (patch conv, projection, every block's), in the run's precision.
    public var matrices: [FrozenMatrix] { [conv, projection] + blocks.flatMap(\.matrices) }

    public var tokens: Int { 1 + (resolution / patch) * (resolution / patch) }

    public init(_ weights: [String: Tensor], precision: Precision = .fp32) throws {
        func w(_ name: String) throws -> Tensor {
            guard let t = weights["visual." + name] else { throw CLIPModelError.missingWeight("visual." + name) }
            return t
        }
        let convWeight = try w("conv1.weight")
        width = convWeight.shape[0]
        patch = convWeight.shape[2]
        let pos = try w("positional_embedding")
        let grid = Int(Double(pos.shape[0] - 1).squareRoot().rounded())
        resolution = grid * patch
        blocks = try ResidualBlock.stack(
            weights, prefix: "visual.transformer.resblocks.", width: width, precision: precision)
        heads = blocks.first?.heads ?? max(1, width / 64)
        layers = blocks.count
        let proj = try w("proj")
        embedDim = proj.lastDim
        conv = FrozenMatrix(convWeight, precision: precision)
        classEmbedding = Var(try w("class_embedding"))
        positional = Var(pos)
        lnPre = (Var(try w("ln_pre.weight")), Var(try w("ln_pre.bias")))
        lnPost = (Var(try w("ln_post.weight")), Var(try w("ln_post.bias")))
        projection = FrozenMatrix(proj, precision: precision)
    }

    /// pixels [n, 3, R, R] -> tokens after ln_pre [n, T, d] (the residual stream entering block 0).
    public func embed(_ pixels: Var) -> Var {
        let n = pixels.shape[0]
        let patches = patchEmbed(pixels, conv) // [n, g², d]
        let tokens = concatTokens([reshape(classEmbedding, [1, width]), patches], samples: n)
        return layerNorm(addBroadcast(tokens, positional), lnPre.0, lnPre.1)
    }

    /// Class-token rows [n, d] (or [n, 1, d]) after the last block -> image features [n, D].
    public func head(_ classTokens: Var) -> Var {
        let x = reshape(classTokens, [classTokens.value.rows, width])
        return matmul(layerNorm(x, lnPost.0, lnPost.1), projection)
    }

    /// The plain (prompt-free) encoder: pixels [n, 3, R, R] -> features [n, D], unnormalised.
    public func callAsFunction(_ pixels: Var) -> Var {
        var x = embed(pixels)
        for (l, block) in blocks.enumerated() {
            // Only the class token leaves the last block.
            x = block(x, outputs: l == blocks.count - 1 ? .prefix(1) : .all)
        }
        return head(x)
    }
}
