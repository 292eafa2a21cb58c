// `cavpt-dist plot`: training curves of one or more runs (or of a sweep folder, one row of panels
// per dataset) as SVG or PNG.
import ArgumentParser
import Figures
import Foundation
import Tensor
import Training

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Training curves (loss and its CE/CAVPT parts, train accuracy, learning rates, val accuracy) of runs, "
            + "as SVG or PNG.",
        discussion: """
            Each --run is a run directory (its metrics.jsonl) or a folder of runs such as a sweep's; \
            several runs overlay in each panel, one colour per run, and a folder of runs gives one row \
            of panels per dataset. The format follows --out's extension (.svg or .png).
            """)

    @Option(name: .customLong("run"), help: "A run directory or a folder of runs (repeatable).") var runs: [String] = []
    @Option(help: "The picture to write: FILE.svg or FILE.png.") var out: String

    func validate() throws {
        if runs.isEmpty { throw ValidationError("give at least one --run DIR") }
        let ext = (out as NSString).pathExtension.lowercased()
        if ext != "svg" && ext != "png" { throw ValidationError("--out must end in .svg or .png, got '\(out)'") }
    }

    func run() throws {
        try reportingErrors {
            let (figure, count, panels) = try TrainingCurves.figure(runs)
            let data: Data =
                (out as NSString).pathExtension.lowercased() == "svg"
                ? Data(figure.svg().utf8) : try PNG.encode(figure.canvas())
            try writeDurably(data, to: out)
            print("plot: \(out) (\(count) run(s), \(panels) panels, \(figure.width)×\(figure.height))")
        }
    }
}
