// The one-rank backend used when the process was not launched by mpirun/srun: collectives only count.
import Foundation

/// Size 1: reductions and broadcasts leave buffers as they are, an allgather copies the contribution.
/// Arguments are checked and statistics counted exactly as under MPI, so a one-rank run exercises the
/// same calls (and a test can count them) without MPI.
public final class SingleProcessCommunicator: Communicator, @unchecked Sendable {
    // @unchecked: the only mutable state is `stats`, and a communicator is used from one thread at a time.
    public let rank = 0
    public let size = 1
    public let localRank = 0
    public let localSize = 1
    public let nodeCPUs: Int
    public let backend = "single-process"
    public private(set) var stats = CommStats()

    public init() {
        nodeCPUs = processCPUCount()
    }

    public func resetStats() { stats = CommStats() }

    public func broadcast<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try CollectiveArguments.checkRoot(root, size: size, call: "broadcast")
        stats.broadcasts += 1
        stats.bytesBroadcast += buffer.count * MemoryLayout<T>.stride
    }

    public func allreduce<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ operation: ReduceOperation) throws {
        stats.allreduces += 1
        stats.bytesReduced += buffer.count * MemoryLayout<T>.stride
    }

    public func allgather<T: CommScalar>(
        _ contribution: UnsafeBufferPointer<T>,
        into gathered: UnsafeMutableBufferPointer<T>, counts: [Int]
    ) throws {
        try CollectiveArguments.checkGather(
            contribution: contribution.count, gathered: gathered.count,
            counts: counts, rank: rank, size: size)
        if let source = contribution.baseAddress, let target = gathered.baseAddress, source != UnsafePointer(target) {
            target.update(from: source, count: contribution.count)
        }
        stats.allgathers += 1
        stats.bytesGathered += gathered.count * MemoryLayout<T>.stride
    }

    public func barrier() throws {
        stats.barriers += 1
    }

    public func sharedCounter() throws -> SharedCounter { LocalCounter() }

    public func split(color: Int, key: Int) throws -> Communicator {
        guard color >= 0 else { throw CommError.invalidColor(color: color) }
        stats.splits += 1
        return SingleProcessCommunicator()
    }

    public func abort(code: Int32) -> Never {
        exit(code)
    }
}

final class LocalCounter: SharedCounter {
    var value = 0
    func next() throws -> Int { defer { value += 1 }; return value }
    func free() throws {}
}
