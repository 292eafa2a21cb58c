// Row-parallel loops for the element-wise kernels, on as many threads as OpenBLAS is allowed
// (cores ÷ ranks on the node), so a rank never oversubscribes the cores its GEMMs use.
import CKernels
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

public enum Parallel {
    /// CAVPT_DIST_SERIAL_KERNELS=1 keeps every element-wise loop on the calling thread (for A/B timing).
    static let enabled = getenv("CAVPT_DIST_SERIAL_KERNELS") == nil

    /// runtime.precision bf16: the loops run on the OpenMP team oneDNN's products use (one set of
    /// worker threads per rank, never two competing for its cores). fp32 keeps Dispatch threads.
    nonisolated(unsafe) public static var onOpenMPTeam = false

    /// Runs `body` over contiguous chunks of 0..<count, at most one per thread; a chunk holds at
    /// least `grain` items, so small loops stay on the calling thread. Chunks must touch disjoint memory.
    @inline(__always)
    public static func chunks(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let threads = enabled ? min(BLASRuntime.threads, count / max(grain, 1)) : 1
        if threads <= 1 { body(0..<count); return }
        withoutActuallyEscaping(body) { escapable in
            if onOpenMPTeam {
                var job = Job(body: escapable, count: count, threads: threads)
                let ran = withUnsafeMutablePointer(to: &job) { pointer in
                    ck_parallel(
                        threads,
                        { context, t in
                            let job = context!.assumingMemoryBound(to: Job.self).pointee
                            job.body(job.count * Int(t) / job.threads..<job.count * (Int(t) + 1) / job.threads)
                        }, pointer)
                }
                if ran != 0 { return }
            }
            // The chunks write disjoint ranges, so sharing the closure across threads is safe.
            let shared = UncheckedSendable(escapable)
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                shared.value(count * t / threads..<count * (t + 1) / threads)
            }
        }
    }
}

/// One parallel loop as the OpenMP trampoline sees it.
private struct Job {
    let body: (Range<Int>) -> Void
    let count: Int, threads: Int
}

/// A value the caller vouches is safe to share across threads.
public struct UncheckedSendable<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
