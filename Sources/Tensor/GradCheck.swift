// Finite-difference gradient checking, used by the tests of every op and model path.

/// Compares the autograd gradient of every trainable input with central differences.
///
/// The op's output y is reduced to the scalar L = Σ y ⊙ R with a fixed random R, so every output
/// entry matters. Returns, per trainable input, max |numeric − analytic| / max |analytic| over the
/// checked entries. With Float32 kernels and eps = 1e-2 the truncation error is O(eps²) and the
/// rounding error O(ulp(L)/eps) ≈ 1e-5 relative, so correct ops land near 1e-4 and tests allow 1e-2;
/// a wrong backward (a missing term, a transposed product) is off by O(1).
public func gradientCheck(
    _ inputs: [Tensor], trainable: [Bool], eps: Float = 1e-2, maxEntries: Int = 64,
    seed: UInt64 = 7, _ op: ([Var]) -> Var
) -> [Float] {
    precondition(inputs.count == trainable.count)
    // Analytic.
    let vars = zip(inputs, trainable).map { $1 ? Var(trainable: $0.copy()) : Var($0.copy()) }
    let y = op(vars)
    let projection = Tensor.randn(y.shape, seed: seed)
    func project(_ out: Tensor) -> Double {
        var acc = 0.0
        for i in 0..<out.count { acc += Double(out.data[i]) * Double(projection.data[i]) }
        return acc
    }
    y.backward(seed: projection)
    var errors: [Float] = []
    for (k, input) in inputs.enumerated() where trainable[k] {
        let analytic = vars[k].grad ?? Tensor(zeros: input.shape)
        var rng = SplitMix64(seed: seed &+ UInt64(k))
        let entries =
            input.count <= maxEntries
            ? Array(0..<input.count)
            : (0..<maxEntries).map { _ in Int(rng.next() % UInt64(input.count)) }
        var maxDiff: Float = 0, maxRef: Float = 0
        for e in entries {
            func evaluate(_ delta: Float) -> Double {
                let probe = inputs.map { $0.copy() }
                probe[k].data[e] += delta
                return project(op(probe.map { Var($0) }).value)
            }
            let numeric = Float((evaluate(eps) - evaluate(-eps)) / Double(2 * eps))
            maxDiff = max(maxDiff, abs(numeric - analytic.data[e]))
            maxRef = max(maxRef, abs(analytic.data[e]), abs(numeric))
        }
        errors.append(maxRef == 0 ? maxDiff : maxDiff / maxRef)
    }
    return errors
}
