// What `features` writes: the frozen CLIP's image features of images (test transform) or given pixels,
// the text features of texts, and their logits; for linear probes and numerics checks.
import CLIP
import Data
import Foundation
import Tensor

public enum FrozenFeatures {
    /// `image_features` [n, D], and with texts `text_features` (before normalisation) and `logits`;
    /// with `savePixels` the preprocessed `pixels`.
    public static func compute(
        model: String, vocab: String?, images: [String], pixels: String?, texts: [String], savePixels: Bool,
        precision: String
    ) throws -> [(String, Tensor)] {
        let arithmetic = try RunSetup.checkedPrecision(precision)
        let (_, tensors) = try loadCLIPWeights(path: model)
        let clip = try CLIPModel(tensors: tensors, precision: arithmetic)
        let R = clip.image.resolution
        let count: Int
        var stored: Tensor?
        if let pixels {
            let all = try readPixels(pixels, resolution: R)
            stored = all
            count = all.shape[0]
        } else {
            count = images.count
        }
        // Images go through the encoder in chunks, so memory stays flat for long lists.
        let chunk = 64
        let imageFeatures = Tensor(uninitialized: [count, clip.image.embedDim])
        let savedPixels = savePixels ? Tensor(uninitialized: [count, 3, R, R]) : nil
        for start in stride(from: 0, to: count, by: chunk) {
            let range = start..<min(start + chunk, count)
            let batch: Tensor
            if let stored {
                batch = stored.slice(range)
            } else {
                batch = Tensor(uninitialized: [range.count, 3, R, R])
                for (i, path) in images[range].enumerated() {
                    writeTestImage(
                        try ImageFile.decode(path: path), resolution: R, into: batch.data + i * 3 * R * R)
                }
            }
            let features = clip.image(Var(batch)).value
            (imageFeatures.data + start * clip.image.embedDim).update(from: features.data, count: features.count)
            if let savedPixels {
                (savedPixels.data + start * 3 * R * R).update(from: batch.data, count: batch.count)
            }
        }
        var outputs: [(String, Tensor)] = [("image_features", imageFeatures)]
        if !texts.isEmpty {
            let tokenizer = try CLIPTokenizer(try findVocabulary(modelPath: model, override: vocab))
            let tokens = texts.map { tokenizer.tokenize($0, contextLength: clip.text.contextLength) }
            let textFeatures = try clip.text(tokens: tokens).value
            outputs.append(("text_features", textFeatures))
            outputs.append(
                ("logits", clip.logits(imageFeatures: Var(imageFeatures), textFeatures: Var(textFeatures)).value))
        }
        if let savedPixels { outputs.append(("pixels", savedPixels)) }
        return outputs
    }
}
