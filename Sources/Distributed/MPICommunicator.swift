// The Open MPI backend: collectives over an MPI communicator, each call checked and named on failure.
import CMPI
import Foundation

/// A rank of an MPI communicator. Errors come back as return codes (MPI_ERRORS_RETURN) and are thrown
/// as `CommError.mpi` naming the call; a rank that cannot go on should `fail`, which aborts the job.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    // @unchecked: `stats` is the only mutable state, and a communicator is used from one thread at a time
    // (MPI is initialised with MPI_THREAD_SERIALIZED).
    let comm: MPI_Comm
    /// Communicators from `split` are ours to free; COMM_WORLD is not.
    let ownsComm: Bool
    public let rank: Int
    public let size: Int
    public let localRank: Int
    public let localSize: Int
    public let nodeCPUs: Int
    public let backend: String
    public private(set) var stats = CommStats()

    /// MPI_COMM_WORLD, initialising MPI on first use (once per process, also without mpirun).
    public static func world() throws -> MPICommunicator {
        try MPIRuntime.initialize()
        return try MPICommunicator(comm: cmpi_comm_world(), owned: false)
    }

    /// Collective over `comm`: the node-local ranks are found with MPI_Comm_split_type(SHARED).
    init(comm: MPI_Comm, owned: Bool) throws {
        self.comm = comm
        ownsComm = owned
        backend = MPIRuntime.libraryVersion
        try mpiCheck(MPI_Comm_set_errhandler(comm, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var value: Int32 = 0
        try mpiCheck(MPI_Comm_rank(comm, &value), "MPI_Comm_rank")
        rank = Int(value)
        try mpiCheck(MPI_Comm_size(comm, &value), "MPI_Comm_size")
        size = Int(value)

        var node: MPI_Comm? = cmpi_comm_null()
        try mpiCheck(
            MPI_Comm_split_type(comm, cmpi_comm_type_shared(), Int32(rank), cmpi_info_null(), &node),
            "MPI_Comm_split_type")
        defer { MPI_Comm_free(&node) }
        try mpiCheck(MPI_Comm_rank(node, &value), "MPI_Comm_rank")
        localRank = Int(value)
        try mpiCheck(MPI_Comm_size(node, &value), "MPI_Comm_size")
        localSize = Int(value)

        // The union of the local ranks' affinity masks is what this job may use on the node: one core
        // per rank under --bind-to core, the whole cpuset under --bind-to none or a Slurm allocation.
        var mask = affinityMask() ?? [UInt64](repeating: 0, count: affinityMaskWords)
        let count = Int32(mask.count)
        let rc = mask.withUnsafeMutableBufferPointer {
            MPI_Allreduce(cmpi_in_place(), $0.baseAddress, count, cmpi_uint64(), cmpi_bor(), node)
        }
        try mpiCheck(rc, "MPI_Allreduce")
        let unionCPUs = mask.reduce(0) { $0 + $1.nonzeroBitCount }
        nodeCPUs = unionCPUs > 0 ? unionCPUs : onlineCPUCount()
    }

    deinit {
        guard ownsComm, !MPIRuntime.isFinalized else { return }
        var handle: MPI_Comm? = comm
        MPI_Comm_free(&handle)
    }

    public func resetStats() { stats = CommStats() }

    public func broadcast<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws {
        try CollectiveArguments.checkRoot(root, size: size, call: "MPI_Bcast")
        let count = try mpiCount(buffer.count, call: "MPI_Bcast")
        let started = monotonicSeconds()
        let rc = MPI_Bcast(buffer.baseAddress, count, T.scalarKind.mpiDatatype, Int32(root), comm)
        stats.secondsInCollectives += monotonicSeconds() - started
        try mpiCheck(rc, "MPI_Bcast")
        stats.broadcasts += 1
        stats.bytesBroadcast += buffer.count * MemoryLayout<T>.stride
    }

    public func allreduce<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ operation: ReduceOperation) throws {
        let count = try mpiCount(buffer.count, call: "MPI_Allreduce")
        let started = monotonicSeconds()
        let rc = MPI_Allreduce(
            cmpi_in_place(), buffer.baseAddress, count, T.scalarKind.mpiDatatype,
            operation.mpiOp, comm)
        stats.secondsInCollectives += monotonicSeconds() - started
        try mpiCheck(rc, "MPI_Allreduce")
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
        let call = "MPI_Allgatherv"
        _ = try mpiCount(gathered.count, call: call) // displacements are 32-bit too
        let receiveCounts = counts.map { Int32($0) }
        var displacements = [Int32](repeating: 0, count: size)
        for r in 1..<max(1, size) { displacements[r] = displacements[r - 1] + receiveCounts[r - 1] }
        let datatype = T.scalarKind.mpiDatatype
        let started = monotonicSeconds()
        let rc = MPI_Allgatherv(
            contribution.baseAddress, Int32(contribution.count), datatype,
            gathered.baseAddress, receiveCounts, displacements, datatype, comm)
        stats.secondsInCollectives += monotonicSeconds() - started
        try mpiCheck(rc, call)
        stats.allgathers += 1
        stats.bytesGathered += gathered.count * MemoryLayout<T>.stride
    }

    public func barrier() throws {
        let started = monotonicSeconds()
        let rc = MPI_Barrier(comm)
        stats.secondsInCollectives += monotonicSeconds() - started
        try mpiCheck(rc, "MPI_Barrier")
        stats.barriers += 1
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        guard color >= 0 else { throw CommError.invalidColor(color: color) }
        guard let color32 = Int32(exactly: color), let key32 = Int32(exactly: key) else {
            throw CommError.countMismatch(
                call: "MPI_Comm_split", detail: "color \(color) or key \(key) exceeds 32 bits")
        }
        var newComm: MPI_Comm? = cmpi_comm_null()
        try mpiCheck(MPI_Comm_split(comm, color32, key32, &newComm), "MPI_Comm_split")
        stats.splits += 1
        guard let newComm else {
            throw CommError.mpi(call: "MPI_Comm_split", code: 0, message: "returned no communicator")
        }
        return try MPICommunicator(comm: newComm, owned: true)
    }

    public func sharedCounter() throws -> SharedCounter { try MPISharedCounter(comm: comm, rank: rank) }

    /// Aborts every rank of the job, whatever communicator this is: a data-parallel job cannot go on
    /// without one of its ranks.
    public func abort(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code) // MPI_Abort does not return; this only satisfies the type checker
    }
}

/// Process-wide MPI state: MPI may be initialised and finalised once per process.
enum MPIRuntime {
    static var isInitialized: Bool {
        var flag: Int32 = 0
        MPI_Initialized(&flag)
        return flag != 0
    }

    static var isFinalized: Bool {
        var flag: Int32 = 0
        MPI_Finalized(&flag)
        return flag != 0
    }

    static func initialize() throws {
        guard !isInitialized else { return }
        guard !isFinalized else {
            throw CommError.mpi(call: "MPI_Init_thread", code: 0, message: "MPI was already finalized in this process")
        }
        // SERIALIZED: the trainer may call from whichever thread runs its task, one call at a time.
        var provided: Int32 = 0
        try mpiCheck(MPI_Init_thread(nil, nil, cmpi_thread_serialized(), &provided), "MPI_Init_thread")
    }

    static func finalize() throws {
        guard isInitialized, !isFinalized else { return }
        try mpiCheck(MPI_Finalize(), "MPI_Finalize")
    }

    /// "Open MPI v4.1.4" (the library's own string up to its first comma).
    static let libraryVersion: String = {
        var buffer = [CChar](repeating: 0, count: Int(cmpi_max_library_version_string()) + 1)
        var length: Int32 = 0
        guard MPI_Get_library_version(&buffer, &length) == cmpi_success() else { return "MPI" }
        let full = String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return full.split(separator: ",").first.map(String.init) ?? "MPI"
    }()
}

func mpiCheck(_ rc: Int32, _ call: String) throws {
    guard rc != cmpi_success() else { return }
    throw CommError.mpi(call: call, code: rc, message: mpiErrorString(rc))
}

/// MPI's text for a return code; empty outside MPI_Init..MPI_Finalize, where Open MPI aborts on the query.
func mpiErrorString(_ rc: Int32) -> String {
    guard MPIRuntime.isInitialized, !MPIRuntime.isFinalized else { return "" }
    var buffer = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
    var length: Int32 = 0
    guard MPI_Error_string(rc, &buffer, &length) == cmpi_success() else { return "" }
    return String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func mpiCount(_ count: Int, call: String) throws -> Int32 {
    guard let count32 = Int32(exactly: count) else { throw CommError.countTooLarge(call: call, count: count) }
    return count32
}

extension ScalarKind {
    var mpiDatatype: MPI_Datatype {
        switch self {
        case .float32: return cmpi_float()
        case .float64: return cmpi_double()
        case .int32: return cmpi_int32()
        case .int64: return cmpi_int64()
        case .uint8: return cmpi_uint8()
        }
    }
}

extension ReduceOperation {
    var mpiOp: MPI_Op {
        switch self {
        case .sum: return cmpi_sum()
        case .max: return cmpi_max()
        case .min: return cmpi_min()
        }
    }
}

/// One Int64 in a window on rank 0, taken with MPI_Fetch_and_op under an exclusive lock.
final class MPISharedCounter: SharedCounter {
    var window: MPI_Win? = cmpi_win_null()

    init(comm: MPI_Comm, rank: Int) throws {
        var base: UnsafeMutableRawPointer?
        let bytes = rank == 0 ? MemoryLayout<Int64>.size : 0
        try mpiCheck(
            MPI_Win_allocate(MPI_Aint(bytes), Int32(MemoryLayout<Int64>.size), cmpi_info_null(), comm, &base, &window),
            "MPI_Win_allocate")
        if rank == 0 {
            // Set through the window (the separate memory model), then everyone may take values.
            var zero: Int64 = 0
            try mpiCheck(MPI_Win_lock(cmpi_lock_exclusive(), 0, 0, window), "MPI_Win_lock")
            try mpiCheck(MPI_Put(&zero, 1, cmpi_int64(), 0, 0, 1, cmpi_int64(), window), "MPI_Put")
            try mpiCheck(MPI_Win_unlock(0, window), "MPI_Win_unlock")
        }
        try mpiCheck(MPI_Barrier(comm), "MPI_Barrier")
    }

    func next() throws -> Int {
        var one: Int64 = 1, previous: Int64 = 0
        try mpiCheck(MPI_Win_lock(cmpi_lock_exclusive(), 0, 0, window), "MPI_Win_lock")
        try mpiCheck(MPI_Fetch_and_op(&one, &previous, cmpi_int64(), 0, 0, cmpi_sum(), window), "MPI_Fetch_and_op")
        try mpiCheck(MPI_Win_unlock(0, window), "MPI_Win_unlock")
        return Int(previous)
    }

    func free() throws { try mpiCheck(MPI_Win_free(&window), "MPI_Win_free") }
}
