// Base-to-new generalisation (CoCoOp's protocol, Dassl's `subsample_classes`): the sorted labels
// present in the few-shot train list split at ⌈n/2⌉ into base and new; every list keeps one half,
// relabelled from 0 in label order.
public enum ClassSubset: String, Sendable, CaseIterable {
    case all, base, new

    /// The original labels this subset keeps, given the few-shot train list.
    public func labels(train: [Sample]) -> [Int] {
        let present = Set(train.map(\.label)).sorted()
        let half = (present.count + 1) / 2
        switch self {
        case .all: return present
        case .base: return Array(present[..<half])
        case .new: return Array(present[half...])
        }
    }

    /// `lists` restricted to this subset and relabelled; class names in the new label order.
    /// `.all` returns everything unchanged (Dassl returns its arguments as they are).
    public func apply(
        train: [Sample], lists: [[Sample]], classNames: [String]
    ) -> (lists: [[Sample]], classNames: [String]) {
        guard self != .all else { return (lists, classNames) }
        let kept = labels(train: train)
        var relabel: [Int: Int] = [:]
        for (new, old) in kept.enumerated() { relabel[old] = new }
        let filtered = lists.map { list in
            list.compactMap { s in relabel[s.label].map { Sample(path: s.path, label: $0) } }
        }
        return (filtered, kept.map { classNames[$0] })
    }
}
