// `cavpt-dist bench …`: figures for the performance notes (never used by tests).
import ArgumentParser
import Benchmarks
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
            GEMMBenchmark.run(
                threadCounts: counts, arch: archName, width: shape.visionWidth, rows: rows, seconds: seconds)
        }
    }
}

/// The trainer's training step (`TrainingStep`: forward + backward w.r.t. the trained tensors, the
/// fused allreduce, the update) on an architecture's shapes with random frozen weights — the same work
/// as a PyTorch step on the same shapes, for a ratio on one machine.
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
            var benchmark = StepBenchmark()
            benchmark.method = method; benchmark.batch = batch; benchmark.classes = classes; benchmark.eot = eot
            benchmark.steps = steps; benchmark.threads = threads; benchmark.shardText = shardText
            benchmark.precision = precision
            benchmark.shape = shape; benchmark.archName = archName; benchmark.recompute = mode
            try benchmark.run(comm)
        }
    }
}

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
