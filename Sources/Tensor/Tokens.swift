// Token-axis plumbing: concatenation and slicing of token sequences, row gathers (embedding
// lookup, EOT pooling, top-K selection) and the patch embedding.
//
// n samples, S tokens, d width.

/// Concatenates token sequences along the token axis. Each part is [n, S_i, d], or [S_i, d] to be
/// shared by every sample (visual prompts); a shared part's gradient sums over the samples.
public func concatTokens(_ parts: [Var], samples n: Int) -> Var {
    let d = parts[0].value.lastDim
    let lengths = parts.map { $0.value.rank == 2 ? $0.value.shape[0] : $0.value.shape[1] }
    for (p, _) in zip(parts, lengths) {
        precondition(
            p.value.lastDim == d && (p.value.rank == 2 || p.value.shape[0] == n),
            "concatTokens: part \(p.shape) does not fit [\(n), S, \(d)]")
    }
    let total = lengths.reduce(0, +)
    let y = Tensor(uninitialized: [n, total, d])
    var start = 0
    for (p, len) in zip(parts, lengths) {
        let shared = p.value.rank == 2
        for s in 0..<n {
            let src = p.value.data + (shared ? 0 : s * len * d)
            (y.data + (s * total + start) * d).update(from: src, count: len * d)
        }
        start += len
    }
    return Var.op(y, parts) { dy in
        var start = 0
        for (p, len) in zip(parts, lengths) {
            defer { start += len }
            guard p.requiresGrad else { continue }
            let shared = p.value.rank == 2
            let dp = shared ? Tensor(zeros: p.value.shape) : Tensor(uninitialized: p.value.shape)
            for s in 0..<n {
                let src = dy.data + (s * total + start) * d
                if shared {
                    let dst = dp.data
                    for j in 0..<(len * d) { dst[j] += src[j] }
                } else {
                    (dp.data + s * len * d).update(from: src, count: len * d)
                }
            }
            p.accumulate(dp)
        }
    }
}

/// Tokens [range] of every sample: [n, S, d] -> [n, range.count, d].
public func sliceTokens(_ x: Var, _ range: Range<Int>) -> Var {
    let (n, S, d) = (x.value.shape[0], x.value.shape[1], x.value.shape[2])
    precondition(range.lowerBound >= 0 && range.upperBound <= S, "sliceTokens: \(range) outside \(S) tokens")
    let len = range.count
    if range == 0..<S { return x }
    let y = Tensor(uninitialized: [n, len, d])
    for s in 0..<n {
        (y.data + s * len * d).update(from: x.value.data + (s * S + range.lowerBound) * d, count: len * d)
    }
    if let shadow = x.value.storage.bf16 { // the bf16 copy comes along (runtime.precision bf16)
        let (src, dst) = (shadow.base + x.value.offset, y.attachBF16())
        for s in 0..<n { (dst + s * len * d).update(from: src + (s * S + range.lowerBound) * d, count: len * d) }
    }
    return Var.op(y, [x]) { dy in
        let dx = Tensor(zeros: x.value.shape)
        for s in 0..<n {
            (dx.data + (s * S + range.lowerBound) * d).update(from: dy.data + s * len * d, count: len * d)
        }
        x.accumulate(dx)
    }
}

/// Rows `indices` of x viewed as [R, d] -> [indices.count, d]. The backward scatter-adds, so an
/// index may repeat (the same class selected for several images).
public func gatherRows(_ x: Var, _ indices: [Int]) -> Var {
    let d = x.value.lastDim, R = x.value.rows
    let y = Tensor(uninitialized: [indices.count, d])
    for (r, idx) in indices.enumerated() {
        precondition(idx >= 0 && idx < R, "gatherRows: index \(idx) outside \(R) rows")
        (y.data + r * d).update(from: x.value.data + idx * d, count: d)
    }
    return Var.op(y, [x]) { dy in
        let dx = Tensor(zeros: x.value.shape)
        for (r, idx) in indices.enumerated() {
            let dst = dx.data + idx * d, src = dy.data + r * d
            for j in 0..<d { dst[j] += src[j] }
        }
        x.accumulate(dx)
    }
}

/// Patch embedding: a convolution with stride = kernel = p and no bias, as im2col + one GEMM.
///   pixels: [n, C, H, W]  weight: [d, C, p, p]  ->  [n, (H/p)(W/p), d]
public func patchEmbed(_ pixels: Var, _ weight: Var) -> Var {
    let (n, C, H, W) = (pixels.value.shape[0], pixels.value.shape[1], pixels.value.shape[2], pixels.value.shape[3])
    let (d, p) = (weight.value.shape[0], weight.value.shape[2])
    precondition(
        weight.value.shape[1] == C && H % p == 0 && W % p == 0,
        "patchEmbed: pixels \(pixels.shape) vs weight \(weight.shape)")
    let (gh, gw) = (H / p, W / p)
    let patches = n * gh * gw, cols = C * p * p
    let im = Tensor(uninitialized: [patches, cols])
    im2col(pixels.value.data, into: im.data, n: n, C: C, H: H, W: W, p: p)
    let y = Tensor(uninitialized: [n, gh * gw, d])
    BLAS.gemm(
        transB: true, m: patches, n: d, k: cols, a: im.data, lda: cols,
        b: weight.value.data, ldb: cols, c: y.data, ldc: d)
    return Var.op(y, [pixels, weight]) { dy in
        if pixels.requiresGrad {
            let dim = Tensor(uninitialized: [patches, cols])
            BLAS.gemm(
                m: patches, n: cols, k: d, a: dy.data, lda: d, b: weight.value.data, ldb: cols,
                c: dim.data, ldc: cols)
            let dx = Tensor(zeros: pixels.value.shape)
            col2im(dim.data, into: dx.data, n: n, C: C, H: H, W: W, p: p)
            pixels.accumulate(dx)
        }
        if weight.requiresGrad {
            let dw = Tensor(uninitialized: weight.value.shape)
            BLAS.gemm(
                transA: true, m: d, n: cols, k: patches, a: dy.data, lda: d, b: im.data, ldb: cols,
                c: dw.data, ldc: cols)
            weight.accumulate(dw)
        }
    }
}

/// Rows are patches in raster order; columns follow the weight's (c, ky, kx) layout.
func im2col(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, n: Int, C: Int, H: Int, W: Int, p: Int) {
    let (gh, gw) = (H / p, W / p), cols = C * p * p
    for s in 0..<n {
        for py in 0..<gh {
            for px in 0..<gw {
                let row = out + ((s * gh + py) * gw + px) * cols
                for c in 0..<C {
                    for ky in 0..<p {
                        let src = x + ((s * C + c) * H + py * p + ky) * W + px * p
                        (row + (c * p + ky) * p).update(from: src, count: p)
                    }
                }
            }
        }
    }
}

func col2im(_ cols: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, n: Int, C: Int, H: Int, W: Int, p: Int) {
    let (gh, gw) = (H / p, W / p), width = C * p * p
    for s in 0..<n {
        for py in 0..<gh {
            for px in 0..<gw {
                let row = cols + ((s * gh + py) * gw + px) * width
                for c in 0..<C {
                    for ky in 0..<p {
                        let dst = x + ((s * C + c) * H + py * p + ky) * W + px * p
                        let src = row + (c * p + ky) * p
                        for kx in 0..<p { dst[kx] += src[kx] }
                    }
                }
            }
        }
    }
}

/// Entries [range] along the leading axis (a view; the backward scatters into a zero gradient).
public func sliceLeading(_ x: Var, _ range: Range<Int>) -> Var {
    let y = x.value.slice(range)
    return Var.op(y, [x]) { dy in
        let dx = Tensor(zeros: x.value.shape)
        let inner = x.value.count / max(x.value.shape[0], 1)
        (dx.data + range.lowerBound * inner).update(from: dy.data, count: dy.count)
        x.accumulate(dx)
    }
}
