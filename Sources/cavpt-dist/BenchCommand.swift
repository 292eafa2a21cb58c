// `cavpt-dist bench …`: figures for the performance notes (never used by tests).
import ArgumentParser
import Foundation
import Tensor
import CLIP
import PromptTuning
import Data
import Training

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print performance figures for this machine.",
        subcommands: [BenchGEMM.self, BenchStep.self, BenchData.self])
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "sgemm GFLOP/s at the shapes of one ViT-B/32 layer (batch 32, 60 tokens) and the peak estimate.")

    @Option(help: "Comma-separated BLAS thread counts to measure.")
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
            print("OpenBLAS core: \(BLASRuntime.coreName)"
                  + (reexec.map { " (restarted from \($0) with OPENBLAS_CORETYPE set)" } ?? ""))
            if let warning = BLASRuntime.slowKernelWarning { print("warning: \(warning)") }
            let peak = PeakEstimate.current()
            print(String(format: "peak estimate: %.0f GFLOP/s per core (%@), %d cores", peak.perCore, peak.basis, BLASRuntime.onlineCPUs))
            // (m, n, k) of y = x Wᵀ in forward and dx = dy W in backward for one block.
            let shapes: [(String, Int, Int, Int)] = [
                ("qkv     fwd", rows, 2304, 768), ("out     fwd", rows, 768, 768),
                ("c_fc    fwd", rows, 3072, 768), ("c_proj  fwd", rows, 768, 3072),
                ("qkv     dx ", rows, 768, 2304), ("c_fc    dx ", rows, 768, 3072),
            ]
            for t in counts {
                BLASRuntime.setThreads(t)
                print("threads \(t):")
                for (name, m, n, k) in shapes {
                    let rate = measureGEMM(m: m, n: n, k: k, seconds: seconds)
                    print(String(format: "  %@  %5d×%4d×%4d  %7.1f GFLOP/s  (%.0f%% of %d-core peak)",
                                 name, m, n, k, rate, 100 * rate / (peak.perCore * Double(t)), t))
                }
            }
        }
    }
}

func measureGEMM(m: Int, n: Int, k: Int, seconds: Double) -> Double {
    let a = Tensor.randn([m, k], seed: 1), b = Tensor.randn([n, k], seed: 2)
    let c = Tensor(zeros: [m, n])
    BLAS.gemm(transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: c.data, ldc: n)
    var runs = 0
    let start = DispatchTime.now().uptimeNanoseconds
    var elapsed = 0.0
    repeat {
        BLAS.gemm(transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: c.data, ldc: n)
        runs += 1
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    } while elapsed < seconds
    return 2 * Double(m) * Double(n) * Double(k) * Double(runs) / elapsed / 1e9
}

/// Peak fp32 rate: clock × FLOPs per cycle of the widest FMA units the CPU reports.
struct PeakEstimate {
    var perCore: Double
    var basis: String

    static func current() -> PeakEstimate {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let mhz = info.split(separator: "\n").first { $0.hasPrefix("cpu MHz") }
            .flatMap { Double($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) } ?? 2000
        let best = BLASRuntime.bestCoreForThisCPU()
        // AVX-512: 2 FMA units × 16 lanes × 2; AVX2: 2 × 8 × 2; otherwise SSE 2 × 4 × 2.
        let perCycle: Double = best == "SkylakeX" ? 64 : best == "Haswell" ? 32 : 16
        return PeakEstimate(perCore: mhz / 1000 * perCycle,
                            basis: String(format: "%.2f GHz × %.0f FLOP/cycle", mhz / 1000, perCycle))
    }
}

/// One training step (forward + backward w.r.t. the trained tensors) on ViT-B/32 shapes with random
/// frozen weights — the same work as a PyTorch step on the same shapes, for a ratio on one machine.
struct BenchStep: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Seconds per data-parallel training step of a method on ViT-B/32 shapes (random weights); run under mpirun for N ranks.")

    @Option(help: "Preset: zsclip (evaluation forward), coop, vpt_deep, vlp_deep, vpt_cavpt, vlp_cavpt, …")
    var method: String = "vpt_deep"
    @Option(help: "Images per step (the global batch, split over the ranks).") var batch: Int = 32
    @Option(help: "Classes K.") var classes: Int = 10
    @Option(help: "Tokens in each class prompt before EOT padding (PyTorch peer: EOT at 20).") var eot: Int = 20
    @Option(help: "Timed steps (after one warm-up step).") var steps: Int = 3
    @Option(help: "BLAS threads per rank (default: cores ÷ ranks on the node).") var threads: Int?
    @Flag(name: .customLong("shard-text"), help: "Split the learned-prompt text encoder over the ranks by class.")
    var shardText = false

    func run() throws {
        try withCommunicator { comm in
            guard let settings = MethodSettings.preset(method) else {
                throw ValidationError("unknown method '\(method)'; one of \(MethodSettings.presetNames.joined(separator: ", "))")
            }
            BLASRuntime.setThreads(comm.defaultBLASThreads(override: threads
                ?? ProcessInfo.processInfo.environment["CAVPT_DIST_BLAS_THREADS"].flatMap(Int.init)))
            let model = try CLIPModel(tensors: RandomCLIP.make(.vitB32, seed: 1))
            // Class prompts of fixed length: SOT, words…, EOT at `eot`, as the PyTorch peer's.
            let names = (0..<classes).map { "class\($0)" }
            var nextWord = 0
            let prompts = try ClassPrompts(classNames: names, template: "a photo of a {}.", contextLength: 16) { text in
                let words = text.split(separator: " ").count
                var ids = [49406]
                for w in 0..<max(words, eot - 1) {
                    if text.hasPrefix("X") && w < 16 { ids.append(343) } else { nextWord += 1; ids.append(400 + nextWord % 40000) }
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
                let sharded = shardText && learner.textContext != nil ? try ShardedText.gather(learner, comm: comm) : nil
                if !labels.isEmpty {
                    let selection = learner.select(pixels: pixels, epoch: 100)
                    let out = learner.loss(pixels: pixels, labels: labels, selection: selection, epoch: 100, globalBatch: batch,
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
            print("OpenBLAS core \(BLASRuntime.coreName); \(comm.size) rank(s) × \(BLASRuntime.threads) BLAS thread(s)")
            print(String(format: "%@ B=%d K=%d: median %.3fs/step min %.3f  (%.1f img/s)",
                         method, batch, classes, median, times.min()!, Double(batch) / median))
            print(String(format: "  rank 0: %.0f GEMMs, %.1f GFLOP in sgemm at %.0f GFLOP/s per step; sgemm %.0f%% of step time",
                         Double(counter.gemms) / Double(steps), counter.flops / 1e9 / Double(steps),
                         counter.flops / 1e9 / max(counter.seconds, 1e-9), 100 * counter.seconds / total))
            print(String(format: "  of which %.0f small GEMMs (attention): %.1f GFLOP at %.0f GFLOP/s, %.0f%% of step time",
                         Double(counter.smallGEMMs) / Double(steps), counter.smallFlops / 1e9 / Double(steps),
                         counter.smallFlops / 1e9 / max(counter.smallSeconds, 1e-9), 100 * counter.smallSeconds / total))
            if comm.size > 1 {
                print(String(format: "  allreduce of %d floats: %.2f ms/step (%.2f%% of step time); waiting for the slowest rank %.1f%%",
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
                    let found = FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String }
                        .filter { $0.lowercased().hasSuffix(".jpg") || $0.lowercased().hasSuffix(".jpeg") }.sorted() ?? []
                    files += found.map { path + "/" + $0 }
                } else {
                    files.append(path)
                }
            }
            guard !files.isEmpty else { throw ValidationError("no JPEG files in \(paths.joined(separator: ", "))") }
            let counts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }) else { throw ValidationError("--threads must list positive integers") }
            print("\(files.count) JPEG files, train transform to \(resolution)×\(resolution)")
            for t in counts {
                let rate = try benchmarkDecodeAugment(paths: files, resolution: resolution, threads: t, seconds: seconds)
                print(String(format: "  %d thread(s): %.0f images/s", t, rate))
            }
        }
    }
}
