// One training run on a communicator, from options to results.json: what `train` does in one MPI job
// and what `sweep` does for each job of a group. The failure policy says what an error does: solo, it
// ends the MPI job (set-up errors agreed by the ranks, said once); in a sweep every failure is agreed
// by the group's ranks and thrown as a `JobFailure`, so one job's bad image or bad value never ends
// the other jobs.
import CLIP
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor

public struct TrainingOutcome: Sendable {
    public var directory: String
    public var accuracy: Double
    public var macroF1: Double
}

public struct TrainingJob {
    public var options: RunOptions
    public var mode: RunDirectoryMode
    public var resumeFrom: String?
    /// Solo (`train`) or one job of a sweep (agree on failures within the group).
    public var scope: FailurePolicy.Scope
    /// Progress goes to the run's log.txt only (a sweep's groups would interleave on the terminal).
    public var quiet: Bool
    /// The command that resumes this run, printed when it is preempted.
    public var resumeCommand: () -> String

    public init(
        options: RunOptions, mode: RunDirectoryMode, resumeFrom: String? = nil, scope: FailurePolicy.Scope,
        quiet: Bool, resumeCommand: @escaping () -> String
    ) {
        self.options = options; self.mode = mode; self.resumeFrom = resumeFrom; self.scope = scope
        self.quiet = quiet; self.resumeCommand = resumeCommand
    }

    struct Setup {
        var config: Config, settings: RunSettings, data: RunData
        var model: CLIPModel, tokenizer: CLIPTokenizer, learner: PromptLearner
        var checkpoint: Checkpoint?, output: RunOutput?, directory: String
    }

    /// Trains, evaluates and records; throws `TrainingStop` (recorded and announced by rank 0) on a
    /// divergence or a stop signal, `JobFailure` in a sweep when any rank of the group failed.
    public func run(comm: Communicator) throws -> TrainingOutcome {
        let failures = FailurePolicy(scope, comm: comm)
        let s = try failures.agreed { try setUp(comm) }
        let trainer = Trainer(
            comm: comm, settings: s.settings, learner: s.learner, data: s.data, output: s.output, failures: failures)
        try trainer.synchronizeStart(resumeFrom: s.checkpoint)
        if let checkpoint = s.checkpoint {
            let step = checkpoint.state.progress.map { " step \($0.steps)" } ?? ""
            s.output?.say("resumed from \(checkpoint.path) at epoch \(checkpoint.state.epoch)\(step)")
        }
        try failures.agreed { try s.output?.writeStatus("training") }
        let start = Date()
        do { try trainer.train() } catch let stop as TrainingStop {
            try failures.agreed { try announce(stop, output: s.output) }
            throw stop
        }
        let trainSeconds = Date().timeIntervalSince(start)
        let (settings, data) = (s.settings, s.data)
        let split = settings.eval.split
        let (samples, listName) = data.evaluationList(split)
        let result = try trainer.evaluator.evaluate(samples: samples, listName: listName)
        try failures.agreed {
            guard let output = s.output else { return }
            try output.writeResults(
                result, classNames: data.classNames, split: split.rawValue,
                extra: [
                    "trainSeconds": trainSeconds, "ranks": comm.size,
                    "blasThreadsPerRank": BLASRuntime.threads,
                    "epochs": settings.train.epochs,
                    "timestamp": ISO8601DateFormatter().string(from: Date()),
                    "host": ProcessInfo.processInfo.hostName,
                    "commandLine": CommandLine.arguments,
                    "model": RunSetup.modelRecord(settings, model: s.model),
                    "template": data.template, "classes": data.classNames.count,
                    "subsample": settings.data.subsample.rawValue,
                    "trainImages": data.train.count,
                    "shots": data.fewshot?.shots ?? settings.train.shots,
                    "fewshot": data.fewshotFile.isEmpty
                        ? "sampled (seed \(settings.train.seed))" : data.fewshotFile,
                ])
            try output.writeStatus("completed")
            output.say(
                String(
                    format: "%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images)  %.1f images/s  results: %@/results.json",
                    split.rawValue, result.confusion.accuracy * 100, result.confusion.macroF1 * 100,
                    Int(result.confusion.total), result.imagesPerSecond, s.directory))
        }
        // A sweep's base-to-new job also evaluates the new half with the same tensors (what
        // `eval --run DIR --subsample new` does), so the report's base-to-new table is complete.
        if scope == .sweep && settings.data.subsample == .base {
            try evaluateNewClasses(s, comm: comm, failures: failures)
        }
        return TrainingOutcome(
            directory: s.directory, accuracy: result.confusion.accuracy, macroF1: result.confusion.macroF1)
    }

    /// The trained tensors on the other half of the classes; the record goes to evaluations/.
    func evaluateNewClasses(_ s: Setup, comm: Communicator, failures: FailurePolicy) throws {
        var load = RunLoad(.config(s.config, definition: s.data.spec))
        load.overrides = [(\.data.subsample, ClassSubset.new.rawValue, "sweep")]
        load.model = (s.model, s.tokenizer)
        load.tensors = .values(Dictionary(uniqueKeysWithValues: s.learner.parameters.map { ($0.0, $0.1.value) }))
        let run = try failures.agreed { try RunLoader.load(load) }
        let data = run.data!
        let evaluator = Evaluator(
            comm: comm, learner: run.learner, imageRoot: data.imageRoot, settings: run.settings, failures: failures)
        let result = try evaluator.evaluate(
            samples: data.test, listName: "\(data.datasetName) test split (new classes)")
        try failures.agreed {
            guard let output = s.output else { return }
            let json = try EvaluationRecords.json(
                result, data: data, settings: run.settings, split: .test,
                extra: [
                    "trainedOn": s.data.datasetName, "trainedSubsample": ClassSubset.base.rawValue,
                    "checkpoint": run.tensorsLoaded,
                ])
            try EvaluationRecords.keep(json, run: s.directory, data: data, split: .test, subsample: .new)
            output.say(
                String(
                    format: "new classes: test accuracy %.2f%%  (%d images, %d classes)",
                    result.confusion.accuracy * 100,
                    Int(result.confusion.total), data.classNames.count))
        }
    }

    /// The run directory a configuration names, or runs/<dataset>/<method>/seed<seed>.
    public static func directory(_ s: RunSettings) -> String {
        if !s.output.dir.isEmpty { return s.output.dir }
        let dataset = s.dataset.name.isEmpty ? "data" : s.dataset.name
        return "runs/\(dataset)/\(s.methodName)/seed\(s.train.seed)"
    }

    func setUp(_ comm: Communicator) throws -> Setup {
        let config = try RunSetup.config(options)
        let settings = config.settings
        if scope == .solo { RunSetup.configureThreads(comm, settings: settings) }
        let data = try RunSetup.data(config)
        let directory = absolutePath(Self.directory(settings))
        // Rank 0 checks every list and claims the run directory before the model loads: a bad
        // list or a busy directory costs seconds (and a failure here ends every rank).
        var lock: RunDirectoryLock?
        var warnings: [String] = []
        if comm.rank == 0 {
            warnings = try RunSetup.checkInputs(data, training: true, evalSplit: settings.eval.split)
            lock = try RunDirectory.prepare(directory, mode: mode)
        }
        let (model, tokenizer) = try RunSetup.model(config)
        let learner = try RunSetup.learner(
            config, model: model, tokenizer: tokenizer,
            classNames: data.classNames, template: data.template)
        if learner.parameters.isEmpty && settings.methodName == MethodPresets.custom {
            throw TrainingError.configuration(
                "nothing to train: no --method given and no method.* key sets a text context or visual "
                    + "prompts; pass --method (\(MethodPresets.names.joined(separator: ", "))), or use "
                    + "`cavpt-dist zeroshot` for zero-shot CLIP")
        }
        warnings += Self.scheduleWarnings(settings, groups: Set(learner.parameters.map { ParameterGroup.of($0.0) }))
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
            "cavpt-dist \(cavptDistVersion): \(settings.methodName) on \(data.datasetName), "
                + "\(data.train.count) training images, \(data.classNames.count) classes, \(comm.size) rank(s) "
                + "× \(BLASRuntime.threads) BLAS thread(s) [\(BLASRuntime.coreName)], "
                + "precision \(RunSetup.precisionSummary(model.precision)), run \(directory)")
        if let warning = BLASRuntime.slowKernelWarning { output?.say("warning: \(warning)") }
        return Setup(
            config: config, settings: settings, data: data, model: model, tokenizer: tokenizer, learner: learner,
            checkpoint: checkpoint, output: output, directory: directory)
    }

    /// A group whose warm-up lasts the whole run never trains at its learning rate (a VPT run would
    /// end at zero-shot accuracy): say so before it starts.
    static func scheduleWarnings(_ s: RunSettings, groups: Set<ParameterGroup>) -> [String] {
        let epochs = s.train.epochs
        return groups.sorted { $0.rawValue > $1.rawValue }.compactMap { group in
            let schedule = s.optim[group]
            guard epochs > 0, epochs <= schedule.warmupEpochs else { return nil }
            let (warmupKey, rateKey): (String, String) =
                group == .visual
                ? (ConfigSchema.name(of: \.optim.visual.warmupEpochs), ConfigSchema.name(of: \.optim.visual.warmupLR))
                : (ConfigSchema.name(of: \.optim.text.warmupEpochs), ConfigSchema.name(of: \.optim.text.warmupLR))
            return "\(ConfigSchema.name(of: \.train.epochs)) (\(epochs)) ≤ \(warmupKey) (\(schedule.warmupEpochs)): "
                + "the \(group.rawValue) learning rate stays at \(rateKey) (\(schedule.warmupLR)) for the whole run"
        }
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
            throw TrainingError.checkpoint(
                "cannot resume from \(checkpoint.path): the configuration differs in "
                    + config.describe(differing, from: saved))
        }
        return checkpoint
    }
}
