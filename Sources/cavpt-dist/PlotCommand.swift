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
            var curves: [RunCurves] = []
            for path in runs { curves += try RunCurves.find(path) }
            guard !curves.isEmpty else {
                throw TrainingError.input("no metrics.jsonl under \(runs.joined(separator: ", "))")
            }
            let byDataset = Dictionary(grouping: curves, by: \.dataset)
            let rows = byDataset.count > 1 ? byDataset.keys.sorted().map { ($0, byDataset[$0]!) } : [("", curves)]
            var panels: [Panel] = []
            for (dataset, group) in rows {
                let prefix = dataset.isEmpty ? "" : dataset + ": "
                let multiple = group.count > 1
                func name(_ c: RunCurves, _ part: String) -> String {
                    multiple ? (part.isEmpty ? c.label : "\(c.label) \(part)") : (part.isEmpty ? "train" : part)
                }
                var loss: [Series] = [], accuracy: [Series] = [], rates: [Series] = [], val: [Series] = []
                for c in group {
                    let run = c.label
                    loss.append(
                        Series(name: name(c, multiple ? "loss" : "total"), points: c.series("loss"), group: run))
                    if c.has("lossCE") {
                        loss.append(Series(name: name(c, "CE"), points: c.series("lossCE"), group: run, dashed: true))
                    }
                    if c.has("lossCAVPT") {
                        loss.append(
                            Series(
                                name: name(c, "CAVPT"), points: c.series("lossCAVPT"), group: run + " CAVPT",
                                dashed: true))
                    }
                    accuracy.append(Series(name: name(c, ""), points: c.series("accuracy", scale: 100), group: run))
                    for part in ["visual", "text"] where c.hasRate(part) {
                        rates.append(
                            Series(name: name(c, part), points: c.rateSeries(part), group: run, dashed: part == "text"))
                    }
                    if c.has("valAccuracy") {
                        val.append(Series(name: name(c, ""), points: c.series("valAccuracy", scale: 100), group: run))
                    }
                }
                panels.append(Panel(title: prefix + "training loss", yLabel: "loss", series: loss))
                panels.append(Panel(title: prefix + "train accuracy", yLabel: "accuracy (%)", series: accuracy))
                panels.append(Panel(title: prefix + "learning rate", yLabel: "lr", series: rates, logY: true))
                if !val.isEmpty {
                    panels.append(Panel(title: prefix + "val accuracy", yLabel: "accuracy (%)", series: val))
                }
            }
            let columns = rows.count > 1 ? 4 : min(panels.count, 2)
            let figure = Figure(panels: panels, columns: columns)
            let data: Data =
                (out as NSString).pathExtension.lowercased() == "svg"
                ? Data(figure.svg().utf8) : try PNG.encode(figure.canvas())
            try writeDurably(data, to: out)
            print("plot: \(out) (\(curves.count) run(s), \(panels.count) panels, \(figure.width)×\(figure.height))")
        }
    }
}

/// One run's metrics.jsonl, by epoch.
struct RunCurves {
    var label: String
    var dataset: String
    var records: [[String: Any]]

    static func find(_ path: String) throws -> [RunCurves] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
            throw TrainingError.input("\(path): no such folder")
        }
        if FileManager.default.fileExists(atPath: path + "/metrics.jsonl") { return [try read(path)] }
        var found: [RunCurves] = []
        let entries = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        for entry in entries where !entry.hasPrefix(".") && entry != "checkpoints" && entry != "evaluations" {
            var sub: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + entry, isDirectory: &sub), sub.boolValue {
                found += try find(path + "/" + entry)
            }
        }
        return found
    }

    static func read(_ dir: String) throws -> RunCurves {
        let text: String
        do { text = try RegularFile.text(dir + "/metrics.jsonl", maxBytes: 1 << 30) } catch {
            throw TrainingError.input("\(dir)/metrics.jsonl: \(error)")
        }
        let records = text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
        var config = Config()
        var label = (dir as NSString).lastPathComponent, dataset = ""
        if let yaml = try? RegularFile.text(dir + "/config.yaml"),
            (try? config.merge(savedRun: yaml, source: dir + "/config.yaml")) != nil
        {
            dataset = config.string("dataset.name")
            label = "\(config.string("method.name")) seed \(config.int("train.seed"))"
        }
        return RunCurves(label: label, dataset: dataset, records: records)
    }

    func has(_ key: String) -> Bool { records.contains { $0[key] is NSNumber } }
    func hasRate(_ group: String) -> Bool { records.contains { ($0["lr"] as? [String: Any])?[group] is NSNumber } }

    func series(_ key: String, scale: Double = 1) -> [(x: Double, y: Double)] {
        records.compactMap { r in
            guard let e = (r["epoch"] as? NSNumber)?.doubleValue, let v = (r[key] as? NSNumber)?.doubleValue else {
                return nil
            }
            return (e, v * scale)
        }
    }

    func rateSeries(_ group: String) -> [(x: Double, y: Double)] {
        records.compactMap { r in
            guard let e = (r["epoch"] as? NSNumber)?.doubleValue,
                let v = ((r["lr"] as? [String: Any])?[group] as? NSNumber)?.doubleValue
            else { return nil }
            return (e, v)
        }
    }
}
