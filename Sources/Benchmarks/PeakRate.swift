// The machine's measured peak arithmetic rate (for `bench gemm`): register-resident loops of
// independent 512-bit fp32 FMAs or bf16 dot products on every thread at once, so the figure is
// what the cores deliver at the clock they actually run, not a nominal frequency times a width.
import CDNNL
import Dispatch
import Foundation

public enum PeakRate {
    public enum Kind: String, Sendable { case fp32FMA = "fp32 FMA", bf16Dot = "bf16 dot product" }

    /// FLOP per loop iteration of the probes in CDNNL/shim.h (12 instructions × 16 fp32 lanes).
    static func flopsPerIteration(_ kind: Kind) -> Double {
        switch kind {
        case .fp32FMA: return 12 * 16 * 2
        case .bf16Dot: return 12 * 16 * 2 * 2
        }
    }

    /// GFLOP/s on `threads` threads together, or nil where the CPU lacks the instructions. fp32 uses
    /// 512-bit FMAs with AVX-512, else 256-bit ones with AVX2 + FMA.
    public static func measure(_ kind: Kind, threads: Int, seconds: Double = 0.3) -> Double? {
        let flags = cpuFlags
        let wide = flags.contains("avx512f")
        let narrow = !wide && kind == .fp32FMA && flags.contains("avx2") && flags.contains("fma")
        guard wide || narrow, kind == .fp32FMA || flags.contains("avx512_bf16") else { return nil }
        let iterations = 1 << 22
        @Sendable func run() {
            if narrow { cdnnl_probe_fma256(iterations); return }
            kind == .fp32FMA ? cdnnl_probe_fma512(iterations) : cdnnl_probe_bf16dot512(iterations)
        }
        run() // wake the units up to their clock
        var best = 0.0
        let start = DispatchTime.now().uptimeNanoseconds
        repeat {
            let t0 = DispatchTime.now().uptimeNanoseconds
            DispatchQueue.concurrentPerform(iterations: threads) { _ in run() }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let perIteration = flopsPerIteration(kind) / (narrow ? 2 : 1)
            best = max(best, Double(threads) * Double(iterations) * perIteration / dt / 1e9)
        } while Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds
        return best
    }

    static var cpuFlags: Set<String> {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return [] }
        return Set(line.split(separator: " ").map(String.init))
    }
}
