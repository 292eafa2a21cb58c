// Evaluation of a learner on a list of samples (DESIGN §5): sharded over the ranks, the confusion
// matrix reduced so every rank holds it; optionally each sample's best classes with probabilities.
import Data
import Distributed
import Foundation
import PromptTuning
import Tensor

public struct EvaluationResult: Sendable {
    public var confusion: ConfusionMatrix
    public var seconds: Double
    /// With `recordTop` > 0: per evaluated sample (list order), the top classes and their softmax
    /// probabilities, best first.
    public var top: [[(label: Int, probability: Double)]] = []

    /// Images evaluated per second of wall time (all ranks together: decoding, forward and reduction).
    public var imagesPerSecond: Double { seconds > 0 ? confusion.total / seconds : 0 }
}

public final class Evaluator: @unchecked Sendable {
    public let comm: Communicator
    public let learner: PromptLearner
    /// Where the samples' paths are relative to.
    public let imageRoot: String
    let batchSize: Int, workers: Int, prefetch: Int
    public let failures: FailurePolicy

    public init(
        comm: Communicator, learner: PromptLearner, imageRoot: String, settings: RunSettings,
        failures: FailurePolicy? = nil
    ) {
        self.comm = comm
        self.learner = learner
        self.imageRoot = imageRoot
        batchSize = settings.eval.batchSize
        workers = settings.train.workers
        prefetch = settings.train.prefetch
        self.failures = failures ?? FailurePolicy(.solo, comm: comm)
    }

    /// Predictions on `samples` sharded over ranks; every rank gets the reduced confusion matrix
    /// (and, with `recordTop` = k > 0, every sample's k best classes with probabilities).
    public func evaluate(samples: [Sample], listName: String, recordTop: Int = 0) throws -> EvaluationResult {
        let start = Date()
        let loader = try BatchLoader.evaluation(
            samples: samples, imageRoot: imageRoot, listName: listName,
            batchSize: batchSize, rank: comm.rank, size: comm.size,
            resolution: learner.model.image.resolution, workers: workers, prefetch: prefetch)
        let logits = Self.classLogits(learner)
        var confusion = ConfusionMatrix(classes: learner.classCount)
        let k = min(recordTop, learner.classCount)
        // [n, k, 2]: (label, probability) pairs; each rank fills its rows, a sum reduces them.
        var top = [Double](repeating: 0, count: k > 0 ? samples.count * k * 2 : 0)
        evaluation: while true {
            var next: Batch?
            do { next = try loader.next() } catch  where failures.defers {
                try failures.meet(error)
                break evaluation
            }
            guard let batch = next else { break }
            guard !batch.labels.isEmpty else { continue }
            let scores = logits(batch.pixels)
            // A NaN anywhere upstream (a trained tensor, a weight) would still argmax to some class.
            guard allFinite(scores) else {
                try failures.meet(
                    TrainingError.diverged(
                        "evaluation on the \(listName): the model's predictions are not finite "
                            + "(NaN or infinity in the trained tensors or the weights); no accuracy is reported"))
                break evaluation
            }
            for (truth, predicted) in zip(batch.labels, argmaxRows(scores)) {
                confusion.add(truth: truth, predicted: predicted)
            }
            if k > 0 {
                for (row, position) in batch.positions.enumerated() {
                    let best = topProbabilities(scores.data + row * scores.lastDim, count: scores.lastDim, k: k)
                    for (j, entry) in best.enumerated() {
                        top[(position * k + j) * 2] = Double(entry.0)
                        top[(position * k + j) * 2 + 1] = entry.1
                    }
                }
            }
        }
        if failures.defers {
            // One more count carries the failures: every rank of the group stops here together.
            confusion.counts.append(failures.pending == nil ? 0 : 1)
            try comm.allreduceSum(&confusion.counts)
            if confusion.counts.removeLast() > 0 { try failures.agree() }
        } else {
            try comm.allreduceSum(&confusion.counts)
        }
        var result = EvaluationResult(confusion: confusion, seconds: Date().timeIntervalSince(start))
        if k > 0 {
            try comm.allreduceSum(&top)
            result.top = (0..<samples.count).map { i in
                (0..<k).map { j in (Int(top[(i * k + j) * 2]), top[(i * k + j) * 2 + 1]) }
            }
        }
        return result
    }

    /// `learner`'s class logits [b, K] of a batch of pixels (evaluation, `predict`). The text side is
    /// encoded once per evaluation, here; a method whose text depends on the image (CoCoOp's per-image
    /// context) computes it per batch in the returned function instead.
    public static func classLogits(_ learner: PromptLearner) -> (Tensor) -> Tensor {
        let textFeatures = learner.evaluationTextFeatures()
        return { pixels in learner.predict(pixels: pixels, textFeatures: textFeatures) }
    }
}

/// The k largest softmax probabilities of one row of logits, best first (lower class on ties).
public func topProbabilities(_ logits: UnsafePointer<Float>, count: Int, k: Int) -> [(Int, Double)] {
    var maximum = -Double.infinity
    for c in 0..<count { maximum = max(maximum, Double(logits[c])) }
    var total = 0.0
    for c in 0..<count { total += exp(Double(logits[c]) - maximum) }
    let order = (0..<count).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    return order.prefix(k).map { ($0, exp(Double(logits[$0]) - maximum) / total) }
}
