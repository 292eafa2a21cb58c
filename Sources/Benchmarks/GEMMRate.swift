// `bench gemm`: fp32 (OpenBLAS) and bf16 (oneDNN) GFLOP/s at the shapes of one image layer of an
// architecture, against the measured peak (PeakRate.swift). Figures for the performance notes, never used
// by tests.
import Foundation
import Tensor

public enum GEMMBenchmark {
    /// Prints the rates for each thread count at the layer shapes of image width `width` (`arch` names
    /// them): `rows` = batch × tokens, `seconds` per shape.
    public static func run(threadCounts counts: [Int], arch: String, width d: Int, rows: Int, seconds: Double) {
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
        print("\(arch): image width \(d), \(rows) rows")
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
