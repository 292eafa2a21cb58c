// `cavpt-dist bench …`: figures for the performance notes (never used by tests).
import ArgumentParser
import CLIP
import Data
import Foundation
import PromptTuning
import Tensor
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print performance figures for this machine.",
        subcommands: [BenchGEMM.self, BenchStep.self, BenchData.self])
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract:
            "fp32 (OpenBLAS) and bf16 (oneDNN) GFLOP/s at the shapes of one layer of an architecture (batch 32, "
            + "its tokens + 10 prompts), against the measured peak."
    )

    @Option(help: "Comma-separated thread counts to measure.")
    var threads: String = "1,\(BLASRuntime.onlineCPUs)"

    @Option(help: "Architecture whose layer shapes to measure: ViT-B/32, ViT-B/16 or ViT-L/14.")
    var arch: String = "ViT-B/32"

    @Option(help: "Rows (batch × tokens; default 32 images × (tokens + 10 prompts), 1920 for ViT-B/32).")
    var rows: Int?

    @Option(help: "Seconds to spend per shape and thread count.")
    var seconds: Double = 1.0

    func run() throws {
        try reportingErrors {
            let counts = try BenchArguments.threadCounts(threads)
            let (archName, shape) = try BenchArguments.shape(arch)
            let rows = self.rows ?? 32 * (shape.imageTokens + 10)
            try BenchArguments.check("rows", rows, 1...65_536)
            try BenchArguments.checkSeconds(seconds)
            let reexec = ProcessInfo.processInfo.environment["CAVPT_DIST_REEXEC_FROM"]
            print(
                "OpenBLAS core: \(BLASRuntime.coreName)"
                    + (reexec.map { " (restarted from \($0) with OPENBLAS_CORETYPE set)" } ?? ""))
            if let warning = BLASRuntime.slowKernelWarning { print("warning: \(warning)") }
            let bf16 = OneDNN.bf16Unsupported == nil
            print(
                "oneDNN \(OneDNN.version), ISA \(OneDNN.isaName)"
                    + (bf16 ? "" : " (no bf16 dot products: bf16 rows skipped)"))
            // (m, n, k) of y = x Wᵀ in forward and dx = dy W in backward for one image block.
            let d = shape.visionWidth
            print("\(archName): image width \(d), \(rows) rows")
            let shapes: [(String, Int, Int, Int, Bool)] = [
                ("qkv     fwd", rows, 3 * d, d, true), ("out     fwd", rows, d, d, true),
                ("c_fc    fwd", rows, 4 * d, d, true), ("c_proj  fwd", rows, d, 4 * d, true),
                ("qkv     dx ", rows, d, 3 * d, false), ("c_fc    dx ", rows, d, 4 * d, false),
            ]
            for t in counts {
                BLASRuntime.setThreads(t)
                let fp32Peak = PeakRate.measure(.fp32FMA, threads: t)
                let bf16Peak = bf16 ? PeakRate.measure(.bf16Dot, threads: t) : nil
                func share(_ rate: Double, _ peak: Double?) -> String {
                    peak.map { String(format: "%3.0f%% of peak", 100 * rate / $0) } ?? "peak unknown"
                }
                print(
                    "threads \(t): measured peak "
                        + (fp32Peak.map { String(format: "%.0f GFLOP/s fp32 FMA", $0) } ?? "fp32 n/a (no AVX2/FMA)")
                        + (bf16Peak.map { String(format: ", %.0f GFLOP/s bf16 dot product", $0) } ?? ""))
                for (name, m, n, k, transB) in shapes {
                    let rate = measureGEMM(m: m, n: n, k: k, seconds: seconds)
                    var line = String(
                        format: "  %@  %5d×%4d×%4d  fp32 %7.1f GFLOP/s (%@)",
                        name, m, n, k, rate, share(rate, fp32Peak))
                    if bf16 {
                        let r = measureBF16GEMM(m: m, n: n, k: k, transB: transB, seconds: seconds)
                        line += String(format: "   bf16 %7.1f GFLOP/s (%@)  %.2f×", r, share(r, bf16Peak), r / rate)
                    }
                    print(line)
                }
            }
        }
    }
}

func measureGEMM(m: Int, n: Int, k: Int, seconds: Double) -> Double {
    let a = Tensor.randn([m, k], seed: 1), b = Tensor.randn([n, k], seed: 2)
    let c = Tensor(zeros: [m, n])
    return timedRate(flops: 2 * Double(m) * Double(n) * Double(k), seconds: seconds) {
        BLAS.gemm(transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: c.data, ldc: n)
    }
}

/// bf16 × bf16 → fp32 through oneDNN as the frozen-weight products run it: W [n, k] used transposed
/// in forward (transB), W [k, n] as stored for the input gradient.
func measureBF16GEMM(m: Int, n: Int, k: Int, transB: Bool, seconds: Double) -> Double {
    let a = BF16Tensor(rounding: .randn([m, k], seed: 1))
    let b = BF16Tensor(rounding: .randn(transB ? [n, k] : [k, n], seed: 2))
    let c = Tensor(zeros: [m, n])
    return timedRate(flops: 2 * Double(m) * Double(n) * Double(k), seconds: seconds) {
        OneDNN.gemm(
            m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: transB ? k : n, transB: transB, c: c.data, ldc: n)
    }
}

/// GFLOP/s of `body` (one warm-up call, then repeated for `seconds`).
func timedRate(flops: Double, seconds: Double, _ body: () -> Void) -> Double {
    body()
    var runs = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        body()
        runs += 1
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < seconds
    return flops * Double(runs) / elapsed / 1e9
}

/// One training step (forward + backward w.r.t. the trained tensors) on an architecture's shapes with
/// random frozen weights — the same work as a PyTorch step on the same shapes, for a ratio on one machine.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract:
            "Seconds per data-parallel training step of a method on ViT-B/32, B/16 or L/14 shapes (random "
            + "weights); run under mpirun for N ranks."
    )

    @Option(help: "Preset: zsclip (evaluation forward), coop, vpt_deep, vlp_deep, vpt_cavpt, vlp_cavpt, …")
    var method: String = "vpt_deep"
    @Option(help: "Images per step (the global batch, split over the ranks).") var batch: Int = 32
    @Option(help: "Classes K.") var classes: Int = 10
    @Option(help: "Tokens in each class prompt before EOT padding (PyTorch peer: EOT at 20).") var eot: Int = 20
    @Option(help: "Timed steps (after one warm-up step).") var steps: Int = 3
    @Option(help: "BLAS threads per rank (default: cores ÷ ranks on the node).") var threads: Int?
    @Flag(name: .customLong("shard-text"), help: "Split the learned-prompt text encoder over the ranks by class.")
    var shardText = false
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16.") var precision: String = "fp32"
    @Option(help: "Architecture: ViT-B/32, ViT-B/16 or ViT-L/14 (widths, layers, heads, patch).")
    var arch: String = "ViT-B/32"
    @Option(help: "runtime.recompute: none, attention or blocks.") var recompute: String = "none"

    func run() throws {
        try withCommunicator { comm in
            let (archName, shape) = try BenchArguments.shape(arch)
            try BenchArguments.check("batch", batch, 1...4096)
            try BenchArguments.check("classes", classes, 1...100_000)
            try BenchArguments.check("eot", eot, 2...77)
            try BenchArguments.check("steps", steps, 1...1000)
            if let threads { try BenchArguments.check("threads", threads, 1...4 * BLASRuntime.onlineCPUs) }
            guard let mode = Recompute(rawValue: recompute) else {
                throw ValidationError("--recompute must be one of none, attention, blocks, got '\(recompute)'")
            }
            ResidualBlock.recompute = mode
            guard let settings = MethodSettings.preset(method) else {
                throw ValidationError(
                    "unknown method '\(method)'; one of \(MethodSettings.presetNames.joined(separator: ", "))")
            }
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
            let learner = try PromptLearner(model: model, prompts: prompts, settings: settings, seed: 1)
            let shard = EpochPlan.shard(0..<batch, rank: comm.rank, size: comm.size)
            let pixels = Tensor.randn(
                [shard.count, 3, shape.resolution, shape.resolution], seed: 2 + UInt64(comm.rank))
            let labels = shard.map { $0 % classes }
            let gradientCount = learner.parameters.reduce(0) { $0 + $1.1.value.count }
            let packed = Tensor(zeros: [gradientCount + 1])
            var communication = 0.0, waiting = 0.0
            func step() throws {
                if !settings.trainsAnything {
                    if !labels.isEmpty { _ = learner.predict(pixels: pixels, textFeatures: learner.templateFeatures) }
                    return
                }
                let sharded =
                    shardText && learner.textContext != nil ? try ShardedText.gather(learner, comm: comm) : nil
                if !labels.isEmpty {
                    let selection = learner.select(pixels: pixels, epoch: 100)
                    let out = learner.loss(
                        pixels: pixels, labels: labels, selection: selection, epoch: 100, globalBatch: batch,
                        contributingPairs: learner.contributingPairs(globalBatch: batch), text: sharded?.leaf)
                    out.loss.backward()
                }
                try sharded?.backward(comm: comm)
                do {
                    var offset = 0
                    for (_, p) in learner.parameters {
                        if let g = p.grad { (packed.data + offset).update(from: g.data, count: g.count) }
                        offset += p.value.count
                        p.zeroGrad()
                    }
                }
                // The trainer's fused allreduce; the barrier separates waiting for the slowest rank
                // from the transfer itself.
                var t0 = DispatchTime.now().uptimeNanoseconds
                try comm.barrier()
                var t1 = DispatchTime.now().uptimeNanoseconds
                waiting += Double(t1 - t0) / 1e9
                t0 = t1
                try comm.allreduce(UnsafeMutableBufferPointer(start: packed.data, count: gradientCount + 1), .sum)
                t1 = DispatchTime.now().uptimeNanoseconds
                communication += Double(t1 - t0) / 1e9
            }
            try step()
            communication = 0; waiting = 0
            var times: [Double] = []
            let counter = OpCounter(timed: true)
            for _ in 0..<steps {
                let start = DispatchTime.now().uptimeNanoseconds
                try BLAS.$counter.withValue(counter) { try step() }
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            // Every rank's peak memory (each holds its shard's activations), and the machine's peak rate.
            let peaks = try comm.allgather(ProcessMemory.peakResidentMB)
            guard comm.rank == 0 else { return }
            let median = times.sorted()[times.count / 2], total = times.reduce(0, +)
            print(
                "OpenBLAS core \(BLASRuntime.coreName); \(comm.size) rank(s) × \(BLASRuntime.threads) BLAS thread(s); "
                    + "precision \(RunSetup.precisionSummary(model.precision)); \(archName); attention "
                    + (FusedAttention.enabled ? "fused (\(FusedAttention.kernel))" : "unfused")
                    + "; recompute \(mode.rawValue)")
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
                        gradientCount + 1, 1000 * communication / Double(steps), 100 * communication / total,
                        100 * waiting / total))
            }
        }
    }
}

/// Decode + train-augment throughput of the data pipeline, to set next to a step's image rate.
struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Images/s that JPEG decoding plus the training transform sustain (to compare with `bench step`).")

    @Argument(help: "JPEG files, or folders searched for *.jpg/*.jpeg.") var paths: [String]
    @Option(help: "Output resolution R (R×R).") var resolution: Int = 224
    @Option(help: "Comma-separated worker thread counts.") var threads: String = "1,\(BLASRuntime.onlineCPUs)"
    @Option(help: "Seconds per measurement.") var seconds: Double = 3

    func run() throws {
        try reportingErrors {
            try BenchArguments.checkSeconds(seconds)
            try BenchArguments.check("resolution", resolution, 8...4096)
            let counts = try BenchArguments.threadCounts(threads)
            var files: [String] = []
            for path in paths {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    throw ValidationError("\(path) does not exist")
                }
                if isDirectory.boolValue {
                    let found =
                        FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String }
                        .filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }.sorted()
                        ?? []
                    files += found.map { path + "/" + $0 }
                } else {
                    files.append(path)
                }
            }
            guard !files.isEmpty else { throw ValidationError("no JPEG files in \(paths.joined(separator: ", "))") }
            print("\(files.count) JPEG files, train transform to \(resolution)×\(resolution)")
            for t in counts {
                let rate = try benchmarkDecodeAugment(
                    paths: files, resolution: resolution, threads: t, seconds: seconds)
                print(String(format: "  %d thread(s): %.0f images/s", t, rate))
            }
        }
    }
}
