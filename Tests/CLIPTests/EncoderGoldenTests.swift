// CLIP encoders against the float64 PyTorch reference (Tests/Fixtures/make_fixtures.py): a tiny
// random CLIP in OpenAI names (F32) and the same weights in Hugging Face names (F16).
import Foundation
import Testing
@testable import CLIP
import Tensor

private let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures/golden").path

private func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
    precondition(actual.count == expected.count)
    var diff: Float = 0, ref: Float = 0
    for i in 0..<actual.count {
        diff = max(diff, abs(actual.data[i] - expected.data[i]))
        ref = max(ref, abs(expected.data[i]))
    }
    return diff / max(ref, 1e-30)
}

@Suite struct EncoderGoldens {
    let features: SafeTensorsFile

    init() throws { features = try SafeTensorsFile(path: golden + "/tiny_a_features.safetensors") }

    func check(weights file: String, prefix: String) throws {
        let (_, tensors) = try loadCLIPWeights(path: golden + "/" + file)
        let model = try CLIPModel(tensors: tensors)
        let pixels = try features.tensor("pixels")
        let flat = try features.integers("tokens")
        let tokens = stride(from: 0, to: flat.count, by: 77).map { Array(flat[$0..<($0 + 77)]) }
        let image = model.image(Var(pixels)).value
        let text = try model.text(tokens: tokens).value
        let logits = model.logits(imageFeatures: Var(image), textFeatures: Var(text)).value
        #expect(relativeError(image, try features.tensor(prefix + "image_features")) < 1e-4)
        #expect(relativeError(text, try features.tensor(prefix + "text_features")) < 1e-4)
        #expect(relativeError(logits, try features.tensor(prefix + "logits")) < 1e-4)
    }

    @Test func openAINamesF32() throws { try check(weights: "tiny_a_openai.safetensors", prefix: "") }
    @Test func huggingFaceNamesF16() throws { try check(weights: "tiny_a_hf_f16.safetensors", prefix: "hf_") }

    @Test func tokenizerGivesTheGoldenIds() throws {
        let tokenizer = try CLIPTokenizer(bpeGzPath: golden + "/tiny_vocab.txt.gz")
        let texts = try JSONDecoder().decode([String].self, from: Data(contentsOf: URL(fileURLWithPath: golden + "/tiny_a_texts.json")))
        let flat = try features.integers("tokens")
        for (k, text) in texts.enumerated() {
            #expect(tokenizer.tokenize(text) == Array(flat[(k * 77)..<((k + 1) * 77)]), "text \(k)")
        }
    }
}
