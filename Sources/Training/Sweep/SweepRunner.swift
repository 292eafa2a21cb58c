// A sweep's run (DESIGN §5a): the plan's jobs under its root folder, the world split into groups of
// G ranks (inside a node where possible), world rank 0 handing the jobs out longest first through a
// one-sided counter the groups' leaders take the next job from (or, where MPI offers no window across
// the ranks, dealt out in advance), each group training one job at a time through `TrainingJob` with
// a sweep's failure policy, and the summary. Re-running skips finished jobs and resumes interrupted ones.
import Data
import Distributed
import Files
import Foundation
import Tensor

public struct SweepRun {
    /// A sweep YAML (datasets, methods, seeds, shots, set, grid), under the flags.
    public var plan: String?
    public var datasets: String?
    public var methods: String?
    public var seeds: String?
    public var shots: String?
    /// G: ranks that train one job together (must divide the world size).
    public var ranksPerJob = 1
    public var dataRoot: String?
    public var model: String?
    public var vocab: String?
    /// The sweep's root folder.
    public var output = "runs"
    /// Fixed `--set` assignments for every job.
    public var sets: [String] = []
    /// Print the jobs, their state and the order; train nothing.
    public var dryRun = false

    public init() {}

    /// How the sweep ended: every job done (or already finished), a job failed, or a stop signal.
    public enum Outcome: Sendable { case completed, failed, stopped }

    enum JobState: String { case fresh, resume, finished }

    /// The keys a sweep's own dimensions set (`--shots`, `--seeds`, `--output`, `--datasets`, `--methods`).
    static let dimensions: Set<String> = Set(
        [\RunSettings.train.shots, \.train.seed, \.output.dir, \.dataset.name, \.methodName].map {
            ConfigSchema.name(of: $0)
        })

    /// Plans and trains the sweep on `world` (every rank calls it).
    public func run(_ world: Communicator) throws -> Outcome {
        // Every rank checks the same arguments, plan and folders: one error line, said once.
        let (root, sweep, jobs) = try FailurePolicy(.sweep, comm: world).agreed { try plannedJobs(world) }
        return try runPlanned(world, root: root, sweep: sweep, jobs: jobs, groups: world.size / ranksPerJob)
    }

    /// The sweep's jobs under its output folder, after the checks every rank makes alike.
    func plannedJobs(_ world: Communicator) throws -> (String, SweepPlan, [SweepJob]) {
        guard world.size % ranksPerJob == 0 else {
            throw TrainingError.input("--ranks-per-job \(ranksPerJob) does not divide the \(world.size) ranks")
        }
        RunSetup.configureThreads(world, settings: nil)
        let root = absolutePath(output)
        var sweep = SweepPlan()
        if let plan {
            let text: String
            do { text = try RegularFile.text(plan) } catch let error as RegularFileError {
                throw TrainingError.input("\(plan): cannot read the sweep plan: \(error.briefReason)")
            }
            try sweep.merge(yaml: text, source: plan)
        }
        func list(_ s: String?) -> [String]? {
            s.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        }
        if let v = list(datasets) { sweep.datasets = v }
        if let v = list(methods) { sweep.methods = v }
        if let v = list(seeds) { sweep.seeds = try v.map { try Self.integer($0, "--seeds") } }
        if let v = list(shots) { sweep.shots = try v.map { try Self.integer($0, "--shots") } }
        sweep.sets += sets
        for assignment in sweep.sets {
            let key =
                assignment.split(separator: "=").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
            if Self.dimensions.contains(key) {
                throw TrainingError.input(
                    "--set \(key) is the sweep's own dimension: use --shots, --seeds, --output, --datasets or --methods"
                )
            }
        }
        var configs: [String: Config] = [:]
        let jobs = try sweep.jobs(root: root) { job, overrides in
            let config = try RunSetup.config(options(job, overrides: overrides))
            configs[job.folder] = config
            return config
        }
        // A folder that already holds a run of other settings is refused before anything trains.
        var changed: [String] = []
        for job in jobs where state(of: job) != .fresh {
            do { try checkUnchanged(job, config: configs[job.folder]!) } catch { changed.append("\(error)") }
        }
        if !changed.isEmpty {
            throw TrainingError.configuration(
                changed[0] + (changed.count > 1 ? " (and \(changed.count - 1) more job folder(s))" : ""))
        }
        return (root, sweep, jobs)
    }

    /// Trains the planned jobs: the world split into groups, world rank 0 handing out the jobs.
    func runPlanned(
        _ world: Communicator, root: String, sweep: SweepPlan, jobs: [SweepJob], groups: Int
    ) throws -> Outcome {
        let order = SweepPlan.longestFirst(jobs)
        if world.rank == 0 {
            print("sweep: \(jobs.count) job(s) in \(root), \(groups) group(s) of \(ranksPerJob) rank(s)")
        }
        if dryRun {
            if world.rank == 0 {
                for (i, job) in order.enumerated() {
                    print("job \(i + 1)/\(order.count): \(job.folder) [\(state(of: job).rawValue)]")
                }
            }
            return .completed
        }
        let g = try groupColor(world) // the group's index, the same on all its ranks
        let group = try world.split(color: g, key: world.rank)
        // Rank 0 hands the jobs out through a one-sided counter; where the MPI library offers no
        // window across these ranks (every rank fails alike), the groups deal them out statically.
        var dispatcher: SharedCounter? = try? world.sharedCounter()
        if try world.allreduce(dispatcher == nil ? 1.0 : 0.0, .sum) > 0 {
            if world.rank == 0 {
                print("sweep: no MPI window across these ranks; jobs are dealt out to the groups in advance")
            }
            dispatcher = nil
        }
        let dealt = dispatcher == nil ? SweepPlan.assign(jobs, groups: groups)[g] : []
        var dealtIndex = 0
        StopSignals.clear()
        try StopSignals.install()
        var tally = Tally()
        jobs: while true {
            // The group agrees on a stop requested between jobs, before it takes another.
            if try group.allreduce(StopSignals.pending != 0 ? 1.0 : 0.0, .sum) > 0 { tally.preempted += 1; break jobs }
            let job: SweepJob
            if let dispatcher {
                var taken = [Int64(group.rank == 0 ? try dispatcher.next() : 0)]
                try group.broadcast(&taken, root: 0)
                guard Int(taken[0]) < order.count else { break jobs }
                job = order[Int(taken[0])]
            } else {
                guard dealtIndex < dealt.count else { break jobs }
                job = dealt[dealtIndex]
                dealtIndex += 1
            }
            let current = state(of: job)
            if current == .finished {
                tally.skipped += 1
                if group.rank == 0 { print("[group \(g)] skip   \(job.folder): finished") }
                continue
            }
            if group.rank == 0 { print("[group \(g)] start  \(job.folder)\(current == .resume ? " (resume)" : "")") }
            flushStandardOutput()
            let training = TrainingJob(
                options: options(job, overrides: sweep.overrides(for: job)),
                mode: current == .resume ? .resume : .fresh, scope: .sweep, quiet: true,
                resumeCommand: { CommandLine.arguments.joined(separator: " ") })
            do {
                let outcome = try training.run(comm: group)
                tally.completed += 1
                if group.rank == 0 {
                    print(
                        String(format: "[group %d] done   %@: accuracy %.2f%%", g, job.folder, outcome.accuracy * 100))
                }
            } catch let stop as TrainingStop {
                if case .preempted = stop {
                    tally.preempted += 1
                    if group.rank == 0 { print("[group \(g)] preempted \(job.folder): checkpoint written") }
                    break jobs
                }
                tally.failed += 1
                if group.rank == 0 { print("[group \(g)] FAILED \(job.folder): \(stop)") }
            } catch let failure as JobFailure {
                tally.failed += 1
                if group.rank == 0 {
                    recordFailure(job, message: failure.message)
                    print("[group \(g)] FAILED \(job.folder): \(failure.message)")
                }
            } catch {
                // Not agreed: this rank alone failed outside a collective (its group may wait on it).
                tally.failed += 1
                recordFailure(job, message: "\(error)")
                print("[group \(g)] FAILED \(job.folder): \(error)")
            }
            flushStandardOutput()
        }
        StopSignals.restore()
        try dispatcher?.free()
        // Each group's counts once (from its rank 0), summed on the world.
        let totals = try tally.summed(over: world, counted: group.rank == 0)
        if world.rank == 0 {
            try writeSummary(jobs, root: root, totals: totals)
            if let tables = try? Report.render(try Report.collect([root]), format: .markdown, ci95: false) {
                print(tables, terminator: "")
            }
        }
        if totals.preempted > 0 {
            if world.rank == 0 { print("sweep: stopped by a signal; run the same command again to continue") }
            return .stopped
        }
        return totals.failed > 0 ? .failed : .completed
    }

    /// What became of the jobs a group took.
    struct Tally {
        var completed = 0, failed = 0, skipped = 0, preempted = 0

        /// The groups' tallies summed over the world (each counted once, by the ranks with `counted`).
        func summed(over world: Communicator, counted: Bool) throws -> Tally {
            var counts = counted ? [completed, failed, skipped, preempted].map(Double.init) : [0, 0, 0, 0]
            try world.allreduceSum(&counts)
            return Tally(
                completed: Int(counts[0]), failed: Int(counts[1]), skipped: Int(counts[2]), preempted: Int(counts[3]))
        }
    }

    static func integer(_ s: String, _ option: String) throws -> Int {
        guard let v = Int(s) else { throw TrainingError.input("\(option): '\(s)' is not an integer") }
        return v
    }

    func options(_ job: SweepJob, overrides: [String]) -> RunOptions {
        var o = RunOptions()
        o.dataset = job.dataset; o.method = job.method; o.seed = job.seed
        o.dataRoot = dataRoot; o.model = model; o.vocab = vocab; o.output = job.folder
        o.sets = overrides
        return o
    }

    func state(of job: SweepJob) -> JobState {
        let fm = FileManager.default
        if fm.fileExists(atPath: job.folder + "/results.json"),
            let data = try? Data(RegularFile.read(job.folder + "/status.json", maxBytes: 1 << 20)),
            let status = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            status["state"] as? String == "completed"
        {
            return .finished
        }
        let entries = ((try? fm.contentsOfDirectory(atPath: job.folder)) ?? []).filter {
            $0 != ".lock" && $0 != "log.txt"
        }
        return entries.contains("config.yaml") ? .resume : (entries.isEmpty ? .fresh : .resume)
    }

    /// An existing run folder must hold the same settings the plan now gives the job.
    func checkUnchanged(_ job: SweepJob, config: Config) throws {
        let path = job.folder + "/config.yaml"
        guard let text = try? RegularFile.text(path) else { return }
        var saved = Config()
        try saved.merge(savedRun: text, source: path)
        let differing = config.differences(from: saved)
        guard differing.isEmpty else {
            throw TrainingError.configuration(
                "the sweep's settings for \(job.folder) differ from the run already there in "
                    + config.describe(differing, from: saved) + " (move the folder away or use another --output)")
        }
    }

    func recordFailure(_ job: SweepJob, message: String) {
        try? FileManager.default.createDirectory(atPath: job.folder, withIntermediateDirectories: true)
        let record: [String: Any] = [
            "state": "failed", "error": message, "time": ISO8601DateFormatter().string(from: Date()),
        ]
        if let data = try? JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys]) {
            try? writeDurably(data, to: job.folder + "/status.json")
        }
    }

    /// ROOT/sweep-summary.json: every job's folder, state (from its status.json) and error.
    func writeSummary(_ jobs: [SweepJob], root: String, totals: Tally) throws {
        var entries: [[String: Any]] = []
        var failures: [String] = []
        for job in jobs {
            var entry: [String: Any] = [
                "folder": job.folder, "dataset": job.datasetName, "method": job.method, "seed": job.seed,
                "shots": job.shots, "grid": Dictionary(uniqueKeysWithValues: job.grid),
            ]
            if let data = try? Data(RegularFile.read(job.folder + "/status.json", maxBytes: 1 << 20)),
                let status = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            {
                entry["state"] = status["state"] ?? "unknown"
                if let error = status["error"] { entry["error"] = error; failures.append("\(job.folder): \(error)") }
            } else {
                entry["state"] = "not run"
            }
            entries.append(entry)
        }
        let summary: [String: Any] = [
            "jobs": entries, "completed": totals.completed, "failed": totals.failed,
            "skipped": totals.skipped, "preempted": totals.preempted,
            "time": ISO8601DateFormatter().string(from: Date()),
        ]
        try writeDurably(
            try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys]),
            to: root + "/sweep-summary.json")
        print(
            "sweep: \(totals.completed) completed, \(totals.failed) failed, \(totals.skipped) already finished; "
                + "summary \(root)/sweep-summary.json"
        )
        for line in failures { print("  FAILED \(line)") }
    }

    /// Groups of G consecutive ranks after ordering by node (a hash of the host name), so a group
    /// stays inside a node whenever the node's rank count allows.
    func groupColor(_ world: Communicator) throws -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in ProcessInfo.processInfo.hostName.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hashes = try world.allgather(Int64(bitPattern: hash))
        var firstOfNode: [Int64: Int] = [:]
        for (r, h) in hashes.enumerated() where firstOfNode[h] == nil { firstOfNode[h] = r }
        let order = (0..<world.size).sorted { (firstOfNode[hashes[$0]]!, $0) < (firstOfNode[hashes[$1]]!, $1) }
        return order.firstIndex(of: world.rank)! / ranksPerJob
    }
}
