// Products with frozen weights: linear layers, the encoders' output projections and the patch
// embedding. An fp32 matrix takes today's sgemm path unchanged; a bf16 matrix (runtime.precision
// bf16) makes forward and the input gradient bf16 × bf16 → fp32 oneDNN matmuls, with the fp32
// activation (or incoming gradient) rounded to bf16 first. No weight gradient is ever formed.
//
// n rows, i input width, o output width.
import CDNNL
import CKernels
import Dispatch

extension OneDNN {
    /// C[m, n] (fp32, row stride ldc) = alpha · A[m, k] · op(B) (+ bias[n]) (+ C when accumulating), with
    /// A bf16 (row stride lda) and B bf16: [k, n] with row stride ldb, or with transB stored as [n, k].
    public static func gemm(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<UInt16>, lda: Int,
        b: UnsafePointer<UInt16>, ldb: Int, transB: Bool,
        bias: UnsafePointer<Float>? = nil, accumulate: Bool = false,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        precondition(k > 0, "bf16 gemm with an empty inner dimension")
        let key = Key(
            src: [Int64(m), Int64(k)], srcStrides: [Int64(lda), 1],
            weights: [Int64(k), Int64(n)],
            weightStrides: transB ? [1, Int64(ldb)] : [Int64(ldb), 1],
            dst: [Int64(m), Int64(n)], dstStrides: [Int64(ldc), 1],
            srcType: dnnl_bf16.rawValue, weightType: dnnl_bf16.rawValue, dstType: dnnl_f32.rawValue,
            bias: bias != nil, alpha: alpha, accumulate: accumulate)
        counted(flops: 2 * Double(m) * Double(n) * Double(k), small: false) {
            execute(key, src: a, weights: b, dst: c, bias: bias.map { UnsafeRawPointer($0) })
        }
    }

    /// Runs `body` as one bf16 product in the task's OpCounter (count, flops, and time when timed).
    @inline(__always)
    static func counted(flops: Double, small: Bool, _ body: () -> Void) {
        guard let counter = BLAS.counter else { body(); return }
        let start = counter.timed ? DispatchTime.now().uptimeNanoseconds : 0
        body()
        let seconds = counter.timed ? Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 : 0
        counter.lock.lock()
        defer { counter.lock.unlock() }
        if small {
            counter.bf16SmallGEMMs += 1; counter.bf16SmallFlops += flops; counter.bf16SmallSeconds += seconds
        } else {
            counter.bf16GEMMs += 1; counter.bf16Flops += flops; counter.bf16Seconds += seconds
        }
    }
}

/// y = x Wᵀ + b with a frozen W [o, i].   x: [..., i]  b: [o]  ->  y: [..., o]
public func linear(_ x: Var, _ w: FrozenMatrix, _ b: Var? = nil) -> Var {
    guard case .bf16(let wb) = w else { return linear(x, Var(w.fp32Tensor!), b) }
    let n = x.value.rows, i = x.value.lastDim, o = wb.shape[0]
    precondition(wb.lastDim == i, "linear: input width \(i) vs weight \(wb.shape)")
    precondition(b.map { !$0.requiresGrad } ?? true, "linear: a bf16 weight's bias is frozen too")
    var outShape = x.value.shape
    outShape[outShape.count - 1] = o
    let y = Tensor(uninitialized: outShape)
    let xb = x.value.bf16Rounded()
    OneDNN.gemm(
        m: n, n: o, k: i, a: xb.data, lda: i, b: wb.data, ldb: i, transB: true,
        bias: b.map { UnsafePointer($0.value.data) }, c: y.data, ldc: o)
    return Var.op(y, [x]) { dy in // dx = dy W     [n, o] · [o, i]
        let dx = Tensor(uninitialized: x.value.shape)
        let g = dy.bf16Rounded()
        OneDNN.gemm(m: n, n: i, k: o, a: g.data, lda: o, b: wb.data, ldb: i, transB: false, c: dx.data, ldc: i)
        x.accumulate(dx)
    }
}

/// y = x P with a frozen P [i, o] (the encoders' output projections).   x: [n, i]  ->  [n, o]
public func matmul(_ x: Var, _ p: FrozenMatrix) -> Var {
    guard case .bf16(let pb) = p else { return matmul(x, Var(p.fp32Tensor!)) }
    let n = x.value.rows, i = x.value.lastDim, o = pb.lastDim
    precondition(pb.shape[0] == i, "matmul: \(x.shape) · \(pb.shape)")
    let y = Tensor(uninitialized: [n, o])
    let xb = x.value.bf16Rounded()
    OneDNN.gemm(m: n, n: o, k: i, a: xb.data, lda: i, b: pb.data, ldb: o, transB: false, c: y.data, ldc: o)
    return Var.op(y, [x]) { dy in // dx = dy Pᵀ    [n, o] · [o, i]
        let dx = Tensor(uninitialized: x.value.shape)
        let g = dy.bf16Rounded()
        OneDNN.gemm(m: n, n: i, k: o, a: g.data, lda: o, b: pb.data, ldb: o, transB: true, c: dx.data, ldc: i)
        x.accumulate(dx)
    }
}

/// The patch embedding with a frozen conv weight [d, C, p, p] held as fp32 or bf16.
///   pixels: [n, C, H, W]  ->  [n, (H/p)(W/p), d]
public func patchEmbed(_ pixels: Var, _ weight: FrozenMatrix) -> Var {
    guard case .bf16(let wb) = weight else { return patchEmbed(pixels, Var(weight.fp32Tensor!)) }
    let (n, C, H, W) = (pixels.value.shape[0], pixels.value.shape[1], pixels.value.shape[2], pixels.value.shape[3])
    let (d, p) = (wb.shape[0], wb.shape[2])
    precondition(
        wb.shape[1] == C && H % p == 0 && W % p == 0, "patchEmbed: pixels \(pixels.shape) vs weight \(wb.shape)")
    let (gh, gw) = (H / p, W / p)
    let patches = n * gh * gw, cols = C * p * p
    let im = Tensor(uninitialized: [patches, cols])
    im2col(pixels.value.data, into: im.data, n: n, C: C, H: H, W: W, p: p)
    let imb = im.bf16Rounded()
    let y = Tensor(uninitialized: [n, gh * gw, d])
    OneDNN.gemm(
        m: patches, n: d, k: cols, a: imb.data, lda: cols, b: wb.data, ldb: cols, transB: true, c: y.data, ldc: d)
    return Var.op(y, [pixels]) { dy in
        let dim = Tensor(uninitialized: [patches, cols])
        let g = dy.bf16Rounded()
        OneDNN.gemm(
            m: patches, n: cols, k: d, a: g.data, lda: d, b: wb.data, ldb: cols, transB: false, c: dim.data, ldc: cols)
        let dx = Tensor(zeros: pixels.value.shape)
        col2im(dim.data, into: dx.data, n: n, C: C, H: H, W: W, p: p)
        pixels.accumulate(dx)
    }
}

extension Tensor {
    /// This tensor rounded to bf16, to feed a oneDNN product: the copy its producer wrote, else a new one.
    func bf16Rounded() -> BF16Buffer {
        if let shadow = storage.bf16 { return BF16Buffer(storage: shadow, offset: offset) }
        return BF16Buffer(rounding: data, count: count)
    }

    /// Attaches an (unfilled) bf16 copy for a producer to write next to its fp32 output.
    func attachBF16() -> UnsafeMutablePointer<UInt16> {
        let shadow = BF16Storage(capacity: storage.capacity)
        storage.bf16 = shadow
        return shadow.base + offset
    }
}

/// y = QuickGELU(x) Wᵀ + b with a frozen W [o, i] (CLIP's MLP after c_fc).   x: [..., i]  ->  [..., o]
/// fp32: exactly quickGELU then linear. bf16: QuickGELU(x) is written straight to the bf16 operand and
/// never held in fp32; backward recomputes σ from x, which it keeps anyway.
public func geluLinear(_ x: Var, _ w: FrozenMatrix, _ b: Var? = nil) -> Var {
    guard case .bf16(let wb) = w else { return linear(quickGELU(x), w, b) }
    let n = x.value.rows, i = x.value.lastDim, o = wb.shape[0]
    precondition(wb.lastDim == i, "geluLinear: input width \(i) vs weight \(wb.shape)")
    let hidden = BF16Buffer(count: n * i)
    let (px, ph) = (x.value.data, hidden.data)
    Parallel.chunks(n * i, grain: 1 << 15) { range in
        ck_gelu_bf16(px + range.lowerBound, ph + range.lowerBound, range.count)
    }
    var outShape = x.value.shape
    outShape[outShape.count - 1] = o
    let y = Tensor(uninitialized: outShape)
    OneDNN.gemm(
        m: n, n: o, k: i, a: hidden.data, lda: i, b: wb.data, ldb: i, transB: true,
        bias: b.map { UnsafePointer($0.value.data) }, c: y.data, ldc: o)
    return Var.op(y, [x]) { dy in
        // dh = dy W, then through QuickGELU: d/dz z σ(az) = σ + a z σ (1 − σ), in place.
        let dx = Tensor(uninitialized: x.value.shape)
        let g = dy.bf16Rounded()
        OneDNN.gemm(m: n, n: i, k: o, a: g.data, lda: o, b: wb.data, ldb: i, transB: false, c: dx.data, ldc: i)
        // The result's bf16 rounding rides along for the c_fc input-gradient product that reads it next.
        let (px, pd, pdb) = (x.value.data, dx.data, dx.attachBF16())
        Parallel.chunks(n * i, grain: 1 << 15) { range in
            ck_gelu_backward(px + range.lowerBound, pd + range.lowerBound, pdb + range.lowerBound, range.count)
        }
        x.accumulate(dx)
    }
}

/// y = LayerNorm(x) Wᵀ + b with a frozen W (ln_2 then c_fc). fp32: exactly layerNorm then linear.
/// bf16: the normalised rows exist only as the bf16 operand; backward keeps x̂ and 1/σ as layerNorm does.
public func layerNormLinear(
    _ x: Var, _ gamma: Var, _ beta: Var, _ w: FrozenMatrix, _ b: Var? = nil,
    eps: Float = 1e-5
) -> Var {
    guard case .bf16(let wb) = w else { return linear(layerNorm(x, gamma, beta, eps: eps), w, b) }
    precondition(!gamma.requiresGrad && !beta.requiresGrad, "layerNormLinear: LayerNorm parameters are frozen")
    let d = x.value.lastDim, n = x.value.rows, o = wb.shape[0]
    precondition(wb.lastDim == d && gamma.value.count == d, "layerNormLinear: width \(d) vs weight \(wb.shape)")
    let xhat = Tensor(uninitialized: x.value.shape)
    let rstd = Tensor(uninitialized: [n])
    let normed = BF16Buffer(count: n * d)
    let (px, ph, pr, pg, pb, pn) = (x.value.data, xhat.data, rstd.data, gamma.value.data, beta.value.data, normed.data)
    Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
        let r = rows.lowerBound
        ck_layernorm(px + r * d, pg, pb, ph + r * d, pr + r, nil, pn + r * d, rows.count, d, eps)
    }
    var outShape = x.value.shape
    outShape[outShape.count - 1] = o
    let y = Tensor(uninitialized: outShape)
    OneDNN.gemm(
        m: n, n: o, k: d, a: normed.data, lda: d, b: wb.data, ldb: d, transB: true,
        bias: b.map { UnsafePointer($0.value.data) }, c: y.data, ldc: o)
    return Var.op(y, [x]) { dy in
        // dŷ = dy W; dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),  dx̂ = dŷ ⊙ γ   (as layerNorm)
        let dx = Tensor(uninitialized: x.value.shape)
        let g = dy.bf16Rounded()
        OneDNN.gemm(m: n, n: d, k: o, a: g.data, lda: o, b: wb.data, ldb: d, transB: false, c: dx.data, ldc: d)
        layerNormInputGradientBF16(
            dy: dx.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma.value.data, into: dx.data, rows: n, width: d)
        x.accumulate(dx)
    }
}

/// layerNormInputGradient for the bf16 path, in the AVX-512 kernel (vector sums: not the fp32 path's order).
func layerNormInputGradientBF16(
    dy: UnsafePointer<Float>, xhat: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, rows n: Int, width d: Int
) {
    Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
        let r = rows.lowerBound
        ck_layernorm_input_grad(dy + r * d, xhat + r * d, rstd + r, gamma, dx + r * d, rows.count, d)
    }
}
