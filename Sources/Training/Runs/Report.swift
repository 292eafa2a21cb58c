// `cavpt-dist report`: the tables the literature prints, from run directories: few-shot accuracy
// (the paper's Table 1: methods × datasets + average), base-to-new generalisation (base, new and
// the harmonic mean of the seed means) and cross-dataset transfer. Runs are grouped by dataset,
// method, shots, class subset and every other configuration value; only seeds are averaged.
import Data
import Files
import Foundation
import Tensor

public struct RunRecord: Sendable {
    public var directory: String
    public var dataset: String
    public var method: String
    public var shots: Int
    public var seed: Int
    public var subsample: String
    /// Every configuration value that decides the numbers, except the seed and the dataset.
    public var settings: [String: String]
    /// Test accuracy of the run itself (results.json), in [0, 1].
    public var accuracy: Double
    public var macroF1: Double
    /// Evaluations kept with the run (`eval --run`): target dataset, subset and accuracy.
    public var evaluations: [(dataset: String, subsample: String, split: String, accuracy: Double)]
}

public enum ReportFormat: String, Sendable, CaseIterable { case markdown, csv, json }

public enum Report {
    /// Keys that never separate groups: where and how fast, plus what the grouping names itself.
    static let ignored: Set<String> = ConfigSchema.operational.union(
        [
            \RunSettings.train.seed, \.dataset.name, \.methodName, \.train.shots, \.data.subsample, \.eval.split,
        ].map { ConfigSchema.name(of: $0) })

    /// Run directories under `paths` (a run directory itself, or folders searched for them).
    public static func collect(_ paths: [String]) throws -> [RunRecord] {
        var directories: [String] = []
        func walk(_ dir: String, depth: Int) {
            if FileManager.default.fileExists(atPath: dir + "/results.json") { directories.append(dir); return }
            guard depth < 12, let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for entry in entries.sorted()
            where !entry.hasPrefix(".") && entry != "checkpoints" && entry != "evaluations" {
                var isFolder: ObjCBool = false
                let path = dir + "/" + entry
                if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                    walk(path, depth: depth + 1)
                }
            }
        }
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
                throw TrainingError.input("\(path): no such folder")
            }
            walk(absolutePath(path), depth: 0)
        }
        guard !directories.isEmpty else {
            throw TrainingError.input(
                "no finished runs (folders with results.json) under \(paths.joined(separator: ", "))")
        }
        return try directories.map(read)
    }

    static func read(_ dir: String) throws -> RunRecord {
        let text: String
        do { text = try RegularFile.text(dir + "/config.yaml") } catch {
            throw TrainingError.input("\(dir): results.json without a readable config.yaml (\(error))")
        }
        var c = Config()
        try c.merge(savedRun: text, source: dir + "/config.yaml")
        guard let data = try? Data(RegularFile.read(dir + "/results.json", maxBytes: 64 << 20)),
            let results = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let accuracy = (results["accuracy"] as? NSNumber)?.doubleValue
        else {
            throw TrainingError.input("\(dir)/results.json: unreadable or without an accuracy")
        }
        var settings: [String: String] = [:]
        for (key, value) in c.values where !ignored.contains(key) { settings[key] = value.description }
        var evaluations: [(String, String, String, Double)] = []
        let folder = dir + "/evaluations"
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
        where name.hasSuffix(".json") {
            guard let bytes = try? Data(RegularFile.read(folder + "/" + name, maxBytes: 64 << 20)),
                let e = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any],
                let target = e["dataset"] as? String, let acc = (e["accuracy"] as? NSNumber)?.doubleValue
            else { continue }
            evaluations.append((target, e["subsample"] as? String ?? "all", e["split"] as? String ?? "test", acc))
        }
        let s = c.settings
        return RunRecord(
            directory: dir, dataset: s.dataset.name, method: s.methodName,
            shots: (results["shots"] as? NSNumber)?.intValue ?? s.train.shots, seed: s.train.seed,
            subsample: s.data.subsample.rawValue, settings: settings, accuracy: accuracy,
            macroF1: (results["macroF1"] as? NSNumber)?.doubleValue ?? .nan, evaluations: evaluations)
    }

    /// A row of a table: a method with the settings that set it apart from the method's other rows.
    struct Row: Hashable, Comparable {
        var method: String
        var shots: Int
        var label: String
        static func < (a: Row, b: Row) -> Bool {
            (methodOrder(a.method), a.method, a.shots, a.label) < (methodOrder(b.method), b.method, b.shots, b.label)
        }
        var title: String {
            method + (label.isEmpty ? "" : " [\(label)]")
        }
    }

    static func methodOrder(_ m: String) -> Int { MethodPresets.names.firstIndex(of: m) ?? MethodPresets.names.count }

    /// Each run's row: keys that vary among a method's runs of one dataset name the row; keys that
    /// only follow the dataset (K_N per dataset) do not.
    static func rows(_ runs: [RunRecord]) -> [Row] {
        var distinguishing: [String: [String]] = [:]
        for method in Set(runs.map(\.method)) {
            let mine = runs.filter { $0.method == method }
            let keys = Set(mine.flatMap(\.settings.keys))
            distinguishing[method] = keys.filter { key in
                Dictionary(grouping: mine, by: { "\($0.dataset)|\($0.shots)|\($0.subsample)" }).values.contains {
                    group in
                    Set(group.map { $0.settings[key] ?? "" }).count > 1
                }
            }.sorted()
        }
        return runs.map { run in
            let label = (distinguishing[run.method] ?? []).map { "\($0)=\(run.settings[$0] ?? "")" }.joined(
                separator: ", ")
            return Row(method: run.method, shots: run.shots, label: label)
        }
    }

    public struct Statistic: Sendable {
        public var mean: Double, std: Double, ci95: Double, count: Int
        /// CoOp's parse_test_res: mean, np.std (population) and 1.96 · std / √n, in percent.
        init(_ values: [Double]) {
            let n = values.count
            let m = values.reduce(0, +) / Double(max(n, 1))
            let s = n > 0 ? (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n)).squareRoot() : 0
            (count, mean, std, ci95) = (n, m, s, n > 0 ? 1.96 * s / Double(n).squareRoot() : 0)
        }
    }

    /// Refuses two runs that would be averaged as different seeds but are the same seed.
    static func checkDuplicates(_ runs: [RunRecord], rows: [Row]) throws {
        var seen: [String: String] = [:]
        for (run, row) in zip(runs, rows) {
            let key = "\(run.dataset)|\(row)|\(run.subsample)|\(run.seed)|\(run.settings.sorted { $0.key < $1.key })"
            if let other = seen[key] {
                throw TrainingError.input(
                    "two runs of the same configuration and seed \(run.seed): \(other) and \(run.directory); report "
                        + "one of them"
                )
            }
            seen[key] = run.directory
        }
    }

    /// The three tables as text in `format`.
    public static func render(_ runs: [RunRecord], format: ReportFormat, ci95: Bool) throws -> String {
        let rowOf = rows(runs)
        try checkDuplicates(runs, rows: rowOf)
        func cell(_ s: Statistic?) -> String {
            guard let s else { return "—" }
            return String(format: "%.2f ± %.2f", s.mean * 100, (ci95 ? s.ci95 : s.std) * 100)
                + (s.count == 3 ? "" : " (n=\(s.count))")
        }
        var tables: [(title: String, header: [String], rows: [[String]], json: [[String: Any]])] = []

        // Few-shot: runs on all classes, their own test split.
        let fewShot = zip(runs, rowOf).filter { $0.0.subsample == "all" }
        if !fewShot.isEmpty {
            let datasets = orderedDatasets(fewShot.map(\.0.dataset))
            var lines: [[String]] = [], json: [[String: Any]] = []
            for row in Set(fewShot.map(\.1)).sorted() {
                var cells: [String] = [], means: [Double] = []
                var entry: [String: Any] = ["method": row.method, "settings": row.label, "shots": row.shots]
                for d in datasets {
                    let values = fewShot.filter { $0.1 == row && $0.0.dataset == d }.map(\.0.accuracy)
                    let s = values.isEmpty ? nil : Statistic(values)
                    cells.append(cell(s))
                    if let s {
                        means.append(s.mean);
                        entry[d] = ["mean": s.mean * 100, "std": s.std * 100, "ci95": s.ci95 * 100, "seeds": s.count]
                    }
                }
                let average =
                    means.count == datasets.count
                    ? String(format: "%.2f", means.reduce(0, +) / Double(means.count) * 100) : "—"
                if means.count == datasets.count { entry["average"] = means.reduce(0, +) / Double(means.count) * 100 }
                lines.append([row.title, String(row.shots)] + cells + [average])
                json.append(entry)
            }
            tables.append(
                (
                    "Few-shot classification: test accuracy (%), mean ± \(ci95 ? "95% CI" : "std") over seeds",
                    ["method", "shots"] + datasets + ["average"], lines, json
                ))
        }

        // Base-to-new: trained on base, evaluated on new.
        let based = zip(runs, rowOf).filter { $0.0.subsample == "base" }
        if !based.isEmpty {
            let datasets = orderedDatasets(based.map(\.0.dataset))
            var lines: [[String]] = [], json: [[String: Any]] = []
            for row in Set(based.map(\.1)).sorted() {
                var cells: [String] = [], bases: [Double] = [], news: [Double] = []
                var entry: [String: Any] = ["method": row.method, "settings": row.label, "shots": row.shots]
                for d in datasets {
                    let mine = based.filter { $0.1 == row && $0.0.dataset == d }.map(\.0)
                    let b = mine.map(\.accuracy)
                    let n = mine.compactMap { r in
                        r.evaluations.first { $0.dataset == d && $0.subsample == "new" && $0.split == "test" }?.accuracy
                    }
                    guard !b.isEmpty, n.count == b.count else { cells += ["—", "—", "—"]; continue }
                    let (sb, sn) = (Statistic(b), Statistic(n))
                    let hm = harmonicMean(sb.mean, sn.mean)
                    cells += [cell(sb), cell(sn), String(format: "%.2f", hm * 100)]
                    bases.append(sb.mean); news.append(sn.mean)
                    entry[d] = ["base": sb.mean * 100, "new": sn.mean * 100, "hm": hm * 100, "seeds": sb.count]
                }
                var average = ["—", "—", "—"]
                if bases.count == datasets.count {
                    let (mb, mn) = (bases.reduce(0, +) / Double(bases.count), news.reduce(0, +) / Double(news.count))
                    average = [
                        String(format: "%.2f", mb * 100), String(format: "%.2f", mn * 100),
                        String(format: "%.2f", harmonicMean(mb, mn) * 100),
                    ]
                    entry["average"] = ["base": mb * 100, "new": mn * 100, "hm": harmonicMean(mb, mn) * 100]
                }
                lines.append([row.title, String(row.shots)] + cells + average)
                json.append(entry)
            }
            let header =
                ["method", "shots"] + (datasets + ["average"]).flatMap { ["\($0) base", "\($0) new", "\($0) HM"] }
            tables.append(
                (
                    "Base-to-new generalisation: accuracy (%) on base and new classes, HM of the seed means", header,
                    lines, json
                ))
        }

        // Cross-dataset: evaluations of a run on other datasets.
        let transfers = zip(runs, rowOf).filter { pair in
            pair.0.evaluations.contains { $0.dataset != pair.0.dataset && $0.subsample == "all" }
        }
        if !transfers.isEmpty {
            let targets = orderedDatasets(
                transfers.flatMap { pair in pair.0.evaluations.filter { $0.dataset != pair.0.dataset }.map(\.dataset) })
            var lines: [[String]] = [], json: [[String: Any]] = []
            let keys = Set(transfers.map { "\($0.0.dataset)\u{1}\($0.1.method)\u{1}\($0.1.shots)\u{1}\($0.1.label)" })
                .sorted()
            for key in keys {
                let mine = transfers.filter {
                    "\($0.0.dataset)\u{1}\($0.1.method)\u{1}\($0.1.shots)\u{1}\($0.1.label)" == key
                }
                let row = mine[0].1, source = mine[0].0.dataset
                var cells = [cell(Statistic(mine.map(\.0.accuracy)))]
                var entry: [String: Any] = [
                    "method": row.method, "settings": row.label, "source": source,
                    source: Statistic(mine.map(\.0.accuracy)).mean * 100,
                ]
                var means: [Double] = []
                for t in targets {
                    let values = mine.compactMap { pair in
                        pair.0.evaluations.first { $0.dataset == t && $0.subsample == "all" && $0.split == "test" }?
                            .accuracy
                    }
                    let s = values.isEmpty ? nil : Statistic(values)
                    cells.append(cell(s))
                    if let s { means.append(s.mean); entry[t] = s.mean * 100 }
                }
                let average =
                    means.count == targets.count
                    ? String(format: "%.2f", means.reduce(0, +) / Double(means.count) * 100) : "—"
                lines.append([row.title, source] + cells + [average])
                json.append(entry)
            }
            tables.append(
                (
                    "Cross-dataset transfer: test accuracy (%) of runs evaluated on other datasets (eval --run R "
                        + "--dataset D)",
                    ["method", "source", "source test"] + targets + ["target average"], lines, json
                ))
        }

        switch format {
        case .json:
            let object = tables.map { ["title": $0.title, "rows": $0.json] as [String: Any] }
            return String(
                decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]),
                as: UTF8.self) + "\n"
        case .csv:
            return tables.map { t in
                ([t.header] + t.rows).map { $0.map(csvField).joined(separator: ",") }.joined(separator: "\n")
            }.joined(separator: "\n\n") + "\n"
        case .markdown:
            return tables.map { t in
                "### \(t.title)\n\n| " + t.header.joined(separator: " | ") + " |\n|"
                    + t.header.map { _ in "---" }.joined(separator: "|")
                    + "|\n" + t.rows.map { "| " + $0.joined(separator: " | ") + " |" }.joined(separator: "\n")
            }.joined(separator: "\n\n") + "\n"
        }
    }

    public static func harmonicMean(_ a: Double, _ b: Double) -> Double { a + b > 0 ? 2 * a * b / (a + b) : 0 }

    /// The paper's dataset order first, then the others by name.
    static func orderedDatasets(_ names: [String]) -> [String] {
        let paper = [
            "eurosat", "caltech101", "oxford_flowers", "food101", "fgvc_aircraft", "dtd", "oxford_pets",
            "stanford_cars",
            "sun397", "ucf101", "imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
        ]
        return Set(names).sorted {
            (paper.firstIndex(of: $0) ?? paper.count, $0) < (paper.firstIndex(of: $1) ?? paper.count, $1)
        }
    }

    static func csvField(_ s: String) -> String {
        s.contains(",") || s.contains("\"") || s.contains("\n")
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
