// Log-softmax cross-entropy with hard (class index) or soft (distribution) targets.
//
// n rows, K classes.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum CrossEntropyTarget {
    /// One class index per row.
    case hard([Int])
    /// A distribution per row: [n, K].
    case soft(Tensor)
}

public enum Reduction: Sendable {
    /// Σ over rows: what a rank contributes before the global count is known.
    case sum
    /// Mean over rows.
    case mean
}

/// −Σ_k t_k log softmax(z)_k per row, reduced over rows -> scalar [].
public func crossEntropy(_ logits: Var, _ target: CrossEntropyTarget, reduction: Reduction = .mean) -> Var {
    let (n, K) = (logits.value.rows, logits.value.lastDim)
    let probs = Tensor(uninitialized: [n, K])
    var total: Double = 0
    let pz = logits.value.data
    for r in 0..<n {
        let z = pz + r * K, p = probs.data + r * K
        var mx = -Float.infinity
        for j in 0..<K where z[j] > mx { mx = z[j] }
        var se: Float = 0
        for j in 0..<K { let e = expf(z[j] - mx); p[j] = e; se += e }
        let logZ = mx + logf(se)
        for j in 0..<K { p[j] /= se }
        switch target {
        case .hard(let labels):
            precondition(labels[r] >= 0 && labels[r] < K, "crossEntropy: label \(labels[r]) outside \(K) classes")
            total += Double(logZ - z[labels[r]])
        case .soft(let t):
            let tr = t.data + r * K
            for j in 0..<K where tr[j] != 0 { total += Double(tr[j] * (logZ - z[j])) }
        }
    }
    let norm: Float = reduction == .mean ? 1 / Float(max(n, 1)) : 1
    return Var.op(Tensor(scalar: Float(total) * norm), [logits]) { dy in
        // ∂/∂z_j = (Σ_k t_k) p_j − t_j
        let g = dy.scalar * norm
        let dz = Tensor(uninitialized: [n, K])
        for r in 0..<n {
            let p = probs.data + r * K, out = dz.data + r * K
            switch target {
            case .hard(let labels):
                for j in 0..<K { out[j] = g * p[j] }
                out[labels[r]] -= g
            case .soft(let t):
                let tr = t.data + r * K
                var mass: Float = 0
                for j in 0..<K { mass += tr[j] }
                for j in 0..<K { out[j] = g * (mass * p[j] - tr[j]) }
            }
        }
        logits.accumulate(dz.reshaped(logits.value.shape))
    }
}
