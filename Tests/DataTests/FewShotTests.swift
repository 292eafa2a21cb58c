// The few-shot protocol: exactly K per class (all when fewer), min(K, 4) from val, seeded and
// deterministic, different across seeds, and a JSON round trip that reuses the exact lists.
import Foundation
import Testing

@testable import Data

@Suite struct FewShotTests {
    /// Class sizes: train 20, 16, 5, 1; val 9, 3, 0, 6 (interleaved, like real split files).
    let splits: DatasetSplits = {
        func list(_ sizes: [Int], _ prefix: String) -> [Sample] {
            var samples: [Sample] = []
            for round in 0..<(sizes.max() ?? 0) {
                for (label, size) in sizes.enumerated() where round < size {
                    samples.append(Sample(path: "c\(label)/\(prefix)\(round).jpg", label: label))
                }
            }
            return samples
        }
        return DatasetSplits(
            name: "toy", imageRoot: "/data/toy", train: list([20, 16, 5, 1], "t"),
            val: list([9, 3, 0, 6], "v"), test: list([2, 2, 2, 2], "e"), classNames: ["a", "b", "c", "d"])
    }()

    func perClass(_ samples: [Sample]) -> [Int: Int] {
        samples.reduce(into: [:]) { $0[$1.label, default: 0] += 1 }
    }

    @Test func exactlyKPerClassAllWhenFewer() {
        let lists = sampleFewShot(splits: splits, shots: 16, seed: 1)
        #expect(perClass(lists.train) == [0: 16, 1: 16, 2: 5, 3: 1])
        #expect(perClass(lists.val) == [0: 4, 1: 3, 3: 4])
        #expect(Set(lists.train).count == lists.train.count, "sampled without replacement")
        #expect(Set(lists.train).isSubset(of: Set(splits.train)) && Set(lists.val).isSubset(of: Set(splits.val)))
        #expect(lists.shots == 16 && lists.seed == 1 && lists.dataset == "toy")

        let two = sampleFewShot(splits: splits, shots: 2, seed: 1)
        #expect(perClass(two.train) == [0: 2, 1: 2, 2: 2, 3: 1])
        #expect(perClass(two.val) == [0: 2, 1: 2, 3: 2])
        let all = sampleFewShot(splits: splits, shots: -1, seed: 1)
        #expect(all.train == splits.train && all.val == splits.val)
    }

    @Test func deterministicPerSeedAndDifferentAcrossSeeds() {
        let a = sampleFewShot(splits: splits, shots: 4, seed: 1)
        #expect(a == sampleFewShot(splits: splits, shots: 4, seed: 1))
        let b = sampleFewShot(splits: splits, shots: 4, seed: 2)
        let c = sampleFewShot(splits: splits, shots: 4, seed: 3)
        #expect(a.train != b.train && b.train != c.train && a.train != c.train)
        #expect(a.val != b.val)
        // Within a class the choice covers the whole class across seeds, not just its head.
        let chosen = Set(
            (1...20).flatMap { sampleFewShot(splits: splits, shots: 4, seed: $0).train.filter { $0.label == 0 } })
        #expect(chosen.count == 20)
    }

    @Test func jsonRoundTripReusesTheExactLists() throws {
        let folder = try makeTemporaryFolder("fewshot")
        defer { removeTemporaryFolder(folder) }
        let lists = sampleFewShot(splits: splits, shots: 8, seed: 3)
        let path = folder + "/fewshot.json"
        try lists.write(to: path)
        let read = try FewShotLists.read(from: path)
        #expect(read == lists)
        try read.validate(against: splits, file: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains(#"    ["c0/t"#) && text.contains(#""shots": 8"#))

        // Entries exported from CoOp's pickles carry the class name as a third element.
        try writeFile(path, #"{"dataset": "toy", "shots": 1, "seed": 1, "train": [["c1/t0.jpg", 1, "b"]], "val": []}"#)
        #expect(try FewShotLists.read(from: path).train == [Sample(path: "c1/t0.jpg", label: 1)])
    }

    @Test func badFewShotFilesAreClearErrors() throws {
        let folder = try makeTemporaryFolder("fewshot-bad")
        defer { removeTemporaryFolder(folder) }
        let path = folder + "/f.json"
        func readError(_ text: String) throws -> String {
            try writeFile(path, text)
            return "\(thrownError { try FewShotLists.read(from: path) }!)"
        }
        #expect(
            try readError(#"{"dataset": "toy", "shots": 1, "seed": 1, "val": []}"#)
                == "few-shot file \(path): missing key train")
        #expect(
            try readError(#"{"dataset": "toy", "shots": 1, "seed": 1, "train": [["a.jpg"]], "val": []}"#)
                .hasPrefix("few-shot file \(path): train[0]"))
        #expect(try readError("not json") == "few-shot file \(path): not valid JSON")
        #expect(
            "\(thrownError { try FewShotLists.read(from: folder + "/none.json") }!)"
                == "few-shot file \(folder)/none.json: no such file")

        let wrongLabel = FewShotLists(
            dataset: "toy", shots: 1, seed: 1, train: [Sample(path: "x.jpg", label: 4)], val: [])
        #expect(
            "\(thrownError { try wrongLabel.validate(against: splits, file: path) }!)"
                == "few-shot file \(path): train[0] has label 4, but toy has 4 classes")
        let wrongDataset = FewShotLists(dataset: "dtd", shots: 1, seed: 1, train: [], val: [])
        #expect(
            "\(thrownError { try wrongDataset.validate(against: splits, file: path) }!)"
                == "few-shot file \(path): made for dataset 'dtd', not 'toy'")
    }
}
