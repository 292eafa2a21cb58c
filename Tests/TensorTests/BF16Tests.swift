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

/// bf16 runs here natively or, on a CPU without bf16 dot products, through oneDNN's emulated bf16 (the
/// same arithmetic, slowly), which these tests turn on for themselves (CAVPT_DIST_BF16_EMULATION=1).
private let hasBF16: Bool = {
    if !OneDNN.bf16Native { setenv("CAVPT_DIST_BF16_EMULATION", "1", 1) }
    return OneDNN.bf16Unsupported == nil
}()

@Suite struct BF16Rounding {
    @Test func roundsToNearestEven() {
        // 1 + 2^-8 lies halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to the even one (1).
        #expect(bf16Bits(Float(1)) == 0x3F80)
        #expect(bf16Bits(Float(1) + 0x1p-8) == 0x3F80)
        #expect(bf16Bits(Float(1) + 0x1p-8 + 0x1p-20) == 0x3F81)
        #expect(bf16Bits(Float(1) + 3 * 0x1p-8) == 0x3F82) // halfway above an odd one: up
        #expect(bf16Bits(-Float(2)) == 0xC000)
        #expect(bf16Bits(Float.infinity) == 0x7F80)
        #expect(bf16Bits(Float.nan) & 0x7FC0 == 0x7FC0)
        let t = Tensor(shape: [3], values: [0.1, -3.75, 1e-3])
        let back = BF16Tensor(rounding: t).floats()
        for i in 0..<3 { #expect(abs(back.data[i] - t.data[i]) <= abs(t.data[i]) * 0x1p-8) }
        #expect(back.data[1] == -3.75) // exactly representable
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

    /// The AVX-512 conversion (two vectors per instruction, masked tails) writes every element where
    /// the scalar rounding does, with the same bits, for lengths around the vector widths.
    @Test func vectorRoundingMatchesScalarRounding() {
        for n in [1, 15, 16, 17, 31, 32, 33, 47, 100, 1000, 70_001] {
            let t = r([n], UInt64(n), std: 3)
            let b = BF16Tensor(rounding: t)
            withExtendedLifetime(b) {
                let mismatches = (0..<n).filter { b.data[$0] != bf16Bits(t.data[$0]) }
                #expect(mismatches.isEmpty, "n \(n): elements \(mismatches.prefix(5))")
            }
        }
    }

    /// QuickGELU → c_proj and ln_2 → c_fc fused in bf16 (AVX-512 kernels) against the unfused fp32
    /// ops: values and input gradients; and the gradient's bf16 copy is dropped once more is added.
    @Test func fusedMLPOpsMatchFP32() {
        let x = r([9, 72], 11), w = r([40, 72], 12, std: 0.2), b = r([40], 13), probe = r([9, 40], 14)
        let gamma = r([72], 15), beta = r([72], 16)
        for fused in ["gelu", "layerNorm"] {
            let xs = (Var(trainable: x), Var(trainable: x.copy()))
            let reference =
                fused == "gelu"
                ? linear(quickGELU(xs.0), Var(w), Var(b))
                : linear(layerNorm(xs.0, Var(gamma), Var(beta)), Var(w), Var(b))
            let wb = FrozenMatrix(w, precision: .bf16)
            let y =
                fused == "gelu"
                ? geluLinear(xs.1, wb, Var(b)) : layerNormLinear(xs.1, Var(gamma), Var(beta), wb, Var(b))
            sum(reference * Var(probe)).backward()
            sum(y * Var(probe)).backward()
            let (ey, edx) = (relativeError(y.value, reference.value), relativeError(xs.1.grad!, xs.0.grad!))
            #expect(ey < 2e-2 && ey > 1e-5, "\(fused) forward \(ey)")
            #expect(edx < 3e-2 && edx > 1e-5, "\(fused) dx \(edx)")
        }
        // LayerNorm with its bf16 copy: the fp32 output and input gradient are the fp32 op's to rounding.
        let xs = (Var(trainable: x), Var(trainable: x.copy()))
        let plain = layerNorm(xs.0, Var(gamma), Var(beta)),
            copied = layerNorm(xs.1, Var(gamma), Var(beta), bf16Copy: true)
        sum(plain * plain).backward()
        sum(copied * copied).backward()
        #expect(relativeError(copied.value, plain.value) < 1e-5)
        #expect(relativeError(xs.1.grad!, xs.0.grad!) < 1e-4)
        let shadow = copied.value.bf16Rounded()
        withExtendedLifetime(shadow) { #expect(shadow.data[3] == bf16Bits(copied.value.data[3])) }
        // A gradient written with its bf16 copy loses the copy when another gradient is added to it.
        let v = Var(trainable: Tensor(zeros: [4]))
        v.accumulate(Tensor(shape: [4], values: [1, 2, 3, 4]))
        v.accumulate(Tensor(shape: [4], values: [1, 1, 1, 1])) // now a buffer of its own: [2, 3, 4, 5]
        let copy = v.grad!.attachBF16()
        for i in 0..<4 { copy[i] = bf16Bits(v.grad!.data[i]) }
        v.accumulate(Tensor(shape: [4], values: [1, 1, 1, 1])) // [3, 4, 5, 6]: the copy is stale
        #expect(v.grad!.data[0] == 3)
        let rounded = v.grad!.bf16Rounded()
        withExtendedLifetime(rounded) { #expect(rounded.data[0] == bf16Bits(Float(3))) }
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
        let mask: AttentionMask =
            maskKind == "none"
            ? .none : maskKind == "causal" ? .causal(offset: Sk - Sq) : .prefix([1, 3, 6, 2, 5, 4, 6, 6, 1, 2, 3, 4])
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
        let errors = [
            relativeError(y.value, reference.value), relativeError(b.0.grad!, a.0.grad!),
            relativeError(b.1.grad!, a.1.grad!),
        ]
        for e in errors { #expect(e < 3e-2 && e > 1e-6, "\(maskKind): errors \(errors)") }
    }

    @Test func primitivesAreCreatedOncePerShape() {
        let x = Var(r([9, 17], 12)), w = FrozenMatrix(r([8, 17], 13), precision: .bf16)
        for _ in 0..<4 { _ = linear(x, w) }
        #expect(OneDNN.creations(forwardM: 9, n: 8, k: 17, bias: false) == 1, "four calls, one primitive")
    }
}
