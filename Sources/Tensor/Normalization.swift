// LayerNorm over the last axis and L2 normalisation of rows, with their backward passes.
import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// LayerNorm over the last axis: y = (x − μ)/sqrt(σ² + eps) · γ + β   (biased σ², as PyTorch).
///   x: [..., d]  γ, β: [d]
/// `bf16Copy` (runtime.precision bf16) also writes y rounded to bf16 in the same pass, for the bf16
/// product that reads y next; the fp32 y is unchanged.
public func layerNorm(_ x: Var, _ gamma: Var, _ beta: Var, eps: Float = 1e-5, bf16Copy: Bool = false) -> Var {
    let d = x.value.lastDim, n = x.value.rows
    precondition(gamma.value.count == d && beta.value.count == d, "layerNorm: γ/β \(gamma.shape) vs width \(d)")
    let y = Tensor(uninitialized: x.value.shape)
    let yb = bf16Copy ? y.attachBF16() : nil
    let xhat = Tensor(uninitialized: x.value.shape) // saved for backward
    let rstd = Tensor(uninitialized: [n])
    let (px, py, ph, pr, pg, pb) = (x.value.data, y.data, xhat.data, rstd.data, gamma.value.data, beta.value.data)
    if let yb { // bf16 path: the AVX-512 kernel writes y and its bf16 rounding in one pass
        Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
            let r = rows.lowerBound
            ck_layernorm(px + r * d, pg, pb, ph + r * d, pr + r, py + r * d, yb + r * d, rows.count, d, eps)
        }
    } else {
        layerNormRows(px, gamma: pg, beta: pb, xhat: ph, rstd: pr, into: py, rows: n, width: d, eps: eps)
    }
    return Var.op(y, [x, gamma, beta]) { dy in
        // Reach the saved buffers through their tensors so the closure keeps them alive.
        let (ph, pr, pg) = (xhat.data, rstd.data, gamma.value.data)
        let g = dy.data
        if x.requiresGrad {
            // dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),  dx̂ = dy ⊙ γ
            let dx = Tensor(uninitialized: x.value.shape)
            if bf16Copy {
                layerNormInputGradientBF16(dy: g, xhat: ph, rstd: pr, gamma: pg, into: dx.data, rows: n, width: d)
            } else {
                layerNormInputGradient(dy: g, xhat: ph, rstd: pr, gamma: pg, into: dx.data, rows: n, width: d)
            }
            x.accumulate(dx)
        }
        if gamma.requiresGrad {
            let dg = Tensor(zeros: [d])
            for r in 0..<n {
                let gr = g + r * d, h = ph + r * d
                for j in 0..<d { dg.data[j] += gr[j] * h[j] }
            }
            gamma.accumulate(dg.reshaped(gamma.shape))
        }
        if beta.requiresGrad { beta.accumulate(sumRows(dy, rows: n, width: d).reshaped(beta.shape)) }
    }
}

/// Rows scaled to unit L2 norm (F.normalize, eps 1e-12).   x: [..., d]
public func l2Normalize(_ x: Var) -> Var {
    let d = x.value.lastDim, n = x.value.rows
    let y = Tensor(uninitialized: x.value.shape)
    let inv = Tensor(uninitialized: [n])
    let (px, py) = (x.value.data, y.data)
    for r in 0..<n {
        var ss: Float = 0
        for j in 0..<d { ss += px[r * d + j] * px[r * d + j] }
        let s = 1 / max(sqrtf(ss), 1e-12)
        inv.data[r] = s
        for j in 0..<d { py[r * d + j] = px[r * d + j] * s }
    }
    return Var.op(y, [x]) { dy in
        // dx = (dy − y (dy·y)) / ‖x‖
        let py = y.data
        let dx = Tensor(uninitialized: x.value.shape)
        let (g, pd) = (dy.data, dx.data)
        for r in 0..<n {
            var dot: Float = 0
            for j in 0..<d { dot += g[r * d + j] * py[r * d + j] }
            let s = inv.data[r]
            for j in 0..<d { pd[r * d + j] = (g[r * d + j] - py[r * d + j] * dot) * s }
        }
        x.accumulate(dx)
    }
}

/// LayerNorm's input gradient, row by row: dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),
/// dx̂ = dy ⊙ γ. `into` may be `dy` itself (each element is read before it is written).
@inline(__always)
func layerNormInputGradient(
    dy: UnsafePointer<Float>, xhat: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>, rows n: Int, width d: Int
) {
    Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
        for r in rows {
            let gr = dy + r * d, h = xhat + r * d, out = dx + r * d
            var m1: Float = 0, m2: Float = 0
            for j in 0..<d {
                let dh = gr[j] * gamma[j]
                m1 += dh
                m2 += dh * h[j]
            }
            m1 /= Float(d); m2 /= Float(d)
            let s = rstd[r]
            for j in 0..<d { out[j] = s * (gr[j] * gamma[j] - m1 - h[j] * m2) }
        }
    }
}

/// The fp32 LayerNorm of `n` rows (the reference arithmetic): x̂ and 1/σ for the backward, y = x̂ γ + β.
func layerNormRows(
    _ px: UnsafePointer<Float>, gamma pg: UnsafePointer<Float>, beta pb: UnsafePointer<Float>,
    xhat ph: UnsafeMutablePointer<Float>, rstd pr: UnsafeMutablePointer<Float>, into py: UnsafeMutablePointer<Float>,
    rows n: Int, width d: Int, eps: Float
) {
    Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
        for r in rows {
            let row = px + r * d
            var mean: Float = 0
            for j in 0..<d { mean += row[j] }
            mean /= Float(d)
            var variance: Float = 0
            for j in 0..<d { let c = row[j] - mean; variance += c * c }
            variance /= Float(d)
            let s = 1 / sqrtf(variance + eps)
            pr[r] = s
            let h = ph + r * d, out = py + r * d
            for j in 0..<d {
                let v = (row[j] - mean) * s
                h[j] = v
                out[j] = v * pg[j] + pb[j]
            }
        }
    }
}
