// Element-wise arithmetic, broadcast adds, activations and reductions, each with its backward.

/// a + b, same shape.
public func + (a: Var, b: Var) -> Var {
    precondition(a.value.count == b.value.count, "add: \(a.shape) vs \(b.shape)")
    let y = Tensor(uninitialized: a.value.shape)
    let (pa, pb, py) = (a.value.data, b.value.data, y.data)
    Parallel.chunks(y.count, grain: 1 << 16) { range in
        add(pa + range.lowerBound, pb + range.lowerBound, into: py + range.lowerBound, count: range.count)
    }
    return Var.op(y, [a, b]) { dy in
        a.accumulate(dy)
        b.accumulate(dy)
    }
}

/// a ⊙ b, same shape.
public func * (a: Var, b: Var) -> Var {
    precondition(a.value.count == b.value.count, "mul: \(a.shape) vs \(b.shape)")
    let y = Tensor(uninitialized: a.value.shape)
    let (pa, pb, py) = (a.value.data, b.value.data, y.data)
    for i in 0..<y.count { py[i] = pa[i] * pb[i] }
    return Var.op(y, [a, b]) { dy in
        let (g, pa, pb) = (dy.data, a.value.data, b.value.data)
        if a.requiresGrad {
            let da = Tensor(uninitialized: a.value.shape)
            for i in 0..<da.count { da.data[i] = g[i] * pb[i] }
            a.accumulate(da)
        }
        if b.requiresGrad {
            let db = Tensor(uninitialized: b.value.shape)
            for i in 0..<db.count { db.data[i] = g[i] * pa[i] }
            b.accumulate(db)
        }
    }
}

/// s · x for a constant s.
public func * (s: Float, x: Var) -> Var {
    let y = Tensor(uninitialized: x.value.shape)
    let (px, py) = (x.value.data, y.data)
    for i in 0..<y.count { py[i] = s * px[i] }
    return Var.op(y, [x]) { dy in
        let dx = Tensor(uninitialized: x.value.shape)
        for i in 0..<dx.count { dx.data[i] = s * dy.data[i] }
        x.accumulate(dx)
    }
}

/// x + p, where p's shape is a suffix of x's (a bias [d] over rows, a positional table [S, d]
/// over samples). p's gradient sums over the broadcast leading entries.
public func addBroadcast(_ x: Var, _ p: Var) -> Var {
    let inner = p.value.count
    precondition(
        inner > 0 && x.value.count % inner == 0 && Array(x.shape.suffix(p.shape.count)) == p.shape,
        "addBroadcast: \(p.shape) is not a suffix of \(x.shape)")
    let outer = x.value.count / inner
    let y = Tensor(uninitialized: x.value.shape)
    let (px, pp, py) = (x.value.data, p.value.data, y.data)
    Parallel.chunks(outer, grain: max(1, (1 << 15) / inner)) { range in
        for o in range {
            let base = o * inner
            for j in 0..<inner { py[base + j] = px[base + j] + pp[j] }
        }
    }
    return Var.op(y, [x, p]) { dy in
        x.accumulate(dy)
        if p.requiresGrad { p.accumulate(sumRows(dy, rows: outer, width: inner).reshaped(p.shape)) }
    }
}

/// QuickGELU(z) = z · σ(1.702 z), CLIP's activation. `bf16Copy`: also write y rounded to bf16 (as layerNorm).
public func quickGELU(_ x: Var, bf16Copy: Bool = false) -> Var {
    let n = x.value.count
    let y = Tensor(uninitialized: x.value.shape)
    let (px, py) = (x.value.data, y.data)
    let yb = bf16Copy ? y.attachBF16() : nil
    Parallel.chunks(n, grain: 1 << 15) { range in
        for i in range {
            let z = px[i]
            py[i] = z / (1 + _exp(-1.702 * z))
        }
        if let yb { roundRangeToBF16(py + range.lowerBound, into: yb + range.lowerBound, count: range.count) }
    }
    return Var.op(y, [x]) { dy in
        // d/dz z σ(az) = σ + a z σ (1 − σ)
        let px = x.value.data
        let dx = Tensor(uninitialized: x.value.shape)
        let (g, pd) = (dy.data, dx.data)
        Parallel.chunks(n, grain: 1 << 15) { range in
            for i in range {
                let z = px[i]
                let s = 1 / (1 + _exp(-1.702 * z))
                pd[i] = g[i] * (s + 1.702 * z * s * (1 - s))
            }
        }
        x.accumulate(dx)
    }
}

/// Σ of all entries -> scalar [].
public func sum(_ x: Var) -> Var {
    var acc: Double = 0
    let px = x.value.data
    for i in 0..<x.value.count { acc += Double(px[i]) }
    return Var.op(Tensor(scalar: Float(acc)), [x]) { dy in
        x.accumulate(Tensor(shape: x.value.shape, repeating: dy.scalar))
    }
}

/// Mean of all entries -> scalar [].
public func mean(_ x: Var) -> Var {
    let n = Float(max(x.value.count, 1))
    return (1 / n) * sum(x)
}

/// A view with another shape; the gradient is viewed back.
public func reshape(_ x: Var, _ shape: [Int]) -> Var {
    let y = x.value.reshaped(shape)
    return Var.op(y, [x]) { dy in x.accumulate(dy.reshaped(x.value.shape)) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@inline(__always) func _exp(_ x: Float) -> Float { fastExp(x) }
