// Matrix products with their backward passes: linear layers (frozen or trained weights),
// plain and batched matrix multiplication. Every product is one cblas_sgemm call.
//
// n rows, i input width, o output width.

/// y = x Wᵀ + b.   x: [..., i]  W: [o, i]  b: [o]  ->  y: [..., o]
/// A frozen W (requiresGrad == false) costs exactly one GEMM in backward (dx); dW is never formed.
public func linear(_ x: Var, _ w: Var, _ b: Var? = nil) -> Var {
    let n = x.value.rows, i = x.value.lastDim, o = w.value.shape[0]
    precondition(w.value.lastDim == i, "linear: input width \(i) vs weight \(w.value.shape)")
    var outShape = x.value.shape
    outShape[outShape.count - 1] = o
    let y = Tensor(uninitialized: outShape)
    if let b {
        // Preload the bias rows and let the GEMM accumulate onto them (beta = 1).
        let (py, pb) = (y.data, b.value.data)
        Parallel.chunks(n, grain: max(1, (1 << 16) / o)) { rows in
            for r in rows { (py + r * o).update(from: pb, count: o) }
        }
    }
    BLAS.gemm(
        transB: true, m: n, n: o, k: i, a: x.value.data, lda: i, b: w.value.data, ldb: i,
        beta: b == nil ? 0 : 1, c: y.data, ldc: o)
    let inputs = b.map { [x, w, $0] } ?? [x, w]
    return Var.op(y, inputs) { dy in
        if x.requiresGrad { // dx = dy W        [n, o] · [o, i]
            let dx = Tensor(uninitialized: x.value.shape)
            BLAS.gemm(m: n, n: i, k: o, a: dy.data, lda: o, b: w.value.data, ldb: i, c: dx.data, ldc: i)
            x.accumulate(dx)
        }
        if w.requiresGrad { // dW = dyᵀ x       [o, n] · [n, i]
            let dw = Tensor(uninitialized: w.value.shape)
            BLAS.gemm(
                transA: true, m: o, n: i, k: n, a: dy.data, lda: o, b: x.value.data, ldb: i,
                c: dw.data, ldc: i)
            w.accumulate(dw)
        }
        if let b, b.requiresGrad { // db = Σ_rows dy
            b.accumulate(sumRows(dy, rows: n, width: o))
        }
    }
}

/// C = A B (or with transposes) for 2-D A and B.
public func matmul(_ a: Var, _ b: Var, transA: Bool = false, transB: Bool = false) -> Var {
    let c = a.value.matmul(b.value, transA: transA, transB: transB)
    return Var.op(c, [a, b]) { dc in
        // Shapes as stored: A [ar, ac], B [br, bc], C [m, n].
        let (ar, ac) = (a.value.rows, a.value.lastDim), (br, bc) = (b.value.rows, b.value.lastDim)
        let n = c.lastDim
        if a.requiresGrad {
            let da = Tensor(uninitialized: a.value.shape)
            if transA { // A [k, m]: dA = op(B) dCᵀ
                BLAS.gemm(
                    transA: transB, transB: true, m: ar, n: ac, k: n,
                    a: b.value.data, lda: bc, b: dc.data, ldb: n, c: da.data, ldc: ac)
            } else { // A [m, k]: dA = dC op(B)ᵀ
                BLAS.gemm(
                    transB: !transB, m: ar, n: ac, k: n,
                    a: dc.data, lda: n, b: b.value.data, ldb: bc, c: da.data, ldc: ac)
            }
            a.accumulate(da)
        }
        if b.requiresGrad {
            let db = Tensor(uninitialized: b.value.shape)
            let m = c.rows
            if transB { // B [n, k]: dB = dCᵀ op(A)
                BLAS.gemm(
                    transA: true, transB: transA, m: br, n: bc, k: m,
                    a: dc.data, lda: n, b: a.value.data, ldb: ac, c: db.data, ldc: bc)
            } else { // B [k, n]: dB = op(A)ᵀ dC
                BLAS.gemm(
                    transA: !transA, m: br, n: bc, k: m,
                    a: a.value.data, lda: ac, b: dc.data, ldb: n, c: db.data, ldc: bc)
            }
            b.accumulate(db)
        }
    }
}

/// Batched C_s = A_s op(B_s) over a leading axis.   A: [s, m, k]  B: [s, k, n] (or [s, n, k] with transB)
public func bmm(_ a: Var, _ b: Var, transB: Bool = false) -> Var {
    let (s, m, k) = (a.value.shape[0], a.value.shape[1], a.value.shape[2])
    precondition(b.value.shape[0] == s, "bmm: batch sizes \(a.value.shape) vs \(b.value.shape)")
    let n = transB ? b.value.shape[1] : b.value.shape[2]
    let bk = transB ? b.value.shape[2] : b.value.shape[1]
    precondition(bk == k, "bmm: inner sizes \(a.value.shape) vs \(b.value.shape)")
    let ldb = b.value.shape[2]
    let c = Tensor(uninitialized: [s, m, n])
    BLAS.gemmStridedBatched(
        count: s, transB: transB, m: m, n: n, k: k,
        a: a.value.data, lda: k, strideA: m * k,
        b: b.value.data, ldb: ldb, strideB: k * n,
        c: c.data, ldc: n, strideC: m * n)
    return Var.op(c, [a, b]) { dc in
        if a.requiresGrad { // dA_s = dC_s op(B_s)ᵀ
            let da = Tensor(uninitialized: a.value.shape)
            BLAS.gemmStridedBatched(
                count: s, transB: !transB, m: m, n: k, k: n,
                a: dc.data, lda: n, strideA: m * n,
                b: b.value.data, ldb: ldb, strideB: k * n,
                c: da.data, ldc: k, strideC: m * k)
            a.accumulate(da)
        }
        if b.requiresGrad {
            let db = Tensor(uninitialized: b.value.shape)
            if transB { // B_s [n, k]: dB_s = dC_sᵀ A_s
                BLAS.gemmStridedBatched(
                    count: s, transA: true, m: n, n: k, k: m,
                    a: dc.data, lda: n, strideA: m * n,
                    b: a.value.data, ldb: k, strideB: m * k,
                    c: db.data, ldc: k, strideC: k * n)
            } else { // B_s [k, n]: dB_s = A_sᵀ dC_s
                BLAS.gemmStridedBatched(
                    count: s, transA: true, m: k, n: n, k: m,
                    a: a.value.data, lda: k, strideA: m * k,
                    b: dc.data, ldb: n, strideB: m * n,
                    c: db.data, ldc: n, strideC: k * n)
            }
            b.accumulate(db)
        }
    }
}

/// Σ over rows of a [rows, width] buffer -> [width].
func sumRows(_ t: Tensor, rows: Int, width: Int) -> Tensor {
    let out = Tensor(zeros: [width])
    let o = out.data, src = t.data
    for r in 0..<rows {
        let row = src + r * width
        for j in 0..<width { o[j] += row[j] }
    }
    return out
}
