// `cavpt-dist bench …`: figures for the performance notes (never used by tests).
import ArgumentParser
import Foundation
import Tensor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print performance figures for this machine.",
        subcommands: [BenchGEMM.self])
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
