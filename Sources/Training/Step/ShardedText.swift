// The learned-prompt text encoder split over ranks by class (DESIGN §5): each rank encodes a contiguous
// slice of the classes, the features are all-gathered into a leaf the loss reads, and ∂L/∂T, summed
// over ranks, flows back through each rank's own slice. Same numbers as every rank encoding every class;
// text time and activation memory divided by the number of ranks (CoOp on ImageNet: K = 1000).
import Data
import Distributed
import PromptTuning
import Tensor

public struct ShardedText {
    /// This rank's classes' features [k, D], with gradient into `text.ctx` (nil: no classes here).
    public let local: Var?
    /// Every class's features [K, D]: a leaf that collects ∂L/∂T from this rank's loss.
    public let leaf: Var
    public let classes: Range<Int>

    /// Encodes this rank's classes and gathers everyone's (one allgather).
    public static func gather(_ learner: PromptLearner, comm: Communicator) throws -> ShardedText {
        let K = learner.classCount, D = learner.model.text.embedDim
        let classes = EpochPlan.shard(0..<K, rank: comm.rank, size: comm.size)
        let local = classes.isEmpty ? nil : learner.textFeatures(classes: classes)
        let counts = (0..<comm.size).map { EpochPlan.shard(0..<K, rank: $0, size: comm.size).count * D }
        let all = Tensor(uninitialized: [K, D])
        let mine = local?.value ?? Tensor(zeros: [0, D])
        try comm.allgather(
            UnsafeBufferPointer(start: mine.data, count: mine.count),
            into: UnsafeMutableBufferPointer(start: all.data, count: all.count), counts: counts)
        return ShardedText(local: local, leaf: Var(trainable: all, name: "text features"), classes: classes)
    }

    /// After the loss's backward: sums ∂L/∂T over ranks (one allreduce of K×D) and back-propagates this
    /// rank's rows through its slice, leaving its classes' share of ∂L/∂ctx in `text.ctx`'s gradient.
    public func backward(comm: Communicator) throws {
        let dT = leaf.grad?.copy() ?? Tensor(zeros: leaf.shape)
        try comm.allreduce(UnsafeMutableBufferPointer(start: dT.data, count: dT.count), .sum)
        if let local {
            let D = leaf.shape[1]
            let seed = Tensor(uninitialized: local.shape)
            seed.data.update(from: dT.data + classes.lowerBound * D, count: seed.count)
            local.backward(seed: seed)
        }
    }
}
