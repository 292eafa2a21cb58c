// `cavpt-dist predict`: the top classes of each image with a trained run's prompts (or zero-shot
// CLIP), so single images can be checked and a surprising accuracy diagnosed.
import ArgumentParser
import CLIP
import Data
import Foundation
import PromptTuning
import Tensor
import Training

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Top-5 classes with probabilities for each image, with a trained run (--run DIR) or zero-shot CLIP "
            + "(--model M --dataset N).",
        discussion: """
            IMAGE may be a file or a folder (its images, sorted by name). The classes are the run's \
            (or, with --dataset, that dataset's); their names come from the dataset's split files, so \
            the data root must be readable (--data-root overrides the recorded one).
            """)

    @Option(name: .customLong("run"), help: "A run directory written by `train`.") var runDirectory: String?
    @Option(help: "A checkpoint folder instead of --run.") var checkpoint: String?
    @Option(help: "CLIP weights (zero-shot, or to override the run's).") var model: String?
    @Option(help: "Dataset whose classes and template to use (zero-shot, or another dataset than the run's).")
    var dataset: String?
    @Option(name: .customLong("data-root"), help: "Folder holding the datasets.") var dataRoot: String?
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(help: "Classes to predict among: all, base or new (base-to-new).") var subsample: String?
    @Option(help: "How many classes to print per image.") var top: Int = 5
    @Option(help: "Also write one JSON line per image here.") var out: String?
    @Argument(help: "Images or folders of images.") var images: [String] = []

    func validate() throws {
        if runDirectory != nil && checkpoint != nil {
            throw ValidationError("give --run DIR or --checkpoint DIR, not both")
        }
        if runDirectory == nil && checkpoint == nil && (model == nil || dataset == nil) {
            throw ValidationError("give --run DIR (or --checkpoint DIR), or --model M --dataset N for zero-shot CLIP")
        }
        if images.isEmpty { throw ValidationError("give at least one IMAGE (a file or a folder)") }
        if top < 1 { throw ValidationError("--top must be at least 1, got \(top)") }
        if let subsample, ClassSubset(rawValue: subsample) == nil {
            throw ValidationError("--subsample must be all, base or new, got '\(subsample)'")
        }
    }

    func run() throws {
        try reportingErrors {
            var load: RunLoad
            if runDirectory != nil || checkpoint != nil {
                load = RunLoad(
                    .saved(run: runDirectory, checkpoint: try checkpoint.map { try Checkpoints.read($0) }))
                load.tensors = .saved
            } else {
                var options = RunOptions()
                options.method = "zsclip"
                load = RunLoad(.options(options))
            }
            load.dataset = dataset
            load.override(\.data.root, dataRoot, flag: "--data-root")
            load.override(\.model.path, model, flag: "--model")
            load.override(\.model.vocab, vocab, flag: "--vocab")
            load.override(\.data.subsample, subsample, flag: "--subsample")
            let run = try RunLoader.load(load)
            let classNames = run.classNames
            let files = try ImageFile.files(images)
            // The evaluator's class logits (the text side encoded once, as `eval` does).
            let logits = Evaluator.classLogits(run.learner)
            let R = run.model.image.resolution
            var lines: [String] = []
            for start in stride(from: 0, to: files.count, by: 32) {
                let chunk = Array(files[start..<min(start + 32, files.count)])
                let pixels = Tensor(uninitialized: [chunk.count, 3, R, R])
                for (i, path) in chunk.enumerated() {
                    writeTestImage(try ImageFile.decode(path: path), resolution: R, into: pixels.data + i * 3 * R * R)
                }
                let scores = logits(pixels)
                for (i, path) in chunk.enumerated() {
                    let best = topProbabilities(
                        scores.data + i * scores.lastDim, count: scores.lastDim, k: min(top, scores.lastDim))
                    print(
                        "\(path): "
                            + best.map { String(format: "%@ %.1f%%", classNames[$0.0], $0.1 * 100) }.joined(
                                separator: ", "))
                    if out != nil {
                        let record: [String: Any] = [
                            "path": path, "prediction": best[0].0, "predictedClass": classNames[best[0].0],
                            "top": best.map {
                                ["label": $0.0, "class": classNames[$0.0], "probability": $0.1] as [String: Any]
                            },
                        ]
                        lines.append(
                            String(
                                decoding: try JSONSerialization.data(
                                    withJSONObject: record, options: [.sortedKeys, .withoutEscapingSlashes]),
                                as: UTF8.self))
                    }
                }
            }
            if let out { try writeDurably(Data((lines.joined(separator: "\n") + "\n").utf8), to: out) }
        }
    }
}
