// One training run on a communicator: what `train` does in one MPI job and what `sweep` does for
// each job of a group. In a sweep (`isolated`) every failure is agreed by the group's ranks and
// thrown as a `JobFailure`, so one job's bad image or bad value never ends the other jobs.
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor
import Training

struct TrainingOutcome: Sendable {
    var directory: String
    var accuracy: Double
    var macroF1: Double
}

struct TrainingJob {
    var options: RunOptions
    var mode: RunDirectoryMode
    var resumeFrom: String?
    /// Sweep mode: agree on failures within the group instead of aborting the MPI job.
    var isolated: Bool
    /// Progress goes to the run's log.txt only (a sweep's groups would interleave on the terminal).
    var quiet: Bool
    /// The command that resumes this run, printed when it is preempted.
    var resumeCommand: () -> String

    struct Setup {
        var config: Config, data: RunData, model: CLIPModel, tokenizer: CLIPTokenizer, learner: PromptLearner
        var checkpoint: Checkpoint?, output: RunOutput?, directory: String
    }

    /// Trains, evaluates and records; throws `TrainingStop` (recorded and announced by rank 0) on a
    /// divergence or a stop signal, `JobFailure` in a sweep when any rank of the group failed.
    func run(comm: Communicator) throws -> TrainingOutcome {
        let s = try agreed(comm) { try setUp(comm) }
        let trainer = Trainer(comm: comm, config: s.config, learner: s.learner, data: s.data, output: s.output)
        trainer.isolatesFailures = isolated
        try trainer.synchronizeStart(resumeFrom: s.checkpoint)
        if let checkpoint = s.checkpoint {
            let step = checkpoint.state.progress.map { " step \($0.steps)" } ?? ""
            s.output?.say("resumed from \(checkpoint.path) at epoch \(checkpoint.state.epoch)\(step)")
        }
        try agreed(comm) { try s.output?.writeStatus("training") }
        let start = Date()
        do { try trainer.train() } catch let stop as TrainingStop {
            try agreed(comm) { try announce(stop, output: s.output) }
            throw stop
        }
        let trainSeconds = Date().timeIntervalSince(start)
        let (config, data) = (s.config, s.data)
        let split = config.string("eval.split")
        let (samples, listName) = data.evaluationList(split)
        let result = try trainer.evaluate(samples: samples, listName: listName)
        try agreed(comm) {
            guard let output = s.output else { return }
            try output.writeResults(
                result, classNames: data.classNames, split: split,
                extra: [
                    "trainSeconds": trainSeconds, "ranks": comm.size,
                    "blasThreadsPerRank": BLASRuntime.threads,
                    "epochs": config.int("train.epochs"),
                    "timestamp": ISO8601DateFormatter().string(from: Date()),
                    "host": ProcessInfo.processInfo.hostName,
                    "commandLine": CommandLine.arguments,
                    "model": RunSetup.modelRecord(config, model: s.model),
                    "template": data.template, "classes": data.classNames.count,
                    "subsample": config.string("data.subsample"),
                    "trainImages": data.train.count,
                    "shots": data.fewshot?.shots ?? config.int("train.shots"),
                    "fewshot": data.fewshotFile.isEmpty
                        ? "sampled (seed \(config.int("train.seed")))" : data.fewshotFile,
                ])
            try output.writeStatus("completed")
            output.say(
                String(
                    format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)  %.1f images/s  results: %@/results.json",
                    split, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                    Int(result.confusion.total), result.imagesPerSecond, s.directory))
        }
        // A sweep's base-to-new job also evaluates the new half with the same tensors (what
        // `eval --run DIR --subsample new` does), so the report's base-to-new table is complete.
        if isolated && config.string("data.subsample") == "base" {
            try evaluateNewClasses(s, trainer: trainer, comm: comm)
        }
        return TrainingOutcome(
            directory: s.directory, accuracy: result.confusion.accuracy, macroF1: result.confusion.macroF1)
    }

    /// The trained tensors on the other half of the classes; the record goes to evaluations/.
    func evaluateNewClasses(_ s: Setup, trainer: Trainer, comm: Communicator) throws {
        var c = s.config
        try c.set("data.subsample", raw: "new", source: "sweep")
        let data = try agreed(comm) { try RunSetup.data(c, definition: s.data.spec) }
        let learner = try agreed(comm) { () -> PromptLearner in
            let l = try RunSetup.learner(
                c, model: s.model, tokenizer: s.tokenizer, classNames: data.classNames, template: data.template)
            try l.load(
                Dictionary(uniqueKeysWithValues: s.learner.parameters.map { ($0.0, $0.1.value) }), requireAll: true,
                forEvaluation: true)
            return l
        }
        let evaluator = Trainer(comm: comm, config: c, learner: learner, data: data, output: nil)
        evaluator.isolatesFailures = true
        let result = try evaluator.evaluate(
            samples: data.test, listName: "\(data.datasetName) test split (new classes)")
        try agreed(comm) {
            guard let output = s.output else { return }
            let json = try evaluationRecord(
                result, data: data, config: c, split: "test",
                extra: [
                    "trainedOn": s.data.datasetName, "trainedSubsample": "base",
                    "checkpoint": "the trained tensors at the end of training",
                ])
            let folder = s.directory + "/evaluations"
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try writeDurably(json, to: folder + "/\(data.datasetName)-test-new.json")
            output.say(
                String(
                    format: "new classes: test accuracy %.2f%%  (%d images, %d classes)",
                    result.confusion.accuracy * 100,
                    Int(result.confusion.total), data.classNames.count))
        }
    }

    func setUp(_ comm: Communicator) throws -> Setup {
        let config = try RunSetup.config(options)
        if !isolated { configureThreads(comm, config: config) }
        let data = try RunSetup.data(config)
        let directory = absolutePath(runDirectory(config))
        // Rank 0 checks every list and claims the run directory before the model loads: a bad
        // list or a busy directory costs seconds (and a failure here ends every rank).
        var lock: RunDirectoryLock?
        var warnings: [String] = []
        if comm.rank == 0 {
            warnings = try RunSetup.checkInputs(data, training: true, evalSplit: config.string("eval.split"))
            lock = try RunDirectory.prepare(directory, mode: mode)
        }
        let (model, tokenizer) = try RunSetup.model(config)
        let learner = try RunSetup.learner(
            config, model: model, tokenizer: tokenizer,
            classNames: data.classNames, template: data.template)
        if learner.parameters.isEmpty && config.string("method.name") == "custom" {
            throw TrainingError.configuration(
                "nothing to train: no --method given and no method.* key sets a text context or visual "
                    + "prompts; pass --method (\(ConfigSchema.methods.dropLast().joined(separator: ", "))), or use "
                    + "`cavpt-dist zeroshot` for zero-shot CLIP")
        }
        warnings += RunSetup.scheduleWarnings(config, groups: Set(learner.parameters.map { ParameterGroup.of($0.0) }))
        var checkpoint: Checkpoint?
        if comm.rank == 0 && mode == .resume {
            checkpoint = try loadCheckpoint(directory: directory, config: config, dataset: data.spec)
            if let checkpoint {
                // Fails here, where every rank agrees, rather than inside the broadcast that follows.
                try learner.load(checkpoint.parameters, requireAll: true)
            }
            try RunDirectory.truncateMetrics(in: directory, toEpoch: checkpoint?.state.epoch ?? 0)
        }
        let output =
            comm.rank == 0
            ? try RunOutput(
                directory: directory, config: config, dataset: data.spec, fewshot: data.fewshot, lock: lock,
                quiet: quiet) : nil
        for warning in warnings { output?.say("warning: \(warning)") }
        output?.say(
            "cavpt-dist \(cavptDistVersion): \(config.string("method.name")) on \(data.datasetName), "
                + "\(data.train.count) training images, \(data.classNames.count) classes, \(comm.size) rank(s) "
                + "× \(BLASRuntime.threads) BLAS thread(s) [\(BLASRuntime.coreName)], "
                + "precision \(RunSetup.precisionSummary(model.precision)), run \(directory)")
        if let warning = BLASRuntime.slowKernelWarning { output?.say("warning: \(warning)") }
        return Setup(
            config: config, data: data, model: model, tokenizer: tokenizer, learner: learner, checkpoint: checkpoint,
            output: output,
            directory: directory)
    }

    /// Rank 0 records why the run stopped (status.json) and says so: an `error:` for divergence; for
    /// a preemption the checkpoint and the command that resumes.
    func announce(_ stop: TrainingStop, output: RunOutput?) throws {
        guard let output else { return }
        let resume = resumeCommand()
        try output.recordStop(stop, resumeCommand: resume)
        switch stop {
        case .diverged:
            flushStandardOutput()
            if quiet { RunLog.append("error: \(stop)\n") } else { writeStandardError("error: \(stop)\n") }
        case .preempted:
            output.say("\(stop)")
            output.say("resume with: \(resume)")
        }
    }

    /// Runs `body`; in a sweep, and in any run of several ranks, every rank then learns whether any
    /// rank's `body` failed, and all throw the lowest failing rank's error (`agreeingOnFailure`). A
    /// bad setting or a busy run directory is then one error line and a clean exit, not one line per
    /// rank and an MPI_Abort.
    @discardableResult
    func agreed<T>(_ comm: Communicator, _ body: () throws -> T) throws -> T {
        guard isolated || comm.size > 1 else { return try body() }
        return try agreeingOnFailure(comm, body)
    }

    /// The newest complete checkpoint (or --resume-from), checked against this run's configuration.
    func loadCheckpoint(directory: String, config: Config, dataset: DatasetSpec?) throws -> Checkpoint? {
        let checkpoint: Checkpoint
        if let resumeFrom {
            checkpoint = try Checkpoints.read(resumeFrom)
        } else if let newest = Checkpoints.newest(
            in: directory + "/checkpoints",
            skipped: { path, reason in
                if quiet {
                    RunLog.append("warning: skipping checkpoint \(path): \(reason)\n")
                } else {
                    print("warning: skipping checkpoint \(path): \(reason)")
                }
            })
        {
            checkpoint = newest
        } else {
            // Nothing saved yet (e.g. a sweep re-running a job that died in its first epoch): start over.
            if !quiet { print("--resume: no complete checkpoint in \(directory)/checkpoints; starting from epoch 0") }
            return nil
        }
        var saved = Config()
        try saved.merge(savedRun: checkpoint.state.config, source: checkpoint.path + "/state.json")
        var differing = config.differences(from: saved)
        if let dataset, let savedSpec = try? DatasetSpec(yaml: checkpoint.state.config, file: checkpoint.path),
            savedSpec != dataset
        {
            differing.append("dataset (its definition: folder, split file, template or class names)")
        }
        guard differing.isEmpty else {
            let detail = differing.prefix(6).map { key in
                saved.values[key] == nil && config.values[key] == nil
                    ? key
                    : "\(key): \(saved.values[key]?.description ?? "unset") → "
                        + "\(config.values[key]?.description ?? "unset")"
            }
            throw TrainingError.checkpoint(
                "cannot resume from \(checkpoint.path): the configuration differs in "
                    + detail.joined(separator: "; "))
        }
        return checkpoint
    }
}

/// Runs `body` on every rank of `comm`; then every rank learns whether any rank's `body` failed, and
/// all throw the lowest failing rank's error as a `JobFailure` (one allgather, plus a broadcast of
/// the message on failure). Every rank must call it at the same point.
func agreeingOnFailure<T>(_ comm: Communicator, _ body: () throws -> T) throws -> T {
    var value: T?
    var failure: String?
    do { value = try body() } catch {
        failure = String(describing: error).split(separator: "\n").joined(separator: " ")
    }
    let flags = try comm.allgather(Int64(failure == nil ? 0 : 1))
    if let root = flags.firstIndex(where: { $0 != 0 }) {
        throw JobFailure(rank: root, message: try comm.broadcast(failure ?? "", root: root))
    }
    return value!
}
