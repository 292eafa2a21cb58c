// The few-shot protocol (DESIGN §2): per class K training images without replacement and
// min(K, 4) validation images, drawn as CoOp/Dassl draw them; saved as JSON and reusable as is.
import Files
import Foundation
import Tensor

/// The sampled lists of one few-shot run. Paths are relative to the dataset's image folder, as
/// in the split files, so a file from one machine works on another with a different data root.
public struct FewShotLists: Codable, Equatable, Sendable {
    public var dataset: String
    public var shots: Int
    public var seed: Int
    public var train: [Sample]
    public var val: [Sample]

    enum CodingKeys: String, CodingKey { case dataset, shots, seed, train, val }

    /// `dataset`, `shots` and `seed` are optional: CoOp exports carry only the lists
    /// (`{"train": [[path, label], …], "val": …}`); shots then is the largest per-class count of
    /// `train`, seed -1 (unknown), dataset "" (not checked).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        train = try c.decode([Sample].self, forKey: .train)
        val = try c.decodeIfPresent([Sample].self, forKey: .val) ?? []
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset) ?? ""
        seed = try c.decodeIfPresent(Int.self, forKey: .seed) ?? -1
        if let given = try c.decodeIfPresent(Int.self, forKey: .shots) {
            shots = given
        } else {
            var perClass: [Int: Int] = [:]
            for sample in train { perClass[sample.label, default: 0] += 1 }
            shots = perClass.values.max() ?? 0
        }
    }

    public init(dataset: String, shots: Int, seed: Int, train: [Sample], val: [Sample]) {
        self.dataset = dataset
        self.shots = shots
        self.seed = seed
        self.train = train
        self.val = val
    }

    /// Writes the lists as JSON (one sample per line, so files diff well).
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        func quoted(_ text: String) -> String {
            (try? encoder.encode(text)).flatMap { String(data: $0, encoding: .utf8) } ?? "\"\""
        }
        func entries(_ samples: [Sample]) -> String {
            samples.map { "    [\(quoted($0.path)), \($0.label)]" }.joined(separator: ",\n")
        }
        let datasetJSON = quoted(dataset)
        let text = """
            {
              "dataset": \(datasetJSON),
              "shots": \(shots),
              "seed": \(seed),
              "sampler": "dassl",
              "train": [
            \(entries(train))
              ],
              "val": [
            \(entries(val))
              ]
            }

            """
        do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw DataError.fewShotFile(file: path, reason: "cannot write it: \(error.localizedDescription)")
        }
    }

    /// Reads lists written by `write(to:)` (or exported from CoOp's few-shot pickles in the same form;
    /// entries may carry a third element, the class name, which is ignored).
    public static func read(from path: String) throws -> FewShotLists {
        let bytes: Data
        do { bytes = Data(try RegularFile.read(path)) } catch let error as RegularFileError {
            throw DataError.fewShotFile(file: path, reason: error.briefReason)
        }
        do { return try JSONDecoder().decode(FewShotLists.self, from: bytes) } catch let error as DecodingError {
            throw DataError.fewShotFile(file: path, reason: describeDecoding(error))
        } catch {
            throw DataError.fewShotFile(file: path, reason: "not valid JSON")
        }
    }

    /// Checks the lists against the dataset they will be used with: same dataset name (when the
    /// file names one), and every entry an entry of the split's list of the same name with the same
    /// label (so a few-shot file can never smuggle test images, or wrong labels, into training).
    public func validate(against splits: DatasetSplits, file: String) throws {
        if !dataset.isEmpty && dataset != splits.name {
            throw DataError.fewShotFile(
                file: file, reason: "made for dataset '\(excerpt(dataset))', not '\(splits.name)'")
        }
        for (list, samples, source) in [("train", train, splits.train), ("val", val, splits.val)] {
            if let (i, bad) = samples.enumerated().first(where: {
                !(0..<splits.classNames.count).contains($0.element.label)
            }) {
                throw DataError.fewShotFile(
                    file: file,
                    reason: "\(list)[\(i)] has label \(bad.label), "
                        + "but \(splits.name) has \(splits.classNames.count) classes")
            }
            var labels: [String: Int] = [:]
            for sample in source { labels[(sample.path as NSString).standardizingPath] = sample.label }
            for (i, sample) in samples.enumerated() {
                guard let label = labels[(sample.path as NSString).standardizingPath] else {
                    throw DataError.fewShotFile(
                        file: file,
                        reason: "\(list)[\(i)] \(Self.short(sample.path)) is not in "
                            + "the \(splits.name) \(list) split")
                }
                guard label == sample.label else {
                    throw DataError.fewShotFile(
                        file: file,
                        reason: "\(list)[\(i)] \(Self.short(sample.path)) has label "
                            + "\(sample.label), but the \(list) split says \(label)")
                }
            }
        }
    }

    static func short(_ text: String) -> String { text.count <= 120 ? text : String(text.prefix(117)) + "…" }
}

/// Few-shot lists exactly as Dassl's `generate_fewshot_dataset` draws them in CoOp after
/// `random.seed(seed)`: first the train list with `shots` per class, then the val list with
/// min(shots, 4), each class (in order of its label's first appearance in the list) by
/// `random.sample(items, K)` when it has at least K items, else all of them. Every sample when
/// shots < 1 (CoOp's num_shots = -1).
public func sampleFewShot(splits: DatasetSplits, shots: Int, seed: Int) -> FewShotLists {
    guard shots >= 1 else {
        return FewShotLists(dataset: splits.name, shots: shots, seed: seed, train: splits.train, val: splits.val)
    }
    var random = PythonRandom(seed: seed)
    let train = dasslFewShot(splits.train, perClass: shots, random: &random)
    let val = dasslFewShot(splits.val, perClass: min(shots, 4), random: &random)
    return FewShotLists(dataset: splits.name, shots: shots, seed: seed, train: train, val: val)
}

/// One list through Dassl's sampler (`split_dataset_by_label`, then per label `random.sample`).
func dasslFewShot(_ samples: [Sample], perClass: Int, random: inout PythonRandom) -> [Sample] {
    var order: [Int] = []
    var byLabel: [Int: [Sample]] = [:]
    for sample in samples {
        if byLabel[sample.label] == nil { order.append(sample.label) }
        byLabel[sample.label, default: []].append(sample)
    }
    var chosen: [Sample] = []
    for label in order {
        let items = byLabel[label]!
        if items.count >= perClass {
            chosen += random.sample(populationSize: items.count, count: perClass).map { items[$0] }
        } else {
            chosen += items
        }
    }
    return chosen
}

/// A DecodingError as one line: where in the document, and what was wrong.
public func describeDecoding(_ error: DecodingError) -> String {
    func path(_ keys: [CodingKey]) -> String {
        let joined: String = keys.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
        return joined.hasPrefix(".") ? String(joined.dropFirst()) : joined
    }
    switch error {
    case let .keyNotFound(key, context): return "missing key \(path(context.codingPath + [key]))"
    case let .typeMismatch(type, context): return "\(path(context.codingPath)): expected \(type)"
    case let .valueNotFound(type, context): return "\(path(context.codingPath)): missing \(type)"
    case let .dataCorrupted(context):
        return context.codingPath.isEmpty
            ? "not valid JSON" : "\(path(context.codingPath)): \(context.debugDescription)"
    @unknown default: return "\(error)"
    }
}
