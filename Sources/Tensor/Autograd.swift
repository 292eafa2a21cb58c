// Reverse-mode automatic differentiation: a Var is a tensor plus, when it depends on a trained
// tensor, the closure that sends its gradient to its inputs.
//
// Only operations on a path from a trained tensor to the loss are recorded: an op whose inputs
// all have requiresGrad == false returns a constant and keeps nothing alive. Frozen weights are
// constants, so they never get gradient storage and no weight-gradient product is computed for
// them. The backward pass releases each node's closure (and the activations it captured) as soon
// as it has run.

import CKernels

/// A tensor in the computation graph.
public final class Var: @unchecked Sendable {
    public let value: Tensor
    /// Accumulated ∂loss/∂self. Kept after backward for leaves (trained tensors) only.
    public internal(set) var grad: Tensor?
    public let requiresGrad: Bool
    /// Optional name, used in messages and gradient checks.
    public var name: String?

    var parents: [Var]
    var backwardFn: ((Tensor) -> Void)?
    /// True once `grad` is a buffer this Var owns and may add into in place.
    var gradOwned = false

    /// A constant (frozen weight, input data): never gets a gradient.
    public init(_ value: Tensor) {
        self.value = value
        self.requiresGrad = false
        self.parents = []
    }

    /// A trained tensor (a leaf that collects its gradient).
    public init(trainable value: Tensor, name: String? = nil) {
        self.value = value
        self.requiresGrad = true
        self.name = name
        self.parents = []
    }

    init(derived value: Tensor, parents: [Var], backward: @escaping (Tensor) -> Void) {
        self.value = value
        self.requiresGrad = true
        self.parents = parents
        self.backwardFn = backward
    }

    public var shape: [Int] { value.shape }
    public var isLeaf: Bool { backwardFn == nil }

    /// Records `value` as computed from `inputs`; `backward` receives ∂loss/∂value and must call
    /// `accumulate` on each input that `requiresGrad`. Returns a constant when no input needs one.
    public static func op(_ value: Tensor, _ inputs: [Var], backward: @escaping (Tensor) -> Void) -> Var {
        guard inputs.contains(where: { $0.requiresGrad }) else { return Var(value) }
        return Var(derived: value, parents: inputs.filter { $0.requiresGrad }, backward: backward)
    }

    /// Adds `g` (same element count as value) into this Var's gradient.
    public func accumulate(_ g: Tensor) {
        guard requiresGrad else { return }
        precondition(g.count == value.count, "gradient \(g.shape) does not fit \(value.shape)")
        if let existing = grad {
            if gradOwned {
                existing.storage.bf16 = nil // a bf16 copy written with the first gradient is stale now
                addInPlace(existing.data, g.data, count: g.count)
            } else {
                // The first gradient may be shared with another Var (e.g. both inputs of an add):
                // sum into a fresh buffer rather than writing through it.
                let sum = Tensor(uninitialized: value.shape)
                add(existing.data, g.data, into: sum.data, count: g.count)
                grad = sum
                gradOwned = true
            }
        } else {
            grad = g.count == 0 || g.shape == value.shape ? g : g.reshaped(value.shape)
            gradOwned = false
        }
    }

    /// Clears the gradient of a leaf before the next step.
    public func zeroGrad() { grad = nil; gradOwned = false }

    /// Sets the gradient buffer explicitly (e.g. after an allreduce of packed gradients).
    public func setGrad(_ g: Tensor?) { grad = g; gradOwned = false }

    /// Same storage, no gradient path (PyTorch's detach / DESIGN §3.1's stopgrad).
    public func detached() -> Var { Var(value) }

    /// Back-propagates from this Var, seeded with ∂loss/∂self = `seed` (default: ones).
    public func backward(seed: Tensor? = nil) {
        guard requiresGrad else { return }
        // Topological order by iterative depth-first search over the recorded parents.
        var order: [Var?] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Var, Bool)] = [(self, false)]
        while let (v, expanded) = stack.popLast() {
            if expanded { order.append(v); continue }
            if !visited.insert(ObjectIdentifier(v)).inserted { continue }
            stack.append((v, true))
            for p in v.parents where !visited.contains(ObjectIdentifier(p)) { stack.append((p, false)) }
        }
        accumulate(seed ?? Tensor(shape: value.shape, repeating: 1))
        for i in stride(from: order.count - 1, through: 0, by: -1) {
            guard let v = order[i] else { continue }
            order[i] = nil
            guard let fn = v.backwardFn else { continue } // leaves keep their gradient
            if let g = v.grad { fn(g) }
            // Release the closure, its captured activations and the intermediate gradient now.
            v.backwardFn = nil
            v.parents = []
            v.grad = nil
        }
    }
}

@inline(__always) func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count: Int) {
    ck_add_in_place(y, x, count) // exact either way: one rounding per element
}

@inline(__always) func add(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    into y: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { y[i] = a[i] + b[i] }
}
