// The few-shot protocol (SPEC §2): per class K training images without replacement and
// min(K, 4) validation images, from a seeded generator; saved as JSON and reusable as is.
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
            throw DataError.fewShotFile(file: path, reason: describe(error))
        } catch {
            throw DataError.fewShotFile(file: path, reason: "not valid JSON")
        }
    }

    /// Checks the lists against the dataset they will be used with: same dataset name (when the
    /// file names one) and every label a class of it.
    public func validate(against splits: DatasetSplits, file: String) throws {
        if !dataset.isEmpty && dataset != splits.name {
            throw DataError.fewShotFile(file: file, reason: "made for dataset '\(excerpt(dataset))', not '\(splits.name)'")
        }
        for (list, samples) in [("train", train), ("val", val)] {
            if let (i, bad) = samples.enumerated().first(where: { !(0..<splits.classNames.count).contains($0.element.label) }) {
                throw DataError.fewShotFile(file: file, reason: "\(list)[\(i)] has label \(bad.label), "
                                            + "but \(splits.name) has \(splits.classNames.count) classes")
            }
        }
    }
}

/// Few-shot lists for `shots` per class (all of a class when it has fewer; every sample when
/// shots < 1, as CoOp's num_shots = -1), and min(shots, 4) per class from val. Classes are visited
/// in label order and each draw is a partial Fisher–Yates over the class's samples in list order,
/// from generators keyed by the seed; chosen samples keep their list order.
public func sampleFewShot(splits: DatasetSplits, shots: Int, seed: Int) -> FewShotLists {
    var trainRNG = StreamKey.generator(StreamKey.fewShotTrain, seed)
    var valRNG = StreamKey.generator(StreamKey.fewShotVal, seed)
    let train = shots < 1 ? splits.train : samplePerClass(splits.train, perClass: shots, rng: &trainRNG)
    let val = shots < 1 ? splits.val : samplePerClass(splits.val, perClass: min(shots, 4), rng: &valRNG)
    return FewShotLists(dataset: splits.name, shots: shots, seed: seed, train: train, val: val)
}

func samplePerClass(_ samples: [Sample], perClass: Int, rng: inout SplitMix64) -> [Sample] {
    var indicesByLabel: [Int: [Int]] = [:]
    for (i, sample) in samples.enumerated() { indicesByLabel[sample.label, default: []].append(i) }
    var chosen: [Int] = []
    for label in indicesByLabel.keys.sorted() {
        var indices = indicesByLabel[label] ?? []
        if indices.count <= perClass {
            chosen += indices
            continue
        }
        for k in 0..<perClass {
            let j = k + rng.integer(below: indices.count - k)
            indices.swapAt(k, j)
        }
        chosen += indices[0..<perClass].sorted()
    }
    return chosen.map { samples[$0] }
}

/// A DecodingError as one line: where in the document, and what was wrong.
func describe(_ error: DecodingError) -> String {
    func path(_ keys: [CodingKey]) -> String {
        let joined: String = keys.map { key in key.intValue.map { "[\($0)]" } ?? ".\(key.stringValue)" }.joined()
        return joined.hasPrefix(".") ? String(joined.dropFirst()) : joined
    }
    switch error {
    case let .keyNotFound(key, context): return "missing key \(path(context.codingPath + [key]))"
    case let .typeMismatch(type, context): return "\(path(context.codingPath)): expected \(type)"
    case let .valueNotFound(type, context): return "\(path(context.codingPath)): missing \(type)"
    case let .dataCorrupted(context):
        return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)): \(context.debugDescription)"
    @unknown default: return "\(error)"
    }
}
