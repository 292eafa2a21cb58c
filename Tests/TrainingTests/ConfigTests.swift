// The layered configuration: presets, overrides, and one-line errors for bad keys and values.
import Foundation
import PromptTuning
import Testing

@testable import Training

@Suite struct ConfigTests {
    @Test(arguments: MethodSettings.presetNames)
    func methodFilesMatchPresets(_ name: String) throws {
        var c = Config()
        try c.merge(file: packageRoot + "/configs/methods/\(name).yaml")
        #expect(c.string("method.name") == name)
        var expected = MethodSettings.preset(name)!
        let loaded = MethodSettings(config: c)
        // The paper presets take K_N from the dataset config; only dpt_released fixes it.
        if name != "dpt_released" { expected.cavpt.topK = loaded.cavpt.topK }
        if !expected.usesCAVPT { expected.cavpt = loaded.cavpt }
        #expect(loaded == expected)
    }

    @Test func layersAndOverrides() throws {
        var c = Config()
        try c.merge(yaml: "train: {epochs: 5}\ncavpt: {alpha: 2}", source: "a.yaml")
        try c.merge(yaml: "train:\n  epochs: 7\n", source: "b.yaml")
        try c.apply(override: "cavpt.layers=[11,12]")
        try c.apply(override: "optim.visual.lr=0.05")
        #expect(c.int("train.epochs") == 7)
        #expect(c.double("cavpt.alpha") == 2)
        #expect(c.intList("cavpt.layers") == [11, 12])
        #expect(c.double("optim.visual.lr") == 0.05)
        #expect(c.sources["train.epochs"] == "b.yaml")
        // The effective YAML reads back to the same configuration.
        var again = Config()
        try again.merge(yaml: c.yaml(), source: "effective")
        #expect(again.values == c.values)
        #expect(again.differences(from: c).isEmpty)
    }

    @Test(arguments: [
        ("train.epoch=3", "--set: unknown config key 'train.epoch'"),
        ("train.epochs=abc", "--set: config key 'train.epochs' must be an integer ≥ 0, got 'abc'"),
        ("train.epochs=-1", "--set: config key 'train.epochs' must be an integer ≥ 0, got '-1'"),
        ("cavpt.residual=token", "--set: config key 'cavpt.residual' must be one of query, classToken, got 'token'"),
        (
            "cavpt.outputProjection=maybe",
            "--set: config key 'cavpt.outputProjection' must be true or false, got 'maybe'"
        ),
        ("cavpt.layers=[a]", "--set: config key 'cavpt.layers' must be a list of integers such as [1, 2], got '[a]'"),
        ("nokey", "--set: expected key=value, got 'nokey'"),
    ])
    func badOverridesNameTheKey(_ assignment: String, _ message: String) {
        var c = Config()
        #expect(throws: (any Error).self) { try c.apply(override: assignment) }
        do { try c.apply(override: assignment) } catch {
            #expect("\(error)".hasPrefix(message), "\(error)")
            #expect(!"\(error)".contains("\n"))
        }
    }

    @Test func badFileNamesTheFile() {
        var c = Config()
        do { try c.merge(yaml: "train: {epochz: 1}", source: "mine.yaml"); Issue.record("no error") } catch {
            #expect("\(error)" == "mine.yaml: unknown config key 'train.epochz'")
        }
        do { try c.merge(yaml: "train: [1, 2", source: "broken.yaml"); Issue.record("no error") } catch {
            #expect("\(error)".hasPrefix("broken.yaml: not valid YAML"))
        }
    }

    @Test func resumeCheckIgnoresOperationalKeys() throws {
        var a = Config(), b = Config()
        try b.apply(override: "train.workers=4")
        try b.apply(override: "output.dir=elsewhere")
        #expect(a.differences(from: b).isEmpty)
        try a.apply(override: "optim.visual.lr=0.1")
        #expect(a.differences(from: b) == ["optim.visual.lr"])
    }
}
