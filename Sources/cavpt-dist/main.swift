// Entry point: make sure OpenBLAS runs its fast kernels, then dispatch the subcommand.
import ArgumentParser
import Tensor

// OpenBLAS reads OPENBLAS_CORETYPE only at load time; restart once with it set when it fell back
// to generic kernels (before MPI or any thread starts).
BLASRuntime.ensureFastKernels(arguments: CommandLine.arguments)

struct CavptDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cavpt-dist",
        abstract: "Class-Aware Visual Prompt Tuning for CLIP: a data-parallel MPI trainer.",
        subcommands: [
            Train.self, Eval.self, Predict.self, ReportCommand.self, Plot.self, Zeroshot.self, Gradients.self, Features.self, Fewshot.self, Tokenize.self, Demo.self, Bench.self,
        ])
}

CavptDist.main()
