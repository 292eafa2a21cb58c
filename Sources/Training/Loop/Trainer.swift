// The training loop (DESIGN §4–6): epochs of data-parallel steps (`TrainingStep`), the learning-rate
// schedule, checkpoints at their cadence, the val evaluation, and the agreed stops (divergence, a
// stop signal). Rank 0 alone writes.
//
// B global batch, b this rank's shard, N ranks, K classes.
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor

public struct EpochStats: Sendable {
    public var epoch: Int
    public var loss: Double
    public var accuracy: Double
    public var images: Int
    public var seconds: Double
    public var communicationSeconds: Double
    public var learningRates: [String: Double]
    public var steps: Int = 0
    /// Allreduce calls during the epoch (one per step for gradients, plus one per step for the
    /// `ignore` pair count).
    public var allreduces: Int = 0
    /// The step a mid-epoch checkpoint resumed this epoch at (its statistics include the steps before).
    public var resumedAtStep: Int? = nil
    /// Mean over steps of the CAVPT term (α · L_ca) of `loss` (CAVPT methods only); the rest is CE.
    public var cavptLoss: Double? = nil
    /// Accuracy on the few-shot val list after this epoch (every `eval.valEvery` epochs).
    public var valAccuracy: Double? = nil
}

public final class Trainer: @unchecked Sendable {
    public let comm: Communicator
    public let settings: RunSettings
    public let learner: PromptLearner
    public let optimizer: SGD
    public let data: RunData
    public let output: RunOutput?
    /// Solo: an error ends the run; sweep: it is agreed within the job's group.
    public let failures: FailurePolicy
    /// The one step: forward/backward into the packed buffer, its allreduce, the update.
    public let trainingStep: TrainingStep
    /// The few-shot val list's evaluation (`eval.valEvery`).
    public let evaluator: Evaluator
    let schedules: [ParameterGroup: LRSchedule]
    public private(set) var epochsDone = 0
    /// Where a mid-epoch checkpoint left the epoch `epochsDone` (its steps and statistics so far).
    public private(set) var resumeProgress: EpochProgress?

    public init(
        comm: Communicator, settings: RunSettings, learner: PromptLearner, data: RunData, output: RunOutput?,
        failures: FailurePolicy
    ) {
        (self.comm, self.settings, self.learner) = (comm, settings, learner)
        (self.data, self.output, self.failures) = (data, output, failures)
        optimizer = SGD(
            parameters: learner.parameters, momentum: Float(settings.optim.momentum),
            weightDecay: Float(settings.optim.weightDecay))
        schedules = [.visual: LRSchedule(settings, group: .visual), .text: LRSchedule(settings, group: .text)]
        trainingStep = TrainingStep(
            learner: learner, comm: comm,
            shardsText: TrainingStep.shardsText(settings.train.shardText, learner: learner, comm: comm),
            failures: failures)
        evaluator = Evaluator(
            comm: comm, learner: learner, imageRoot: data.imageRoot, settings: settings, failures: failures)
    }

    var epochs: Int { settings.train.epochs }

    var stepsPerEpoch: Int {
        EpochPlan(trainCount: data.train.count, batchSize: settings.train.batchSize, seed: 0, epoch: 0)
            .globalBatches.count
    }

    /// The parameter groups that have trained tensors (only their learning rates are reported).
    var trainedGroups: Set<ParameterGroup> { Set(learner.parameters.map { ParameterGroup.of($0.0) }) }

    public func learningRate(_ group: ParameterGroup, epoch: Int) -> Double { schedules[group]!.rate(epoch: epoch) }

    // MARK: Start and resume

    /// Rank 0's trained tensors (and, when resuming, momentum buffers, epoch and step) on every rank.
    public func synchronizeStart(resumeFrom checkpoint: Checkpoint?) throws {
        if comm.rank == 0, let checkpoint {
            try learner.load(checkpoint.parameters, requireAll: true)
            try optimizer.loadBuffers(checkpoint.momentum)
            epochsDone = checkpoint.state.epoch
            if let progress = checkpoint.state.progress {
                guard epochsDone < epochs, (1..<max(stepsPerEpoch, 1)).contains(progress.steps) else {
                    throw TrainingError.checkpoint(
                        "\(checkpoint.path): step \(progress.steps) of epoch \(epochsDone + 1) "
                            + "is not inside this run's \(epochs) epochs of \(stepsPerEpoch) steps")
                }
                resumeProgress = progress
            }
        }
        // Only rank 0 logs, so only it keeps the statistics of a resumed epoch; every rank needs its step.
        var header = [Double(epochsDone), Double(optimizer.buffers.count), Double(resumeProgress?.steps ?? 0)]
        try comm.broadcast(&header, root: 0)
        epochsDone = Int(header[0])
        if comm.rank != 0, header[2] > 0 {
            resumeProgress = EpochProgress(
                steps: Int(header[2]), lossSum: 0, correct: 0, images: 0, seconds: 0,
                communicationSeconds: 0, allreduces: 0)
        }
        try broadcastTensors(learner.parameters.map(\.1.value))
        if header[1] > 0 {
            // Momentum buffers exist on rank 0 (resume): give every rank the same ones.
            var momentum: [String: Tensor] = [:]
            for (name, p) in learner.parameters { momentum[name] = optimizer.buffers[name] ?? Tensor(zeros: p.shape) }
            try broadcastTensors(learner.parameters.map { momentum[$0.0]! })
            try optimizer.loadBuffers(momentum)
        }
    }

    func broadcastTensors(_ tensors: [Tensor]) throws {
        let total = tensors.reduce(0) { $0 + $1.count }
        guard total > 0 else { return }
        let buffer = Tensor(uninitialized: [total])
        var offset = 0
        for t in tensors { (buffer.data + offset).update(from: t.data, count: t.count); offset += t.count }
        try comm.broadcast(UnsafeMutableBufferPointer(start: buffer.data, count: total), root: 0)
        offset = 0
        for t in tensors { t.data.update(from: buffer.data + offset, count: t.count); offset += t.count }
    }

    // MARK: Training

    /// Trains from `epochsDone` (and `resumeProgress`) to the configured epoch count, checkpointing as
    /// configured. Throws `TrainingStop` on every rank alike when the run diverges or a rank receives
    /// SIGTERM, SIGINT or SIGUSR1 (then rank 0 has checkpointed the step boundary).
    public func train() throws {
        let every = settings.checkpoint.every
        let fault = FaultInjection.fromEnvironment()
        // Installed for training only; on a stop they stay installed, so a second signal (Slurm and
        // mpirun both sending one) cannot kill a rank while it leaves cleanly.
        // A sweep installs them once for all its jobs (and checks them between jobs): a signal that
        // arrives while a job is set up or evaluated waits there instead of being lost or fatal.
        if !failures.defers {
            StopSignals.clear()
            try StopSignals.install()
        }
        while epochsDone < epochs {
            let allreducesBefore = comm.stats.allreduces
            let progress = resumeProgress
            resumeProgress = nil
            var (stats, end, sums) = try trainEpoch(epochsDone, resuming: progress, fault: fault)
            stats.allreduces = (progress?.allreduces ?? 0) + comm.stats.allreduces - allreducesBefore
            switch end {
            case let .diverged(step, reason):
                try output?.log(epoch: stats, of: epochs, extra: ["diverged": true, "error": reason])
                throw TrainingStop.diverged(
                    epoch: epochsDone + 1, step: step, reason: reason,
                    lastCheckpoint: output?.newestCheckpoint)
            case let .stopRequested(step, ranks) where step < stepsPerEpoch:
                // Mid-epoch: checkpoint this step boundary with the epoch's statistics so far.
                try checkConsistency()
                sums.allreduces = stats.allreduces
                let path = try output?.checkpoint(self, progress: sums)
                throw preempted(epoch: epochsDone + 1, step: step, ranks: ranks, checkpoint: path)
            default:
                break
            }
            epochsDone += 1
            // The end of an epoch, before its val evaluation and checkpoint: where a method's per-epoch
            // state would be updated (PromptSRC's Gaussian prompt aggregation, S += w_e θ_e), state that
            // the checkpoint then carries beside the trained tensors (as `gpa.<name>`) and
            // `synchronizeStart` gives back on resume.
            try checkConsistency()
            // Validation accuracy on the few-shot val list every eval.valEvery epochs (and the last),
            // sharded over the ranks like the test evaluation.
            let valEvery = settings.eval.valEvery
            if valEvery > 0, !data.val.isEmpty, epochsDone % valEvery == 0 || epochsDone == epochs {
                stats.valAccuracy =
                    try evaluator.evaluate(samples: data.val, listName: "few-shot val list").confusion.accuracy
                output?.say(
                    String(
                        format: "epoch %d/%d  val accuracy %.2f%% (%d images)", epochsDone, epochs,
                        stats.valAccuracy! * 100, data.val.count))
            }
            var checkpointDue = every > 0 && (epochsDone % every == 0 || epochsDone == epochs)
            if case .stopRequested = end { checkpointDue = true } // the epoch's last step: an epoch boundary
            var path: String?
            if let output {
                try failures.guarded {
                    try output.log(epoch: stats, of: epochs)
                    if checkpointDue {
                        if fault?.crashesCheckpoint(after: epochsDone) == true { output.crashDuringCheckpoint(self) }
                        path = try output.checkpoint(self)
                    }
                }
            }
            try fault?.afterCheckpoint(comm: comm, epochsDone: epochsDone)
            if case let .stopRequested(step, ranks) = end {
                throw preempted(epoch: epochsDone, step: step, ranks: ranks, checkpoint: path)
            }
        }
        // A signal after the last step's allreduce (during the final checkpoint) has no step left to
        // ride on: one more allreduce agrees on it, and the final checkpoint makes the stop resumable.
        var flags = [StopSignals.pending != 0 ? 1.0 : 0.0, failures.pending != nil ? 1.0 : 0.0]
        try comm.allreduceSum(&flags)
        if flags[1] > 0 { try failures.agree() }
        let requests = flags[0]
        if requests > 0 {
            var path = output?.newestCheckpoint
            if let output, every == 0 { path = try output.checkpoint(self) }
            throw preempted(epoch: epochs, step: stepsPerEpoch, ranks: Int(requests), checkpoint: path)
        }
        // Evaluation is short and not resumable mid-way: a signal now ends the process.
        if !failures.defers { StopSignals.restore() }
    }

    func preempted(epoch: Int, step: Int, ranks: Int, checkpoint: String?) -> TrainingStop {
        let own = StopSignals.pending
        return .preempted(
            epoch: epoch, step: step, signal: own != 0 ? StopSignals.name(own) : "a signal to another rank",
            ranks: ranks, checkpoint: checkpoint)
    }

    /// How an epoch's loop ended: all steps done, a stop agreed at a step boundary (1-based step
    /// just completed and applied; `ranks` ranks had a signal), or a non-finite step (not applied,
    /// or applied and found non-finite; nothing of it is kept).
    enum EpochEnd {
        case completed
        case stopRequested(step: Int, ranks: Int)
        case diverged(step: Int, reason: String)
    }

    /// One epoch from step `progress.steps` (0 for a fresh epoch): its statistics, how it ended, and
    /// its running sums (what a mid-epoch checkpoint keeps).
    func trainEpoch(
        _ epoch: Int, resuming progress: EpochProgress?,
        fault: FaultInjection?
    ) throws -> (EpochStats, EpochEnd, EpochProgress) {
        let plan = EpochPlan(
            trainCount: data.train.count, batchSize: settings.train.batchSize,
            seed: settings.train.seed, epoch: epoch)
        let steps = plan.globalBatches.count
        let loader = try BatchLoader.training(
            samples: data.train, imageRoot: data.imageRoot, listName: data.trainListName,
            plan: plan, rank: comm.rank, size: comm.size,
            resolution: learner.model.image.resolution,
            workers: settings.train.workers, prefetch: settings.train.prefetch,
            firstBatch: progress?.steps ?? 0)
        defer { loader.cancel() }
        let rates = Dictionary(
            uniqueKeysWithValues: ParameterGroup.allCases.map { ($0, Float(learningRate($0, epoch: epoch))) })
        let start = Date()
        let commStart = comm.stats.secondsInCollectives
        var lossSum = progress?.lossSum ?? 0, correct = progress?.correct ?? 0, images = progress?.images ?? 0
        var cavptSum = progress?.cavptLossSum ?? 0
        var step = progress?.steps ?? 0
        var end = EpochEnd.completed
        while true {
            var next: Batch?
            do { next = try loader.next() } catch  where failures.defers {
                // Take part in this step with an empty shard; its allreduce tells the group.
                try failures.meet(error)
                next =
                    step < steps
                    ? Batch.empty(
                        index: step, globalCount: plan.globalBatches[step].count,
                        resolution: learner.model.image.resolution) : nil
            }
            guard let batch = next else { break }
            fault?.beforeStep(rank: comm.rank, epoch: epoch, step: step)
            let result: StepResult
            do {
                result = try trainingStep(
                    pixels: batch.pixels, labels: batch.labels, globalBatch: batch.globalCount, epoch: epoch,
                    optimizer: optimizer, rates: rates)
            } catch let nonFinite as NonFiniteStep {
                step += 1
                lossSum += nonFinite.result.loss
                cavptSum += nonFinite.result.cavptLoss
                correct += nonFinite.result.correct
                images += nonFinite.result.images
                end = .diverged(step: step, reason: nonFinite.reason)
                break
            }
            lossSum += result.loss
            cavptSum += result.cavptLoss
            correct += result.correct
            images += result.images
            step += 1
            if let output, step % settings.train.logEvery == 0 || step == steps {
                let elapsed = (progress?.seconds ?? 0) + Date().timeIntervalSince(start)
                output.progress(
                    epoch: epoch, epochs: epochs, step: step, steps: steps, loss: lossSum / Double(step),
                    accuracy: images > 0 ? correct / images : 0,
                    lr: trainedGroups.contains(.visual) ? Double(rates[.visual]!) : nil,
                    textLR: trainedGroups.contains(.text) ? Double(rates[.text]!) : nil,
                    imagesPerSecond: images / max(elapsed, 1e-9), elapsed: elapsed)
            }
            if result.stopRequests > 0 {
                end = .stopRequested(step: step, ranks: result.stopRequests)
                break
            }
        }
        let stats = EpochStats(
            epoch: epoch, loss: step > 0 ? lossSum / Double(step) : 0, accuracy: images > 0 ? correct / images : 0,
            images: Int(images), seconds: (progress?.seconds ?? 0) + Date().timeIntervalSince(start),
            communicationSeconds: (progress?.communicationSeconds ?? 0)
                + comm.stats.secondsInCollectives - commStart,
            learningRates: Dictionary(
                uniqueKeysWithValues: rates.filter { trainedGroups.contains($0.key) }
                    .map { ($0.key.rawValue, Double($0.value)) }),
            steps: step, resumedAtStep: progress?.steps,
            cavptLoss: learner.settings.usesCAVPT && step > 0 ? cavptSum / Double(step) : nil)
        var sums = EpochProgress(
            steps: step, lossSum: lossSum, correct: correct, images: images, seconds: stats.seconds,
            communicationSeconds: stats.communicationSeconds, allreduces: 0)
        sums.cavptLossSum = cavptSum
        return (stats, end, sums)
    }

    /// Trained tensors must be bit-identical on every rank; a cheap checksum gathered once per epoch.
    public func checkConsistency() throws {
        guard comm.size > 1 else { return }
        var checksum: UInt64 = 0xcbf2_9ce4_8422_2325
        for (_, p) in learner.parameters {
            let words = UnsafeRawPointer(p.value.data).bindMemory(to: UInt32.self, capacity: p.value.count)
            for i in 0..<p.value.count { checksum = (checksum ^ UInt64(words[i])) &* 0x100_0000_01b3 }
        }
        let all = try comm.allgather(Int64(bitPattern: checksum))
        if let bad = all.firstIndex(where: { $0 != all[0] }) {
            throw TrainingError.diverged(
                "trained tensors differ between rank 0 and rank \(bad) after epoch \(epochsDone); ranks must run "
                    + "identical builds and configs"
            )
        }
    }
}
