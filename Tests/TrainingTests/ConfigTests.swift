// The layered configuration: presets, overrides, and one-line errors for bad keys and values.
import Foundation
import PromptTuning
import Testing

@testable import Training

@Suite struct ConfigTests {
    /// What each preset file must decode to (DESIGN §3, §3.2); cavpt.topK of the paper presets
    /// comes from the dataset, so it stays the schema default here.
    static func expectedPreset(_ name: String) -> MethodSettings {
        var m = MethodSettings()
        var paperCAVPT = CAVPTSettings()
        paperCAVPT.layers = [-1]
        switch name {
        case "coop": m.textPrompt = true
        case "vpt_shallow": m.visualPrompt = .shallow
        case "vpt_deep": m.visualPrompt = .deep
        case "vpt_cavpt": m.visualPrompt = .deep; m.cavpt = paperCAVPT
        case "vlp_deep": m.textPrompt = true; m.visualPrompt = .deep
        case "vlp_cavpt": m.textPrompt = true; m.visualPrompt = .deep; m.cavpt = paperCAVPT
        case "dpt_released":
            m.textPrompt = true; m.visualPrompt = .deep
            m.cavpt.layers = [-1]; m.cavpt.topK = 10; m.cavpt.queries = .learned; m.cavpt.queryDepth = 1
            m.cavpt.residual = .query; m.cavpt.outputProjection = false; m.cavpt.nonTarget = .ignore
            m.cavpt.alpha = 0.3; m.cavpt.guidanceEpochs = 30
        default: break // zsclip
        }
        return m
    }

    @Test(arguments: MethodPresets.names)
    func methodFilesDecodeToTheirSettings(_ name: String) throws {
        var c = Config()
        try c.merge(file: packageRoot + "/configs/methods/\(name).yaml")
        let settings = RunSettings(c)
        #expect(settings.methodName == name)
        #expect(settings.method == Self.expectedPreset(name))
    }

    @Test func everyPresetHasItsFile() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: packageRoot + "/configs/methods")
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }
        #expect(Set(files) == Set(MethodPresets.names))
        #expect(MethodPresets.names.count == Set(MethodPresets.names).count)
    }

    @Test func defaultsAreTheSettingsFields() {
        // The schema's defaults are read off RunSettings(): decoding them gives it back, and every
        // key decodes into a field of its own.
        #expect(RunSettings(Config()) == RunSettings())
        #expect(Set(ConfigSchema.keys.map(\.name)).count == ConfigSchema.keys.count)
        for key in ConfigSchema.keys { #expect(ConfigSchema.name(of: key.field) == key.name) }
    }

    @Test func layersAndOverrides() throws {
        var c = Config()
        try c.merge(yaml: "train: {epochs: 5}\ncavpt: {alpha: 2}", source: "a.yaml")
        try c.merge(yaml: "train:\n  epochs: 7\n", source: "b.yaml")
        try c.apply(override: "cavpt.layers=[11,12]")
        try c.apply(override: "optim.visual.lr=0.05")
        let s = RunSettings(c)
        #expect(s.train.epochs == 7)
        #expect(s.method.cavpt.alpha == 2)
        #expect(s.method.cavpt.layers == [11, 12])
        #expect(s.optim.visual.lr == 0.05)
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
