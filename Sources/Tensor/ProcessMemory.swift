// The process's memory high-water mark, for `bench step` and results.json.
#if canImport(Glibc)
import Glibc
#endif

public enum ProcessMemory {
    /// Peak resident set size of this process so far, in bytes (getrusage's ru_maxrss).
    public static var peakResidentBytes: Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    /// The same in MiB (what `bench step` prints as MB).
    public static var peakResidentMB: Double { Double(peakResidentBytes) / 1_048_576 }
}
