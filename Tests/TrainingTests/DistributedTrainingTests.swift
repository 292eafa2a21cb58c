// Data-parallel training with real `mpirun` processes (DESIGN §5–6): N ranks give the answer of one,
// resume gives the answer of an uninterrupted run, only rank 0 writes, failures end the job.
import Foundation
import Tensor
import Testing

/// The multi-rank tests share 2 cores; run them one after another.
@Suite(.serialized) struct DistributedTraining {
    @Test func ranksAgreeWithOneRank() throws {
        let base = temporaryDirectory("ranks")
        var tensors: [Int: [String: Tensor]] = [:]
        var evaluations: [Int: [String: Any]] = [:]
        for n in [1, 2, 3] {
            let out = base + "/np\(n)"
            let args = tinyRun.trainArguments(method: "vlp_cavpt", output: out, epochs: 3)
            let result = n == 1 ? try cavptDist(args) : try mpirun(n, args)
            try #require(result.status == 0, "np \(n): \(result.stderr)")
            tensors[n] = try checkpointTensors(out, epoch: 3)
            evaluations[n] = try results(out)
        }
        for n in [2, 3] {
            #expect(Set(tensors[n]!.keys) == Set(tensors[1]!.keys))
            for (name, reference) in tensors[1]! {
                let err = relativeError(tensors[n]![name]!, reference)
                #expect(err < 1e-4, "np \(n): \(name) differs from np 1 by \(err)")
            }
            #expect(evaluations[n]!["accuracy"] as? Double == evaluations[1]!["accuracy"] as? Double)
            #expect(evaluations[n]!["macroF1"] as? Double == evaluations[1]!["macroF1"] as? Double)
            #expect(evaluations[n]!["evaluated"] as? Int == evaluations[1]!["evaluated"] as? Int)
        }
    }

    @Test(arguments: ["coop", "dpt_released"])
    func classShardedTextAgreesWithOneRank(_ method: String) throws {
        // 4 classes over 3 ranks: slices of 2, 1 and 1 classes; dpt_released also reads the gathered
        // features through learned CAVPT queries and the guidance loss.
        let base = temporaryDirectory("shard-text")
        let one = try cavptDist(tinyRun.trainArguments(method: method, output: base + "/np1", epochs: 2))
        try #require(one.status == 0, "\(one.stderr)")
        let three = try mpirun(
            3,
            tinyRun.trainArguments(
                method: method, output: base + "/np3", epochs: 2,
                extra: ["--set", "train.shardText=true"]))
        try #require(three.status == 0, "\(three.stderr)")
        let a = try checkpointTensors(base + "/np1", epoch: 2), b = try checkpointTensors(base + "/np3", epoch: 2)
        #expect(Set(a.keys) == Set(b.keys))
        for (name, t) in a {
            let err = relativeError(b[name]!, t)
            #expect(err < 1e-4, "\(method) \(name): sharded text differs by \(err)")
        }
        #expect(try results(base + "/np1")["accuracy"] as? Double == results(base + "/np3")["accuracy"] as? Double)
    }

    @Test func oneGradientAllreducePerStep() throws {
        let out = temporaryDirectory("allreduce") + "/run"
        let result = try mpirun(2, tinyRun.trainArguments(method: "vlp_deep", output: out, epochs: 2))
        try #require(result.status == 0, "\(result.stderr)")
        let epochs = try metricLines(out)
        #expect(epochs.count == 2)
        for e in epochs {
            let steps = e["steps"] as? Int ?? -1
            #expect(steps > 0)
            #expect(
                e["allreduces"] as? Int == steps,
                "epoch \(e["epoch"] ?? "?"): \(e["allreduces"] ?? "?") allreduces for \(steps) steps")
        }
    }

    @Test func benchStepRunsTheTrainersCollectives() throws {
        // dpt_released (`ignore`): the trainer reduces the pair count, then the fused buffer, each step.
        let out = temporaryDirectory("bench-collectives") + "/run"
        let train = try mpirun(2, tinyRun.trainArguments(method: "dpt_released", output: out, epochs: 1))
        try #require(train.status == 0, "\(train.stderr)")
        let epoch = try #require(try metricLines(out).first)
        let steps = try #require(epoch["steps"] as? Int), allreduces = try #require(epoch["allreduces"] as? Int)
        #expect(steps > 0 && allreduces == 2 * steps, "\(allreduces) allreduces for \(steps) steps")
        // `bench step` runs the same step: the same collectives per step, and no other.
        let bench = try mpirun(
            2, ["bench", "step", "--method", "dpt_released", "--batch", "2", "--classes", "4", "--steps", "1"])
        try #require(bench.status == 0, "\(bench.stderr)")
        #expect(
            bench.stdout.contains("collectives per step: \(allreduces / steps) allreduce, 0 allgather, 0 broadcast"),
            "\(bench.stdout)")
    }

    @Test func resumeAfterKillEqualsUninterrupted() throws {
        let base = temporaryDirectory("resume")
        let full = base + "/full", killed = base + "/killed"
        let r1 = try mpirun(2, tinyRun.trainArguments(method: "vpt_cavpt", output: full, epochs: 4))
        try #require(r1.status == 0, "\(r1.stderr)")
        let r2 = try mpirun(
            2, tinyRun.trainArguments(method: "vpt_cavpt", output: killed, epochs: 4),
            environment: ["CAVPT_DIST_FAULT": "kill-rank:1:after-epoch:2"])
        #expect(r2.status != 0, "the killed job must fail")
        #expect(!FileManager.default.fileExists(atPath: killed + "/results.json"))
        let r3 = try mpirun(
            2, tinyRun.trainArguments(method: "vpt_cavpt", output: killed, epochs: 4, extra: ["--resume"]))
        try #require(r3.status == 0, "\(r3.stderr)")
        #expect(r3.stdout.contains("resumed from"))
        // metrics.jsonl was cut back to the checkpoint: every epoch exactly once.
        #expect(try metricLines(killed).map { $0["epoch"] as? Int } == [1, 2, 3, 4])
        let a = try checkpointTensors(full, epoch: 4), b = try checkpointTensors(killed, epoch: 4)
        #expect(Set(a.keys) == Set(b.keys))
        for (name, t) in a { #expect(t.scalars == b[name]!.scalars, "\(name) is not bit-identical after resume") }
    }

    @Test func crashMidCheckpointKeepsThePreviousOne() throws {
        let out = temporaryDirectory("midwrite") + "/run"
        let args = tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 3)
        let crashed = try cavptDist(args, environment: ["CAVPT_DIST_FAULT": "crash-checkpoint:2"])
        #expect(crashed.status != 0)
        let folders = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted()
        #expect(folders == ["epoch-0001", "epoch-0002.tmp"])
        let resumed = try cavptDist(args + ["--resume"])
        try #require(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.stdout.contains("epoch-0001"))
        let uninterrupted = temporaryDirectory("midwrite-ref") + "/run"
        try #require(
            try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: uninterrupted, epochs: 3)).status == 0)
        let a = try checkpointTensors(uninterrupted, epoch: 3), b = try checkpointTensors(out, epoch: 3)
        for (name, t) in a { #expect(t.scalars == b[name]!.scalars, "\(name)") }
    }

    @Test func onlyRankZeroWrites() throws {
        let base = temporaryDirectory("writers")
        let dirs = [base + "/rank0", base + "/rank1"]
        for d in dirs { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        // MPMD launch: each rank starts in its own working directory; the run directory is relative.
        let args = tinyRun.trainArguments(method: "vpt_deep", output: "run", epochs: 1)
        let result = try runProcess(
            "/usr/bin/mpirun",
            [
                "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-q",
                "-np", "1", "-wdir", dirs[0], binaryPath,
            ] + args
                + [":", "-np", "1", "-wdir", dirs[1], binaryPath] + args,
            environment: ["CAVPT_DIST_BLAS_THREADS": "1"])
        try #require(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: dirs[0] + "/run/results.json"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dirs[1]).isEmpty)
    }

    @Test func failureOnOneRankEndsTheJob() throws {
        // Corrupt the last test image: evaluation gives the end of each batch to the last rank.
        let root = temporaryDirectory("corrupt")
        try FileManager.default.copyItem(atPath: tinyRun.dataRoot, toPath: root + "/data")
        let split =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: root + "/data/synthetic/split_synthetic.json")))
            as! [String: [[Any]]]
        let victim = root + "/data/synthetic/images/" + (split["test"]!.last![0] as! String)
        try Data("not a jpeg".utf8).write(to: URL(fileURLWithPath: victim))
        var args = tinyRun.trainArguments(method: "vpt_deep", output: root + "/run", epochs: 0)
        args[args.firstIndex(of: "--data-root")! + 1] = root + "/data"
        args[args.firstIndex(of: "--dataset")! + 1] = root + "/data/synthetic.yaml"
        let start = Date()
        let result = try mpirun(2, args)
        #expect(result.status != 0)
        #expect(Date().timeIntervalSince(start) < 60, "a failing rank must not leave the others hanging")
        let lines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("[rank 1]") == true)
        #expect(lines.first?.contains(URL(fileURLWithPath: victim).lastPathComponent) == true)
    }

    /// An error every rank meets alike (a bad setting, a run directory that is not empty, a sweep's
    /// group size) is agreed by the ranks and said once, by rank 0, and the job exits 1 cleanly.
    @Test func anErrorEveryRankMeetsIsSaidOnce() throws {
        let base = temporaryDirectory("agreed-errors")
        try FileManager.default.createDirectory(atPath: base + "/busy", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: base + "/busy/notes.txt"))
        let cases: [([String], String)] = [
            (
                tinyRun.trainArguments(
                    method: "vpt_deep", output: base + "/run", epochs: 1, extra: ["--set", "bad.key=1"]),
                "error: [rank 0] --set: unknown config key 'bad.key'"
            ),
            (
                tinyRun.trainArguments(method: "vpt_deep", output: base + "/busy", epochs: 1),
                "error: [rank 0] \(base)/busy is not empty (notes.txt)"
            ),
            (
                [
                    "sweep", "--datasets", tinyRun.datasetYAML, "--methods", "vpt_deep", "--data-root",
                    tinyRun.dataRoot,
                    "--model", tinyRun.model, "--output", base + "/sweep", "--ranks-per-job", "3",
                ],
                "error: [rank 0] --ranks-per-job 3 does not divide the 2 ranks"
            ),
        ]
        for (arguments, expected) in cases {
            let r = try mpirun(2, arguments)
            #expect(r.status != 0)
            let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
            #expect(lines.count == 1, "\(r.stderr)")
            #expect(lines.first?.hasPrefix(expected) == true, "\(r.stderr)")
            #expect(!r.stderr.contains("MPI_ABORT"), "\(r.stderr)")
        }
    }

    @Test func moreRanksThanImagesPerBatch() throws {
        let base = temporaryDirectory("empty-shards")
        let one = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: base + "/np1", epochs: 1, batch: 2))
        try #require(one.status == 0, "\(one.stderr)")
        let three = try mpirun(
            3, tinyRun.trainArguments(method: "vpt_deep", output: base + "/np3", epochs: 1, batch: 2))
        try #require(three.status == 0, "\(three.stderr)")
        let a = try checkpointTensors(base + "/np1", epoch: 1), b = try checkpointTensors(base + "/np3", epoch: 1)
        for (name, t) in a { #expect(relativeError(b[name]!, t) < 1e-4, "\(name)") }
    }
}
