// Training curves of runs (`plot`): each run's metrics.jsonl by epoch, laid out as panels (loss and
// its CE/CAVPT parts, train accuracy, learning rates, val accuracy), one row per dataset for a folder of
// runs such as a sweep's.
import Figures
import Files
import Foundation
import Tensor

public enum TrainingCurves {
    /// The figure of the runs under `runs` (run directories or folders of them) and how many runs it shows.
    public static func figure(_ runs: [String]) throws -> (figure: Figure, runs: Int, panels: Int) {
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
        return (Figure(panels: panels, columns: columns), curves.count, panels.count)
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
            let settings = config.settings
            dataset = settings.dataset.name
            label = "\(settings.methodName) seed \(settings.train.seed)"
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
