// Multi-head attention for runtime.precision bf16: each of its four kinds of small products is one
// batched oneDNN matmul over (sample, head) with bf16 operands (heads are strided views of the packed
// rows, as in the fp32 path), instead of n·h separate sgemms. Scores, softmax, the softmax backward
// and every output stay fp32; only the operands of the products are rounded to bf16.
//
// n samples, Sq query rows, Sk key rows, d width, h heads, hd = d / h.
import CDNNL
import CKernels

#if canImport(Glibc)
import Glibc
#endif

extension OneDNN {
    /// C_(s,j) = alpha · A_(s,j) · B_(s,j) over batch (s, j) ∈ n × h. Each operand is given by its
    /// dims' strides: (sample, head, row, column) in elements. A and B bf16, C fp32.
    static func batchedGEMM(
        n: Int, h: Int, m: Int, k: Int, cols: Int, alpha: Float = 1,
        a: UnsafePointer<UInt16>, aStrides: [Int],
        b: UnsafePointer<UInt16>, bStrides: [Int],
        c: UnsafeMutablePointer<Float>, cStrides: [Int]
    ) {
        if n == 0 || m == 0 || cols == 0 { return }
        let key = Key(
            src: [Int64(n), Int64(h), Int64(m), Int64(k)], srcStrides: aStrides.map(Int64.init),
            weights: [Int64(n), Int64(h), Int64(k), Int64(cols)], weightStrides: bStrides.map(Int64.init),
            dst: [Int64(n), Int64(h), Int64(m), Int64(cols)], dstStrides: cStrides.map(Int64.init),
            srcType: dnnl_bf16.rawValue, weightType: dnnl_bf16.rawValue, dstType: dnnl_f32.rawValue,
            bias: false, alpha: alpha, accumulate: false)
        counted(flops: 2 * Double(n * h) * Double(m) * Double(k) * Double(cols), small: true) {
            execute(key, src: a, weights: b, dst: c, bias: nil)
        }
    }
}

/// attention(q, kv, heads:, mask:) with bf16 products (see the file comment); same shapes and masks.
public func attentionBF16(_ q: Var, _ kv: Var, heads h: Int, mask: AttentionMask = .none) -> Var {
    let (n, Sq, d) = (q.value.shape[0], q.value.shape[1], q.value.shape[2])
    let Sk = kv.value.shape[1]
    precondition(
        kv.value.shape[0] == n && kv.value.shape[2] == 2 * d && d % h == 0,
        "attention: q \(q.shape), kv \(kv.shape), heads \(h)")
    let hd = d / h
    let scale = 1 / (Float(hd)).squareRoot()
    let qb = q.value.bf16Rounded(), kvb = kv.value.bf16Rounded()
    // Strides (sample, head, row, column) of the packed operands and of the dense [n, h, Sq, Sk] maps.
    let qStrides = [Sq * d, hd, d, 1]
    let keysT = [Sk * 2 * d, hd, 1, 2 * d] // Kᵀ: [hd, Sk] per head
    let keys = [Sk * 2 * d, hd, 2 * d, 1] // K, V: [Sk, hd] per head
    let maps = [h * Sq * Sk, Sq * Sk, Sk, 1]
    let mapsT = [h * Sq * Sk, Sq * Sk, 1, Sk] // a map read transposed: [Sk, Sq]
    let probs = Tensor(uninitialized: [n, h, Sq, Sk])
    OneDNN.batchedGEMM(
        n: n, h: h, m: Sq, k: hd, cols: Sk, alpha: scale,
        a: qb.data, aStrides: qStrides, b: kvb.data, bStrides: keysT, c: probs.data, cStrides: maps)
    // Softmax per row over the visible keys, fp32 in place; its bf16 rounding feeds P V.
    let pb = BF16Buffer(count: probs.count)
    let (pp, ppb) = (probs.data, pb.data)
    Parallel.chunks(n * h, grain: max(1, 8192 / max(Sq * Sk, 1))) { range in
        for sh in range {
            let s = sh / h
            for j in 0..<Sq {
                let offset = (sh * Sq + j) * Sk
                let visible = mask.visibleKeys(sample: s, row: j, queries: Sq, keys: Sk)
                ck_softmax_row_bf16(pp + offset, visible, Sk, ppb + offset)
            }
        }
    }
    let out = Tensor(uninitialized: [n, Sq, d])
    OneDNN.batchedGEMM(
        n: n, h: h, m: Sq, k: Sk, cols: hd,
        a: pb.data, aStrides: maps, b: kvb.data + d, bStrides: keys, c: out.data, cStrides: qStrides)
    return Var.op(out, [q, kv]) { dout in
        let dob = dout.bf16Rounded()
        // dP = dO Vᵀ
        let dscores = Tensor(uninitialized: [n, h, Sq, Sk])
        OneDNN.batchedGEMM(
            n: n, h: h, m: Sq, k: hd, cols: Sk,
            a: dob.data, aStrides: qStrides, b: kvb.data + d, bStrides: keysT, c: dscores.data, cStrides: maps)
        let dkv = kv.requiresGrad ? Tensor(uninitialized: kv.value.shape) : nil
        if let dkv { // dV = Pᵀ dO
            OneDNN.batchedGEMM(
                n: n, h: h, m: Sk, k: Sq, cols: hd,
                a: pb.data, aStrides: mapsT, b: dob.data, bStrides: qStrides,
                c: dkv.data + d, cStrides: keys)
        }
        // dS = P ⊙ (dP − Σ dP ⊙ P) · scale, fp32; its bf16 rounding feeds dQ and dK.
        let dsb = BF16Buffer(count: dscores.count)
        let (pg, pdsb, pp) = (dscores.data, dsb.data, probs.data)
        Parallel.chunks(n * h * Sq, grain: max(1, 8192 / max(Sk, 1))) { range in
            for r in range { ck_softmax_backward_row_bf16(pp + r * Sk, pg + r * Sk, Sk, scale, pdsb + r * Sk) }
        }
        if q.requiresGrad { // dQ = dS K
            let dq = Tensor(uninitialized: q.value.shape)
            OneDNN.batchedGEMM(
                n: n, h: h, m: Sq, k: Sk, cols: hd,
                a: dsb.data, aStrides: maps, b: kvb.data, bStrides: keys, c: dq.data, cStrides: qStrides)
            q.accumulate(dq)
        }
        if let dkv { // dK = dSᵀ Q
            OneDNN.batchedGEMM(
                n: n, h: h, m: Sk, k: Sq, cols: hd,
                a: dsb.data, aStrides: mapsT, b: qb.data, bStrides: qStrides, c: dkv.data, cStrides: keys)
            kv.accumulate(dkv)
        }
    }
}

public enum BF16Attention {
    /// In bf16, attention's products run as batched bf16 oneDNN matmuls; CAVPT_DIST_BF16_ATTENTION=fp32
    /// keeps them on the fp32 sgemm loop instead (for A/B timing; see README, Precision).
    public static let batched: Bool = {
        #if canImport(Glibc)
        return getenv("CAVPT_DIST_BF16_ATTENTION").map { String(cString: $0) != "fp32" } ?? true
        #else
        return true
        #endif
    }()
}
