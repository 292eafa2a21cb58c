// `cavpt-dist sweep` under real mpirun: 4 ranks in groups of 2 train 8 jobs, each equal to a solo
// `mpirun -np 2 train` of it; a job with a corrupt image fails alone; a sweep killed by SIGKILL to
// mpirun and run again trains only what was unfinished and ends bit-identical; changed settings
// for existing folders are refused; a plan's grid gives one folder per combination.
import CLIP
import Files
import Foundation
import Tensor
import Testing

/// One data root with two datasets: the 4-class synthetic set and a 6-class one named "six".
let sweepData: (root: String, four: String, six: String, model: String) = {
    let base = temporaryDirectory("sweepdata")
    let root = base + "/data"
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    try? FileManager.default.copyItem(atPath: tinyRun.dataRoot + "/synthetic", toPath: root + "/synthetic")
    try? FileManager.default.copyItem(atPath: sixClasses.dataRoot + "/synthetic", toPath: root + "/six")
    try? FileManager.default.copyItem(atPath: tinyRun.datasetYAML, toPath: base + "/four.yaml")
    let six = (try? String(contentsOfFile: sixClasses.datasetYAML, encoding: .utf8)) ?? ""
    try? six.replacingOccurrences(of: "name: synthetic", with: "name: six").replacingOccurrences(
        of: "folder: synthetic", with: "folder: six"
    )
    .write(toFile: base + "/six.yaml", atomically: true, encoding: .utf8)
    return (root, base + "/four.yaml", base + "/six.yaml", tinyRun.model)
}()

@Suite(.serialized) struct SweepTests {
    let common = [
        "--set", "train.epochs=2", "--set", "train.batchSize=4", "--set", "train.workers=1", "--set",
        "optim.visual.warmupEpochs=1",
    ]

    func sweep(
        _ root: String, datasets: [String]? = nil, extra: [String] = [], environment: [String: String] = [:]
    ) throws -> ProcessResult {
        try mpirun(
            4,
            [
                "sweep", "--datasets", (datasets ?? [sweepData.four, sweepData.six]).joined(separator: ","),
                "--methods", "vpt_deep,coop", "--seeds", "1,2", "--ranks-per-job", "2", "--data-root", sweepData.root,
                "--model", sweepData.model, "--output", root,
            ] + common + extra, environment: environment)
    }

    func finalTensors(_ folder: String) throws -> [String: Tensor] {
        let name = try FileManager.default.contentsOfDirectory(atPath: folder + "/checkpoints").filter {
            $0.hasPrefix("epoch-0002")
        }.sorted().last!
        let file = try SafeTensorsFile(path: folder + "/checkpoints/\(name)/state.safetensors")
        var out: [String: Tensor] = [:]
        for tensor in file.names { out[tensor] = try file.tensor(tensor) }
        return out
    }

    @Test func everyJobEqualsASoloTrainOfIt() throws {
        let root = temporaryDirectory("sweep-solo") + "/runs"
        let r = try sweep(root)
        try #require(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("sweep: 8 completed, 0 failed"), "\(r.stdout)")
        let summary =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/sweep-summary.json")))
            as! [String: Any]
        #expect((summary["jobs"] as! [[String: Any]]).allSatisfy { $0["state"] as? String == "completed" })
        for (dataset, yaml) in [("synthetic", sweepData.four), ("six", sweepData.six)] {
            for method in ["vpt_deep", "coop"] {
                for seed in [1, 2] {
                    let folder = root + "/\(dataset)/\(method)/16shot/default/seed\(seed)"
                    let solo = temporaryDirectory("solo-\(dataset)-\(method)-\(seed)") + "/run"
                    let s = try mpirun(
                        2,
                        [
                            "train", "--dataset", yaml, "--method", method, "--seed", "\(seed)", "--data-root",
                            sweepData.root,
                            "--model", sweepData.model, "--output", solo, "--set", "train.shots=16",
                        ] + common)
                    try #require(s.status == 0, "\(s.stderr)")
                    let (a, b) = (try finalTensors(folder), try finalTensors(solo))
                    #expect(Set(a.keys) == Set(b.keys) && !a.isEmpty)
                    for (name, t) in a { #expect(relativeError(t, b[name]!) < 1e-4, "\(folder) \(name)") }
                }
            }
        }
    }

    @Test func aJobWithACorruptImageFailsAlone() throws {
        let base = temporaryDirectory("sweep-bad")
        try FileManager.default.copyItem(
            atPath: sweepData.root + "/six", toPath: sweepData.root + "/bad-\(base.suffix(8))")
        let badFolder = "bad-\(base.suffix(8))"
        let yaml = try String(contentsOfFile: sweepData.six, encoding: .utf8)
            .replacingOccurrences(of: "name: six", with: "name: bad").replacingOccurrences(
                of: "folder: six", with: "folder: \(badFolder)")
        try yaml.write(toFile: base + "/bad.yaml", atomically: true, encoding: .utf8)
        let image = sweepData.root + "/\(badFolder)/images/red_disc/red_disc_0001.jpg"
        try Data(repeating: 0x42, count: 300).write(to: URL(fileURLWithPath: image))
        let r = try sweep(base + "/runs", datasets: [base + "/bad.yaml", sweepData.four])
        #expect(r.status == 1, "\(r.stdout)")
        #expect(r.stdout.contains("sweep: 4 completed, 4 failed"), "\(r.stdout)")
        let failures = r.stdout.split(separator: "\n").filter { $0.hasPrefix("  FAILED ") }
        #expect(
            failures.count == 4 && failures.allSatisfy { $0.contains("/bad/") && $0.contains("red_disc_0001.jpg") },
            "\(failures)")
        let status =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: base + "/runs/bad/coop/16shot/default/seed1/status.json")))
            as! [String: Any]
        #expect(
            status["state"] as? String == "failed"
                && (status["error"] as? String)?.contains("not a decodable JPEG") == true)
        #expect(FileManager.default.fileExists(atPath: base + "/runs/synthetic/coop/16shot/default/seed2/results.json"))
    }

    @Test func aKilledSweepRunAgainFinishesBitIdentical() throws {
        let base = temporaryDirectory("sweep-kill")
        let reference = try sweep(base + "/reference")
        try #require(reference.status == 0, "\(reference.stderr)")
        // Slow steps so the kill lands mid-sweep; SIGKILL to mpirun once two jobs have finished.
        let root = base + "/killed"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        process.arguments =
            [
                "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-q", "-np", "4", binaryPath, "sweep",
                "--datasets", "\(sweepData.four),\(sweepData.six)", "--methods", "vpt_deep,coop", "--seeds", "1,2",
                "--ranks-per-job", "2", "--data-root", sweepData.root, "--model", sweepData.model, "--output", root,
            ] + common
        var env = ProcessInfo.processInfo.environment
        env["CAVPT_DIST_BLAS_THREADS"] = "1"; env["CAVPT_DIST_FAULT"] = "slow-steps:150"
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        func finished() -> Int {
            (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter {
                $0.hasSuffix("/results.json")
            }.count
        }
        let deadline = Date().addingTimeInterval(120)
        while finished() < 2 && process.isRunning && Date() < deadline { usleep(50_000) }
        #expect(process.isRunning, "the sweep ended before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The ranks outlive mpirun only until they notice it is gone (each holds its run's lock meanwhile).
        func ranksAlive() -> Bool {
            ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).contains { pid in
                guard Int(pid) != nil, let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
                    return false
                }
                return String(decoding: cmd, as: UTF8.self).contains(root)
            }
        }
        let gone = Date().addingTimeInterval(60)
        while ranksAlive() && Date() < gone { usleep(100_000) }
        #expect(!ranksAlive(), "ranks of the killed sweep still run a minute later")
        let done = finished()
        #expect(done >= 2 && done < 8, "\(done) jobs finished before the kill")
        let again = try sweep(root)
        try #require(again.status == 0, "\(again.stdout)\n\(again.stderr)")
        #expect(again.stdout.split(separator: "\n").filter { $0.contains("] skip ") }.count == done, "\(again.stdout)")
        #expect(again.stdout.split(separator: "\n").filter { $0.contains("] start ") }.count == 8 - done)
        for folder in (try FileManager.default.subpathsOfDirectory(atPath: base + "/reference")).filter({
            $0.hasSuffix("/seed1") || $0.hasSuffix("/seed2")
        }) {
            let (a, b) = (try finalTensors(base + "/reference/" + folder), try finalTensors(root + "/" + folder))
            for (name, t) in a { #expect(t.scalars == b[name]?.scalars, "\(folder) \(name) not bit-identical") }
        }
        // SIGUSR1 to mpirun (forwarded to every rank): each running job checkpoints its step and the
        // sweep exits 75; the same command then finishes it, bit-identical again.
        let stopped = base + "/stopped"
        let second = Process()
        second.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        second.arguments = process.arguments!.map { $0 == root ? stopped : $0 }
        second.environment = env
        second.standardOutput = FileHandle.nullDevice
        second.standardError = FileHandle.nullDevice
        try second.run()
        let started = Date().addingTimeInterval(120)
        func training() -> Bool {
            (FileManager.default.enumerator(atPath: stopped)?.allObjects as? [String] ?? []).contains {
                $0.hasSuffix("metrics.jsonl")
            }
        }
        while !training() && second.isRunning && Date() < started { usleep(50_000) }
        // To every rank, as Slurm's --signal or a preemption delivers it (mpirun started from a test
        // thread inherits its blocked signals, so it cannot be the one to forward them here).
        let ranks = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap {
            pid -> Int32? in
            guard let n = Int32(pid), let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else {
                return nil
            }
            let words = String(decoding: cmd, as: UTF8.self).split(separator: "\0")
            return words.first.map(String.init) == binaryPath && words.contains(Substring(stopped)) ? n : nil
        }
        #expect(ranks.count == 4, "\(ranks)")
        for pid in ranks { kill(pid, SIGUSR1) }
        second.waitUntilExit()
        #expect(second.terminationStatus == 75, "the signalled sweep exited \(second.terminationStatus)")
        let summary =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: stopped + "/sweep-summary.json"))) as! [String: Any]
        #expect(
            (summary["preempted"] as? Int ?? 0) > 0
                && (summary["jobs"] as! [[String: Any]]).contains { $0["state"] as? String == "preempted" })
        let resumed = try sweep(stopped)
        try #require(resumed.status == 0, "\(resumed.stdout)\n\(resumed.stderr)")
        #expect(resumed.stdout.contains("(resume)"), "\(resumed.stdout)")
        for folder in (try FileManager.default.subpathsOfDirectory(atPath: base + "/reference")).filter({
            $0.hasSuffix("/seed1") || $0.hasSuffix("/seed2")
        }) {
            let (a, b) = (try finalTensors(base + "/reference/" + folder), try finalTensors(stopped + "/" + folder))
            for (name, t) in a {
                #expect(t.scalars == b[name]?.scalars, "\(folder) \(name) not bit-identical after SIGUSR1")
            }
        }
        // Changed settings for existing folders: refused before anything trains, naming the key.
        let changed = try sweep(root, extra: ["--set", "optim.momentum=0.5"])
        #expect(changed.status != 0 && changed.stderr.contains("optim.momentum: 0.9 → 0.5"), "\(changed.stderr)")
    }

    @Test func aBaseToNewSweepReportsBaseNewAndTheirHarmonicMean() throws {
        let root = temporaryDirectory("sweep-b2n") + "/runs"
        let r = try mpirun(
            2,
            [
                "sweep", "--datasets", sweepData.six, "--methods", "coop,vpt_cavpt", "--seeds", "1", "--ranks-per-job",
                "1",
                "--data-root", sweepData.root, "--model", sweepData.model, "--output", root,
                "--set", "data.subsample=base",
            ] + common)
        try #require(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        for method in ["coop", "vpt_cavpt"] {
            let record =
                try JSONSerialization.jsonObject(
                    with: Data(
                        contentsOf: URL(
                            fileURLWithPath:
                                root + "/six/\(method)/16shot/default/seed1/evaluations/six-test-new.json")))
                as! [String: Any]
            #expect(record["classes"] as? Int == 3 && record["subsample"] as? String == "new")
        }
        let table = r.stdout.components(separatedBy: "### Base-to-new").dropFirst().first ?? ""
        #expect(
            table.contains("| coop | 16 |") && table.contains("| vpt_cavpt | 16 |") && !table.contains("| — | — | — |"),
            "\(r.stdout)")
    }

    @Test func aPlanGridGivesAFolderPerCombination() throws {
        let base = temporaryDirectory("sweep-plan")
        let plan = """
            datasets: ["\(sweepData.four)"]
            methods: [vpt_cavpt]
            seeds: [1]
            shots: [2, 4]
            set: {train.epochs: 1}
            grid: {cavpt.topK: [1, 3], cavpt.alpha: [0, 1]}
            """
        try plan.write(toFile: base + "/plan.yaml", atomically: true, encoding: .utf8)
        let r = try mpirun(
            2,
            [
                "sweep", "--plan", base + "/plan.yaml", "--ranks-per-job", "1", "--data-root", sweepData.root,
                "--model", sweepData.model, "--output", base + "/runs", "--dry-run",
            ])
        try #require(r.status == 0, "\(r.stderr)")
        let folders = r.stdout.split(separator: "\n").filter { $0.hasPrefix("job ") }
        #expect(folders.count == 8, "\(r.stdout)")
        #expect(r.stdout.contains("/synthetic/vpt_cavpt/4shot/cavpt.alpha=0,cavpt.topK=3/seed1 [fresh]"), "\(r.stdout)")
        // Handed out longest first: the 4-shot jobs before the 2-shot ones.
        #expect(
            folders.prefix(4).allSatisfy { $0.contains("/4shot/") }
                && folders.suffix(4).allSatisfy { $0.contains("/2shot/") }, "\(folders)")
        let bad = try mpirun(
            2,
            [
                "sweep", "--datasets", sweepData.four, "--methods", "vpt_deep", "--ranks-per-job", "1",
                "--data-root", sweepData.root, "--model", sweepData.model, "--output", base + "/x", "--set",
                "train.shots=4",
            ])
        #expect(bad.status != 0 && bad.stderr.contains("use --shots"), "\(bad.stderr)")
    }
}
