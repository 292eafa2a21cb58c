// What rank 0 writes: the run directory (effective config, few-shot lists, metrics.jsonl,
// checkpoints, results.json) and the progress lines on the terminal.
import Data
import Foundation
import Tensor

public final class RunOutput: @unchecked Sendable {
    public let directory: String
    public var checkpointDirectory: String { directory + "/checkpoints" }
    let config: Config
    let settings: RunSettings
    let dataset: DatasetSpec?
    let quiet: Bool
    let lock: RunDirectoryLock?
    var metrics: AppendOnlyFile?
    /// TensorBoard scalars with Dassl's tags (train/loss, train/acc, train/lr, test/accuracy, …).
    var events: TensorBoardWriter?

    /// Opens the run directory (rank 0): creates it, takes its lock for the life of this object,
    /// and writes the effective config (and few-shot lists). With a lock taken by the caller
    /// (`RunDirectory.prepare`), pass it in; `nil` takes none (tests, tools).
    public init(
        directory: String, config: Config, dataset: DatasetSpec? = nil, fewshot: FewShotLists?,
        lock: RunDirectoryLock? = nil, quiet: Bool = false
    ) throws {
        self.directory = directory
        var config = config
        if config.settings.output.dir.isEmpty { try config.set(\.output.dir, raw: directory, source: "run directory") }
        self.config = config
        settings = config.settings
        self.dataset = dataset
        self.quiet = quiet
        self.lock = lock
        try createDirectory(directory)
        try writeDurably(Data(recordedConfig.utf8), to: directory + "/config.yaml")
        if let fewshot { try fewshot.write(to: directory + "/fewshot.json") }
        metrics = try AppendOnlyFile(path: directory + "/metrics.jsonl")
        events = try TensorBoardWriter(directory: directory)
    }

    /// The configuration as the run directory and checkpoints record it: self-contained (the
    /// resolved dataset definition) with absolute paths.
    var recordedConfig: String { config.yaml(dataset: dataset, absolutePaths: true) }

    /// A line for the terminal and log.txt (quiet: log.txt only).
    public func say(_ line: String) {
        RunLog.append(line + "\n")
        guard !quiet else { return }
        print(line)
        flushStandardOutput()
    }

    func progress(
        epoch: Int, epochs: Int, step: Int, steps: Int, loss: Double, accuracy: Double, lr: Double?,
        textLR: Double?, imagesPerSecond: Double, elapsed: Double
    ) {
        let remainingSteps = Double(steps - step) + Double(epochs - epoch - 1) * Double(steps)
        let eta = elapsed / Double(max(step, 1)) * remainingSteps
        var line = String(
            format: "epoch %d/%d  step %d/%d  loss %.4f  acc %.1f%%", epoch + 1, epochs, step, steps,
            loss, accuracy * 100)
        switch (lr, textLR) {
        case let (visual?, text?): line += String(format: "  lr %.2e (text %.2e)", visual, text)
        case let (visual?, nil): line += String(format: "  lr %.2e", visual)
        case let (nil, text?): line += String(format: "  lr %.2e (text)", text)
        case (nil, nil): break
        }
        line += String(format: "  %.1f img/s  ETA %@", imagesPerSecond, formatDuration(eta))
        say(line)
    }

    func log(epoch s: EpochStats, of epochs: Int, extra: [String: Any] = [:]) throws {
        var record: [String: Any] = [
            "epoch": s.epoch + 1, "loss": s.loss, "accuracy": s.accuracy, "images": s.images,
            "seconds": s.seconds, "communicationSeconds": s.communicationSeconds, "lr": s.learningRates,
            "imagesPerSecond": Double(s.images) / max(s.seconds, 1e-9), "steps": s.steps, "allreduces": s.allreduces,
        ]
        if let step = s.resumedAtStep { record["resumedAtStep"] = step }
        if let cavpt = s.cavptLoss { record["lossCAVPT"] = cavpt; record["lossCE"] = s.loss - cavpt }
        if let val = s.valAccuracy { record["valAccuracy"] = val }
        record.merge(extra) { $1 }
        try appendMetrics(record)
        // Dassl's tags and units (accuracy in percent); the step is the epoch.
        var scalars: [(String, Double)] = [("train/loss", s.loss), ("train/acc", s.accuracy * 100)]
        if let cavpt = s.cavptLoss { scalars += [("train/loss_ce", s.loss - cavpt), ("train/loss_cavpt", cavpt)] }
        if let val = s.valAccuracy { scalars.append(("val/accuracy", val * 100)) }
        if let visual = s.learningRates["visual"] { scalars.append(("train/lr", visual)) }
        if let text = s.learningRates["text"] { scalars.append(("train/lr_text", text)) }
        try events?.scalars(scalars, step: s.epoch + 1)
    }

    /// One JSON line (NaN and infinities as null); a full disk or read-only volume is an error naming
    /// the file, and never leaves a torn line behind (the file is cut back to its last complete line).
    func appendMetrics(_ record: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: jsonSafe(record), options: [.sortedKeys])
        try metrics?.append(data + Data("\n".utf8))
    }

    /// Checkpoints the trainer after `epochsDone` epochs and, inside the next one, `progress.steps` steps.
    @discardableResult
    func checkpoint(_ trainer: Trainer, progress: EpochProgress? = nil) throws -> String {
        let state = CheckpointState(
            epoch: trainer.epochsDone, seed: settings.train.seed,
            configHash: configHash(config), config: recordedConfig,
            rngKeys: ["seed": settings.train.seed, "epoch": trainer.epochsDone],
            ranks: trainer.comm.size, version: cavptDistVersion, progress: progress)
        try Checkpoints.write(
            state, parameters: trainer.learner.parameters.map { ($0.0, $0.1.value) },
            momentum: trainer.optimizer.buffers, to: checkpointDirectory,
            keep: settings.checkpoint.keep)
        let path =
            checkpointDirectory + "/" + Checkpoints.folderName(epoch: trainer.epochsDone, step: progress?.steps ?? 0)
        say("checkpoint: \(path)")
        return path
    }

    /// Test hook: starts writing this epoch's checkpoint folder, then dies mid-write.
    func crashDuringCheckpoint(_ trainer: Trainer) -> Never {
        let partial = checkpointDirectory + "/" + Checkpoints.folderName(epoch: trainer.epochsDone) + ".tmp"
        try? createDirectory(partial)
        _ = FileManager.default.createFile(
            atPath: partial + "/state.safetensors", contents: Data(repeating: 7, count: 100))
        raise(SIGKILL)
        fatalError("unreachable")
    }

    /// results.json: accuracy, macro-F1, per-class accuracy, timing and versions.
    public func writeResults(
        _ result: EvaluationResult, classNames: [String], split: String, extra: [String: Any]
    ) throws {
        var perClass: [String: Any] = [:]
        for (name, acc) in zip(classNames, result.confusion.perClassAccuracy) { perClass[name] = acc ?? NSNull() }
        var record: [String: Any] = [
            "dataset": settings.dataset.name, "method": settings.methodName,
            "seed": settings.train.seed, "shots": settings.train.shots, "split": split,
            "accuracy": result.confusion.accuracy, "macroF1": result.confusion.macroF1,
            "perClassAccuracy": perClass, "evaluated": Int(result.confusion.total),
            "precision": settings.runtime.precision.rawValue,
            "versions": [
                "cavpt-dist": cavptDistVersion, "openblasCore": BLASRuntime.coreName,
                "onednn": OneDNN.version, "onednnISA": OneDNN.isaName,
            ],
            // This rank's peak resident memory so far (training and evaluation), in MiB.
            "memory": ["peakRSSMB": (ProcessMemory.peakResidentMB * 10).rounded() / 10],
        ]
        if OneDNN.bf16Emulated && settings.runtime.precision == .bf16 { record["bf16Emulated"] = true }
        var timing: [String: Any] = [
            "evaluationSeconds": result.seconds, "evaluationImagesPerSecond": result.imagesPerSecond,
        ]
        for (k, v) in extra {
            if k.hasSuffix("Seconds") || k.hasSuffix("PerSecond") { timing[k] = v } else { record[k] = v }
        }
        record["timing"] = timing
        let data = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
        try writeDurably(data, to: directory + "/results.json")
        let accuracy = result.confusion.accuracy * 100
        try events?.scalars(
            [
                ("\(split)/accuracy", accuracy), ("\(split)/error_rate", 100 - accuracy),
                ("\(split)/macro_f1", result.confusion.macroF1 * 100),
            ], step: settings.train.epochs)
    }
}

public let cavptDistVersion = "0.2.0"

/// FNV-1a of the effective config without operational keys.
public func configHash(_ c: Config) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for key in c.values.keys.sorted() where !ConfigSchema.operational.contains(key) {
        for byte in "\(key)=\(c.values[key]!)\n".utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
    }
    return String(h, radix: 16)
}

func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite else { return "?" }
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
}

/// Flushes buffered `print` output (fflush(NULL) flushes every C stream, stdout included, without
/// naming the C global that Swift 6 treats as shared mutable state).
public func flushStandardOutput() { fflush(nil) }
