// `cavpt-dist gradients` and `cavpt-dist features`: one batch through the model, values out —
// the numerical contract the tests check against PyTorch (DESIGN §7). `gradients` runs the trainer's
// step (`TrainingStep`) on one process, without the update.
import ArgumentParser
import CLIP
import Data
import Distributed
import Files
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
            var load = RunLoad(.config(try RunSetup.config(options), definition: nil))
            load.classes = .given(names: try readClassNames(classes), template: template)
            if let params { load.tensors = .file(params) }
            load.forEvaluation = false
            let run = try RunLoader.load(load)
            let batch = try readBatch(pixels: pixels, labels: labels, model: run.model, classes: run.classNames.count)
            // The trainer's step on one process, without the update: the gradients it would reduce.
            let comm = SingleProcessCommunicator()
            let step = TrainingStep(
                learner: run.learner, comm: comm, shardsText: false, failures: FailurePolicy(.solo, comm: comm))
            try step.accumulate(
                pixels: batch.pixels, labels: batch.labels, globalBatch: batch.labels.count, epoch: epoch)
            let loss = try step.reduce().loss
            let tensors =
                [("loss", Tensor(shape: [1], repeating: Float(loss)))]
                + step.buffer.gradients(run.learner.parameters)
            try SafeTensorsFile.write(
                tensors,
                metadata: [
                    "method": run.settings.methodName, "epoch": String(epoch),
                    "precision": run.model.precision.rawValue,
                ], to: out)
            print(
                String(
                    format: "gradients: %@: loss %.6g, %d trained tensor(s)", out, loss, tensors.count - 1))
        }
    }
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
            let outputs = try FrozenFeatures.compute(
                model: model, vocab: vocab, images: images, pixels: pixels, texts: texts, savePixels: savePixels,
                precision: precision)
            try SafeTensorsFile.write(outputs, metadata: ["model": model, "precision": precision], to: out)
            print("features: \(out): " + outputs.map { "\($0.0) \($0.1.shape)" }.joined(separator: ", "))
        }
    }
}
