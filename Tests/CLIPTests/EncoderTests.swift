import Tensor
// Encoder invariances and gradients on tiny random models (PyTorch goldens live in EncoderGoldenTests).
import Testing

@testable import CLIP

private let tiny = try! CLIPModel(tensors: RandomCLIP.make(.tiny(vocabularySize: 1014), seed: 11))

/// The text encoder without any shortcut: all 77 tokens, every row through every block.
private func fullLengthText(_ enc: TextEncoder, tokens: [[Int]]) throws -> Tensor {
    let eot = TextEncoder.eotPositions(tokens)
    var x = addBroadcast(Var(try enc.embed(tokens)), Var(enc.positional))
    for block in enc.blocks { x = block(x, outputs: .all, causal: true) }
    let S = x.shape[1]
    let rows = gatherRows(
        reshape(x, [tokens.count * S, enc.width]), eot.enumerated().map { $0.offset * S + $0.element })
    return matmul(layerNorm(rows, enc.lnFinal.0, enc.lnFinal.1), enc.projection).value
}

/// The image encoder with every row through every block.
private func fullImage(_ enc: ImageEncoder, _ pixels: Tensor) -> Tensor {
    var x = enc.embed(Var(pixels))
    for block in enc.blocks { x = block(x) }
    return enc.head(sliceTokens(x, 0..<1)).value
}

private func maxRelDiff(_ a: Tensor, _ b: Tensor) -> Float {
    var diff: Float = 0, ref: Float = 0
    for i in 0..<a.count { diff = max(diff, abs(a.data[i] - b.data[i])); ref = max(ref, abs(b.data[i])) }
    return diff / max(ref, 1e-12)
}

@Suite struct EncoderInvariances {
    @Test func truncatedTextEqualsFullText() throws {
        var tokens: [[Int]] = []
        for (k, len) in [3, 9, 17, 5].enumerated() {
            var seq = [1012] + (0..<len).map { 100 + ($0 * 37 + k * 11) % 800 } + [1013]
            seq += Array(repeating: 0, count: 77 - seq.count)
            tokens.append(seq)
        }
        let truncated = try tiny.text(tokens: tokens).value
        let full = try fullLengthText(tiny.text, tokens: tokens)
        #expect(truncated.shape == [4, 64])
        #expect(maxRelDiff(truncated, full) < 1e-5)
    }

    @Test func classTokenShortcutEqualsFullImage() {
        let pixels = Tensor.randn([3, 3, 32, 32], seed: 12)
        let fast = tiny.image(Var(pixels)).value
        #expect(maxRelDiff(fast, fullImage(tiny.image, pixels)) < 1e-5)
    }

    @Test func shortcutsSaveGEMMWork() {
        let pixels = Tensor.randn([2, 3, 32, 32], seed: 13)
        let fast = OpCounter(), slow = OpCounter()
        BLAS.$counter.withValue(fast) { _ = tiny.image(Var(pixels)) }
        BLAS.$counter.withValue(slow) { _ = fullImage(tiny.image, pixels) }
        #expect(fast.flops < slow.flops)
    }
}
