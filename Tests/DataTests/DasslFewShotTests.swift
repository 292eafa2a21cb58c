// The few-shot sampler selects exactly what Dassl selects in CoOp for the same list, seed and
// shot count: expected lists written by Python itself (Tests/Fixtures/make_fewshot_fixtures.py).
import Foundation
import Testing

@testable import Data

@Suite struct DasslFewShotTests {
    nonisolated(unsafe) static let fixture: [String: Any] = {
        let url = URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/fewshot/cases.json")
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
    }()

    static func samples(_ raw: Any?) -> [Sample] {
        ((raw as? [[Any]]) ?? []).map { Sample(path: $0[0] as! String, label: ($0[1] as! NSNumber).intValue) }
    }

    @Test func theGeneratorIsCPythonsMT19937() throws {
        let raw = try #require(Self.fixture["raw"] as? [String: [String: [NSNumber]]])
        #expect(raw.count == 8)
        for (seedText, expected) in raw {
            var random = PythonRandom(seed: Int(seedText)!)
            #expect(
                (0..<8).map { _ in NSNumber(value: random.getrandbits(32)) } == expected["getrandbits32"]!,
                "seed \(seedText)")
            #expect(
                (0..<4).map { _ in NSNumber(value: random.getrandbits(5)) } == expected["getrandbits5"]!,
                "seed \(seedText)")
            #expect(
                (0..<3).map { _ in NSNumber(value: random.getrandbits(48)) } == expected["getrandbits48"]!,
                "seed \(seedText)")
            #expect(
                (0..<6).map { _ in NSNumber(value: random.randbelow(1000)) } == expected["randbelow1000"]!,
                "seed \(seedText)")
        }
    }

    @Test func subsetsEqualDasslsForEveryCase() throws {
        let cases = try #require(Self.fixture["cases"] as? [String: [String: Any]])
        #expect(cases.count == 4)
        var checked = 0
        for (name, c) in cases {
            let train = Self.samples(c["train"]), val = Self.samples(c["val"])
            let splits = DatasetSplits(
                name: name, imageRoot: "/data", train: train, val: val, test: [],
                classNames: (0..<16).map { "class \($0)" })
            for (key, value) in try #require(c["expected"] as? [String: [String: Any]]) {
                let parts = key.split(separator: "/").map { Int($0)! }
                let lists = sampleFewShot(splits: splits, shots: parts[1], seed: parts[0])
                // The same images in the same order (order decides nothing for training, but equal
                // order proves the same draws).
                #expect(lists.train == Self.samples(value["train"]), "\(name) seed \(parts[0]) shots \(parts[1]) train")
                #expect(lists.val == Self.samples(value["val"]), "\(name) seed \(parts[0]) shots \(parts[1]) val")
                checked += 1
            }
        }
        #expect(checked == 4 * 3 * 5)
    }
}
