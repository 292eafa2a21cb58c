// How many CPUs a rank may use and how many BLAS threads it should run.
import CMPI
import Foundation

/// BLAS threads per rank: the CPUs this job has on the node shared by the ranks on the node
/// (never below one), unless the user overrides it.
///
/// `nodeCPUs` should be `Communicator.nodeCPUs` (the union of the local ranks' affinity masks): with
/// mpirun's default `--bind-to core` (up to 2 ranks) each rank may run on one core only, so more threads
/// would just share that core; under Slurm cgroups the node's online count overstates the allocation.
public func defaultBLASThreads(localSize: Int, override: Int?, nodeCPUs: Int = onlineCPUCount()) -> Int {
    if let override { return max(1, override) }
    return max(1, nodeCPUs / max(1, localSize))
}

extension Communicator {
    /// `defaultBLASThreads` for this rank: node CPUs of this job divided by the ranks on this node.
    public func defaultBLASThreads(override: Int?) -> Int {
        Distributed.defaultBLASThreads(localSize: localSize, override: override, nodeCPUs: nodeCPUs)
    }
}

/// CPUs online on this machine, whatever this process is bound to.
public func onlineCPUCount() -> Int {
    max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
}

/// CPUs this process may run on (its affinity mask), or the online count where that is unknown.
public func processCPUCount() -> Int {
    guard let mask = affinityMask() else { return onlineCPUCount() }
    return max(1, mask.reduce(0) { $0 + $1.nonzeroBitCount })
}

/// This process's CPU affinity as bit words (bit i of word w = CPU 64w+i), nil where unavailable.
func affinityMask() -> [UInt64]? {
    #if os(Linux)
    // 8192 CPUs; the kernel refuses a buffer smaller than its own mask, and then we fall back.
    var words = [UInt64](repeating: 0, count: affinityMaskWords)
    let rc = words.withUnsafeMutableBytes { cmpi_sched_getaffinity(0, $0.count, $0.baseAddress) }
    return rc == 0 ? words : nil
    #else
    return nil
    #endif
}

let affinityMaskWords = 128
