// `cavpt-dist report`: mean ± std tables over seeds from run directories.
import ArgumentParser
import Foundation
import Training

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract:
            "Tables from finished runs: few-shot accuracy (methods × datasets + average), base-to-new (base, new, "
            + "HM) and cross-dataset transfer, mean ± std over seeds.",
        discussion: """
            RUNS are run directories or folders holding them (searched recursively). Runs are grouped \
            by dataset, method, shots, class subset and every other configuration value; only seeds \
            are averaged, and a method's rows are labelled with the keys that set them apart. The std \
            and 95% CI are CoOp's parse_test_res (population std, 1.96·std/√n). Base-to-new needs \
            runs trained with data.subsample=base and `eval --run R --subsample new`; cross-dataset \
            needs `eval --run R --dataset OTHER`.
            """)

    @Argument(help: "Run directories or folders of them.") var runs: [String] = ["runs"]
    @Option(help: "markdown, csv or json.") var format: String = "markdown"
    @Flag(help: "Show the 95% confidence interval instead of the std.") var ci95 = false
    @Option(help: "Write the tables here instead of printing them.") var out: String?

    func validate() throws {
        if ReportFormat(rawValue: format) == nil {
            throw ValidationError("--format must be markdown, csv or json, got '\(format)'")
        }
    }

    func run() throws {
        try reportingErrors {
            let text = try Report.render(try Report.collect(runs), format: ReportFormat(rawValue: format)!, ci95: ci95)
            if let out { try writeDurably(Data(text.utf8), to: out) } else { print(text, terminator: "") }
        }
    }
}
