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
}

public struct EvaluationResult: Sendable {
    public var confusion: ConfusionMatrix
    public var seconds: Double
}

public final class Trainer: @unchecked Sendable {
    public let comm: Communicator
    public let config: Config
    public let learner: PromptLearner
    public let optimizer: SGD
    public let data: RunData
    public let output: RunOutput?
    let schedules: [ParameterGroup: LRSchedule]
    /// [all trained gradients | loss share, correct, images]: the one buffer reduced per step.
    let packed: Tensor
    let gradientCount: Int
    public private(set) var epochsDone = 0

    public init(comm: Communicator, config: Config, learner: PromptLearner, data: RunData, output: RunOutput?) {
        self.comm = comm
        self.config = config
        self.learner = learner
        self.data = data
        self.output = output
        optimizer = SGD(parameters: learner.parameters, momentum: Float(config.double("optim.momentum")),
                        weightDecay: Float(config.double("optim.weightDecay")))
        schedules = [.visual: LRSchedule(config: config, group: .visual), .text: LRSchedule(config: config, group: .text)]
        gradientCount = learner.parameters.reduce(0) { $0 + $1.1.value.count }
        packed = Tensor(zeros: [gradientCount + 3])
    }

    var epochs: Int { config.int("train.epochs") }

    public func learningRate(_ group: ParameterGroup, epoch: Int) -> Double { schedules[group]!.rate(epoch: epoch) }

    // MARK: Start and resume

    /// Rank 0's trained tensors (and, when resuming, momentum buffers and epoch) on every rank.
    public func synchronizeStart(resumeFrom checkpoint: Checkpoint?) throws {
        if comm.rank == 0, let checkpoint {
            try learner.load(checkpoint.parameters, requireAll: true)
            try optimizer.loadBuffers(checkpoint.momentum)
            epochsDone = checkpoint.state.epoch
        }
        var header = [Double(epochsDone), Double(optimizer.buffers.count)]
        try comm.broadcast(&header, root: 0)
        epochsDone = Int(header[0])
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

    /// Trains from `epochsDone` to the configured epoch count, checkpointing as configured.
    public func train() throws {
        let every = config.int("checkpoint.every")
        let fault = FaultInjection.fromEnvironment()
        while epochsDone < epochs {
            let allreducesBefore = comm.stats.allreduces
            var stats = try trainEpoch(epochsDone)
            stats.allreduces = comm.stats.allreduces - allreducesBefore
            epochsDone += 1
            try checkConsistency()
            let checkpointDue = every > 0 && (epochsDone % every == 0 || epochsDone == epochs)
            if let output {
                try output.log(epoch: stats, of: epochs)
                if checkpointDue {
                    if fault?.kind == .crashDuringCheckpoint, fault?.epoch == epochsDone { output.crashDuringCheckpoint(self) }
                    try output.checkpoint(self)
                }
            }
            if let fault, fault.kind == .killRank, fault.epoch == epochsDone {
                // Test hook: the checkpoint of this epoch is complete on rank 0 before any rank dies.
                try comm.barrier()
                if comm.rank == fault.rank { raise(SIGKILL) }
            }
        }
    }

    public func trainEpoch(_ epoch: Int) throws -> EpochStats {
        let plan = EpochPlan(trainCount: data.train.count, batchSize: config.int("train.batchSize"),
                             seed: config.int("train.seed"), epoch: epoch)
        let loader = try BatchLoader.training(samples: data.train, imageRoot: data.imageRoot, listName: data.trainListName,
                                              plan: plan, rank: comm.rank, size: comm.size,
                                              resolution: learner.model.image.resolution,
                                              workers: config.int("train.workers"), prefetch: config.int("train.prefetch"))
        let rates = Dictionary(uniqueKeysWithValues: ParameterGroup.allCases.map { ($0, Float(learningRate($0, epoch: epoch))) })
        let start = Date()
        let commStart = comm.stats.secondsInCollectives
        var lossSum = 0.0, correct = 0.0, images = 0.0
        var step = 0
        while let batch = try loader.next() {
            let (loss, hits, count) = try trainStep(batch, epoch: epoch, rates: rates)
            lossSum += loss
            correct += hits
            images += count
            step += 1
            if let output, step % config.int("train.logEvery") == 0 || step == loader.batchCount {
                output.progress(epoch: epoch, epochs: epochs, step: step, steps: loader.batchCount, loss: lossSum / Double(step),
                                accuracy: images > 0 ? correct / images : 0, lr: Double(rates[.visual]!),
                                textLR: learner.textContext == nil ? nil : Double(rates[.text]!),
                                imagesPerSecond: images / max(Date().timeIntervalSince(start), 1e-9),
                                elapsed: Date().timeIntervalSince(start))
            }
        }
        return EpochStats(epoch: epoch, loss: step > 0 ? lossSum / Double(step) : 0, accuracy: images > 0 ? correct / images : 0,
                          images: Int(images), seconds: Date().timeIntervalSince(start),
                          communicationSeconds: comm.stats.secondsInCollectives - commStart,
                          learningRates: Dictionary(uniqueKeysWithValues: rates.map { ($0.key.rawValue, Double($0.value)) }),
                          steps: step)
    }

    /// One data-parallel SGD step on this rank's shard. Returns the global (mean loss, correct, images).
    public func trainStep(_ batch: Batch, epoch: Int, rates: [ParameterGroup: Float]) throws -> (Double, Double, Double) {
        let b = batch.labels.count
        let selection = b > 0 ? learner.select(pixels: batch.pixels, epoch: epoch)
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
            let out = learner.loss(pixels: batch.pixels, labels: batch.labels, selection: selection, epoch: epoch,
                                   globalBatch: batch.globalCount, contributingPairs: pairs, text: sharded?.leaf)
            out.loss.backward()
            g[gradientCount] = out.loss.value.scalar
            g[gradientCount + 1] = Float(out.correct)
            g[gradientCount + 2] = Float(b)
        }
        // Every rank, with or without images, sends its classes' share of ∂L/∂ctx.
        try sharded?.backward(comm: comm)
        var offset = 0
        for (_, p) in learner.parameters {
            if let grad = p.grad { (g + offset).update(from: grad.data, count: grad.count) }
            offset += p.value.count
        }
        // The step's one collective for gradients: every trained gradient and the statistics.
        try comm.allreduce(UnsafeMutableBufferPointer(start: g, count: gradientCount + 3), .sum)
        offset = 0
        for (_, p) in learner.parameters {
            let grad = Tensor(uninitialized: p.shape)
            grad.data.update(from: g + offset, count: grad.count)
            p.setGrad(grad)
            offset += p.value.count
        }
        optimizer.step { rates[$0]! }
        for (_, p) in learner.parameters { p.zeroGrad() }
        return (Double(g[gradientCount]), Double(g[gradientCount + 1]), Double(g[gradientCount + 2]))
    }

    /// Whether this run splits the learned-prompt text encoder over ranks by class (DESIGN §5).
    public var shardsText: Bool {
        guard learner.textContext != nil, comm.size > 1 else { return false }
        switch config.string("train.shardText") {
        case "true": return true
        case "false": return false
        default: return learner.classCount >= 32   // worth an allgather once the text side is heavy
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
            throw TrainingError.diverged("trained tensors differ between rank 0 and rank \(bad) after epoch \(epochsDone); ranks must run identical builds and configs")
        }
    }

    // MARK: Evaluation

    /// Predictions on `samples` sharded over ranks; every rank gets the reduced confusion matrix.
    public func evaluate(samples: [Sample], listName: String) throws -> EvaluationResult {
        let start = Date()
        let loader = try BatchLoader.evaluation(samples: samples, imageRoot: data.imageRoot, listName: listName,
                                                batchSize: config.int("eval.batchSize"), rank: comm.rank, size: comm.size,
                                                resolution: learner.model.image.resolution,
                                                workers: config.int("train.workers"), prefetch: config.int("train.prefetch"))
        let textFeatures = learner.evaluationTextFeatures()
        var confusion = ConfusionMatrix(classes: learner.classCount)
        while let batch = try loader.next() {
            guard !batch.labels.isEmpty else { continue }
            let predictions = argmaxRows(learner.predict(pixels: batch.pixels, textFeatures: textFeatures))
            for (truth, predicted) in zip(batch.labels, predictions) { confusion.add(truth: truth, predicted: predicted) }
        }
        try comm.allreduceSum(&confusion.counts)
        return EvaluationResult(confusion: confusion, seconds: Date().timeIntervalSince(start))
    }
}

/// Deterministic failures for the resume tests, from CAVPT_DIST_FAULT:
/// `kill-rank:R:after-epoch:E` — rank R dies by SIGKILL once epoch E's checkpoint is complete;
/// `crash-checkpoint:E` — rank 0 dies by SIGKILL half-way through writing epoch E's checkpoint.
struct FaultInjection {
    enum Kind { case killRank, crashDuringCheckpoint }
    var kind: Kind
    var rank: Int
    var epoch: Int

    static func fromEnvironment() -> FaultInjection? {
        guard let spec = ProcessInfo.processInfo.environment["CAVPT_DIST_FAULT"] else { return nil }
        let parts = spec.split(separator: ":").map(String.init)
        if parts.count == 4, parts[0] == "kill-rank", parts[2] == "after-epoch", let r = Int(parts[1]), let e = Int(parts[3]) {
            return FaultInjection(kind: .killRank, rank: r, epoch: e)
        }
        if parts.count == 2, parts[0] == "crash-checkpoint", let e = Int(parts[1]) {
            return FaultInjection(kind: .crashDuringCheckpoint, rank: 0, epoch: e)
        }
        return nil
    }
}
