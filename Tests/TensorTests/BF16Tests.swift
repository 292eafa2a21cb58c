// runtime.precision bf16 at the op level: rounding, frozen-weight products and attention through
// oneDNN against the fp32 ops on the same inputs (values and input gradients), and their counting.
import Foundation
import Testing
@testable import Tensor

private func r(_ shape: [Int], _ seed: UInt64, std: Float = 1) -> Tensor { .randn(shape, std: std, seed: seed) }

private func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
    var diff: Float = 0, ref: Float = 0
    for i in 0..<a.count { diff = max(diff, abs(a.data[i] - b.data[i])); ref = max(ref, abs(b.data[i])) }
    return diff / max(ref, 1e-30)
}

private let hasBF16 = OneDNN.bf16Unsupported == nil

@Suite struct BF16Rounding {
    @Test func roundsToNearestEven() {
        // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
        #expect(bf16Bits(Float(1)) == 0x3F80)
        #expect(bf16Bits(Float(1) + 0x1p-8) == 0x3F80)
        #expect(bf16Bits(Float(1) + 0x1p-8 + 0x1p-20) == 0x3F81)
        #expect(bf16Bits(Float(1) + 3 * 0x1p-8) == 0x3F82)   // halfway above an odd one: up
        #expect(bf16Bits(-Float(2)) == 0xC000)
        #expect(bf16Bits(Float.infinity) == 0x7F80)
        #expect(bf16Bits(Float.nan) & 0x7FC0 == 0x7FC0)
        let t = Tensor(shape: [3], values: [0.1, -3.75, 1e-3])
        let back = BF16Tensor(rounding: t).floats()
        for i in 0..<3 { #expect(abs(back.data[i] - t.data[i]) <= abs(t.data[i]) * 0x1p-8) }
        #expect(back.data[1] == -3.75)   // exactly representable
    }
}

@Suite(.enabled(if: hasBF16, "this CPU has no bf16 dot products")) struct BF16Products {
    @Test func frozenLinearMatchesFP32() {
        let x = r([7, 48], 1), w = r([40, 48], 2, std: 0.2), b = r([40], 3)
        let xs = (Var(trainable: x), Var(trainable: x.copy()))
        let reference = linear(xs.0, Var(w), Var(b))
        let counter = OpCounter()
        let y = BLAS.$counter.withValue(counter) { () -> Var in
            let y = linear(xs.1, FrozenMatrix(w, precision: .bf16), Var(b))
            sum(y * Var(r([7, 40], 4))).backward()
            return y
        }
        sum(reference * Var(r([7, 40], 4))).backward()
        #expect(counter.bf16GEMMs == 2, "forward and dx are bf16 products")
        #expect(counter.gemms == 0, "no sgemm with a bf16 weight")
        let (ey, edx) = (relativeError(y.value, reference.value), relativeError(xs.1.grad!, xs.0.grad!))
        #expect(ey < 1e-2 && ey > 1e-5, "forward \(ey)")
        #expect(edx < 1e-2 && edx > 1e-5, "dx \(edx)")
    }

    @Test func frozenProjectionMatchesFP32() {
        let x = r([5, 24], 5), p = r([24, 16], 6)
        let xs = (Var(trainable: x), Var(trainable: x.copy()))
        let reference = matmul(xs.0, Var(p))
        let y = matmul(xs.1, FrozenMatrix(p, precision: .bf16))
        sum(reference * reference).backward()
        sum(y * y).backward()
        #expect(relativeError(y.value, reference.value) < 1e-2)
        #expect(relativeError(xs.1.grad!, xs.0.grad!) < 2e-2)
    }

    @Test func patchEmbeddingMatchesFP32() {
        let pixels = r([2, 3, 8, 8], 7), w = r([6, 3, 4, 4], 8, std: 0.3)
        let px = (Var(trainable: pixels), Var(trainable: pixels.copy()))
        let reference = patchEmbed(px.0, Var(w)), y = patchEmbed(px.1, FrozenMatrix(w, precision: .bf16))
        sum(reference * reference).backward()
        sum(y * y).backward()
        #expect(relativeError(y.value, reference.value) < 1e-2)
        #expect(relativeError(px.1.grad!, px.0.grad!) < 2e-2)
    }

    @Test(arguments: ["none", "causal", "prefix"])
    func attentionMatchesFP32(_ maskKind: String) {
        let (n, Sq, Sk, d, h) = (3, 4, 6, 32, 4)
        let mask: AttentionMask = maskKind == "none" ? .none : maskKind == "causal" ? .causal(offset: Sk - Sq) : .prefix([1, 3, 6, 2, 5, 4, 6, 6, 1, 2, 3, 4])
        let q = r([n, Sq, d], 9), kv = r([n, Sk, 2 * d], 10)
        let upstream = Var(r([n, Sq, d], 11))
        let a = (Var(trainable: q), Var(trainable: kv)), b = (Var(trainable: q.copy()), Var(trainable: kv.copy()))
        let reference = attention(a.0, a.1, heads: h, mask: mask)
        sum(reference * upstream).backward()
        let counter = OpCounter()
        let y = BLAS.$counter.withValue(counter) { () -> Var in
            let y = attentionBF16(b.0, b.1, heads: h, mask: mask)
            sum(y * upstream).backward()
            return y
        }
        #expect(counter.bf16SmallGEMMs == 6, "2 batched products forward, 4 backward")
        #expect(counter.gemms == 0)
        let errors = [relativeError(y.value, reference.value), relativeError(b.0.grad!, a.0.grad!),
                      relativeError(b.1.grad!, a.1.grad!)]
        for e in errors { #expect(e < 3e-2 && e > 1e-6, "\(maskKind): errors \(errors)") }
    }

    @Test func primitivesAreCreatedOncePerShape() {
        let x = Var(r([9, 17], 12)), w = FrozenMatrix(r([8, 17], 13), precision: .bf16)
        for _ in 0..<4 { _ = linear(x, w) }
        #expect(OneDNN.creations(forwardM: 9, n: 8, k: 17, bias: false) == 1, "four calls, one primitive")
    }
}
