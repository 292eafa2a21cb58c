// The training step (DESIGN §5), the one `train`, `sweep`, `bench step` and `gradients` run: this
// rank's forward and backward into the packed buffer (`accumulate`), the step's fused allreduce
// (`reduce`), and the SGD update every rank applies alike (`apply`).
//
// b images in this rank's shard, B in the global batch, N ranks.
import Data
import Distributed
import PromptTuning
import Tensor

/// A step's global statistics, and how many ranks asked to stop after it.
public struct StepResult: Sendable {
    /// The global mean loss.
    public var loss: Double
    public var correct: Double, images: Double
    public var stopRequests: Int
    /// The CAVPT term of `loss` (α · L_ca).
    public var cavptLoss: Double = 0
}

/// A step whose reduced loss or gradient, or whose updated trained state, is not finite.
struct NonFiniteStep: Error {
    var reason: String
    var result: StepResult
}

public final class TrainingStep: @unchecked Sendable {
    public let learner: PromptLearner
    public let comm: Communicator
    public let failures: FailurePolicy
    /// The learned-prompt text encoder is split over the ranks by class (DESIGN §5).
    public let shardsText: Bool
    public let buffer: StepBuffer

    public init(learner: PromptLearner, comm: Communicator, shardsText: Bool, failures: FailurePolicy) {
        (self.learner, self.comm, self.shardsText, self.failures) = (learner, comm, shardsText, failures)
        buffer = StepBuffer(parameters: learner.parameters)
    }

    /// The whole step: returns the global statistics; throws `NonFiniteStep` (on every rank alike) when
    /// the reduced loss or gradient, or the updated trained tensors, are not finite, and `JobFailure`
    /// when a rank's failure is pending (sweep).
    public func callAsFunction(
        pixels: Tensor, labels: [Int], globalBatch: Int, epoch: Int, optimizer: SGD, rates: [ParameterGroup: Float]
    ) throws -> StepResult {
        try accumulate(pixels: pixels, labels: labels, globalBatch: globalBatch, epoch: epoch)
        let result = try reduce()
        try apply(result, optimizer: optimizer, rates: rates)
        return result
    }

    /// Forward and backward of this rank's shard (b may be 0: the rank still takes part in every
    /// collective), leaving the gradients and statistics in the buffer. Collectives before the
    /// backward: the `ignore` pair count (L_ca's normaliser depends on every rank's data) and, with
    /// the text side sharded, the features' allgather and their gradient's allreduce.
    ///
    /// The loss is this shard's share of the global mean (normalised by B and the global pair count),
    /// so the allreduce of the shards' gradients is the gradient of the global loss. A loss term that
    /// does not depend on the batch (a regulariser of the text features alone) must enter exactly once
    /// per global step, not once per rank: add it here on rank 0 only, whether or not rank 0 has
    /// images.
    public func accumulate(pixels: Tensor, labels: [Int], globalBatch: Int, epoch: Int) throws {
        let b = labels.count
        let selection =
            b > 0
            ? learner.select(pixels: pixels, epoch: epoch)
            : PromptLearner.Selection(plainFeatures: nil, selected: [])
        var pairs = learner.contributingPairs(globalBatch: globalBatch)
        if learner.pairCountNeedsReduction {
            let local = Double(b > 0 ? learner.contributingPairs(selection, labels: labels) : 0)
            pairs = Int(try comm.allreduce(local, .sum))
        }
        buffer.clear()
        // Sharded text side: this rank encodes its classes, the features are all-gathered into a leaf
        // the loss uses, and that leaf's gradient (summed over ranks) flows back into this rank's slice.
        let sharded = shardsText ? try ShardedText.gather(learner, comm: comm) : nil
        if b > 0 {
            let out = learner.loss(
                pixels: pixels, labels: labels, selection: selection, epoch: epoch,
                globalBatch: globalBatch, contributingPairs: pairs, text: sharded?.leaf)
            out.loss.backward()
            buffer[.loss] = out.loss.value.scalar
            buffer[.correct] = Float(out.correct)
            buffer[.images] = Float(b)
            buffer[.cavptLoss] = out.cavptLoss
        }
        // Every rank, with or without images, sends its classes' share of ∂L/∂ctx.
        try sharded?.backward(comm: comm)
        if StopSignals.pending != 0 { buffer[.stopRequests] = 1 }
        if failures.pending != nil { buffer[.failures] = 1 }
        buffer.pack(learner.parameters)
    }

    /// The step's one collective for gradients: every trained gradient, the statistics, the stop and
    /// failure flags. A pending failure on any rank is thrown on every rank (`FailurePolicy.agree`).
    public func reduce() throws -> StepResult {
        try comm.allreduce(UnsafeMutableBufferPointer(start: buffer.storage.data, count: buffer.count), .sum)
        if buffer[.failures] > 0 { try failures.agree() }
        return StepResult(
            loss: Double(buffer[.loss]), correct: Double(buffer[.correct]), images: Double(buffer[.images]),
            stopRequests: Int(buffer[.stopRequests]), cavptLoss: Double(buffer[.cavptLoss]))
    }

    /// The SGD update with the reduced gradients, the same on every rank. A non-finite loss or gradient
    /// is not applied; a finite gradient can still overflow the update (lr 1e30, weight decay 1e10,
    /// momentum 5), so the updated state is checked too.
    public func apply(_ result: StepResult, optimizer: SGD, rates: [ParameterGroup: Float]) throws {
        let parameters = learner.parameters
        let loss = result.loss
        if !loss.isFinite {
            for (_, p) in parameters { p.zeroGrad() }
            throw NonFiniteStep(
                reason: "the loss is " + (loss.isNaN ? "NaN" : loss > 0 ? "+inf" : "-inf"), result: result)
        }
        if let name = buffer.firstNonFiniteGradient() {
            for (_, p) in parameters { p.zeroGrad() }
            throw NonFiniteStep(reason: "the gradient of \(name) is not finite", result: result)
        }
        for ((_, p), (_, grad)) in zip(parameters, buffer.gradients(parameters)) { p.setGrad(grad) }
        optimizer.step { rates[$0]! }
        for (_, p) in parameters { p.zeroGrad() }
        for (name, p) in parameters where !allFinite(p.value) {
            throw NonFiniteStep(
                reason: "\(name) is not finite after the SGD update (learning rate \(rates[.of(name)]!))",
                result: result)
        }
        for (name, momentum) in optimizer.buffers where !allFinite(momentum) {
            throw NonFiniteStep(
                reason: "the momentum buffer of \(name) is not finite after the SGD update", result: result)
        }
    }

    /// Whether a run of `settings` on `comm` splits the learned-prompt text encoder over the ranks by
    /// class (DESIGN §5, `train.shardText`).
    public static func shardsText(_ sharding: TextSharding, learner: PromptLearner, comm: Communicator) -> Bool {
        guard learner.textContext != nil, comm.size > 1 else { return false }
        switch sharding {
        case .always: return true
        case .never: return false
        // Worth an allgather once the text side is heavy. In bf16 always: backward rounds the incoming
        // gradient to bf16, which does not add up over ranks, so every rank must push the summed
        // gradient of its classes through the text encoder for N ranks to give one rank's numbers.
        case .auto: return learner.classCount >= 32 || learner.model.precision == .bf16
        }
    }
}
