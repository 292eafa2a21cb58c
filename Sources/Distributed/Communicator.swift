// The Communicator protocol every data-parallel rank talks through, its errors, statistics and conveniences.
import Foundation

/// Element types a collective can carry; each maps to one MPI datatype.
public enum ScalarKind: Sendable {
    case float32, float64, int32, int64, uint8
}

public protocol CommScalar: BitwiseCopyable {
    static var scalarKind: ScalarKind { get }
}

extension Float: CommScalar { public static var scalarKind: ScalarKind { .float32 } }
extension Double: CommScalar { public static var scalarKind: ScalarKind { .float64 } }
extension Int32: CommScalar { public static var scalarKind: ScalarKind { .int32 } }
extension Int64: CommScalar { public static var scalarKind: ScalarKind { .int64 } }
extension UInt8: CommScalar { public static var scalarKind: ScalarKind { .uint8 } }

public enum ReduceOperation: Sendable {
    case sum, max, min
}

/// Counts of the collectives a communicator has run, so tests can assert "one allreduce per step"
/// and the trainer can report the share of step time spent communicating.
/// A convenience that needs two collectives (a length, then the payload) counts as two.
public struct CommStats: Sendable, Equatable, Codable {
    public var allreduces = 0
    public var broadcasts = 0
    public var allgathers = 0
    public var barriers = 0
    public var splits = 0
    public var bytesReduced = 0
    public var bytesBroadcast = 0
    /// Bytes this rank received from an allgather (all ranks' contributions together).
    public var bytesGathered = 0
    /// Wall time inside collectives, including waiting for slower ranks.
    public var secondsInCollectives = 0.0

    public init() {}
}

public enum CommError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (the communicator uses MPI_ERRORS_RETURN).
    case mpi(call: String, code: Int32, message: String)
    /// MPI counts are 32-bit ints.
    case countTooLarge(call: String, count: Int)
    case invalidRoot(call: String, root: Int, size: Int)
    case invalidColor(color: Int)
    case countMismatch(call: String, detail: String)

    public var description: String {
        switch self {
        case let .mpi(call, code, message):
            return message.isEmpty ? "\(call) failed (rc=\(code))" : "\(call) failed (rc=\(code): \(message))"
        case let .countTooLarge(call, count):
            return "\(call): \(count) elements exceed MPI's 32-bit count limit (\(Int32.max)); split the buffer"
        case let .invalidRoot(call, root, size):
            return "\(call): root \(root) is not a rank of this \(size)-rank communicator"
        case let .invalidColor(color):
            return "split: color \(color) is negative; colors must be >= 0"
        case let .countMismatch(call, detail):
            return "\(call): \(detail)"
        }
    }
}

/// One process's view of a group of ranks. Every collective must be called by every rank of the
/// group in the same order with matching counts; a rank that cannot continue calls `fail`, which ends
/// the whole job instead of leaving the others waiting in a collective.
///
/// Not thread-safe: call a communicator from one thread at a time (MPI is initialised SERIALIZED).
public protocol Communicator: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Rank among the ranks of this communicator that share this node's memory.
    var localRank: Int { get }
    /// Ranks of this communicator on this node.
    var localSize: Int { get }
    /// CPUs this job may use on this node: the union of the local ranks' affinity masks.
    var nodeCPUs: Int { get }
    /// "single-process" or the MPI library's name and version, for reports.
    var backend: String { get }
    var stats: CommStats { get }
    func resetStats()

    /// Copies root's buffer into every rank's buffer; all ranks pass the same count.
    func broadcast<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, root: Int) throws
    /// Reduces element-wise over ranks, in place; every rank receives the result.
    func allreduce<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>, _ operation: ReduceOperation) throws
    /// Concatenates each rank's contribution in rank order (allgatherv). `counts[r]` is rank r's
    /// element count, identical on every rank; `gathered.count` must equal `counts.reduce(0, +)`.
    func allgather<T: CommScalar>(
        _ contribution: UnsafeBufferPointer<T>,
        into gathered: UnsafeMutableBufferPointer<T>, counts: [Int]) throws
    func barrier() throws
    /// Ranks with the same color form a new communicator, ordered by key (ties by old rank).
    func split(color: Int, key: Int) throws -> Communicator
    /// A counter held by rank 0 that any rank may take the next value of without the others taking
    /// part (MPI one-sided fetch-and-add): a dispatcher that never waits on its workers. Collective
    /// to create and to free.
    func sharedCounter() throws -> SharedCounter
    /// Ends every rank of the job (MPI_Abort) or this process (single-process).
    func abort(code: Int32) -> Never
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func allreduceSum<T: CommScalar>(_ buffer: UnsafeMutableBufferPointer<T>) throws {
        try allreduce(buffer, .sum)
    }

    public func allreduceSum<T: CommScalar>(_ values: inout [T]) throws {
        try values.withUnsafeMutableBufferPointer { try allreduce($0, .sum) }
    }

    public func allreduce<T: CommScalar>(_ values: inout [T], _ operation: ReduceOperation) throws {
        try values.withUnsafeMutableBufferPointer { try allreduce($0, operation) }
    }

    /// Reduces one value over ranks, e.g. a sample count or the slowest rank's step time.
    public func allreduce<T: CommScalar>(_ value: T, _ operation: ReduceOperation) throws -> T {
        var cell = [value]
        try allreduce(&cell, operation)
        return cell[0]
    }

    /// Broadcasts an array whose length every rank already knows (e.g. a parameter tensor).
    public func broadcast<T: CommScalar>(_ values: inout [T], root: Int) throws {
        try values.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
    }

    /// Broadcasts root's bytes; other ranks' arguments are ignored. Two collectives: length, payload.
    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        var length = [Int64(rank == root ? bytes.count : 0)]
        try broadcast(&length, root: root)
        guard length[0] > 0 else { return [] }
        var payload = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try broadcast(&payload, root: root)
        return payload
    }

    public func broadcast(_ data: Data, root: Int) throws -> Data {
        Data(try broadcast(bytes: [UInt8](data), root: root))
    }

    /// Broadcasts root's string (a config, a JSON document); other ranks' arguments are ignored.
    public func broadcast(_ string: String, root: Int) throws -> String {
        String(decoding: try broadcast(bytes: Array(string.utf8), root: root), as: UTF8.self)
    }

    /// Gathers one value from every rank, in rank order.
    public func allgather<T: CommScalar>(_ value: T) throws -> [T] {
        var gathered = [T](repeating: value, count: size)
        let counts = [Int](repeating: 1, count: size)
        try withUnsafePointer(to: value) { pointer in
            try gathered.withUnsafeMutableBufferPointer {
                try allgather(UnsafeBufferPointer(start: pointer, count: 1), into: $0, counts: counts)
            }
        }
        return gathered
    }

    /// Gathers arrays of any lengths (empty included), in rank order. Two collectives: counts, payload.
    public func allgather<T: CommScalar>(_ values: [T]) throws -> [[T]] {
        let counts = try allgather(Int64(values.count)).map { Int($0) }
        let total = counts.reduce(0, +)
        guard total > 0 else { return [[T]](repeating: [], count: size) }
        let gathered = try [T](unsafeUninitializedCapacity: total) { buffer, initialized in
            try values.withUnsafeBufferPointer { contribution in
                try allgather(contribution, into: buffer, counts: counts)
            }
            initialized = total
        }
        var parts: [[T]] = []
        parts.reserveCapacity(size)
        var start = 0
        for count in counts {
            parts.append(Array(gathered[start..<start + count]))
            start += count
        }
        return parts
    }

    /// Prints `error: <message>` (with `[rank r]` when there are several ranks) to stderr and ends the
    /// whole job with exit status 1, so no other rank is left waiting in a collective.
    public func fail(_ message: String) -> Never {
        writeFailureLine(failureLine(message, rank: rank, size: size))
        abort(code: 1)
    }
}

/// One line, so a job's stderr shows exactly one line per failing rank.
func failureLine(_ message: String, rank: Int, size: Int) -> String {
    let oneLine = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    return size > 1 ? "error: [rank \(rank)] \(oneLine)\n" : "error: \(oneLine)\n"
}

func writeFailureLine(_ line: String) {
    fflush(nil) // progress already printed to stdout must not be lost by the abort
    FileHandle.standardError.write(Data(line.utf8))
}

/// Element-count checks shared by both backends, so a wrong call fails the same way with and without MPI.
enum CollectiveArguments {
    static func checkRoot(_ root: Int, size: Int, call: String) throws {
        guard root >= 0 && root < size else { throw CommError.invalidRoot(call: call, root: root, size: size) }
    }

    static func checkGather(contribution: Int, gathered: Int, counts: [Int], rank: Int, size: Int) throws {
        let call = "allgather"
        guard counts.count == size else {
            throw CommError.countMismatch(call: call, detail: "counts has \(counts.count) entries for \(size) ranks")
        }
        guard counts.allSatisfy({ $0 >= 0 }) else {
            throw CommError.countMismatch(call: call, detail: "counts \(counts) has a negative entry")
        }
        guard counts[rank] == contribution else {
            throw CommError.countMismatch(
                call: call,
                detail: "rank \(rank) contributes \(contribution) elements but counts[\(rank)] is \(counts[rank])")
        }
        let total = counts.reduce(0, +)
        guard gathered == total else {
            throw CommError.countMismatch(
                call: call, detail: "receive buffer holds \(gathered) elements but counts add up to \(total)")
        }
    }
}

func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
}

/// See `Communicator.sharedCounter()`.
public protocol SharedCounter: AnyObject {
    /// The counter's value before this call added one to it (0, 1, 2, … across all callers).
    func next() throws -> Int
    /// Collective: every rank of the communicator calls it once, after its last `next()`.
    func free() throws
}
