// The method layer on a tiny random CLIP: which tensors each preset trains, the CAVPT plumbing,
// and the exactness of the class-sliced text encoder and of whole-method gradients.
import CLIP
import Tensor
import Testing

@testable import PromptTuning

/// A tokenizer stand-in: "X" → 300, any other word → a stable id, SOT/EOT of the tiny vocabulary.
private func fakeTokenize(_ text: String) -> [Int] {
    var ids = [1012]
    for word in text.split(separator: " ") {
        ids.append(word == "X" ? 300 : 400 + word.unicodeScalars.reduce(0) { ($0 * 31 + Int($1.value)) % 500 })
    }
    ids.append(1013)
    return ids + Array(repeating: 0, count: 77 - ids.count)
}

private let model = try! CLIPModel(tensors: RandomCLIP.make(.tiny(vocabularySize: 1014), seed: 21))
private let classNames = ["cat", "dog", "red car", "blue sky", "tree"]
private let prompts = try! ClassPrompts(
    classNames: classNames, template: "a photo of a {}.", contextLength: 4,
    tokenize: fakeTokenize)

/// The method settings configs/methods/NAME.yaml sets (TrainingTests' ConfigTests checks that the
/// files decode to these).
private func presetSettings(_ name: String) -> MethodSettings {
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

private func learner(_ preset: String, _ edit: (inout MethodSettings) -> Void = { _ in }) throws -> PromptLearner {
    var settings = presetSettings(preset)
    settings.textLength = 4
    settings.cavpt.topK = 3
    edit(&settings)
    return try PromptLearner(model: model, prompts: prompts, settings: settings, seed: 5)
}

@Suite struct PresetTensors {
    @Test(arguments: [
        ("zsclip", [String]()),
        ("coop", ["text.ctx"]),
        ("vpt_shallow", ["visual.prompts"]),
        ("vpt_deep", ["visual.prompts"]),
        (
            "vpt_cavpt",
            [
                "visual.prompts", "cavpt.2.query.0.weight", "cavpt.2.query.0.bias", "cavpt.2.query.2.weight",
                "cavpt.2.query.2.bias", "cavpt.2.kv_extra", "cavpt.2.attn.q.weight", "cavpt.2.attn.k.weight",
                "cavpt.2.attn.v.weight", "cavpt.2.ln_a.weight", "cavpt.2.ln_a.bias", "cavpt.2.classifier.weight",
                "cavpt.2.ln_b.weight", "cavpt.2.ln_b.bias", "cavpt.2.out.weight", "cavpt.2.out.bias",
            ]
        ),
        (
            "dpt_released",
            [
                "text.ctx", "visual.prompts", "cavpt.2.query.0.weight", "cavpt.2.query.0.bias", "cavpt.2.kv_extra",
                "cavpt.2.attn.q.weight", "cavpt.2.attn.k.weight", "cavpt.2.attn.v.weight", "cavpt.2.ln_a.weight",
                "cavpt.2.ln_a.bias", "cavpt.2.classifier.weight", "cavpt.2.ln_b.weight", "cavpt.2.ln_b.bias",
            ]
        ),
    ])
    func presetsTrainTheirTensors(_ preset: String, _ names: [String]) throws {
        let l = try learner(preset)
        #expect(l.parameters.map(\.0) == names)
    }

    @Test func shapesFollowTheModel() throws {
        let deep = try learner("vpt_cavpt")
        let shapes = Dictionary(uniqueKeysWithValues: deep.parameters.map { ($0.0, $0.1.shape) })
        // 2 layers, the last one CAVPT: one VPT row; d = 128, D = 64, K = 5, attention width 32.
        #expect(shapes["visual.prompts"] == [1, 10, 128])
        #expect(shapes["cavpt.2.query.0.weight"] == [128, 64])
        #expect(shapes["cavpt.2.attn.q.weight"] == [32, 128])
        #expect(shapes["cavpt.2.classifier.weight"] == [5, 128])
        #expect(try learner("coop").parameters[0].1.shape == [4, 128])
        #expect(try learner("vpt_deep").parameters[0].1.shape == [2, 10, 128])
    }

    @Test func layersOutsideTheModelAreRejected() throws {
        #expect(throws: PromptError.self) { _ = try learner("vpt_cavpt") { $0.cavpt.layers = [3] } }
        #expect(throws: PromptError.self) { _ = try learner("vpt_cavpt") { $0.cavpt.layers = [-3] } }
        #expect(try PromptLearner.resolveLayers([-1, 1, 2], depth: 2) == [1, 2])
    }

    @Test func loadChecksNamesAndShapes() throws {
        let l = try learner("vpt_deep")
        #expect(throws: PromptError.self) { try l.load(["visual.prompts": Tensor(zeros: [1, 10, 128])]) }
        #expect(throws: PromptError.self) { try l.load(["text.ctx": Tensor(zeros: [4, 128])]) }
        #expect(throws: PromptError.self) { try l.load([:], requireAll: true) }
        try l.load(["visual.prompts": Tensor(shape: [2, 10, 128], repeating: 0.5)])
        #expect(l.parameters[0].1.value.scalars.allSatisfy { $0 == 0.5 })
    }
}

@Suite struct CAVPTPlumbing {
    @Test func topClassesBreaksTiesByIndex() {
        let logits = Tensor(shape: [2, 4], values: [0.1, 0.9, 0.9, 0.3, 2, 1, 3, 0])
        #expect(topClasses(logits, k: 2) == [[1, 2], [2, 0]])
        #expect(topClasses(logits, k: 4)[1] == [2, 0, 1, 3])
    }

    @Test func contributingPairsCountBothModes() throws {
        let selection = PromptLearner.Selection(plainFeatures: nil, selected: [[0, 1, 2], [3, 4, 0], [1, 2, 3]])
        let labels = [1, 2, 3]
        let uniform = try learner("vpt_cavpt")
        #expect(uniform.contributingPairs(selection, labels: labels) == 9)
        #expect(uniform.contributingPairs(globalBatch: 3) == 9)
        #expect(!uniform.pairCountNeedsReduction)
        let ignore = try learner("vpt_cavpt") { $0.cavpt.nonTarget = .ignore }
        #expect(ignore.contributingPairs(selection, labels: labels) == 2) // images 0 and 2 hold their label
        #expect(ignore.pairCountNeedsReduction)
    }

    @Test func topKIsCappedAtTheClassCount() throws {
        #expect(try learner("vpt_cavpt") { $0.cavpt.topK = 0 }.selectedPerImage == 5)
        #expect(try learner("vpt_cavpt") { $0.cavpt.topK = 50 }.selectedPerImage == 5)
    }
}

@Suite struct TextExactness {
    @Test func classSlicesEqualTheFullEncoding() throws {
        let l = try learner("coop")
        let full = l.textFeatures().value
        for range in [0..<2, 2..<3, 3..<5] {
            let part = l.textFeatures(classes: range)!.value
            for i in 0..<part.count {
                #expect(abs(part.data[i] - full.data[range.lowerBound * 64 + i]) < 1e-5)
            }
        }
    }

    @Test func ctxPlaceholderMustTokenizeToMTokens() {
        #expect(throws: PromptError.self) {
            _ = try ClassPrompts(classNames: ["cat"], template: "{}", contextLength: 4) { text in
                text.hasPrefix("X")
                    ? [1012, 300, 301, 300, 300, 1013] + Array(repeating: 0, count: 71) : fakeTokenize(text)
            }
        }
    }
}

@Suite struct WholeMethodGradients {
    /// Finite differences through the entire prompted model and loss. CAVPT's keys/values use the
    /// *detached* layer input (DESIGN §3.1), so for CAVPT methods the visual prompts' gradient is by design
    /// not the full derivative; it is checked on vlp_deep, and against PyTorch in the gradient goldens.
    @Test(arguments: [
        (
            "vlp_cavpt",
            ["text.ctx", "cavpt.2.query.0.weight", "cavpt.2.kv_extra", "cavpt.2.attn.v.weight", "cavpt.2.ln_b.bias"]
        ),
        ("vlp_deep", ["text.ctx", "visual.prompts"]),
    ])
    func gradientMatchesFiniteDifferences(_ preset: String, _ names: [String]) throws {
        let l = try learner(preset) {
            $0.cavpt.queries = .learned; $0.cavpt.nonTarget = .ignore
        }
        let pixels = Tensor.randn([3, 3, 32, 32], seed: 9)
        let labels = [0, 3, 4]
        let selection = l.select(pixels: pixels, epoch: 0)
        let pairs = max(l.contributingPairs(selection, labels: labels), 1)
        func lossValue() -> Double {
            Double(
                l.loss(
                    pixels: pixels, labels: labels, selection: selection, epoch: 0, globalBatch: 3,
                    contributingPairs: pairs
                ).loss.value.scalar)
        }
        l.loss(
            pixels: pixels, labels: labels, selection: selection, epoch: 0, globalBatch: 3,
            contributingPairs: pairs
        ).loss.backward()
        for name in names {
            let p = l.parameters.first { $0.0 == name }!.1
            let grad = p.grad!.copy()
            var rng = SplitMix64(seed: 3)
            var worst: Float = 0, scale: Float = 0
            for _ in 0..<6 {
                let i = Int(rng.next() % UInt64(p.value.count))
                let saved = p.value.data[i]
                let eps: Float = 1e-2
                p.value.data[i] = saved + eps; let up = lossValue()
                p.value.data[i] = saved - eps; let down = lossValue()
                p.value.data[i] = saved
                let numeric = Float((up - down) / Double(2 * eps))
                worst = max(worst, abs(numeric - grad.data[i]))
                scale = max(scale, abs(grad.data[i]), abs(numeric))
            }
            #expect(
                worst <= 2e-2 * max(scale, 1e-2),
                "\(preset) \(name): finite-difference mismatch \(worst) at scale \(scale)")
        }
    }
}
