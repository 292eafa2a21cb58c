// A sweep's jobs: datasets × methods × seeds × shots × every combination of the plan's grid keys
// (a Table 3 K_N ablation, a Table 2 loss ablation), each with its own run folder
// ROOT/<dataset>/<method>/<shots>shot/<grid values or "default">/seed<S>, handed out longest first.
import Data
import Foundation
import Yams

public struct SweepJob: Sendable, Equatable {
    public var dataset: String // as given (a name or a YAML path)
    public var datasetName: String // the definition's name (the folder)
    public var method: String
    public var seed: Int
    public var shots: Int
    /// Grid assignments of this job (key, value as written), in key order.
    public var grid: [(String, String)]
    public var folder: String
    /// Relative cost for scheduling: epochs × shots.
    public var cost: Int

    public static func == (a: SweepJob, b: SweepJob) -> Bool { a.folder == b.folder }
}

public struct SweepPlan: Sendable {
    public var datasets: [String] = []
    public var methods: [String] = []
    public var seeds: [Int] = [1, 2, 3]
    public var shots: [Int] = [16]
    /// Fixed overrides for every job (`key=value`).
    public var sets: [String] = []
    /// Keys with several values: one job per combination.
    public var grid: [(String, [String])] = []

    public init() {}

    /// A sweep YAML: `datasets`, `methods`, `seeds`, `shots` (lists or single values), `set` (fixed
    /// keys) and `grid` (keys with lists of values).
    public mutating func merge(yaml text: String, source: String) throws {
        let parsed = try ConfigError.parsing(yaml: text, source: source)
        guard let top = parsed as? [String: Any] else {
            throw ConfigError.syntax(
                source: source, detail: "a sweep plan is a mapping (datasets, methods, seeds, shots, set, grid)")
        }
        func strings(_ key: String) throws -> [String]? {
            guard let value = top[key] else { return nil }
            if let list = value as? [Any] { return list.map { "\($0)" } }
            return ["\(value)"]
        }
        func integers(_ key: String) throws -> [Int]? {
            guard let items = try strings(key) else { return nil }
            return try items.map { item in
                guard let v = Int(item) else {
                    throw ConfigError.badValue(key, value: item, expected: "an integer", source: source)
                }
                return v
            }
        }
        for key in top.keys where !["datasets", "methods", "seeds", "shots", "set", "grid"].contains(key) {
            throw ConfigError.syntax(
                source: source, detail: "unknown sweep key '\(key)' (known: datasets, methods, seeds, shots, set, grid)"
            )
        }
        if let v = try strings("datasets") { datasets = v }
        if let v = try strings("methods") { methods = v }
        if let v = try integers("seeds") { seeds = v }
        if let v = try integers("shots") { shots = v }
        if let section = top["set"] {
            guard let map = section as? [String: Any] else {
                throw ConfigError.syntax(source: source, detail: "set: must map keys to values")
            }
            for key in map.keys.sorted() { sets.append("\(key)=\(Self.yamlValue(map[key]!))") }
        }
        if let section = top["grid"] {
            guard let map = section as? [String: Any] else {
                throw ConfigError.syntax(source: source, detail: "grid: must map keys to lists of values")
            }
            for key in map.keys.sorted() {
                guard let values = map[key] as? [Any], !values.isEmpty else {
                    throw ConfigError.syntax(source: source, detail: "grid.\(key) must be a non-empty list of values")
                }
                grid.append((key, values.map(Self.yamlValue)))
            }
        }
    }

    static func yamlValue(_ v: Any) -> String {
        if let list = v as? [Any] { return "[" + list.map(yamlValue).joined(separator: ", ") + "]" }
        return "\(v)"
    }

    /// Every job, each checked against the schema (an unknown key or bad value is an error here,
    /// before any rank starts training). `resolve` turns a job into its configuration.
    public func jobs(root: String, resolve: (SweepJob, [String]) throws -> Config) throws -> [SweepJob] {
        guard !datasets.isEmpty, !methods.isEmpty, !seeds.isEmpty, !shots.isEmpty else {
            throw TrainingError.input("a sweep needs datasets, methods, seeds and shots (each at least one)")
        }
        var combinations: [[(String, String)]] = [[]]
        for (key, values) in grid {
            combinations = combinations.flatMap { partial in values.map { partial + [(key, $0)] } }
        }
        var out: [SweepJob] = []
        for dataset in datasets {
            let name = try RunSetup.datasetName(dataset)
            for method in methods {
                for shot in shots {
                    for combination in combinations {
                        let label =
                            combination.isEmpty
                            ? "default"
                            : combination.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
                                .map { $0.isLetter || $0.isNumber || "=,.-_".contains($0) ? $0 : "_" }.reduce("") {
                                    $0 + String($1)
                                }
                        for seed in seeds {
                            var job = SweepJob(
                                dataset: dataset, datasetName: name, method: method, seed: seed, shots: shot,
                                grid: combination, folder: "\(root)/\(name)/\(method)/\(shot)shot/\(label)/seed\(seed)",
                                cost: 0)
                            let config = try resolve(job, overrides(for: job))
                            job.cost = max(1, config.settings.train.epochs) * shot
                            out.append(job)
                        }
                    }
                }
            }
        }
        return out
    }

    /// The `--set` assignments of a job: the fixed ones, its shots, then its grid values.
    public func overrides(for job: SweepJob) -> [String] {
        sets + ["\(ConfigSchema.name(of: \.train.shots))=\(job.shots)"] + job.grid.map { "\($0.0)=\($0.1)" }
    }

    /// The order the jobs are handed out in: longest first (ties: the plan's order).
    public static func longestFirst(_ jobs: [SweepJob]) -> [SweepJob] {
        jobs.enumerated().sorted { ($0.element.cost, -$0.offset) > ($1.element.cost, -$1.offset) }.map(\.element)
    }

    /// Where MPI one-sided windows are not available (Open MPI over TCP with a serialized thread
    /// level): the same order dealt out statically, each job to the group with the least work so
    /// far; every rank computes the same lists.
    public static func assign(_ jobs: [SweepJob], groups: Int) -> [[SweepJob]] {
        var load = Array(repeating: 0, count: groups)
        var lists = Array(repeating: [SweepJob](), count: groups)
        for job in longestFirst(jobs) {
            let g = load.indices.min { (load[$0], $0) < (load[$1], $1) }!
            lists[g].append(job)
            load[g] += job.cost
        }
        return lists
    }

}
