// Entry point: make sure OpenBLAS runs its fast kernels, then dispatch the subcommand. Every
// argument error is one `error: <command>: <reason>` line (no usage dump), help goes to stdout.
import ArgumentParser
import Foundation
import Tensor
import Training

// OpenBLAS reads OPENBLAS_CORETYPE only at load time; restart once with it set when it fell back
// to generic kernels (before MPI or any thread starts).
BLASRuntime.ensureFastKernels(arguments: CommandLine.arguments)

struct CavptDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cavpt-dist",
        abstract: "Class-Aware Visual Prompt Tuning for CLIP: a data-parallel MPI trainer.",
        version: "cavpt-dist \(cavptDistVersion)",
        subcommands: [
            Train.self, Eval.self, Predict.self, ReportCommand.self, Plot.self, Attention.self, Sweep.self,
            ConfigCommand.self, Zeroshot.self, Gradients.self,
            Features.self, Fewshot.self, Tokenize.self, Demo.self, Bench.self,
        ])
}

/// The subcommand the arguments name (for the error line), or the tool itself.
func commandName(_ arguments: [String]) -> String {
    let names = CavptDist.configuration.subcommands.map { $0._commandName }
    if let first = arguments.first, names.contains(first) { return "cavpt-dist \(first)" }
    return "cavpt-dist"
}

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    var command = try CavptDist.parseAsRoot(arguments)
    try command.run()
} catch {
    let code = CavptDist.exitCode(for: error)
    if code == .success {
        // --help, --version: the full text, on stdout.
        print(CavptDist.fullMessage(for: error))
        exit(0)
    }
    if error is ExitCode {
        exit(code.rawValue)
    }
    let message = CavptDist.message(for: error).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        .filter { !$0.isEmpty && !$0.hasPrefix("Usage:") && !$0.hasPrefix("See '") && !$0.hasPrefix("Help:") }
        .joined(separator: " ")
    let reason = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
    writeStandardError("error: \(commandName(arguments)): \(reason) (see \(commandName(arguments)) --help)\n")
    exit(code.rawValue == 0 ? 64 : code.rawValue)
}
