// `bench step`: seconds per training step of a method on an architecture's shapes with random frozen weights,
// running the trainer's own step (`TrainingStep`: its collectives, packed buffer and update), with the
// products' share of the time, the allreduce's, and the collectives per step. Rank 0 prints.
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor
import Training

public struct StepBenchmark {
    public var method = "vpt_deep"
    /// B, the global batch (split over the ranks).
    public var batch = 32
    public var classes = 10
    /// Tokens in each class prompt before EOT padding (the PyTorch peer's EOT at 20).
    public var eot = 20
    /// Timed steps (after one warm-up step).
    public var steps = 3
    /// BLAS threads per rank (nil: cores ÷ ranks on the node).
    public var threads: Int?
    public var shardText = false
    public var precision = "fp32"
    /// The architecture's shapes (widths, layers, heads, patch) and its name for the report.
    public var shape = CLIPShape.vitB32
    public var archName = "ViT-B/32"
    /// `runtime.recompute` for the step.
    public var recompute = Recompute.none

    public init() {}

    public func run(_ comm: Communicator) throws {
        guard MethodPresets.names.contains(method) else {
            throw TrainingError.input(
                "unknown method '\(method)'; one of \(MethodPresets.names.joined(separator: ", "))")
        }
        var options = RunOptions()
        options.method = method
        let settings = try RunSetup.config(options).settings
        ResidualBlock.recompute = recompute
        BLASRuntime.setThreads(
            comm.defaultBLASThreads(
                override: threads
                    ?? ProcessInfo.processInfo.environment["CAVPT_DIST_BLAS_THREADS"].flatMap(Int.init)))
        let model = try CLIPModel(
            tensors: RandomCLIP.make(shape, seed: 1),
            precision: try RunSetup.checkedPrecision(precision))
        // Class prompts of fixed length: SOT, words…, EOT at `eot`, as the PyTorch peer's.
        let names = (0..<classes).map { "class\($0)" }
        var nextWord = 0
        let prompts = try ClassPrompts(classNames: names, template: "a photo of a {}.", contextLength: 16) { text in
            let words = text.split(separator: " ").count
            var ids = [49406]
            for w in 0..<max(words, eot - 1) {
                if text.hasPrefix("X") && w < 16 {
                    ids.append(343)
                } else {
                    nextWord += 1; ids.append(400 + nextWord % 40000)
                }
            }
            ids = Array(ids.prefix(eot)) + [49407]
            return ids + Array(repeating: 0, count: 77 - ids.count)
        }
        let learner = try PromptLearner(model: model, prompts: prompts, settings: settings.method, seed: 1)
        let shard = EpochPlan.shard(0..<batch, rank: comm.rank, size: comm.size)
        let pixels = Tensor.randn([shard.count, 3, shape.resolution, shape.resolution], seed: 2 + UInt64(comm.rank))
        let labels = shard.map { $0 % classes }
        // The trainer's step: its collectives, its packed buffer, its update (at epoch 100's rates,
        // past any guidance phase).
        let step = TrainingStep(
            learner: learner, comm: comm, shardsText: shardText && learner.textContext != nil,
            failures: FailurePolicy(.solo, comm: comm))
        let optimizer = SGD(
            parameters: learner.parameters, momentum: Float(settings.optim.momentum),
            weightDecay: Float(settings.optim.weightDecay))
        let rates = Dictionary(
            uniqueKeysWithValues: ParameterGroup.allCases.map {
                ($0, Float(LRSchedule(settings, group: $0).rate(epoch: 100)))
            })
        var localSeconds: [Double] = [], reduceSeconds: [Double] = []
        func timedStep() throws {
            if !settings.method.trainsAnything {
                if !labels.isEmpty { _ = learner.predict(pixels: pixels, textFeatures: learner.templateFeatures) }
                return
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            try step.accumulate(pixels: pixels, labels: labels, globalBatch: batch, epoch: 100)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let result = try step.reduce()
            let t2 = DispatchTime.now().uptimeNanoseconds
            try step.apply(result, optimizer: optimizer, rates: rates)
            localSeconds.append(Double(t1 - t0) / 1e9)
            reduceSeconds.append(Double(t2 - t1) / 1e9)
        }
        try timedStep()
        localSeconds = []; reduceSeconds = []
        var times: [Double] = []
        let counter = OpCounter(timed: true)
        let before = comm.stats
        for _ in 0..<steps {
            let start = DispatchTime.now().uptimeNanoseconds
            try BLAS.$counter.withValue(counter) { try timedStep() }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let after = comm.stats
        // Waiting for the slowest rank: how much longer the slowest rank's forward and backward
        // took than this rank's, step by step (the rest of the allreduce's time is the transfer).
        var slowest = localSeconds
        if comm.size > 1, !localSeconds.isEmpty {
            var all = [Double](repeating: 0, count: localSeconds.count * comm.size)
            try localSeconds.withUnsafeBufferPointer { mine in
                try all.withUnsafeMutableBufferPointer {
                    try comm.allgather(
                        mine, into: $0, counts: Array(repeating: localSeconds.count, count: comm.size))
                }
            }
            slowest = (0..<localSeconds.count).map { i in
                (0..<comm.size).map { all[$0 * localSeconds.count + i] }.max()!
            }
        }
        let waiting = zip(slowest, localSeconds).reduce(0) { $0 + $1.0 - $1.1 }
        let communication = reduceSeconds.reduce(0, +) - waiting
        // Every rank's peak memory (each holds its shard's activations).
        let peaks = try comm.allgather(ProcessMemory.peakResidentMB)
        guard comm.rank == 0 else { return }
        let median = times.sorted()[times.count / 2], total = times.reduce(0, +)
        print(
            "OpenBLAS core \(BLASRuntime.coreName); \(comm.size) rank(s) × \(BLASRuntime.threads) BLAS thread(s); "
                + "precision \(RunSetup.precisionSummary(model.precision)); \(archName); attention "
                + (FusedAttention.enabled ? "fused (\(FusedAttention.kernel))" : "unfused")
                + "; recompute \(recompute.rawValue)")
        print(
            String(
                format: "%@ B=%d K=%d %@: median %.3fs/step min %.3f  (%.1f img/s)  peak RSS %.0f MB",
                method, batch, classes, precision, median, times.min()!, Double(batch) / median,
                peaks.max() ?? 0))
        if comm.size > 1 {
            print("  peak RSS per rank: " + peaks.map { String(format: "%.0f MB", $0) }.joined(separator: ", "))
        }
        let perStep = { (x: Double) in x / Double(steps) }
        let gemmSeconds =
            counter.seconds + counter.bf16Seconds + counter.bf16SmallSeconds + counter.fusedAttentionSeconds
        print(
            String(
                format:
                    "  rank 0 per step: %.0f sgemm (%.1f GFLOP at %.0f GFLOP/s), %.0f bf16 oneDNN (%.1f GFLOP "
                    + "at %.0f GFLOP/s)",
                perStep(Double(counter.gemms)), perStep(counter.flops) / 1e9,
                counter.flops / 1e9 / max(counter.seconds, 1e-9),
                perStep(Double(counter.bf16GEMMs + counter.bf16SmallGEMMs)),
                perStep(counter.bf16Flops + counter.bf16SmallFlops) / 1e9,
                (counter.bf16Flops + counter.bf16SmallFlops) / 1e9
                    / max(counter.bf16Seconds + counter.bf16SmallSeconds, 1e-9)))
        print(
            String(
                format:
                    "  attention: %.0f fused kernel calls + %.0f sgemm + %.0f bf16 batched products, %.1f GFLOP, "
                    + "%.0f%% of step time",
                perStep(Double(counter.fusedAttentionCalls)), perStep(Double(counter.smallGEMMs)),
                perStep(Double(counter.bf16SmallGEMMs)),
                perStep(counter.smallFlops + counter.bf16SmallFlops + counter.fusedAttentionFlops) / 1e9,
                100 * (counter.smallSeconds + counter.bf16SmallSeconds + counter.fusedAttentionSeconds) / total))
        // The whole step's counted FLOPs (products and fused attention) against the measured peak.
        let stepFlops =
            (counter.flops + counter.bf16Flops + counter.bf16SmallFlops + counter.fusedAttentionFlops)
            / Double(steps)
        let peak = PeakRate.measure(model.precision == .bf16 ? .bf16Dot : .fp32FMA, threads: BLASRuntime.threads)
        print(
            String(format: "  step: %.1f GFLOP counted, %.0f GFLOP/s", stepFlops / 1e9, stepFlops / median / 1e9)
                + (peak.map {
                    String(
                        format: ", %.0f%% of the measured %@ peak (%.0f GFLOP/s)",
                        100 * stepFlops / median / 1e9 / $0, model.precision == .bf16 ? "bf16" : "fp32", $0)
                } ?? ""))
        if model.precision == .bf16 {
            print("  oneDNN matmul implementations: " + OneDNN.implementations.joined(separator: ", "))
        }
        print(
            String(
                format:
                    "  breakdown: GEMM %.0f%% of step time (sgemm %.0f%%, bf16 %.0f%%, fused attention %.0f%%), "
                    + "non-GEMM %.0f%% (%.3fs/step)",
                100 * gemmSeconds / total, 100 * counter.seconds / total,
                100 * (counter.bf16Seconds + counter.bf16SmallSeconds) / total,
                100 * counter.fusedAttentionSeconds / total,
                100 * (1 - gemmSeconds / total), (total - gemmSeconds) / Double(steps)))
        if comm.size > 1 {
            print(
                String(
                    format:
                        "  allreduce of %d floats: %.2f ms/step (%.2f%% of step time); waiting for the slowest "
                        + "rank %.1f%%",
                    step.buffer.count, 1000 * communication / Double(steps), 100 * communication / total,
                    100 * waiting / total))
        }
        let perStepCount = { (n: Int) in Double(n) / Double(max(steps, 1)) }
        print(
            String(
                format: "  collectives per step: %.0f allreduce, %.0f allgather, %.0f broadcast",
                perStepCount(after.allreduces - before.allreduces),
                perStepCount(after.allgathers - before.allgathers),
                perStepCount(after.broadcasts - before.broadcasts)))
    }
}
