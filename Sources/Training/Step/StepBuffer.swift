// The one buffer a training step reduces (DESIGN §5): every trained gradient, packed in the learner's
// parameter order, then the step's statistics in named slots. One fused allreduce sums it over the
// ranks, so every rank reads the same loss, counts and flags and takes the same decision (a
// non-finite step, a stop signal, a failure) without another collective.
//
// G trained floats (all trained tensors), S statistics slots.
import PromptTuning
import Tensor

public final class StepBuffer: @unchecked Sendable {
    /// The statistics after the gradients, each the sum over ranks after the allreduce.
    public enum Slot: Int, CaseIterable, Sendable {
        /// This rank's share of the global mean loss (already divided by the global counts).
        case loss
        /// Correct predictions and images of this rank's shard.
        case correct, images
        /// 1 on a rank that received a stop signal (SIGTERM, SIGINT, SIGUSR1).
        case stopRequests
        /// The CAVPT term's share of `loss` (α · L_ca).
        case cavptLoss
        /// 1 on a rank whose failure is pending (a sweep's unreadable image).
        case failures
    }

    /// Canonical name and element count of each trained tensor, in packing order.
    public let layout: [(name: String, count: Int)]
    /// G, the trained floats.
    public let gradientCount: Int
    /// [G + S]
    public let storage: Tensor

    public init(parameters: [(String, Var)]) {
        layout = parameters.map { ($0.0, $0.1.value.count) }
        gradientCount = layout.reduce(0) { $0 + $1.count }
        storage = Tensor(zeros: [gradientCount + Slot.allCases.count])
    }

    /// G + S floats: what the allreduce carries.
    public var count: Int { storage.count }

    public subscript(slot: Slot) -> Float {
        get { storage.data[gradientCount + slot.rawValue] }
        set { storage.data[gradientCount + slot.rawValue] = newValue }
    }

    public func clear() { storage.fill(0) }

    /// Copies each parameter's gradient into its place (none: zeros).
    public func pack(_ parameters: [(String, Var)]) {
        var offset = 0
        for (_, p) in parameters {
            if let grad = p.grad { (storage.data + offset).update(from: grad.data, count: grad.count) }
            offset += p.value.count
        }
    }

    /// Each parameter's part of the (reduced) gradients, as a tensor of its shape.
    public func gradients(_ parameters: [(String, Var)]) -> [(String, Tensor)] {
        var offset = 0
        return parameters.map { name, p in
            let grad = Tensor(uninitialized: p.shape)
            grad.data.update(from: storage.data + offset, count: grad.count)
            offset += p.value.count
            return (name, grad)
        }
    }

    /// The name of the first trained tensor whose gradient is not finite.
    public func firstNonFiniteGradient() -> String? {
        var offset = 0
        for (name, count) in layout {
            if !allFinite(storage.data + offset, count: count) { return name }
            offset += count
        }
        return nil
    }
}

/// x · 0 is 0 for finite x and NaN for ±inf or NaN: one branch-free pass finds any non-finite value.
func allFinite(_ t: Tensor) -> Bool {
    allFinite(t.data, count: t.count)
}

func allFinite(_ x: UnsafeMutablePointer<Float>, count: Int) -> Bool {
    var zero: Float = 0
    for i in 0..<count { zero += x[i] * 0 }
    return zero == 0
}
