// What a rank does with an error the other ranks of its job do not meet (DESIGN §5, §5a): one policy,
// passed to the step, the trainer and the evaluator. Solo (`train`, `eval`): the error is thrown where
// it happens and ends the MPI job. Sweep: the job must end on its group alone and no rank may be left
// waiting in a collective, so the error waits as this rank's pending failure until the group's next
// collective, where every rank learns it and all throw the same `JobFailure`. Either way, errors of the
// set-up and of rank 0's writes are `agreed`: every rank learns them and exits cleanly.
import Distributed

public final class FailurePolicy: @unchecked Sendable {
    public enum Scope: Sendable { case solo, sweep }

    public let scope: Scope
    public let comm: Communicator
    /// Sweep: this rank's first failure, not yet announced to the group.
    public private(set) var pending: String?

    public init(_ scope: Scope, comm: Communicator) {
        self.scope = scope
        self.comm = comm
    }

    /// Whether an error waits for the group's next collective instead of being thrown.
    public var defers: Bool { scope == .sweep }

    /// Solo: throws `error`. Sweep: keeps it as this rank's pending failure (the first one wins).
    public func meet(_ error: Error) throws {
        guard defers else { throw error }
        if pending == nil { pending = oneLine(error) }
    }

    /// Runs `body`; an error of it goes to `meet` (a `TrainingStop`, which every rank throws alike,
    /// passes through).
    public func guarded(_ body: () throws -> Void) throws {
        do { try body() } catch let stop as TrainingStop { throw stop } catch { try meet(error) }
    }

    /// The collective where every rank learns whether any rank's failure is pending; then all throw
    /// the lowest failing rank's message.
    public func agree() throws { try Self.agree(comm, failure: pending) }

    /// Runs `body` on every rank; in a sweep, and in any job of several ranks, every rank then learns
    /// whether any rank's `body` failed (`agree`). A bad setting or a busy run directory is then one
    /// error line and a clean exit, not one line per rank and an MPI_Abort. Every rank must call it at
    /// the same point.
    @discardableResult
    public func agreed<T>(_ body: () throws -> T) throws -> T {
        guard defers || comm.size > 1 else { return try body() }
        var value: T?
        var failure: String?
        do { value = try body() } catch { failure = oneLine(error) }
        try Self.agree(comm, failure: failure)
        return value!
    }

    /// One allgather of the ranks' failure flags, plus a broadcast of the lowest failing rank's message
    /// when any failed (thrown on every rank as a `JobFailure`).
    static func agree(_ comm: Communicator, failure: String?) throws {
        let flags = try comm.allgather(Int64(failure == nil ? 0 : 1))
        if let root = flags.firstIndex(where: { $0 != 0 }) {
            throw JobFailure(rank: root, message: try comm.broadcast(failure ?? "", root: root))
        }
    }

    func oneLine(_ error: Error) -> String { String(describing: error).split(separator: "\n").joined(separator: " ") }
}

/// A job's failure, agreed by every rank of its group: the lowest failing rank's error.
public struct JobFailure: Error, CustomStringConvertible, Sendable {
    public var rank: Int
    public var message: String
    public init(rank: Int, message: String) { self.rank = rank; self.message = message }
    public var description: String { message }
}
