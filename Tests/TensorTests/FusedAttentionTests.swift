// The fused attention kernel (DESIGN §3a) against a float64 attention on the tiny model's shapes (values and
// both input gradients, every mask), its forms against each other, and the fused block halves against the
// unfused ops, with and without recomputation.
import Foundation
import Testing

@testable import Tensor

private func r(_ shape: [Int], _ seed: UInt64, std: Float = 1) -> Tensor { .randn(shape, std: std, seed: seed) }

private func relativeError(_ a: Tensor, _ b: [Double]) -> Double {
    var diff = 0.0, ref = 0.0
    for i in 0..<a.count { diff = max(diff, abs(Double(a.data[i]) - b[i])); ref = max(ref, abs(b[i])) }
    return diff / max(ref, 1e-300)
}

private func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
    var diff: Float = 0, ref: Float = 0
    for i in 0..<a.count { diff = max(diff, abs(a.data[i] - b.data[i])); ref = max(ref, abs(b.data[i])) }
    return diff / max(ref, 1e-30)
}

/// Attention and ∂(Σ out ⊙ upstream)/∂q, ∂/∂kv in float64 from the same fp32 inputs.
private func attention64(
    q: Tensor, kv: Tensor, upstream: Tensor, heads h: Int, visible: (Int, Int) -> Int
) -> (out: [Double], dq: [Double], dkv: [Double]) {
    let (n, Sq, d) = (q.shape[0], q.shape[1], q.shape[2]), Sk = kv.shape[1], hd = d / h
    let scale = 1 / Double(hd).squareRoot()
    var out = [Double](repeating: 0, count: q.count), dq = out, dkv = [Double](repeating: 0, count: kv.count)
    func Q(_ s: Int, _ i: Int, _ c: Int) -> Double { Double(q.data[(s * Sq + i) * d + c]) }
    func K(_ s: Int, _ j: Int, _ c: Int) -> Double { Double(kv.data[(s * Sk + j) * 2 * d + c]) }
    func V(_ s: Int, _ j: Int, _ c: Int) -> Double { Double(kv.data[(s * Sk + j) * 2 * d + d + c]) }
    for s in 0..<n {
        for head in 0..<h {
            let c0 = head * hd
            for i in 0..<Sq {
                let v = min(visible(s, i), Sk)
                if v == 0 { continue }
                var p = (0..<v).map { j in (0..<hd).reduce(0.0) { $0 + Q(s, i, c0 + $1) * K(s, j, c0 + $1) } * scale }
                let top = p.max()!
                p = p.map { exp($0 - top) }
                let total = p.reduce(0, +)
                p = p.map { $0 / total }
                let g = (0..<hd).map { Double(upstream.data[(s * Sq + i) * d + c0 + $0]) }
                for c in 0..<hd {
                    out[(s * Sq + i) * d + c0 + c] = (0..<v).reduce(0.0) { $0 + p[$1] * V(s, $1, c0 + c) }
                }
                let dp = (0..<v).map { j in (0..<hd).reduce(0.0) { $0 + g[$1] * V(s, j, c0 + $1) } }
                let D = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
                for j in 0..<v {
                    let ds = p[j] * (dp[j] - D) * scale
                    for c in 0..<hd {
                        dq[(s * Sq + i) * d + c0 + c] += ds * K(s, j, c0 + c)
                        dkv[(s * Sk + j) * 2 * d + c0 + c] += ds * Q(s, i, c0 + c)
                        dkv[(s * Sk + j) * 2 * d + d + c0 + c] += p[j] * g[c]
                    }
                }
            }
        }
    }
    return (out, dq, dkv)
}

/// The tiny model's attention: width 128, 2 heads of 64, 17 image tokens + 10 prompts (or 13 text rows).
private var maskCases: [(String, Int, Int, AttentionMask, @Sendable (Int, Int) -> Int)] {
    [
        ("none", 27, 27, .none, { _, _ in 27 }),
        ("prefix rows (deep prompts)", 17, 27, .none, { _, _ in 27 }),
        ("class row", 1, 27, .none, { _, _ in 27 }),
        ("causal", 13, 13, .causal(offset: 0), { _, i in i + 1 }),
        ("EOT rows", 1, 13, .prefix([5, 13, 1]), { s, _ in [5, 13, 1][s] }),
    ]
}

@Suite struct FusedAttentionValues {
    /// fp32: within 1e-5 of float64 (values and gradients); bf16: within 3e-2 (values) and 1e-1 (gradients).
    @Test(arguments: [false, true])
    func matchesFloat64(_ bf16: Bool) {
        for (name, Sq, Sk, mask, visible) in maskCases {
            let (n, d, h) = (3, 128, 2)
            let q = r([n, Sq, d], 1, std: 1.5), kv = r([n, Sk, 2 * d], 2, std: 1.5), up = r([n, Sq, d], 3)
            let reference = attention64(q: q, kv: kv, upstream: up, heads: h, visible: visible)
            for keyBlock in [0, 16] {
                let (qv, kvv) = (Var(trainable: q), Var(trainable: kv))
                let y = fusedAttention(qv, kvv, heads: h, mask: mask, bf16: bf16, keyBlock: keyBlock)
                sum(y * Var(up)).backward()
                let errors = [
                    relativeError(y.value, reference.out), relativeError(qv.grad!, reference.dq),
                    relativeError(kvv.grad!, reference.dkv),
                ]
                let bars = bf16 ? [3e-2, 1e-1, 1e-1] : [1e-5, 1e-5, 1e-5]
                for (e, bar) in zip(errors, bars) {
                    #expect(e < bar, "\(name), bf16 \(bf16), key block \(keyBlock): errors \(errors)")
                }
                if bf16 { #expect(errors.max()! > 1e-4, "\(name): bf16 errors \(errors) at fp32 level") }
            }
        }
    }

    /// The same as the unfused fp32 attention (per-head sgemms, kept probabilities) to 1e-5.
    @Test func matchesTheUnfusedAttention() {
        for (name, Sq, Sk, mask, _) in maskCases {
            let q = r([2, Sq, 128], 4), kv = r([2, Sk, 256], 5), up = Var(r([2, Sq, 128], 6))
            let a = (Var(trainable: q), Var(trainable: kv)), b = (Var(trainable: q.copy()), Var(trainable: kv.copy()))
            let ya = attention(a.0, a.1, heads: 2, mask: mask), yb = fusedAttention(b.0, b.1, heads: 2, mask: mask)
            sum(ya * up).backward()
            sum(yb * up).backward()
            let errors = [
                relativeError(yb.value, ya.value), relativeError(b.0.grad!, a.0.grad!),
                relativeError(b.1.grad!, a.1.grad!),
            ]
            #expect(errors.allSatisfy { $0 < 1e-5 }, "\(name): \(errors)")
        }
    }

    /// Every form of the kernel this CPU runs gives the portable 8-lane form's numbers to fp32 rounding
    /// (the forms differ only in how many lanes the two row sums gather). The AVX-512 form is compared
    /// where the CPU has it (CI); here the 16-lane portable form runs its source.
    @Test func kernelFormsAgree() {
        let forms = ["generic8", "generic16", "avx2", "avx512"]
        var results: [String: [Tensor]] = [:]
        for form in forms where FusedAttention.runs(form) {
            for bf16 in [false, true] {
                let q = Var(trainable: r([2, 19, 128], 7)), kv = Var(trainable: r([2, 23, 256], 8))
                let y = fusedAttention(
                    q, kv, heads: 2, mask: .causal(offset: 4), bf16: bf16, keyBlock: 16, form: form)
                sum(y * Var(r([2, 19, 128], 9))).backward()
                results[form + (bf16 ? " bf16" : ""), default: []] = [y.value, q.grad!, kv.grad!]
            }
        }
        #expect(results.count >= 4, "at least the two portable forms run everywhere")
        for (form, outputs) in results {
            let base = results[form.hasSuffix("bf16") ? "generic8 bf16" : "generic8"]!
            for (a, b) in zip(outputs, base) {
                #expect(relativeError(a, b) < (form.hasSuffix("bf16") ? 1e-2 : 1e-5), "\(form)")
            }
        }
    }
}

@Suite struct FusedSublayers {
    static let (n, S, d) = (2, 21, 128)

    static func weights(_ precision: Precision) -> (AttentionWeights, MLPWeights) {
        let d = Self.d
        let attention = AttentionWeights(
            heads: 2, ln: (r([d], 11, std: 0.2), r([d], 12, std: 0.1)),
            query: FrozenMatrix(r([d, d], 13, std: 0.09), precision: precision), queryBias: r([d], 14, std: 0.1),
            keyValue: FrozenMatrix(r([2 * d, d], 15, std: 0.09), precision: precision),
            keyValueBias: r([2 * d], 16, std: 0.1),
            out: FrozenMatrix(r([d, d], 17, std: 0.09), precision: precision), outBias: r([d], 18, std: 0.1))
        let mlp = MLPWeights(
            ln: (r([d], 19, std: 0.2), r([d], 20, std: 0.1)),
            fc: FrozenMatrix(r([4 * d, d], 21, std: 0.09), precision: precision), fcBias: r([4 * d], 22, std: 0.1),
            proj: FrozenMatrix(r([d, 4 * d], 23, std: 0.05), precision: precision), projBias: r([d], 24, std: 0.1))
        return (attention, mlp)
    }

    /// x's gradient and the output through both halves.
    static func run(
        _ precision: Precision, rows: RowSelection, causal: Bool, recompute: Recompute
    ) -> (Tensor, Tensor) {
        let (a, m) = weights(precision)
        let x = Var(trainable: r([n, S, d], 25))
        let x1 = attentionSublayer(x, a, rows: rows, causal: causal, recompute: recompute != .none)
        let y = mlpSublayer(x1, m, recompute: recompute == .blocks)
        sum(y * Var(r(y.shape, 26))).backward()
        return (y.value, x.grad!)
    }

    /// fp32: the fused halves give the unfused ops' block (layerNorm, linear, attention, quickGELU) to 1e-5.
    @Test(arguments: [RowSelection.all, .prefix(17), .onePerSample([3, 20])])
    func fp32MatchesTheUnfusedOps(_ rows: RowSelection) {
        let (a, m) = Self.weights(.fp32)
        let (n, S, d) = (Self.n, Self.S, Self.d)
        let causal = rows != .prefix(17)
        let x = Var(trainable: r([n, S, d], 25))
        let h = layerNorm(x, Var(a.lnWeight), Var(a.lnBias))
        let kv = linear(h, Var(a.keyValue.fp32Tensor!), Var(a.keyValueBias))
        let (hq, xq, mask): (Var, Var, AttentionMask)
        switch rows {
        case .all: (hq, xq, mask) = (h, x, .causal(offset: 0))
        case .prefix(let k): (hq, xq, mask) = (sliceTokens(h, 0..<k), sliceTokens(x, 0..<k), .none)
        case .onePerSample(let rr):
            let flat = rr.enumerated().map { $0.offset * S + $0.element }
            hq = reshape(gatherRows(reshape(h, [n * S, d]), flat), [n, 1, d])
            xq = reshape(gatherRows(reshape(x, [n * S, d]), flat), [n, 1, d])
            mask = .prefix(rr.map { $0 + 1 })
        }
        let qv = linear(hq, Var(a.query.fp32Tensor!), Var(a.queryBias))
        let x1 = xq + linear(attention(qv, kv, heads: 2, mask: mask), Var(a.out.fp32Tensor!), Var(a.outBias))
        let pre = linear(layerNorm(x1, Var(m.lnWeight), Var(m.lnBias)), Var(m.fc.fp32Tensor!), Var(m.fcBias))
        let y = x1 + linear(quickGELU(pre), Var(m.proj.fp32Tensor!), Var(m.projBias))
        sum(y * Var(r(y.shape, 26))).backward()
        let (fy, fdx) = Self.run(.fp32, rows: rows, causal: causal, recompute: .none)
        #expect(relativeError(fy, y.value) < 1e-5 && relativeError(fdx, x.grad!) < 1e-5)
    }

    /// Recomputing in the backward gives the same numbers, bit for bit, in fp32 and bf16.
    @Test(arguments: [Precision.fp32, .bf16])
    func recomputationChangesNoBit(_ precision: Precision) {
        if precision == .bf16 && !OneDNN.bf16Native { setenv("CAVPT_DIST_BF16_EMULATION", "1", 1) }
        for rows in [RowSelection.all, .prefix(17)] {
            let (y0, g0) = Self.run(precision, rows: rows, causal: false, recompute: .none)
            for mode in [Recompute.attention, .blocks] {
                let (y, g) = Self.run(precision, rows: rows, causal: false, recompute: mode)
                #expect((0..<y.count).allSatisfy { y.data[$0] == y0.data[$0] }, "\(precision) \(mode) output")
                #expect((0..<g.count).allSatisfy { g.data[$0] == g0.data[$0] }, "\(precision) \(mode) gradient")
            }
        }
    }
}
