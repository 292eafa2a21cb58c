// Runs that stop early on purpose, through the real binary and real mpirun: the divergence guard
// (exit 3, the last finite checkpoint kept, a valid metrics line for the failing epoch, no results)
// and preemption by real signals (exit 75, a checkpoint of the step boundary, the printed resume
// command continuing bit-identical to an uninterrupted run).
import CLIP
import Files
import Foundation
import Tensor
import Testing

@testable import Training

/// A tiny run whose epochs have 3 steps (24 images, batch 8); epoch 1 is warmup at lr 1e-5.
func stopRunArguments(_ output: String, epochs: Int, extra: [String] = []) -> [String] {
    tinyRun.trainArguments(
        method: "vpt_cavpt", output: output, epochs: epochs, extra: ["--set", "train.logEvery=1"] + extra)
}

/// Every line of metrics.jsonl, each of which must be valid JSON.
func strictMetricLines(_ runDirectory: String) throws -> [[String: Any]] {
    let text = try String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)
    return try text.split(separator: "\n").map {
        try #require((try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any], "not JSON: \($0)")
    }
}

func statusRecord(_ runDirectory: String) throws -> [String: Any] {
    let data = try Data(contentsOf: URL(fileURLWithPath: runDirectory + "/status.json"))
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

func checkpointFolders(_ runDirectory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: runDirectory + "/checkpoints")) ?? []).sorted()
}

func tensors(atCheckpoint folder: String) throws -> [String: Tensor] {
    let file = try SafeTensorsFile(path: folder + "/state.safetensors")
    var out: [String: Tensor] = [:]
    for name in file.names { out[name] = try file.tensor(name) }
    return out
}

func expectBitIdentical(_ a: [String: Tensor], _ b: [String: Tensor], _ context: String) {
    #expect(Set(a.keys) == Set(b.keys), "\(context): tensor names differ")
    for (name, t) in a {
        let bits = t.scalars.map(\.bitPattern), other = b[name]?.scalars.map(\.bitPattern)
        #expect(bits == other, "\(context): \(name) is not bit-identical")
    }
}

/// Processes whose command line mentions `needle` (a run's unique output folder).
func processesMentioning(_ needle: String) -> [String] {
    let ownPid = getpid()
    return ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry in
        guard let pid = Int32(entry), pid != ownPid,
            let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"), !raw.isEmpty
        else { return nil }
        let command = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
        return command.contains(needle) ? "\(pid): \(command)" : nil
    }
}

/// The command rank 0 printed after "resume with: ".
func printedResumeCommand(_ stdout: String) throws -> String {
    let line = try #require(
        stdout.split(separator: "\n").first { $0.hasPrefix("resume with: ") }, "no resume command in:\n\(stdout)")
    return String(line.dropFirst("resume with: ".count))
}

/// Runs a printed command through the shell, as a user pasting it would.
func runPrinted(_ command: String) throws -> ProcessResult {
    try runProcess(
        "/bin/sh", ["-c", command],
        environment: [
            "CAVPT_DIST_BLAS_THREADS": "1", "OMPI_MCA_rmaps_base_oversubscribe": "1",
            "OMPI_MCA_hwloc_base_binding_policy": "none",
        ])
}

@Suite(.serialized) struct DivergenceGuard {
    @Test(arguments: [
        (["--set", "optim.visual.lr=1e30"], 1), (["--set", "optim.weightDecay=1e10"], 1),
        (["--set", "optim.momentum=5"], 1), (["--set", "optim.visual.lr=1e30"], 2),
    ])
    func aDivergingRunStopsAndKeepsItsLastFiniteCheckpoint(_ setting: [String], ranks: Int) throws {
        let out = temporaryDirectory("diverge") + "/run"
        // keep=1: rotation must still leave the last finite checkpoint, since a non-finite one is never written.
        let args = stopRunArguments(out, epochs: 30, extra: setting + ["--set", "checkpoint.keep=1"])
        let r = ranks == 1 ? try cavptDist(args) : try mpirun(ranks, args)
        #expect(r.status == TrainingStop.divergedExitCode, "\(setting) np \(ranks): exit \(r.status)\n\(r.stderr)")
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.map(String.init)
        try #require(errors.count == 1, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out + "/results.json"), "a diverged run reports no accuracy")

        // The failing epoch's line is written, valid JSON, with the non-finite loss as null.
        let lines = try strictMetricLines(out)
        let last = try #require(lines.last)
        let epoch = try #require(last["epoch"] as? Int)
        let step = try #require(last["steps"] as? Int)
        #expect(last["diverged"] as? Bool == true)
        #expect(lines.count == epoch && lines.dropLast().allSatisfy { $0["diverged"] == nil })
        #expect(errors[0].contains("diverged at epoch \(epoch) step \(step)"), "\(errors[0])")
        if setting == ["--set", "optim.visual.lr=1e30"] {
            // Epoch 1 is warmup at lr 1e-5; the first step at 1e30 overflows the prompts.
            #expect(epoch == 2)
        }

        // Exactly the last finite epoch's checkpoint is left, every value finite; status.json names it.
        let status = try statusRecord(out)
        #expect(status["state"] as? String == "diverged")
        #expect(status["epoch"] as? Int == epoch && status["step"] as? Int == step)
        if epoch > 1 {
            let kept = Checkpoints.folderName(epoch: epoch - 1)
            #expect(checkpointFolders(out) == [kept])
            #expect(status["lastCheckpoint"] as? String == out + "/checkpoints/" + kept)
            #expect(errors[0].contains(kept))
            for (name, t) in try checkpointTensors(out, epoch: epoch - 1) {
                #expect(t.scalars.allSatisfy { $0.isFinite }, "\(name) in the kept checkpoint")
            }
        } else {
            #expect(checkpointFolders(out).isEmpty)
            #expect(status["lastCheckpoint"] is NSNull)
        }
    }

    @Test func aNaNInACheckpointIsNeverEvaluated() throws {
        let out = temporaryDirectory("nan-checkpoint") + "/run"
        let trained = try cavptDist(stopRunArguments(out, epochs: 1))
        try #require(trained.status == 0, "\(trained.stderr)")
        // A checkpoint whose checksum is right but whose prompts hold a NaN (written by an older version).
        let good = try Checkpoints.read(out + "/checkpoints/" + Checkpoints.folderName(epoch: 1))
        let name = try #require(good.parameters.keys.sorted().first)
        good.parameters[name]!.data[0] = .nan
        let damaged = out + "/damaged"
        try Checkpoints.write(
            good.state, parameters: good.parameters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
            momentum: good.momentum, to: damaged, keep: 1)
        let r = try cavptDist([
            "eval", "--checkpoint", damaged + "/" + Checkpoints.folderName(epoch: 1),
            "--config", out + "/config.yaml", "--out", out + "/nan-eval.json",
        ])
        #expect(r.status == 1)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.map(String.init)
        #expect(errors.count == 1 && errors[0].contains("tensor \(name) holds NaN or infinity"), "\(r.stderr)")
        #expect(!r.stdout.contains("accuracy"), "\(r.stdout)")
        #expect(!FileManager.default.fileExists(atPath: out + "/nan-eval.json"))
    }

    /// A NaN that reaches attention scores must come out of softmax as NaN, not as a row of zeros
    /// (which would hide it from the loss and from evaluation).
    @Test func softmaxPropagatesNaN() {
        let scores = Var(Tensor(shape: [2, 3], repeating: .nan))
        scores.value.data[3] = -.infinity; scores.value.data[4] = -.infinity; scores.value.data[5] = -.infinity
        let y = softmax(scores).value
        #expect(y.scalars[0..<3].allSatisfy { $0.isNaN })
        #expect(Array(y.scalars[3..<6]) == [0, 0, 0], "a fully masked row stays zero")
    }

    @Test func aNaNInTheWeightFileIsALoadError() throws {
        let dir = temporaryDirectory("nan-weights")
        let source = try SafeTensorsFile(path: tinyRun.model + "/model.safetensors")
        var copied: [(String, Tensor)] = []
        for name in source.names { if let t = try? source.tensor(name) { copied.append((name, t)) } }
        let victim = try #require(
            copied.firstIndex {
                $0.0.contains("resblocks.0.attn.in_proj_weight") || $0.0.contains("layers.0.self_attn.q_proj.weight")
            })
        copied[victim].1.data[5] = .nan
        try SafeTensorsFile.write(copied, to: dir + "/model.safetensors")
        var args = stopRunArguments(dir + "/run", epochs: 1)
        args[args.firstIndex(of: "--model")! + 1] = dir + "/model.safetensors"
        let r = try cavptDist(args)
        #expect(r.status == 1)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.map(String.init)
        #expect(
            errors.count == 1 && errors[0].contains(copied[victim].0) && errors[0].contains("nan at element 5"),
            "\(r.stderr)")
    }
}

@Suite(.serialized) struct Preemption {
    /// CAVPT_DIST_FAULT raises a real signal on one rank while it computes the given step; the job
    /// stops after that step, on every rank, and the printed command resumes it.
    @Test(arguments: [(1, "INT", 0, 2), (2, "TERM", 1, 2), (2, "USR1", 0, 1), (2, "TERM", 0, 3)])
    func aSignalCheckpointsTheStepBoundaryAndResumesBitIdentical(
        ranks: Int, signal: String, rank: Int, step: Int
    ) throws {
        let base = temporaryDirectory("preempt-\(signal)")
        let full = base + "/full", stopped = base + "/stopped"
        func run(_ args: [String], _ env: [String: String] = [:]) throws -> ProcessResult {
            ranks == 1 ? try cavptDist(args, environment: env) : try mpirun(ranks, args, environment: env)
        }
        // Single-process runs get the same BLAS threads as the printed command (runPrinted sets 1).
        let env = ["CAVPT_DIST_BLAS_THREADS": "1"]
        let reference = try run(stopRunArguments(full, epochs: 4), env)
        try #require(reference.status == 0, "\(reference.stderr)")

        let r = try run(
            stopRunArguments(stopped, epochs: 4),
            env.merging(["CAVPT_DIST_FAULT": "signal-self:\(rank):\(signal):epoch:3:step:\(step)"]) { $1 })
        #expect(r.status == TrainingStop.preemptedExitCode, "exit \(r.status)\n\(r.stderr)")
        #expect(!r.stderr.contains("error:"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: stopped + "/results.json"))
        // After the signalled step of epoch 3: mid-epoch, or the epoch's end when it was its last step.
        let folder = step < 3 ? Checkpoints.folderName(epoch: 2, step: step) : Checkpoints.folderName(epoch: 3)
        #expect(checkpointFolders(stopped).last == folder, "\(checkpointFolders(stopped))")
        let who = rank == 0 ? "SIG\(signal)" : "a signal to another rank"
        #expect(
            r.stdout.contains(
                "preempted by \(who) (1 rank(s) signalled) after epoch 3 step \(step): checkpoint "
                    + stopped + "/checkpoints/" + folder), "\(r.stdout)")
        let status = try statusRecord(stopped)
        #expect(
            status["state"] as? String == "preempted" && status["epoch"] as? Int == 3 && status["step"] as? Int == step)
        let state = try Checkpoints.read(stopped + "/checkpoints/" + folder).state
        #expect(state.epoch == (step < 3 ? 2 : 3) && state.progress?.steps == (step < 3 ? step : nil))
        // The partial epoch writes no metrics line; its statistics travel in the checkpoint.
        #expect(try strictMetricLines(stopped).count == (step < 3 ? 2 : 3))

        let command = try printedResumeCommand(r.stdout)
        #expect(command.hasSuffix(" --resume") && command.hasPrefix("cd "))
        let resumed = try runPrinted(command)
        try #require(resumed.status == 0, "\(command)\n\(resumed.stderr)")
        #expect(resumed.stdout.contains("resumed from \(stopped)/checkpoints/\(folder)"), "\(resumed.stdout)")
        expectBitIdentical(
            try checkpointTensors(full, epoch: 4), try checkpointTensors(stopped, epoch: 4),
            "\(ranks) rank(s) SIG\(signal)")
        #expect(try statusRecord(stopped)["state"] as? String == "completed")
        #expect(try results(stopped)["accuracy"] as? Double == results(full)["accuracy"] as? Double)

        // One line per epoch; the resumed epoch's line covers all its steps with the uninterrupted numbers.
        let a = try strictMetricLines(full), b = try strictMetricLines(stopped)
        #expect(b.map { $0["epoch"] as? Int } == [1, 2, 3, 4])
        for (x, y) in zip(a, b) {
            for key in ["loss", "accuracy", "images", "steps", "allreduces"] {
                #expect("\(x[key] ?? "none")" == "\(y[key] ?? "none")", "epoch \(x["epoch"] ?? "?") \(key)")
            }
        }
        #expect(b[2]["resumedAtStep"] as? Int == (step < 3 ? step : nil))
    }

    /// A signal from outside at whatever step the job is in: SIGTERM to `mpirun` -np 2, and SIGINT
    /// (Ctrl-C) to a single process. Open MPI 4.1 answers SIGTERM by sending the ranks SIGCONT, then
    /// SIGTERM after odls_base_sigkill_timeout seconds, then SIGKILL as long again: the ranks must
    /// finish their step and rank 0 its checkpoint inside that window.
    @Test(arguments: [2, 1])
    func aSignalFromOutsideStopsAtAStepBoundaryWithoutOrphans(ranks: Int) throws {
        let base = temporaryDirectory("outside-\(ranks)")
        let full = base + "/full", stopped = base + "/stopped"
        // 100 ms asleep before each step (CAVPT_DIST_FAULT=slow-steps) makes 60 epochs last 18 s without
        // using the CPU; the uninterrupted reference runs at full speed.
        let epochs = 60
        let extra = ["--set", "checkpoint.every=\(epochs)", "--set", "train.logEvery=3"]
        let reference =
            ranks == 1
            ? try cavptDist(
                stopRunArguments(full, epochs: epochs, extra: extra),
                environment: ["CAVPT_DIST_BLAS_THREADS": "1"])
            : try mpirun(ranks, stopRunArguments(full, epochs: epochs, extra: extra))
        try #require(reference.status == 0, "\(reference.stderr)")

        let process = Process()
        if ranks == 1 {
            process.executableURL = URL(fileURLWithPath: binaryPath)
            process.arguments = stopRunArguments(stopped, epochs: epochs, extra: extra)
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
            process.arguments =
                [
                    "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-q",
                    "--mca", "odls_base_sigkill_timeout", "3", "-np", "\(ranks)", binaryPath,
                ]
                + stopRunArguments(stopped, epochs: epochs, extra: extra)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["CAVPT_DIST_BLAS_THREADS"] = "1"
        environment["CAVPT_DIST_FAULT"] = "slow-steps:100"
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = environment
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        let collected = OutputCollector()
        outPipe.fileHandleForReading.readabilityHandler = { collected.append($0.availableData) }
        // Test threads block SIGTERM and SIGINT, and a blocked mask survives exec. mpirun gets an
        // unblocked one; the single process is started as it is, blocked mask and all: the trainer
        // unblocks its stop signals itself.
        if ranks == 1 { try process.run() } else { try withStopSignalsUnblocked { try process.run() } }
        // Signal once training is under way (the third epoch's progress line), never at a fixed time.
        let deadline = Date().addingTimeInterval(300)
        while process.isRunning && !collected.text.contains("epoch 3/\(epochs)") && Date() < deadline { usleep(10_000) }
        try #require(process.isRunning, "the run ended before it could be signalled:\n\(collected.text)")
        let signal = ranks == 1 ? SIGINT : SIGTERM
        kill(process.processIdentifier, signal)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        outPipe.fileHandleForReading.readabilityHandler = nil
        collected.append(outPipe.fileHandleForReading.readDataToEndOfFile())
        let stdout = collected.text
        let stderr = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)

        #expect(processesMentioning(stopped).isEmpty, "orphans: \(processesMentioning(stopped))")
        let name = StopSignals.name(signal)
        if ranks == 1 {
            #expect(process.terminationStatus == TrainingStop.preemptedExitCode, "\(stderr)")
            #expect(stdout.contains("preempted by \(name) (1 rank(s) signalled) after epoch "), "\(stdout)\n\(stderr)")
        } else {
            // mpirun itself exits 1 after its own SIGTERM handling; the ranks report the stop. It
            // signals them one after the other: the step may carry one rank's flag or both.
            #expect(process.terminationStatus != 0)
            #expect(
                stdout.contains("preempted by \(name) (2 rank(s) signalled) after epoch ")
                    || stdout.contains("preempted by \(name) (1 rank(s) signalled) after epoch ")
                    || stdout.contains("preempted by a signal to another rank (1 rank(s) signalled) after epoch "),
                "\(stdout)\n\(stderr)")
        }
        let status = try statusRecord(stopped)
        #expect(status["state"] as? String == "preempted")
        let checkpoint = try #require(status["checkpoint"] as? String)
        let state = try Checkpoints.read(checkpoint).state
        let epoch = try #require(status["epoch"] as? Int), step = try #require(status["step"] as? Int)
        #expect(epoch < epochs, "the stop came after the run had finished")
        // The checkpoint is the step boundary the status names.
        #expect(state.epoch == (step < 3 ? epoch - 1 : epoch) && (state.progress?.steps ?? 3) == step)
        #expect(!FileManager.default.fileExists(atPath: stopped + "/results.json"))

        let resumed = try runPrinted(try printedResumeCommand(stdout))
        try #require(resumed.status == 0, "\(resumed.stderr)")
        expectBitIdentical(
            try checkpointTensors(full, epoch: epochs), try checkpointTensors(stopped, epoch: epochs),
            "\(name) at epoch \(epoch) step \(step)")
    }
}

/// Runs `body` (which starts a process) with SIGTERM, SIGINT and SIGUSR1 unblocked in this thread, as
/// a login shell would start it; the thread's mask is restored afterwards.
func withStopSignalsUnblocked(_ body: () throws -> Void) rethrows {
    var stop = sigset_t(), saved = sigset_t()
    sigemptyset(&stop)
    for signal in [SIGTERM, SIGINT, SIGUSR1] { sigaddset(&stop, signal) }
    pthread_sigmask(SIG_UNBLOCK, &stop, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    try body()
}

/// Gathers a pipe's output from its readability handler.
final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ chunk: Data) { lock.lock(); data.append(chunk); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}

@Suite struct StopRecords {
    @Test func theResumeCommandIsTheSameCommandWithResume() {
        let command = resumeCommand(
            arguments: [
                "/opt/cavpt dist/cavpt-dist", "train", "--resume-from", "/r/checkpoints/epoch-0001",
                "--set", "model.name=it's", "--output", "runs/a b", "--resume",
            ],
            ranks: 4, workingDirectory: "/home/me")
        #expect(
            command == "cd /home/me && mpirun -np 4 '/opt/cavpt dist/cavpt-dist' train --set 'model.name=it'\\''s' "
                + "--output 'runs/a b' --resume")
        #expect(
            resumeCommand(arguments: ["cavpt-dist", "train", "--resume-from=/x"], ranks: 1, workingDirectory: "/w")
                == "cd /w && cavpt-dist train --resume")
    }

    @Test func olderCheckpointStatesHaveNoStep() throws {
        let json =
            #"{"epoch": 3, "seed": 1, "configHash": "h", "config": "", "rngKeys": {"seed": 1}, "ranks": 2, "#
            + #""version": "0.1.0"}"#
        let state = try JSONDecoder().decode(CheckpointState.self, from: Data(json.utf8))
        #expect(state.epoch == 3 && state.progress == nil)
        #expect(Checkpoints.folderName(epoch: 3) < Checkpoints.folderName(epoch: 3, step: 1))
        #expect(Checkpoints.folderName(epoch: 3, step: 999) < Checkpoints.folderName(epoch: 4))
    }

    @Test func midEpochCheckpointsSortBetweenEpochsAndRotateLikeThem() throws {
        let dir = temporaryDirectory("step-checkpoints") + "/checkpoints"
        func state(_ epoch: Int, _ step: Int) -> CheckpointState {
            CheckpointState(
                epoch: epoch, seed: 1, configHash: "h", config: "", rngKeys: ["seed": 1, "epoch": epoch], ranks: 1,
                version: cavptDistVersion,
                progress: step == 0
                    ? nil
                    : EpochProgress(
                        steps: step, lossSum: 1, correct: 1, images: 8, seconds: 0,
                        communicationSeconds: 0, allreduces: step))
        }
        for (epoch, step) in [(9, 0), (9, 2), (10, 0), (10, 1)] {
            try Checkpoints.write(
                state(epoch, step), parameters: [("visual.prompts", Tensor(shape: [1], repeating: Float(epoch)))],
                momentum: [:], to: dir, keep: 3)
        }
        #expect(
            try Checkpoints.list(dir).map { URL(fileURLWithPath: $0).lastPathComponent }
                == ["epoch-0009-step-0002", "epoch-0010", "epoch-0010-step-0001"])
        let newest = try #require(Checkpoints.newest(in: dir))
        #expect(newest.state.epoch == 10 && newest.state.progress?.steps == 1)
        #expect(Checkpoints.position(ofFolder: "epoch-0010-step-0001")! == (10, 1))
        #expect(Checkpoints.position(ofFolder: "epoch-0010-step-0000") == nil)
        #expect(Checkpoints.position(ofFolder: "epoch-0010-step-0001.tmp") == nil)
        // A state whose step disagrees with its folder name is refused.
        try FileManager.default.moveItem(atPath: dir + "/epoch-0010-step-0001", toPath: dir + "/epoch-0010-step-0002")
        #expect(throws: (any Error).self) { try Checkpoints.read(dir + "/epoch-0010-step-0002") }
    }

    @Test func nonFiniteNumbersBecomeNullInJSON() throws {
        let record =
            jsonSafe(["loss": Double.nan, "lr": ["visual": Double.infinity, "text": 0.5], "steps": 2]) as! [String: Any]
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        #expect(String(decoding: data, as: UTF8.self) == #"{"loss":null,"lr":{"text":0.5,"visual":null},"steps":2}"#)
    }
}
