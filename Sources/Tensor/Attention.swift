// Softmax with an additive mask, and CLIP's multi-head attention as one op whose heads are
// strided views of packed buffers (no transposes, no copies), each product one sgemm.
//
// n samples, Sq query rows, Sk key rows, d width, h heads, hd = d / h.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Softmax over the last axis of x + mask. mask: [Sq, Sk] added to every [.., Sq, Sk] slice
/// (−∞ entries get probability 0), e.g. the causal mask; nil for none.
public func softmax(_ x: Var, mask: Tensor? = nil) -> Var {
    let k = x.value.lastDim, n = x.value.rows
    let y = Tensor(uninitialized: x.value.shape)
    let (px, py) = (x.value.data, y.data)
    let maskRows = mask?.rows ?? 1
    for r in 0..<n {
        let src = px + r * k, dst = py + r * k
        if let mask {
            let m = mask.data + (r % maskRows) * k
            for j in 0..<k { dst[j] = src[j] + m[j] }
        } else {
            dst.update(from: src, count: k)
        }
        softmaxRowInPlace(dst, count: k)
    }
    return Var.op(y, [x]) { dy in
        let dx = Tensor(uninitialized: x.value.shape)
        let py = y.data
        for r in 0..<n { softmaxBackwardRow(y: py + r * k, dy: dy.data + r * k, dx: dx.data + r * k, count: k) }
        x.accumulate(dx)
    }
}

/// The causal mask for S tokens: 0 on and below the diagonal, −∞ above.
public func causalMask(_ S: Int) -> Tensor {
    let m = Tensor(zeros: [S, S])
    for i in 0..<S { for j in (i + 1)..<max(S, i + 1) { m.data[i * S + j] = -.infinity } }
    return m
}

@inline(__always) func softmaxRowInPlace(_ row: UnsafeMutablePointer<Float>, count k: Int) {
    var mx = -Float.infinity
    for j in 0..<k where row[j] > mx { mx = row[j] }
    if mx == -.infinity {
        // A fully masked row attends to nothing; a NaN row (NaN compares false above) stays NaN, so
        // a diverged state reaches the loss and the divergence guard instead of turning into zeros.
        var nan = false
        for j in 0..<k where row[j].isNaN { nan = true }
        row.update(repeating: nan ? .nan : 0, count: k)
        return
    }
    var total: Float = 0
    for j in 0..<k { let e = fastExp(row[j] - mx); row[j] = e; total += e }
    let inv = 1 / total
    for j in 0..<k { row[j] *= inv }
}

/// dx = y ⊙ (dy − Σ dy ⊙ y)
@inline(__always) func softmaxBackwardRow(
    y: UnsafePointer<Float>, dy: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>, count k: Int
) {
    var dot: Float = 0
    for j in 0..<k { dot += dy[j] * y[j] }
    for j in 0..<k { dx[j] = y[j] * (dy[j] - dot) }
}

/// Which keys each query row may see.
public enum AttentionMask: Sendable {
    /// Every key.
    case none
    /// Query row j of every sample sees keys 0 … j + offset (the text encoder's causal mask;
    /// offset > 0 when the query rows are a suffix of the sequence).
    case causal(offset: Int)
    /// Query row j of sample s sees keys 0 ..< visible[s · Sq + j].
    case prefix([Int])

    @inline(__always) func visibleKeys(sample s: Int, row j: Int, queries Sq: Int, keys Sk: Int) -> Int {
        switch self {
        case .none: return Sk
        case .causal(let offset): return min(Sk, j + offset + 1)
        case .prefix(let visible): return min(Sk, visible[s * Sq + j])
        }
    }
}

/// Multi-head scaled dot-product attention.
///   q: [n, Sq, d]   kv: [n, Sk, 2d] (keys in columns 0..<d, values in d..<2d)  ->  [n, Sq, d]
/// Queries and keys/values come separately so a caller can project queries only for the rows whose
/// outputs it needs (DESIGN §3 "exact shortcuts"), while every row still serves as key and value.
public func attention(_ q: Var, _ kv: Var, heads h: Int, mask: AttentionMask = .none) -> Var {
    let (n, Sq, d) = (q.value.shape[0], q.value.shape[1], q.value.shape[2])
    let Sk = kv.value.shape[1]
    precondition(
        kv.value.shape[0] == n && kv.value.shape[2] == 2 * d && d % h == 0,
        "attention: q \(q.shape), kv \(kv.shape), heads \(h)")
    let hd = d / h
    let scale = 1 / sqrtf(Float(hd))
    let (pq, pkv) = (q.value.data, kv.value.data)
    // probs [n, h, Sq, Sk]: scores, then softmax in place; kept for backward.
    let probs = Tensor(uninitialized: [n, h, Sq, Sk])
    let out = Tensor(uninitialized: [n, Sq, d])
    for s in 0..<n {
        // One sample's heads are h products with strides hd (columns) inside the packed rows.
        let qs = pq + s * Sq * d, ks = pkv + s * Sk * 2 * d, vs = ks + d
        let ps = probs.data + s * h * Sq * Sk
        BLAS.gemmStridedBatched(
            count: h, transB: true, m: Sq, n: Sk, k: hd, alpha: scale,
            a: qs, lda: d, strideA: hd, b: ks, ldb: 2 * d, strideB: hd,
            c: ps, ldc: Sk, strideC: Sq * Sk)
        for head in 0..<h {
            for j in 0..<Sq {
                let row = ps + (head * Sq + j) * Sk
                let visible = mask.visibleKeys(sample: s, row: j, queries: Sq, keys: Sk)
                softmaxRowInPlace(row, count: visible)
                if visible < Sk { (row + visible).update(repeating: 0, count: Sk - visible) }
            }
        }
        BLAS.gemmStridedBatched(
            count: h, m: Sq, n: hd, k: Sk,
            a: ps, lda: Sk, strideA: Sq * Sk, b: vs, ldb: 2 * d, strideB: hd,
            c: out.data + s * Sq * d, ldc: d, strideC: hd)
    }
    return Var.op(out, [q, kv]) { dout in
        let (pq, pkv) = (q.value.data, kv.value.data)
        let dq = q.requiresGrad ? Tensor(uninitialized: q.value.shape) : nil
        let dkv = kv.requiresGrad ? Tensor(uninitialized: kv.value.shape) : nil
        let dscores = Tensor(uninitialized: [h, Sq, Sk]) // reused per sample
        let pds = dscores.data
        for s in 0..<n {
            let qs = pq + s * Sq * d, ks = pkv + s * Sk * 2 * d, vs = ks + d
            let ps = probs.data + s * h * Sq * Sk
            let dos = dout.data + s * Sq * d
            // dP = dO Vᵀ
            BLAS.gemmStridedBatched(
                count: h, transB: true, m: Sq, n: Sk, k: hd,
                a: dos, lda: d, strideA: hd, b: vs, ldb: 2 * d, strideB: hd,
                c: pds, ldc: Sk, strideC: Sq * Sk)
            if let dkv { // dV = Pᵀ dO
                BLAS.gemmStridedBatched(
                    count: h, transA: true, m: Sk, n: hd, k: Sq,
                    a: ps, lda: Sk, strideA: Sq * Sk, b: dos, ldb: d, strideB: hd,
                    c: dkv.data + s * Sk * 2 * d + d, ldc: 2 * d, strideC: hd)
            }
            // dS = P ⊙ (dP − Σ dP ⊙ P) · scale   (masked entries have P = 0, so dS = 0)
            for r in 0..<(h * Sq) {
                let p = ps + r * Sk, g = pds + r * Sk
                var dot: Float = 0
                for j in 0..<Sk { dot += g[j] * p[j] }
                for j in 0..<Sk { g[j] = p[j] * (g[j] - dot) * scale }
            }
            if let dq { // dQ = dS K
                BLAS.gemmStridedBatched(
                    count: h, m: Sq, n: hd, k: Sk,
                    a: pds, lda: Sk, strideA: Sq * Sk, b: ks, ldb: 2 * d, strideB: hd,
                    c: dq.data + s * Sq * d, ldc: d, strideC: hd)
            }
            if let dkv { // dK = dSᵀ Q
                BLAS.gemmStridedBatched(
                    count: h, transA: true, m: Sk, n: hd, k: Sq,
                    a: pds, lda: Sk, strideA: Sq * Sk, b: qs, ldb: d, strideB: hd,
                    c: dkv.data + s * Sk * 2 * d, ldc: 2 * d, strideC: hd)
            }
        }
        if let dq { q.accumulate(dq) }
        if let dkv { kv.accumulate(dkv) }
    }
}
