// OpenBLAS at run time: which kernels it picked, how many threads it uses, and the
// re-exec that rescues a CPU OpenBLAS 0.3.21 does not recognise.
import CBLAS
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public enum BLASRuntime {
    /// The kernel family OpenBLAS selected (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's threads and oneDNN's OpenMP threads together (the same per-rank budget).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        OneDNN.setThreads(n)
    }

    /// Generic fallbacks OpenBLAS's dynamic dispatch chooses when it cannot identify a CPU.
    static let genericCores: Set<String> = [
        "prescott", "core2", "nehalem", "katmai", "coppermine",
        "northwood", "banias", "atom", "unknown",
    ]

    /// The best kernel family this CPU supports, from the instruction-set flags the kernel reports.
    public static func bestCoreForThisCPU() -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return nil }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        if flags.contains("avx512f") && flags.contains("avx512bw") && flags.contains("avx512vl") { return "SkylakeX" }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        if flags.contains("avx") { return "Sandybridge" }
        return nil
    }

    /// OpenBLAS reads OPENBLAS_CORETYPE only when the library loads, so a process that got a generic
    /// kernel on a CPU with AVX2/AVX-512 restarts itself once with the variable set. Call first thing
    /// in `main`, before MPI_Init or any thread starts. Returns normally when nothing needs doing.
    /// `CAVPT_DIST_NO_REEXEC=1` disables it (the slow kernels are then reported, not hidden).
    ///
    /// The same restart sets GOMP_SPINCOUNT=10000 for the OpenMP team (oneDNN's products and, in bf16,
    /// the element-wise loops; libgomp reads it at load time too), unless the user set GOMP_SPINCOUNT
    /// or OMP_WAIT_POLICY. libgomp's default spins 30 times longer after every parallel region, on
    /// cores the data loader and the OpenBLAS threads also use; sleeping at once (PASSIVE) makes
    /// every region wake its workers through the kernel: bf16 steps 1.7% slower than this short spin.
    public static func ensureFastKernels(arguments: [String]) {
        guard getenv("CAVPT_DIST_NO_REEXEC") == nil else { return }
        var restart = false
        if getenv("OPENBLAS_CORETYPE") == nil, genericCores.contains(coreName.lowercased()),
            let best = bestCoreForThisCPU()
        {
            setenv("OPENBLAS_CORETYPE", best, 1)
            setenv("CAVPT_DIST_REEXEC_FROM", coreName, 1)
            restart = true
        }
        if getenv("OMP_WAIT_POLICY") == nil && getenv("GOMP_SPINCOUNT") == nil {
            setenv("GOMP_SPINCOUNT", "10000", 1)
            restart = true
        }
        guard restart else { return }
        var cArgs: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        cArgs.append(nil)
        execv("/proc/self/exe", &cArgs)
        // execv only returns on failure: carry on (with slow kernels, if that was the reason), but say so.
        if let best = getenv("OPENBLAS_CORETYPE").map({ String(cString: $0) }), getenv("CAVPT_DIST_REEXEC_FROM") != nil
        {
            writeStandardError(
                "warning: OpenBLAS chose \(coreName) kernels and restarting with OPENBLAS_CORETYPE=\(best) failed; "
                    + "matrix products will be slow\n"
            )
        }
    }

    /// Non-nil when OpenBLAS runs generic kernels on a CPU that has better ones (a slow run).
    public static var slowKernelWarning: String? {
        guard genericCores.contains(coreName.lowercased()), let best = bestCoreForThisCPU() else { return nil }
        return "OpenBLAS is running \(coreName) kernels on a CPU that supports \(best); set OPENBLAS_CORETYPE=\(best)"
    }

    /// Online CPUs on this machine.
    public static var onlineCPUs: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}

/// Writes straight to file descriptor 2 (unbuffered, safe from any thread), and to the run's
/// log.txt when one is open.
public func writeStandardError(_ text: String) {
    writeAll(2, text)
    RunLog.append(text)
}

func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { buf in
        var off = 0
        while off < buf.count {
            let n = write(fd, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { break }
            off += n
        }
    }
}

/// `log.txt` in the run directory: everything rank 0 prints once the run directory is open
/// (progress, warnings, the final error line), as Dassl's logger keeps it. Best effort: a failing
/// log write never stops a run (the error reaches the terminal, and metrics or checkpoint writes
/// report a full disk themselves).
public enum RunLog {
    nonisolated(unsafe) static var fd: Int32 = -1
    static let lock = NSLock()

    public static func open(_ path: String) {
        lock.lock(); defer { lock.unlock() }
        if fd >= 0 { close(fd) }
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    }

    public static func append(_ text: String) {
        lock.lock(); defer { lock.unlock() }
        if fd >= 0 { writeAll(fd, text) }
    }
}
