// Evaluating a run that is not training: a saved run on its test split, its new classes or another
// dataset (`eval`), or zero-shot CLIP (`zeroshot`); the record it writes (accuracy, macro-F1,
// per-class accuracy and what was evaluated) and, on request, every image's prediction.
import Data
import Distributed
import Foundation
import Tensor

public struct EvaluationJob {
    public var load: RunLoad
    /// Zero-shot CLIP (`zeroshot`): no trained tensors; the line and record name the template and model.
    public var zeroShot = false
    /// The run directory whose evaluations/ folder keeps the record (`eval --run`; `report` reads it).
    public var keptIn: String?
    /// Write the record here too (`--out`).
    public var out: String?
    /// Write one JSON line per image and the confusion matrix here (`--predictions`).
    public var predictions: String?

    public init(load: RunLoad) { self.load = load }

    public func run(comm: Communicator) throws {
        var load = self.load
        load.comm = comm
        load.checksInputs = true
        let run = try RunLoader.load(load)
        let data = run.data!
        let settings = run.settings
        let split = settings.eval.split
        let (samples, listName) = data.evaluationList(split)
        let evaluator = Evaluator(comm: comm, learner: run.learner, imageRoot: data.imageRoot, settings: settings)
        let result = try evaluator.evaluate(samples: samples, listName: listName, recordTop: predictions == nil ? 0 : 5)
        guard comm.rank == 0 else { return }
        let (accuracy, macroF1) = (result.confusion.accuracy * 100, result.confusion.macroF1 * 100)
        let subset = settings.data.subsample
        let extra: [String: Any]
        if zeroShot {
            print(
                String(
                    format:
                        "zero-shot %@ %@: accuracy %.2f%%  macro-F1 %.2f%%  (%d images, %d classes, template \"%@\")  "
                        + "%.1f images/s",
                    data.datasetName, split.rawValue, accuracy, macroF1, Int(result.confusion.total),
                    data.classNames.count, data.template, result.imagesPerSecond))
            extra = ["model": absolutePath(settings.model.path)]
        } else {
            print(
                String(
                    format: "%@ %@%@ accuracy %.2f%%  macro-F1 %.2f%%  (%d images, %d classes)  %.1f images/s  %@",
                    data.datasetName, split.rawValue, subset == .all ? "" : " (\(subset.rawValue) classes)", accuracy,
                    macroF1, Int(result.confusion.total), data.classNames.count, result.imagesPerSecond,
                    run.tensorsLoaded))
            extra = [
                "checkpoint": run.tensorsLoaded, "trainedOn": run.recordedDataset,
                "trainedSubsample": run.recordedSubsample.rawValue,
            ]
        }
        let json = try EvaluationRecords.json(result, data: data, settings: settings, split: split, extra: extra)
        if let out { try writeDurably(json, to: out) }
        if let keptIn { try EvaluationRecords.keep(json, run: keptIn, data: data, split: split, subsample: subset) }
        if let predictions {
            try EvaluationRecords.writePredictions(result, samples: samples, data: data, to: predictions)
            if !zeroShot { print("predictions: \(predictions)") }
        }
    }
}

public enum EvaluationRecords {
    /// What an evaluation reports (`eval --out`, a run's evaluations/, `zeroshot --out`): accuracy,
    /// macro-F1, per-class accuracy and what was evaluated, as pretty JSON.
    public static func json(
        _ result: EvaluationResult, data: RunData, settings s: RunSettings, split: EvaluationSplit,
        extra: [String: Any]
    ) throws -> Data {
        var perClass: [String: Any] = [:]
        for (name, acc) in zip(data.classNames, result.confusion.perClassAccuracy) { perClass[name] = acc ?? NSNull() }
        var record: [String: Any] = [
            "accuracy": result.confusion.accuracy, "macroF1": result.confusion.macroF1,
            "evaluated": Int(result.confusion.total),
            "split": split.rawValue, "dataset": data.datasetName, "method": s.methodName,
            "subsample": s.data.subsample.rawValue,
            "classes": data.classNames.count, "perClassAccuracy": perClass, "template": data.template,
            "seed": s.train.seed, "shots": s.train.shots,
            "precision": s.runtime.precision.rawValue, "onednnISA": OneDNN.isaName,
        ]
        record.merge(extra) { $1 }
        return try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
    }

    /// Keeps a record with the run, where `report` finds it (base-to-new and cross-dataset tables):
    /// `<run>/evaluations/<dataset>-<split>-<subsample>.json`.
    public static func keep(
        _ json: Data, run: String, data: RunData, split: EvaluationSplit, subsample: ClassSubset
    ) throws {
        let folder = run + "/evaluations"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try writeDurably(json, to: folder + "/\(data.datasetName)-\(split.rawValue)-\(subsample.rawValue).json")
    }

    /// `eval --predictions`: a JSON line per image (path, label, prediction, top-5 with probabilities),
    /// then one line with the class names and the confusion matrix (rows: truth, columns: prediction).
    public static func writePredictions(
        _ result: EvaluationResult, samples: [Sample], data: RunData, to path: String
    ) throws {
        var lines: [String] = []
        lines.reserveCapacity(samples.count + 1)
        for (sample, top) in zip(samples, result.top) {
            let record: [String: Any] = [
                "path": sample.path, "label": sample.label, "class": data.classNames[sample.label],
                "prediction": top.first?.label ?? -1,
                "predictedClass": top.first.map { data.classNames[$0.label] } ?? "",
                "top5": top.map {
                    ["label": $0.label, "class": data.classNames[$0.label], "probability": $0.probability]
                        as [String: Any]
                },
            ]
            lines.append(
                String(
                    decoding: try JSONSerialization.data(
                        withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        }
        let K = result.confusion.classes
        let matrix = (0..<K).map { t in (0..<K).map { Int(result.confusion.counts[t * K + $0]) } }
        lines.append(
            String(
                decoding: try JSONSerialization.data(
                    withJSONObject: ["classes": data.classNames, "confusion": matrix],
                    options: [.sortedKeys]), as: UTF8.self))
        try writeDurably(Data((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }
}
