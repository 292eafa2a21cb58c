// Evaluation metrics from a confusion matrix: top-1 accuracy, macro-F1 and per-class accuracy.

public struct ConfusionMatrix: Sendable, Equatable {
    public let classes: Int
    /// counts[truth * classes + predicted]
    public var counts: [Double]

    public init(classes: Int) {
        self.classes = classes
        counts = Array(repeating: 0, count: classes * classes)
    }

    public mutating func add(truth: Int, predicted: Int) { counts[truth * classes + predicted] += 1 }

    public var total: Double { counts.reduce(0, +) }
    public var correct: Double { (0..<classes).reduce(0) { $0 + counts[$1 * classes + $1] } }
    public var accuracy: Double { total == 0 ? 0 : correct / total }

    /// Recall of each class (its accuracy); nil for classes with no samples.
    public var perClassAccuracy: [Double?] {
        (0..<classes).map { c in
            let support = (0..<classes).reduce(0) { $0 + counts[c * classes + $1] }
            return support == 0 ? nil : counts[c * classes + c] / support
        }
    }

    /// Mean F1 over classes with samples or predictions (sklearn's macro average over present labels).
    public var macroF1: Double {
        var sum = 0.0, present = 0
        for c in 0..<classes {
            let tp = counts[c * classes + c]
            let support = (0..<classes).reduce(0) { $0 + counts[c * classes + $1] }
            let predicted = (0..<classes).reduce(0) { $0 + counts[$1 * classes + c] }
            guard support + predicted > 0 else { continue }
            present += 1
            sum += support + predicted == 0 ? 0 : 2 * tp / (support + predicted)
        }
        return present == 0 ? 0 : sum / Double(present)
    }
}
