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
            GEMMBenchmark.run(threadCounts: counts, rows: rows, seconds: seconds)
        }
    }
}

/// The trainer's training step (`TrainingStep`: forward + backward w.r.t. the trained tensors, the
/// fused allreduce, the update) on ViT-B/32 shapes with random frozen weights — the same work as a
/// PyTorch step on the same shapes, for a ratio on one machine.
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
            var benchmark = StepBenchmark()
            benchmark.method = method; benchmark.batch = batch; benchmark.classes = classes; benchmark.eot = eot
            benchmark.steps = steps; benchmark.threads = threads; benchmark.shardText = shardText
            benchmark.precision = precision
            try benchmark.run(comm)
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
