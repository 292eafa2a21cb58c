// Picks the backend for this process and finalises MPI at exit.
import Foundation

public enum Communicators {
    /// MPI's world when a launcher (mpirun, srun --mpi=pmix) started this process, else the
    /// single-process backend, so a plain `cavpt-dist train` neither initialises MPI nor prints its warnings.
    public static func makeDefault(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Communicator {
        if launchedByMPI(environment: environment) {
            return try MPICommunicator.world()
        }
        return SingleProcessCommunicator()
    }

    /// Variables an MPI launcher sets in every rank's environment: Open MPI's own, PMIx (mpirun and
    /// `srun --mpi=pmix`), and PMI-1/2 (MPICH-style launchers).
    public static let launcherVariables = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]

    public static func launchedByMPI(environment: [String: String]) -> Bool {
        launcherVariables.contains { environment[$0] != nil }
    }

    /// Finalises MPI if this process initialised it; call once when the command has finished normally.
    /// Safe to call without MPI and more than once. After it no MPI communicator may be used.
    public static func finalize() throws {
        try MPIRuntime.finalize()
    }
}
