// `cavpt-dist sweep`: many training runs in one MPI job; the flags into a `SweepRun` (Training/Sweep).
import ArgumentParser
import Data
import Distributed
import Foundation
import Tensor
import Training

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Train every job of a sweep (datasets × methods × seeds × shots × grid) in one MPI job: mpirun -np N "
            + "cavpt-dist sweep … --ranks-per-job G.",
        discussion: """
            Runs land in ROOT/<dataset>/<method>/<shots>shot/<grid values or default>/seed<S>/. A job \
            that fails (a bad image, a bad value, divergence) is recorded in its folder's status.json \
            and the summary, and its group takes the next job; the sweep exits 1 if any failed. \
            Re-running the same sweep skips finished jobs, resumes interrupted ones from their \
            checkpoints and refuses (naming the keys) a job whose settings changed. SIGTERM stops \
            every running job at its next step with a checkpoint (exit 75); run the same command again \
            to continue. At the end rank 0 writes ROOT/sweep-summary.json and prints the report.
            """)

    @Option(help: "A sweep YAML: datasets, methods, seeds, shots, set (fixed keys), grid (keys with lists of values).")
    var plan: String?
    @Option(help: "Comma-separated datasets (names or YAML files).") var datasets: String?
    @Option(help: "Comma-separated method presets.") var methods: String?
    @Option(help: "Comma-separated seeds (default 1,2,3).") var seeds: String?
    @Option(help: "Comma-separated shot counts (default 16).") var shots: String?
    @Option(
        name: .customLong("ranks-per-job"), help: "Ranks that train one job together (G; must divide the world size).")
    var ranksPerJob: Int = 1
    @Option(name: .customLong("data-root"), help: "Folder holding the datasets.") var dataRoot: String?
    @Option(help: "CLIP weights.") var model: String?
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "The sweep's root folder.") var output: String = "runs"
    @Option(name: .customLong("set"), help: "A fixed config key for every job (repeatable).") var sets: [String] = []
    @Flag(name: .customLong("dry-run"), help: "Print the jobs, their state and the groups' assignment; train nothing.")
    var dryRun = false

    func validate() throws {
        if ranksPerJob < 1 { throw ValidationError("--ranks-per-job must be at least 1, got \(ranksPerJob)") }
        if plan == nil && (datasets == nil || methods == nil) {
            throw ValidationError("give --datasets and --methods (or --plan FILE)")
        }
    }

    func run() throws {
        try withCommunicator { world in
            var sweep = SweepRun()
            sweep.plan = plan; sweep.datasets = datasets; sweep.methods = methods; sweep.seeds = seeds
            sweep.shots = shots; sweep.ranksPerJob = ranksPerJob; sweep.dataRoot = dataRoot; sweep.model = model
            sweep.vocab = vocab; sweep.output = output; sweep.sets = sets; sweep.dryRun = dryRun
            let outcome = try sweep.run(world)
            guard outcome != .completed else { return }
            try world.barrier()
            try Communicators.finalize()
            throw ExitCode(outcome == .stopped ? 75 : 1)
        }
    }
}
