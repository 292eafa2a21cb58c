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
            "fp32 (OpenBLAS) and bf16 (oneDNN) GFLOP/s at the shapes of one ViT-B/32 layer (batch 32, 60 tokens), "
            + "against the measured peak."
    )

    @Option(help: "Comma-separated thread counts to measure.")
    var threads: String = "1,\(BLASRuntime.onlineCPUs)"

    @Option(help: "Rows (batch × tokens); 1920 = 32 images × (50 tokens + 10 prompts).")
    var rows: Int = 1920

    @Option(help: "Seconds to spend per shape and thread count.")
    var seconds: Double = 1.0

    func run() throws {
        try reportingErrors {
            let counts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--threads must list positive integers, got '\(threads)'")
            }
            let reexec = ProcessInfo.processInfo.environment["CAVPT_DIST_REEXEC_FROM"]
            print(
                "OpenBLAS core: \(BLASRuntime.coreName)"
                    + (reexec.map { " (restarted from \($0) with OPENBLAS_CORETYPE set)" } ?? ""))
            if let warning = BLASRuntime.slowKernelWarning { print("warning: \(warning)") }
            let bf16 = OneDNN.bf16Unsupported == nil
            print(
                "oneDNN \(OneDNN.version), ISA \(OneDNN.isaName)"
                    + (bf16 ? "" : " (no bf16 dot products: bf16 rows skipped)"))
            // (m, n, k) of y = x Wᵀ in forward and dx = dy W in backward for one block.
            let shapes: [(String, Int, Int, Int, Bool)] = [
                ("qkv     fwd", rows, 2304, 768, true), ("out     fwd", rows, 768, 768, true),
                ("c_fc    fwd", rows, 3072, 768, true), ("c_proj  fwd", rows, 768, 3072, true),
                ("qkv     dx ", rows, 768, 2304, false), ("c_fc    dx ", rows, 768, 3072, false),
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
                        + (fp32Peak.map { String(format: "%.0f GFLOP/s fp32 FMA", $0) } ?? "fp32 n/a (no AVX-512)")
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

/// One training step (forward + backward w.r.t. the trained tensors) on ViT-B/32 shapes with random
/// frozen weights — the same work as a PyTorch step on the same shapes, for a ratio on one machine.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract:
            "Seconds per data-parallel training step of a method on ViT-B/32 shapes (random weights); run under "
            + "mpirun for N ranks."
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

    func run() throws {
        try withCommunicator { comm in
            guard let settings = MethodSettings.preset(method) else {
                throw ValidationError(
                    "unknown method '\(method)'; one of \(MethodSettings.presetNames.joined(separator: ", "))")
            }
            BLASRuntime.setThreads(
                comm.defaultBLASThreads(
                    override: threads
                        ?? ProcessInfo.processInfo.environment["CAVPT_DIST_BLAS_THREADS"].flatMap(Int.init)))
            let model = try CLIPModel(
                tensors: RandomCLIP.make(.vitB32, seed: 1),
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
            let pixels = Tensor.randn([shard.count, 3, 224, 224], seed: 2 + UInt64(comm.rank))
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
            guard comm.rank == 0 else { return }
            let median = times.sorted()[times.count / 2], total = times.reduce(0, +)
            print(
                "OpenBLAS core \(BLASRuntime.coreName); \(comm.size) rank(s) × \(BLASRuntime.threads) BLAS thread(s); "
                    + "precision \(RunSetup.precisionSummary(model.precision))")
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            print(
                String(
                    format: "%@ B=%d K=%d %@: median %.3fs/step min %.3f  (%.1f img/s)  peak RSS %.0f MB",
                    method, batch, classes, precision, median, times.min()!, Double(batch) / median,
                    Double(usage.ru_maxrss) / 1024))
            let perStep = { (x: Double) in x / Double(steps) }
            let gemmSeconds = counter.seconds + counter.bf16Seconds + counter.bf16SmallSeconds
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
                    format: "  attention products: %.0f sgemm + %.0f bf16 batched, %.1f GFLOP, %.0f%% of step time",
                    perStep(Double(counter.smallGEMMs)), perStep(Double(counter.bf16SmallGEMMs)),
                    perStep(counter.smallFlops + counter.bf16SmallFlops) / 1e9,
                    100 * (counter.smallSeconds + counter.bf16SmallSeconds) / total))
            if model.precision == .bf16 {
                print("  oneDNN matmul implementations: " + OneDNN.implementations.joined(separator: ", "))
            }
            print(
                String(
                    format:
                        "  breakdown: GEMM %.0f%% of step time (sgemm %.0f%%, bf16 %.0f%%), non-GEMM %.0f%% "
                        + "(%.3fs/step)",
                    100 * gemmSeconds / total, 100 * counter.seconds / total,
                    100 * (counter.bf16Seconds + counter.bf16SmallSeconds) / total,
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
            let counts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("--threads must list positive integers")
            }
            print("\(files.count) JPEG files, train transform to \(resolution)×\(resolution)")
            for t in counts {
                let rate = try benchmarkDecodeAugment(
                    paths: files, resolution: resolution, threads: t, seconds: seconds)
                print(String(format: "  %d thread(s): %.0f images/s", t, rate))
            }
        }
    }
}
