// The run directory is never silently mixed or lost: a fresh run refuses an existing one,
// --overwrite clears only a run directory, a lock keeps a second process out, resume cuts the
// metrics back, and eval names the checkpoint it evaluated (warning about damaged ones).
import Foundation
import Testing

@testable import Training

@Suite(.serialized) struct RunDirectoryTests {
    func errors(_ r: ProcessResult) -> [Substring] { r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") } }

    @Test func aFreshRunRefusesAnExistingRunAndOverwriteReplacesIt() throws {
        let out = temporaryDirectory("existing") + "/run"
        let first = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 2))
        try #require(first.status == 0, "\(first.stderr)")
        let before = try Data(contentsOf: URL(fileURLWithPath: out + "/results.json"))
        // Again without --resume: one line, nothing touched.
        let again = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1))
        #expect(again.status == 1)
        #expect(
            errors(again).count == 1 && errors(again)[0].contains("already holds a run")
                && errors(again)[0].contains("--resume") && errors(again)[0].contains("--overwrite"), "\(again.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/results.json")) == before)
        #expect(try metricLines(out).count == 2)
        // --overwrite: the old run's checkpoints and metrics are gone, only the new run's remain.
        let replaced = try cavptDist(
            tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1, extra: ["--overwrite"]))
        try #require(replaced.status == 0, "\(replaced.stderr)")
        #expect(try metricLines(out).map { $0["epoch"] as? Int } == [1])
        #expect(try Checkpoints.list(out + "/checkpoints").map { ($0 as NSString).lastPathComponent } == ["epoch-0001"])
        #expect(try results(out)["epochs"] as? Int == 1)
    }

    @Test func overwriteRefusesAFolderThatIsNotARun() throws {
        let out = temporaryDirectory("foreign") + "/mine"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "precious".write(toFile: out + "/thesis.tex", atomically: true, encoding: .utf8)
        for extra in [[], ["--overwrite"]] {
            let r = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1, extra: extra))
            #expect(r.status == 1)
            #expect(errors(r).count == 1 && errors(r)[0].contains("thesis.tex"), "\(r.stderr)")
        }
        #expect(try String(contentsOfFile: out + "/thesis.tex", encoding: .utf8) == "precious")
    }

    @Test func aSecondProcessIsLockedOut() throws {
        let out = temporaryDirectory("locked") + "/run"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // Another holder of the run's lock (what a running `train` holds for its whole life).
        let fd = open(out + "/.lock", O_RDWR | O_CREAT, 0o644)
        try #require(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
        _ = "pid 4242 on elsewhere\n".withCString { write(fd, $0, strlen($0)) }
        let r = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1, extra: ["--resume"]))
        #expect(r.status == 1)
        #expect(
            errors(r).count == 1
                && errors(r)[0].contains("in use by another cavpt-dist process (pid 4242 on elsewhere)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/config.yaml"))
        close(fd) // released: the same command now runs
        let free = try cavptDist(
            tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 1, extra: ["--resume"]))
        #expect(free.status == 0, "\(free.stderr)")
    }

    @Test func resumeCutsMetricsBackAndDropsATornLine() throws {
        let out = temporaryDirectory("torn") + "/run"
        let args = tinyRun.trainArguments(
            method: "vpt_deep", output: out, epochs: 3, extra: ["--set", "optim.momentum=0.8"])
        let crashed = try cavptDist(args, environment: ["CAVPT_DIST_FAULT": "kill-rank:0:after-epoch:2"])
        #expect(crashed.status != 0)
        // Epoch 2's checkpoint exists; fake what a crash or a full disk could leave: a line of a
        // later epoch and a torn one.
        let handle = try #require(FileHandle(forWritingAtPath: out + "/metrics.jsonl"))
        handle.seekToEndOfFile()
        handle.write(Data("{\"epoch\": 3, \"loss\": 1.0}\n{\"epoch\": 4, \"lo".utf8))
        try handle.close()
        // A non-default momentum resumes (config.yaml once wrote `optim:` twice and lost it).
        let resumed = try cavptDist(args + ["--resume"])
        try #require(resumed.status == 0, "\(resumed.stderr)")
        #expect(try metricLines(out).map { $0["epoch"] as? Int } == [1, 2, 3])
        let text = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
        #expect(!text.contains("\"lo\n") && !text.contains("\"loss\": 1.0"))
    }

    @Test func evalNamesTheCheckpointAndWarnsAboutADamagedNewest() throws {
        let out = temporaryDirectory("evaldamaged") + "/run"
        let r = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 2))
        try #require(r.status == 0, "\(r.stderr)")
        let good = try cavptDist(["eval", "--run", out])
        try #require(good.status == 0, "\(good.stderr)")
        #expect(good.stdout.contains("checkpoints/epoch-0002 (epoch 2 of 2)"), "\(good.stdout)")
        // Flip a bit in the newest checkpoint's tensor data.
        let path = out + "/checkpoints/epoch-0002/state.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: path))
        let older = try cavptDist(["eval", "--run", out])
        try #require(older.status == 0, "\(older.stderr)")
        #expect(
            older.stderr.contains("warning: skipping checkpoint \(out)/checkpoints/epoch-0002")
                && older.stderr.contains("checksum mismatch"), "\(older.stderr)")
        #expect(older.stderr.contains("is from epoch 1, not the run's last (2)"), "\(older.stderr)")
        #expect(older.stdout.contains("checkpoints/epoch-0001 (epoch 1 of 2)"), "\(older.stdout)")
        // --resume-from the damaged one is an error, not a silent fallback.
        let resumeDamaged = try cavptDist(
            tinyRun.trainArguments(
                method: "vpt_deep", output: out, epochs: 2,
                extra: ["--resume-from", out + "/checkpoints/epoch-0002"]))
        #expect(resumeDamaged.status == 1)
        #expect(
            errors(resumeDamaged).count == 1 && errors(resumeDamaged)[0].contains("checksum mismatch"),
            "\(resumeDamaged.stderr)")
    }

    @Test func theRecordedConfigDrivesARunFromAnotherFolderAfterTheDatasetYAMLMoved() throws {
        let base = temporaryDirectory("selfcontained")
        // A private copy of the dataset YAML, deleted after the run: config.yaml must not need it.
        let datasetYAML = base + "/mine.yaml"
        try FileManager.default.copyItem(atPath: tinyRun.datasetYAML, toPath: datasetYAML)
        var args = tinyRun.trainArguments(method: "vpt_deep", output: "run", epochs: 1)
        args[args.firstIndex(of: tinyRun.datasetYAML)!] = datasetYAML
        let r = try cavptDist(args, directory: base)
        try #require(r.status == 0, "\(r.stderr)")
        try FileManager.default.removeItem(atPath: datasetYAML)
        let elsewhere = temporaryDirectory("elsewhere")
        let evaluation = try cavptDist(["eval", "--run", base + "/run"], directory: elsewhere)
        #expect(evaluation.status == 0, "\(evaluation.stderr)")
        let again = try cavptDist(
            ["train", "--config", base + "/run/config.yaml", "--output", elsewhere + "/again"], directory: elsewhere)
        #expect(again.status == 0, "\(again.stderr)")
        #expect(
            try results(elsewhere + "/again")["accuracy"] as? Double
                == (try results(base + "/run")["accuracy"] as? Double))
    }
}
