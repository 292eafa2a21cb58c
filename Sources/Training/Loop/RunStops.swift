// How a training run stops early on purpose: a preemption signal (SIGTERM, SIGINT, SIGUSR1) agreed
// by every rank at a step boundary, or the divergence guard; the record each leaves and its exit code.
import CSignals
import Foundation

/// Why `train` stopped before its last epoch. Every rank throws the same one at the same step (the
/// decision rides on the step's allreduce), so the job ends without an MPI_Abort.
public enum TrainingStop: Error, CustomStringConvertible {
    /// A non-finite loss, gradient or trained tensor at 1-based `epoch`/`step`; that state is never
    /// checkpointed, so `lastCheckpoint` (rank 0 only; nil before the first) is the newest finite one.
    case diverged(epoch: Int, step: Int, reason: String, lastCheckpoint: String?)
    /// A stop signal: rank 0 wrote `checkpoint` (nil on other ranks) after 1-based `step` of 1-based
    /// `epoch` (the checkpoint is epoch-NNNN when that was the epoch's last step). `signal` names rank
    /// 0's signal, or says another rank got one; `ranks` of the job's ranks received one.
    case preempted(epoch: Int, step: Int, signal: String, ranks: Int, checkpoint: String?)

    /// Exit status of every rank after divergence.
    public static let divergedExitCode: Int32 = 3
    /// Exit status of every rank after a preemption: EX_TEMPFAIL, "try again" (with --resume).
    public static let preemptedExitCode: Int32 = 75

    public var exitCode: Int32 {
        switch self {
        case .diverged: return Self.divergedExitCode
        case .preempted: return Self.preemptedExitCode
        }
    }

    public var description: String {
        switch self {
        case let .diverged(epoch, step, reason, lastCheckpoint):
            return "training diverged at epoch \(epoch) step \(step): \(reason); stopped without checkpointing it, "
                + (lastCheckpoint.map { "the last finite checkpoint is \($0)" } ?? "no checkpoint was written before")
                + " (lower the learning rate, weight decay or momentum in a new run, --overwrite or another --output; "
                + "or check the weights)"
        case let .preempted(epoch, step, signal, ranks, checkpoint):
            return "preempted by \(signal) (\(ranks) rank(s) signalled) after epoch \(epoch) step \(step)"
                + (checkpoint.map { ": checkpoint \($0)" } ?? "")
        }
    }
}

/// Steps of an epoch already trained when a checkpoint was taken inside it, with that epoch's
/// statistics so far, so the resumed epoch's metrics line covers the whole epoch.
public struct EpochProgress: Codable, Sendable, Equatable {
    public var steps: Int
    /// Sum of the steps' mean losses, correct predictions and images so far.
    public var lossSum: Double
    public var correct: Double
    public var images: Double
    public var seconds: Double
    public var communicationSeconds: Double
    public var allreduces: Int
    /// Sum of the steps' CAVPT loss terms (absent in checkpoints written before it was logged).
    public var cavptLossSum: Double? = nil
}

/// The process's stop-signal handlers (CSignals): the handler only records the signal; the trainer
/// reads it at each step and carries it in the step's allreduce.
public enum StopSignals {
    public static func install() throws {
        let rc = csignals_install()
        guard rc == 0 else {
            throw TrainingError.input("sigaction(SIGTERM, SIGINT, SIGUSR1) failed: \(String(cString: strerror(rc)))")
        }
    }

    /// Back to the default actions (a signal after training, during evaluation, ends the process).
    public static func restore() { _ = csignals_restore() }

    /// The first stop signal received, or 0.
    public static var pending: Int32 { csignals_pending() }

    public static func clear() { csignals_clear() }

    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGTERM: return "SIGTERM"
        case SIGINT: return "SIGINT"
        case SIGUSR1: return "SIGUSR1"
        default: return "signal \(signal)"
        }
    }

    /// "SIGTERM", "TERM", "INT", "USR1" or a number (for the test hook).
    static func number(_ name: String) -> Int32? {
        let bare = name.uppercased().hasPrefix("SIG") ? String(name.uppercased().dropFirst(3)) : name.uppercased()
        switch bare {
        case "TERM": return SIGTERM
        case "INT": return SIGINT
        case "USR1": return SIGUSR1
        default: return Int32(name)
        }
    }
}

/// The command that continues a stopped run: the same arguments with `--resume` (instead of any
/// `--resume-from`), under `mpirun -np N` when there were N > 1 ranks, from the same directory.
public func resumeCommand(arguments: [String], ranks: Int, workingDirectory: String) -> String {
    var words: [String] = []
    var skipNext = false
    for word in arguments {
        if skipNext { skipNext = false; continue }
        if word == "--resume-from" { skipNext = true; continue }
        if word.hasPrefix("--resume-from=") || word == "--resume" { continue }
        words.append(word)
    }
    words.append("--resume")
    let launcher = ranks > 1 ? "mpirun -np \(ranks) " : ""
    return "cd \(shellQuoted(workingDirectory)) && " + launcher + words.map(shellQuoted).joined(separator: " ")
}

/// A word as a POSIX shell reads it back: bare when it is plainly safe, else in single quotes.
func shellQuoted(_ word: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !word.isEmpty && word.allSatisfy({ safe.contains($0) }) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
