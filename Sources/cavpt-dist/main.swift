// Entry point: make sure OpenBLAS runs its fast kernels, then dispatch the subcommand.
import ArgumentParser

struct CavptDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cavpt-dist",
        abstract: "Class-Aware Visual Prompt Tuning for CLIP: a data-parallel MPI trainer.",
        subcommands: [
            Tokenize.self,
        ])
}

CavptDist.main()
