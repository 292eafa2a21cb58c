// Test hooks: deterministic failures for the resume, preemption and sweep tests, read from the
// environment variable CAVPT_DIST_FAULT (never set in normal use).
import Distributed
import Foundation

/// Deterministic failures for the resume tests, from CAVPT_DIST_FAULT:
/// `kill-rank:R:after-epoch:E` — rank R dies by SIGKILL once epoch E's checkpoint is complete;
/// `crash-checkpoint:E` — rank 0 dies by SIGKILL half-way through writing epoch E's checkpoint;
/// `signal-self:R:SIG:epoch:E:step:S` — rank R raises SIG (TERM, INT, USR1) while computing step S
/// of epoch E (both 1-based), as a scheduler's signal would arrive;
/// `slow-steps:MS` — every step sleeps MS milliseconds first (a long run that costs no CPU).
struct FaultInjection {
    enum Kind { case killRank, crashDuringCheckpoint, signalSelf, slowSteps }
    var kind: Kind
    var rank: Int
    var epoch: Int
    var step = 0
    var signal: Int32 = 0

    static func fromEnvironment() -> FaultInjection? {
        guard let spec = ProcessInfo.processInfo.environment["CAVPT_DIST_FAULT"] else { return nil }
        let parts = spec.split(separator: ":").map(String.init)
        if parts.count == 4, parts[0] == "kill-rank", parts[2] == "after-epoch", let r = Int(parts[1]),
            let e = Int(parts[3])
        {
            return FaultInjection(kind: .killRank, rank: r, epoch: e)
        }
        if parts.count == 2, parts[0] == "crash-checkpoint", let e = Int(parts[1]) {
            return FaultInjection(kind: .crashDuringCheckpoint, rank: 0, epoch: e)
        }
        if parts.count == 7, parts[0] == "signal-self", parts[3] == "epoch", parts[5] == "step", let r = Int(parts[1]),
            let signal = StopSignals.number(parts[2]), let e = Int(parts[4]), let s = Int(parts[6])
        {
            return FaultInjection(kind: .signalSelf, rank: r, epoch: e, step: s, signal: signal)
        }
        if parts.count == 2, parts[0] == "slow-steps", let ms = Int(parts[1]), ms >= 0 {
            return FaultInjection(kind: .slowSteps, rank: 0, epoch: 0, step: ms)
        }
        return nil
    }
}

extension FaultInjection {
    /// Before step `step` (0-based) of epoch `epoch` on `rank`: a signal arriving while the step
    /// computes, or a slow step.
    func beforeStep(rank: Int, epoch: Int, step: Int) {
        if kind == .signalSelf, self.rank == rank, self.epoch == epoch + 1, self.step == step + 1 {
            raise(signal) // a real signal arriving while this step computes
        }
        if kind == .slowSteps { usleep(UInt32(self.step) * 1000) } // long steps
    }

    /// Whether rank 0 dies half-way through writing the checkpoint after `epochsDone` epochs.
    func crashesCheckpoint(after epochsDone: Int) -> Bool { kind == .crashDuringCheckpoint && epoch == epochsDone }

    /// After the checkpoint of `epochsDone` epochs: the checkpoint is complete on rank 0 before any
    /// rank dies.
    func afterCheckpoint(comm: Communicator, epochsDone: Int) throws {
        guard kind == .killRank, epoch == epochsDone else { return }
        try comm.barrier()
        if comm.rank == rank { raise(SIGKILL) }
    }
}
