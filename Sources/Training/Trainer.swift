// Data-parallel training and evaluation (DESIGN §4–6): each rank runs forward/backward on its shard
// of every global batch, one fused allreduce carries all trained gradients plus the step's
// statistics, and every rank applies the identical SGD step. Rank 0 alone writes.
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

public struct EvaluationResult: Sendable {
    public var confusion: ConfusionMatrix
    public var seconds: Double
    /// With `recordTop` > 0: per evaluated sample (list order), the top classes and their softmax
    /// probabilities, best first.
    public var top: [[(label: Int, probability: Double)]] = []

    /// Images evaluated per second of wall time (all ranks together: decoding, forward and reduction).
    public var imagesPerSecond: Double { seconds > 0 ? confusion.total / seconds : 0 }
}

public final class Trainer: @unchecked Sendable {
    public let comm: Communicator
    public let config: Config
    public let learner: PromptLearner
    public let optimizer: SGD
    public let data: RunData
    public let output: RunOutput?
    let schedules: [ParameterGroup: LRSchedule]
    /// [all trained gradients | loss share, correct, images, stop requests]: the one buffer reduced
    /// per step. Every rank reads the same reduced values, so every rank takes the same decision on a
    /// non-finite step or a stop signal without another collective.
    let packed: Tensor
    let gradientCount: Int
    public private(set) var epochsDone = 0
    /// Where a mid-epoch checkpoint left the epoch `epochsDone` (its steps and statistics so far).
    public private(set) var resumeProgress: EpochProgress?

    public init(comm: Communicator, config: Config, learner: PromptLearner, data: RunData, output: RunOutput?) {
        self.comm = comm
        self.config = config
        self.learner = learner
        self.data = data
        self.output = output
        optimizer = SGD(
            parameters: learner.parameters, momentum: Float(config.double("optim.momentum")),
            weightDecay: Float(config.double("optim.weightDecay")))
        schedules = [
            .visual: LRSchedule(config: config, group: .visual), .text: LRSchedule(config: config, group: .text),
        ]
        gradientCount = learner.parameters.reduce(0) { $0 + $1.1.value.count }
        packed = Tensor(zeros: [gradientCount + slots])
    }

    var epochs: Int { config.int("train.epochs") }

    /// Statistics after the gradients in the packed buffer: loss share, correct, images, stop
    /// requests, CAVPT loss share, failures.
    let slots = 6

    /// Sweep mode: a failure on one rank (an unreadable image, a write on rank 0) rides in the next
    /// collective, so every rank of the job's group stops at the same point with the same message
    /// (a `JobFailure`) instead of the whole MPI job aborting.
    public var isolatesFailures = false
    /// A failure on this rank waiting to be announced at the next collective.
    var pendingFailure: String?

    /// In sweep mode, an error of `body` becomes this rank's pending failure; otherwise it is thrown.
    func guarded(_ body: () throws -> Void) throws {
        guard isolatesFailures else { return try body() }
        do { try body() } catch let stop as TrainingStop { throw stop } catch {
            if pendingFailure == nil { pendingFailure = "\(error)" }
        }
    }

    /// Every rank learns the failure of the lowest failing rank and throws it.
    func agreeOnFailure() throws -> Never {
        let flags = try comm.allgather(Int64(pendingFailure == nil ? 0 : 1))
        let root = flags.firstIndex { $0 != 0 } ?? 0
        let message = try comm.broadcast(pendingFailure ?? "a rank failed", root: root)
        throw JobFailure(rank: root, message: message)
    }

    var stepsPerEpoch: Int {
        EpochPlan(trainCount: data.train.count, batchSize: config.int("train.batchSize"), seed: 0, epoch: 0)
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
        let every = config.int("checkpoint.every")
        let fault = FaultInjection.fromEnvironment()
        // Installed for training only; on a stop they stay installed, so a second signal (Slurm and
        // mpirun both sending one) cannot kill a rank while it leaves cleanly.
        // A sweep installs them once for all its jobs (and checks them between jobs): a signal that
        // arrives while a job is set up or evaluated waits there instead of being lost or fatal.
        if !isolatesFailures {
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
            try checkConsistency()
            // Validation accuracy on the few-shot val list every eval.valEvery epochs (and the last),
            // sharded over the ranks like the test evaluation.
            let valEvery = config.int("eval.valEvery")
            if valEvery > 0, !data.val.isEmpty, epochsDone % valEvery == 0 || epochsDone == epochs {
                stats.valAccuracy = try evaluate(samples: data.val, listName: "few-shot val list").confusion.accuracy
                output?.say(
                    String(
                        format: "epoch %d/%d  val accuracy %.2f%% (%d images)", epochsDone, epochs,
                        stats.valAccuracy! * 100, data.val.count))
            }
            var checkpointDue = every > 0 && (epochsDone % every == 0 || epochsDone == epochs)
            if case .stopRequested = end { checkpointDue = true } // the epoch's last step: an epoch boundary
            var path: String?
            if let output {
                try guarded {
                    try output.log(epoch: stats, of: epochs)
                    if checkpointDue {
                        if fault?.kind == .crashDuringCheckpoint, fault?.epoch == epochsDone {
                            output.crashDuringCheckpoint(self)
                        }
                        path = try output.checkpoint(self)
                    }
                }
            }
            if let fault, fault.kind == .killRank, fault.epoch == epochsDone {
                // Test hook: the checkpoint of this epoch is complete on rank 0 before any rank dies.
                try comm.barrier()
                if comm.rank == fault.rank { raise(SIGKILL) }
            }
            if case let .stopRequested(step, ranks) = end {
                throw preempted(epoch: epochsDone, step: step, ranks: ranks, checkpoint: path)
            }
        }
        // A signal after the last step's allreduce (during the final checkpoint) has no step left to
        // ride on: one more allreduce agrees on it, and the final checkpoint makes the stop resumable.
        var flags = [StopSignals.pending != 0 ? 1.0 : 0.0, pendingFailure != nil ? 1.0 : 0.0]
        try comm.allreduceSum(&flags)
        if flags[1] > 0 { try agreeOnFailure() }
        let requests = flags[0]
        if requests > 0 {
            var path = output?.newestCheckpoint
            if let output, every == 0 { path = try output.checkpoint(self) }
            throw preempted(epoch: epochs, step: stepsPerEpoch, ranks: Int(requests), checkpoint: path)
        }
        // Evaluation is short and not resumable mid-way: a signal now ends the process.
        if !isolatesFailures { StopSignals.restore() }
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
            trainCount: data.train.count, batchSize: config.int("train.batchSize"),
            seed: config.int("train.seed"), epoch: epoch)
        let steps = plan.globalBatches.count
        let loader = try BatchLoader.training(
            samples: data.train, imageRoot: data.imageRoot, listName: data.trainListName,
            plan: plan, rank: comm.rank, size: comm.size,
            resolution: learner.model.image.resolution,
            workers: config.int("train.workers"), prefetch: config.int("train.prefetch"),
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
            if isolatesFailures {
                do { next = try loader.next() } catch {
                    // Take part in this step with an empty shard; its allreduce tells the group.
                    if pendingFailure == nil { pendingFailure = "\(error)" }
                    next =
                        step < steps
                        ? Batch.empty(
                            index: step, globalCount: plan.globalBatches[step].count,
                            resolution: learner.model.image.resolution) : nil
                }
            } else {
                next = try loader.next()
            }
            guard let batch = next else { break }
            if let fault, fault.kind == .signalSelf, fault.rank == comm.rank, fault.epoch == epoch + 1,
                fault.step == step + 1
            {
                raise(fault.signal) // test hook: a real signal arriving while this step computes
            }
            if let fault, fault.kind == .slowSteps { usleep(UInt32(fault.step) * 1000) } // test hook: long steps
            let result: StepResult
            do { result = try trainStep(batch, epoch: epoch, rates: rates) } catch let nonFinite as NonFiniteStep {
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
            if let output, step % config.int("train.logEvery") == 0 || step == steps {
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

    /// A step's global statistics, and how many ranks asked to stop after it.
    public struct StepResult: Sendable {
        public var loss: Double, correct: Double, images: Double
        public var stopRequests: Int
        /// The CAVPT term of `loss` (α · L_ca).
        public var cavptLoss: Double = 0
    }

    /// A step whose reduced loss or gradient, or whose updated trained state, is not finite.
    struct NonFiniteStep: Error {
        var reason: String
        var result: StepResult
    }

    /// One data-parallel SGD step on this rank's shard. Returns the global mean loss, correct count,
    /// images and stop requests; throws `NonFiniteStep` (on every rank alike) when the reduced loss or
    /// gradient, or the updated trained tensors, are not finite.
    public func trainStep(_ batch: Batch, epoch: Int, rates: [ParameterGroup: Float]) throws -> StepResult {
        let b = batch.labels.count
        let selection =
            b > 0
            ? learner.select(pixels: batch.pixels, epoch: epoch)
            : PromptLearner.Selection(plainFeatures: nil, selected: [])
        // L_ca's normaliser is global: under `ignore` it depends on every rank's data.
        var pairs = learner.contributingPairs(globalBatch: batch.globalCount)
        if learner.pairCountNeedsReduction {
            let local = Double(b > 0 ? learner.contributingPairs(selection, labels: batch.labels) : 0)
            pairs = Int(try comm.allreduce(local, .sum))
        }
        let g = packed.data
        packed.fill(0)
        // Sharded text side: this rank encodes its classes, the features are all-gathered into a leaf
        // the loss uses, and that leaf's gradient (summed over ranks) flows back into this rank's slice.
        let sharded = shardsText ? try ShardedText.gather(learner, comm: comm) : nil
        if b > 0 {
            let out = learner.loss(
                pixels: batch.pixels, labels: batch.labels, selection: selection, epoch: epoch,
                globalBatch: batch.globalCount, contributingPairs: pairs, text: sharded?.leaf)
            out.loss.backward()
            g[gradientCount] = out.loss.value.scalar
            g[gradientCount + 1] = Float(out.correct)
            g[gradientCount + 2] = Float(b)
            g[gradientCount + 4] = out.cavptLoss
        }
        // Every rank, with or without images, sends its classes' share of ∂L/∂ctx.
        try sharded?.backward(comm: comm)
        if StopSignals.pending != 0 { g[gradientCount + 3] = 1 }
        if pendingFailure != nil { g[gradientCount + 5] = 1 }
        var offset = 0
        for (_, p) in learner.parameters {
            if let grad = p.grad { (g + offset).update(from: grad.data, count: grad.count) }
            offset += p.value.count
        }
        // The step's one collective for gradients: every trained gradient, the statistics, the stop flags.
        try comm.allreduce(UnsafeMutableBufferPointer(start: g, count: gradientCount + slots), .sum)
        if g[gradientCount + 5] > 0 { try agreeOnFailure() }
        let loss = Double(g[gradientCount])
        let result = StepResult(
            loss: loss, correct: Double(g[gradientCount + 1]), images: Double(g[gradientCount + 2]),
            stopRequests: Int(g[gradientCount + 3]), cavptLoss: Double(g[gradientCount + 4]))
        if !loss.isFinite {
            for (_, p) in learner.parameters { p.zeroGrad() }
            throw NonFiniteStep(
                reason: "the loss is " + (loss.isNaN ? "NaN" : loss > 0 ? "+inf" : "-inf"), result: result)
        }
        if let name = firstNonFinite(learner.parameters.map { ($0.0, $0.1.value.count) }, in: g) {
            for (_, p) in learner.parameters { p.zeroGrad() }
            throw NonFiniteStep(reason: "the gradient of \(name) is not finite", result: result)
        }
        offset = 0
        for (_, p) in learner.parameters {
            let grad = Tensor(uninitialized: p.shape)
            grad.data.update(from: g + offset, count: grad.count)
            p.setGrad(grad)
            offset += p.value.count
        }
        optimizer.step { rates[$0]! }
        for (_, p) in learner.parameters { p.zeroGrad() }
        // A finite gradient can still overflow the update (lr 1e30, weight decay 1e10, momentum 5).
        for (name, p) in learner.parameters where !allFinite(p.value) {
            throw NonFiniteStep(
                reason: "\(name) is not finite after the SGD update (learning rate \(rates[.of(name)]!))",
                result: result)
        }
        for (name, buffer) in optimizer.buffers where !allFinite(buffer) {
            throw NonFiniteStep(
                reason: "the momentum buffer of \(name) is not finite after the SGD update", result: result)
        }
        return result
    }

    /// Whether this run splits the learned-prompt text encoder over ranks by class (DESIGN §5).
    public var shardsText: Bool {
        guard learner.textContext != nil, comm.size > 1 else { return false }
        switch config.string("train.shardText") {
        case "true": return true
        case "false": return false
        // Worth an allgather once the text side is heavy. In bf16 always: backward rounds the incoming
        // gradient to bf16, which does not add up over ranks, so every rank must push the summed
        // gradient of its classes through the text encoder for N ranks to give one rank's numbers.
        default: return learner.classCount >= 32 || learner.model.precision == .bf16
        }
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

    // MARK: Evaluation

    /// Predictions on `samples` sharded over ranks; every rank gets the reduced confusion matrix
    /// (and, with `recordTop` = k > 0, every sample's k best classes with probabilities).
    public func evaluate(samples: [Sample], listName: String, recordTop: Int = 0) throws -> EvaluationResult {
        let start = Date()
        let loader = try BatchLoader.evaluation(
            samples: samples, imageRoot: data.imageRoot, listName: listName,
            batchSize: config.int("eval.batchSize"), rank: comm.rank, size: comm.size,
            resolution: learner.model.image.resolution,
            workers: config.int("train.workers"), prefetch: config.int("train.prefetch"))
        let textFeatures = learner.evaluationTextFeatures()
        var confusion = ConfusionMatrix(classes: learner.classCount)
        let k = min(recordTop, learner.classCount)
        // [n, k, 2]: (label, probability) pairs; each rank fills its rows, a sum reduces them.
        var top = [Double](repeating: 0, count: k > 0 ? samples.count * k * 2 : 0)
        evaluation: while true {
            var next: Batch?
            do { next = try loader.next() } catch  where isolatesFailures {
                if pendingFailure == nil { pendingFailure = "\(error)" }
                break evaluation
            }
            guard let batch = next else { break }
            guard !batch.labels.isEmpty else { continue }
            let logits = learner.predict(pixels: batch.pixels, textFeatures: textFeatures)
            // A NaN anywhere upstream (a trained tensor, a weight) would still argmax to some class.
            guard allFinite(logits) else {
                let problem = TrainingError.diverged(
                    "evaluation on the \(listName): the model's predictions are not finite "
                        + "(NaN or infinity in the trained tensors or the weights); no accuracy is reported")
                if isolatesFailures { pendingFailure = pendingFailure ?? "\(problem)"; break evaluation }
                throw problem
            }
            let predictions = argmaxRows(logits)
            for (truth, predicted) in zip(batch.labels, predictions) {
                confusion.add(truth: truth, predicted: predicted)
            }
            if k > 0 {
                for (row, position) in batch.positions.enumerated() {
                    for (j, entry) in topClasses(logits.data + row * logits.lastDim, count: logits.lastDim, k: k)
                        .enumerated()
                    {
                        top[(position * k + j) * 2] = Double(entry.0)
                        top[(position * k + j) * 2 + 1] = entry.1
                    }
                }
            }
        }
        if isolatesFailures {
            // One more count carries the failures: every rank of the group stops here together.
            confusion.counts.append(pendingFailure == nil ? 0 : 1)
            try comm.allreduceSum(&confusion.counts)
            if confusion.counts.removeLast() > 0 { try agreeOnFailure() }
        } else {
            try comm.allreduceSum(&confusion.counts)
        }
        var result = EvaluationResult(confusion: confusion, seconds: Date().timeIntervalSince(start))
        if k > 0 {
            try comm.allreduceSum(&top)
            result.top = (0..<samples.count).map { i in
                (0..<k).map { j in (Int(top[(i * k + j) * 2]), top[(i * k + j) * 2 + 1]) }
            }
        }
        return result
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

/// The name of the first tensor whose slice of `buffer` (tensors laid out in order) is not finite.
func firstNonFinite(_ tensors: [(String, Int)], in buffer: UnsafeMutablePointer<Float>) -> String? {
    var offset = 0
    for (name, count) in tensors {
        if !allFinite(buffer + offset, count: count) { return name }
        offset += count
    }
    return nil
}

/// Deterministic failures for the resume tests, from CAVPT_DIST_FAULT:
/// `kill-rank:R:after-epoch:E` — rank R dies by SIGKILL once epoch E's checkpoint is complete;
/// `crash-checkpoint:E` — rank 0 dies by SIGKILL half-way through writing epoch E's checkpoint;
/// `signal-self:R:SIG:epoch:E:step:S` — rank R raises SIG (TERM, INT, USR1) while computing step S
/// of epoch E (both 1-based), as a scheduler's signal would arrive;
/// `slow-steps:MS` — every step sleeps MS milliseconds first (a long run that costs no CPU).
struct FaultInjection {
    enum Kind { case killRank, crashDuringCheckpoint, signalSelf, slowSteps }
    var kind: Kind
    var rank: Int
    var epoch: Int
    var step = 0
    var signal: Int32 = 0

    static func fromEnvironment() -> FaultInjection? {
        guard let spec = ProcessInfo.processInfo.environment["CAVPT_DIST_FAULT"] else { return nil }
        let parts = spec.split(separator: ":").map(String.init)
        if parts.count == 4, parts[0] == "kill-rank", parts[2] == "after-epoch", let r = Int(parts[1]),
            let e = Int(parts[3])
        {
            return FaultInjection(kind: .killRank, rank: r, epoch: e)
        }
        if parts.count == 2, parts[0] == "crash-checkpoint", let e = Int(parts[1]) {
            return FaultInjection(kind: .crashDuringCheckpoint, rank: 0, epoch: e)
        }
        if parts.count == 7, parts[0] == "signal-self", parts[3] == "epoch", parts[5] == "step", let r = Int(parts[1]),
            let signal = StopSignals.number(parts[2]), let e = Int(parts[4]), let s = Int(parts[6])
        {
            return FaultInjection(kind: .signalSelf, rank: r, epoch: e, step: s, signal: signal)
        }
        if parts.count == 2, parts[0] == "slow-steps", let ms = Int(parts[1]), ms >= 0 {
            return FaultInjection(kind: .slowSteps, rank: 0, epoch: 0, step: ms)
        }
        return nil
    }
}

/// The k largest softmax probabilities of one row of logits, best first (lower class on ties).
public func topClasses(_ logits: UnsafePointer<Float>, count: Int, k: Int) -> [(Int, Double)] {
    var maximum = -Double.infinity
    for c in 0..<count { maximum = max(maximum, Double(logits[c])) }
    var total = 0.0
    for c in 0..<count { total += exp(Double(logits[c]) - maximum) }
    let order = (0..<count).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    return order.prefix(k).map { ($0, exp(Double(logits[$0]) - maximum) / total) }
}

/// A job's failure, agreed by every rank of its group (sweep mode): the lowest failing rank's error.
public struct JobFailure: Error, CustomStringConvertible, Sendable {
    public var rank: Int
    public var message: String
    public init(rank: Int, message: String) { self.rank = rank; self.message = message }
    public var description: String { message }
}
