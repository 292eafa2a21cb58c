// Every fp32 matrix product in cavpt-dist goes through here: cblas_sgemm, its strided-batched
// loop for attention's many small products, and per-task GEMM counting for tests (the bf16
// products of runtime.precision bf16 go through OneDNN.swift and are counted here too).
import CBLAS
import Dispatch
import Foundation

/// Counts the GEMMs issued inside `BLAS.$counter.withValue(counter) { … }` (tests and profiling).
/// Updated under a lock: parallel kernels issue GEMMs from several threads.
public final class OpCounter: @unchecked Sendable {
    let lock = NSLock()
    public var gemms = 0
    public var flops = 0.0
    /// Wall time inside sgemm (only measured when `timed` is set, for profiling).
    public var seconds = 0.0
    /// The same for products under 2 MFLOP (attention heads): count, flops, seconds.
    public var smallGEMMs = 0, smallFlops = 0.0, smallSeconds = 0.0
    /// Products through oneDNN with bf16 inputs (runtime.precision bf16): count, flops, seconds
    /// (seconds only when `timed`). Not included in `gemms`/`flops`/`seconds`, which are sgemm's.
    public var bf16GEMMs = 0, bf16Flops = 0.0, bf16Seconds = 0.0
    /// The same for the small batched products of attention done in bf16.
    public var bf16SmallGEMMs = 0, bf16SmallFlops = 0.0, bf16SmallSeconds = 0.0
    /// Fused attention kernels (one call per block and direction): count, flops, seconds (when `timed`).
    public var fusedAttentionCalls = 0, fusedAttentionFlops = 0.0, fusedAttentionSeconds = 0.0
    public let timed: Bool
    public init() { timed = false }
    public init(timed: Bool) { self.timed = timed }
}

public enum BLAS {
    @TaskLocal public static var counter: OpCounter?

    /// Row-major C[m,n] = alpha · op(A) · op(B) + beta · C, with op(X) = Xᵀ when trans is set.
    /// lda/ldb/ldc are row strides, so heads and shards of packed buffers need no copies.
    @inline(__always)
    public static func gemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // An empty sum: C = beta·C (OpenBLAS rejects k = 0 with some leading dimensions).
            for i in 0..<m {
                let row = c + i * ldc
                if beta == 0 { row.update(repeating: 0, count: n) } else { for j in 0..<n { row[j] *= beta } }
            }
            return
        }
        var start: UInt64 = 0
        if let counter {
            counter.lock.lock()
            counter.gemms += 1
            counter.flops += 2.0 * Double(m) * Double(n) * Double(k)
            counter.lock.unlock()
            if counter.timed { start = DispatchTime.now().uptimeNanoseconds }
        }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha,
            a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
        if let counter, counter.timed {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            counter.lock.lock()
            defer { counter.lock.unlock() }
            counter.seconds += seconds
            if 2 * m * n * k < 2_000_000 {
                counter.smallGEMMs += 1
                counter.smallFlops += 2.0 * Double(m) * Double(n) * Double(k)
                counter.smallSeconds += seconds
            }
        }
    }

    /// `count` independent products C_i = alpha · op(A_i) op(B_i) + beta · C_i whose operands sit at
    /// fixed strides (attention heads × samples). OpenBLAS 0.3.21 has no batched sgemm, and these
    /// products are too small to thread internally, so they run one after another.
    @inline(__always)
    public static func gemmStridedBatched(
        count: Int, transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, strideA: Int,
        b: UnsafePointer<Float>, ldb: Int, strideB: Int,
        beta: Float = 0,
        c: UnsafeMutablePointer<Float>, ldc: Int, strideC: Int
    ) {
        for i in 0..<count {
            gemm(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
                a: a + i * strideA, lda: lda, b: b + i * strideB, ldb: ldb,
                beta: beta, c: c + i * strideC, ldc: ldc)
        }
    }
}

extension Tensor {
    /// self [m, k] · other [k, n] (or the transposes), as a new tensor. Leading axes are flattened into rows.
    public func matmul(_ other: Tensor, transA: Bool = false, transB: Bool = false) -> Tensor {
        let (ar, ac) = (rows, lastDim), (br, bc) = (other.rows, other.lastDim)
        let m = transA ? ac : ar, k = transA ? ar : ac
        let n = transB ? br : bc
        precondition((transB ? bc : br) == k, "matmul: inner sizes differ: \(shape) · \(other.shape)")
        let out = Tensor(uninitialized: [m, n])
        BLAS.gemm(
            transA: transA, transB: transB, m: m, n: n, k: k,
            a: data, lda: ac, b: other.data, ldb: bc, c: out.data, ldc: n)
        return out
    }
}
