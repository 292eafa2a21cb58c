// `cavpt-dist gradients` and `cavpt-dist features`: one batch through the model, values out —
// the numerical contract the tests check against PyTorch (DESIGN §7).
import ArgumentParser
import CLIP
import Data
import Foundation
import PromptTuning
import Tensor
import Training

struct Gradients: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Loss and the gradient of every trained tensor for one batch (no augmentation, no update).")

    @Option(help: "CLIP weights (.safetensors file or folder).") var model: String
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "Method preset or method YAML.") var method: String
    @Option(help: "Class names, one per line.") var classes: String
    @Option(help: "Prompt template with {} for the class name, e.g. \"a photo of a {}.\"") var template: String
    @Option(help: "safetensors with normalised F32 `pixels` [n,3,H,W].") var pixels: String
    @Option(help: "safetensors with integer `labels` [n].") var labels: String
    @Option(help: "safetensors with trained tensors under canonical names, set before the pass.") var params: String?
    @Option(help: "Epoch (selects phase-dependent losses such as the guidance phase).") var epoch: Int = 0
    @Option(name: .customLong("set"), help: "Override a config key (repeatable).") var sets: [String] = []
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16 (runtime.precision).") var precision: String?
    @Option(help: "Output safetensors: `loss` and one gradient per trained tensor.") var out: String

    func run() throws {
        try reportingErrors {
            var options = RunOptions()
            options.method = method
            options.model = model
            options.vocab = vocab
            options.precision = precision
            options.sets = sets
            let config = try RunSetup.config(options)
            let classNames = try readClassNames(classes)
            let (clip, tokenizer) = try RunSetup.model(config)
            let learner = try RunSetup.learner(
                config, model: clip, tokenizer: tokenizer, classNames: classNames, template: template)
            if let params { try learner.load(try readTensors(params), requireAll: true) }
            let batch = try readBatch(pixels: pixels, labels: labels, model: clip, classes: classNames.count)
            let n = batch.labels.count
            let selection = learner.select(pixels: batch.pixels, epoch: epoch)
            let pairs =
                learner.pairCountNeedsReduction
                ? learner.contributingPairs(selection, labels: batch.labels)
                : learner.contributingPairs(globalBatch: n)
            let result = learner.loss(
                pixels: batch.pixels, labels: batch.labels, selection: selection, epoch: epoch,
                globalBatch: n, contributingPairs: pairs)
            result.loss.backward()
            var tensors: [(String, Tensor)] = [("loss", result.loss.value.reshaped([1]))]
            for (name, p) in learner.parameters { tensors.append((name, p.grad ?? Tensor(zeros: p.shape))) }
            try SafeTensorsFile.write(
                tensors,
                metadata: [
                    "method": config.string("method.name"), "epoch": String(epoch),
                    "precision": clip.precision.rawValue,
                ], to: out)
            print(
                String(
                    format: "gradients: %@: loss %.6g, %d trained tensor(s)", out, Double(result.loss.value.scalar),
                    tensors.count - 1))
        }
    }
}

func readClassNames(_ path: String) throws -> [String] {
    let text: String
    do { text = try RegularFile.text(path) } catch let error as RegularFileError {
        throw TrainingError.input("\(path): cannot read the class-name file: \(error.reason)")
    }
    let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter {
        !$0.isEmpty
    }
    guard !names.isEmpty else { throw TrainingError.input("\(path): no class names (one per line)") }
    return names
}

func readTensors(_ path: String) throws -> [String: Tensor] {
    let file = try SafeTensorsFile(path: path)
    var out: [String: Tensor] = [:]
    for name in file.names { out[name] = try file.tensor(name) }
    return out
}

/// `pixels` [n,3,R,R] at the model's resolution and `labels` [n] in 0..<classes.
func readBatch(pixels: String, labels: String, model: CLIPModel, classes: Int) throws -> (pixels: Tensor, labels: [Int])
{
    let pixelFile = try SafeTensorsFile(path: pixels)
    guard pixelFile.contains("pixels") else { throw TrainingError.input("\(pixels): no tensor named \"pixels\"") }
    let p = try pixelFile.tensor("pixels")
    let R = model.image.resolution
    guard p.rank == 4, p.shape[1] == 3, p.shape[2] == R, p.shape[3] == R else {
        throw TrainingError.input(
            "\(pixels): \"pixels\" has shape \(p.shape), expected [n, 3, \(R), \(R)] for this model")
    }
    let labelFile = try SafeTensorsFile(path: labels)
    guard labelFile.contains("labels") else { throw TrainingError.input("\(labels): no tensor named \"labels\"") }
    let l = try labelFile.integers("labels")
    guard l.count == p.shape[0] else {
        throw TrainingError.input("\(labels): \(l.count) labels for \(p.shape[0]) images in \(pixels)")
    }
    if let bad = l.first(where: { $0 < 0 || $0 >= classes }) {
        throw TrainingError.input("\(labels): label \(bad) is outside the \(classes) classes")
    }
    return (p, l)
}

struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Image and text features and logits of the frozen CLIP (linear probes, numerics checks).")

    @Option(help: "CLIP weights (.safetensors file or folder).") var model: String
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(parsing: .upToNextOption, help: "JPEG files (test transform: resize shorter side, centre crop, normalise).")
    var images: [String] = []
    @Option(help: "safetensors with normalised F32 `pixels` [n,3,R,R] instead of --images.") var pixels: String?
    @Option(parsing: .upToNextOption, help: "Texts to encode.") var texts: [String] = []
    @Option(help: "Output safetensors: image_features, text_features (before normalisation), logits.") var out: String
    @Flag(name: .customLong("save-pixels"), help: "Also write the preprocessed `pixels`.") var savePixels = false
    @Option(help: "Arithmetic of the frozen-weight products: fp32 or bf16.") var precision: String = "fp32"

    func validate() throws {
        guard images.isEmpty != (pixels == nil) else {
            throw ValidationError("give either --images JPG... or --pixels FILE")
        }
    }

    func run() throws {
        try reportingErrors {
            let arithmetic = try RunSetup.checkedPrecision(precision)
            let (_, tensors) = try loadCLIPWeights(path: model)
            let clip = try CLIPModel(tensors: tensors, precision: arithmetic)
            let R = clip.image.resolution
            let count: Int
            var stored: Tensor?
            if let pixels {
                let file = try SafeTensorsFile(path: pixels)
                guard file.contains("pixels") else {
                    throw TrainingError.input("\(pixels): no tensor named \"pixels\"")
                }
                let all = try file.tensor("pixels")
                guard all.rank == 4, all.shape[1] == 3, all.shape[2] == R, all.shape[3] == R else {
                    throw TrainingError.input(
                        "\(pixels): \"pixels\" has shape \(all.shape), expected [n, 3, \(R), \(R)] for this model")
                }
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
            try SafeTensorsFile.write(outputs, metadata: ["model": model, "precision": precision], to: out)
            print("features: \(out): " + outputs.map { "\($0.0) \($0.1.shape)" }.joined(separator: ", "))
        }
    }
}
