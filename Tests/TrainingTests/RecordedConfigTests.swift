// config.yaml as a run directory records it: valid YAML with each section once, that Yams and
// PyYAML read to the same keys and values, self-contained (the dataset definition) and with
// absolute paths that survive any character.
import Data
import Foundation
import Testing

@testable import Training

@Suite struct RecordedConfigTests {
    /// A configuration touching every section, with a non-default momentum (once written twice) and
    /// hostile paths.
    func sample() throws -> Config {
        var c = Config()
        try c.apply(override: "optim.momentum=0.8")
        try c.apply(override: "optim.weightDecay=1e-05")
        try c.apply(override: "optim.visual.lr=0.05")
        try c.apply(override: "optim.text.warmupLR=2e-6")
        try c.apply(override: "cavpt.layers=[-1, 11]")
        try c.set("model.path", raw: "/models/with\nnewline/and \"quotes\" and \\ back: #x", source: "test")
        try c.set("data.root", raw: "relative/data", source: "test")
        try c.set("output.dir", raw: "/runs/ünïcode\ttab", source: "test")
        return c
    }

    let spec = DatasetSpec(
        name: "mine", layout: .coopSplit, folder: "my data", images: "imgs",
        splitFile: "split: odd.json", template: "a photo of a {}, \"quoted\".",
        classNames: ClassNameRules(replaceUnderscores: false, rename: ["a: b": "c", "x": "y #z"]), topK: 4)

    @Test func eachSectionOnceAndTheSameValuesBack() throws {
        let c = try sample()
        let text = c.yaml(dataset: spec, absolutePaths: true)
        let topLevel = text.split(separator: "\n").filter { !$0.hasPrefix(" ") }
        #expect(Set(topLevel).count == topLevel.count, "\(topLevel)")
        #expect(topLevel.filter { $0 == "optim:" }.count == 1)
        var back = Config()
        try back.merge(savedRun: text, source: "config.yaml", definitionFile: "/run/config.yaml")
        for key in c.values.keys where !key.hasPrefix("dataset.") && key != "data.root" {
            #expect(
                back.values[key] == c.values[key],
                "\(key): \(String(describing: back.values[key])) vs \(String(describing: c.values[key]))")
        }
        #expect(back.settings.data.root == FileManager.default.currentDirectoryPath + "/relative/data")
        #expect(back.settings.dataset.name == "mine")
        #expect(back.settings.dataset.config == "/run/config.yaml")
        // The file is a dataset definition in its own right.
        var recorded = spec
        recorded.topK = nil
        var parsed = try DatasetSpec(yaml: text, file: "config.yaml")
        parsed.topK = nil
        #expect(parsed == recorded)
    }

    @Test func pyYAMLReadsTheSameKeys() throws {
        let c = try sample()
        let folder = temporaryDirectory("pyyaml")
        let path = folder + "/config.yaml"
        try c.yaml(dataset: spec, absolutePaths: true).write(toFile: path, atomically: true, encoding: .utf8)
        // Flatten with PyYAML (safe_load), dump as JSON; compare with our own values.
        let script = """
            import json, sys, yaml
            def flat(prefix, value, out):
                if isinstance(value, dict):
                    for k, v in value.items(): flat(prefix + [str(k)], v, out)
                else: out[".".join(prefix)] = value
            out = {}
            flat([], yaml.safe_load(open(sys.argv[1], encoding="utf-8")), out)
            print(json.dumps(out))
            """
        let python =
            ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? "/usr/bin/env"
        let result = try runProcess(python, (python == "/usr/bin/env" ? ["python3"] : []) + ["-c", script, path])
        try #require(result.status == 0, "PyYAML (python3-yaml) is needed for this test: \(result.stderr)")
        let read = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        for (key, value) in c.values where !key.hasPrefix("dataset.") && key != "data.root" {
            let other = try #require(read[key], "PyYAML lacks \(key)")
            switch value {
            case .int(let v): #expect((other as? NSNumber)?.intValue == v && !(other is String), "\(key)")
            case .double(let v):
                #expect((other as? NSNumber)?.doubleValue == v && !(other is String), "\(key): \(other)")
            case .bool(let v): #expect((other as? Bool) == v, "\(key)")
            case .string(let v): #expect((other as? String) == v, "\(key): \(other)")
            case .intList(let v): #expect((other as? [NSNumber])?.map(\.intValue) == v, "\(key)")
            }
        }
        #expect(read["dataset.template"] as? String == spec.template)
        #expect(read["dataset.splitFile"] as? String == spec.splitFile)
        #expect(read["dataset.classNames.rename.a: b"] as? String == "c")
        #expect(read["dataset.classNames.replaceUnderscores"] as? Bool == false)
        #expect(read.keys.filter { $0.hasPrefix("optim.") }.count == 8)
    }
}
