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
            let trained = runDirectory != nil || checkpoint != nil
            let savedCheckpoint: Checkpoint? = try checkpoint.map { try Checkpoints.read($0) }
            var c: Config
            var definition: DatasetSpec?
            if trained {
                (c, definition) = try recordedRunConfig(run: runDirectory, checkpoint: savedCheckpoint, override: nil)
            } else {
                var options = RunOptions()
                options.method = "zsclip"
                c = try RunSetup.config(options)
            }
            if let dataset { definition = try switchDataset(&c, to: dataset, subsample: "all") }
            if let dataRoot { try c.set("data.root", raw: dataRoot, source: "--data-root") }
            if let model { try c.set("model.path", raw: model, source: "--model") }
            if let vocab { try c.set("model.vocab", raw: vocab, source: "--vocab") }
            if let subsample { try c.set("data.subsample", raw: subsample, source: "--subsample") }
            let data = try RunSetup.data(c, definition: definition)
            let (clip, tokenizer) = try RunSetup.model(c)
            let learner = try RunSetup.learner(
                c, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
            _ = try loadTrainedTensors(
                into: learner, run: runDirectory, checkpoint: savedCheckpoint, epochs: c.int("train.epochs"), warn: true
            )
            let files = try imageFiles(images)
            let textFeatures = learner.evaluationTextFeatures()
            let R = clip.image.resolution
            var lines: [String] = []
            for start in stride(from: 0, to: files.count, by: 32) {
                let chunk = Array(files[start..<min(start + 32, files.count)])
                let pixels = Tensor(uninitialized: [chunk.count, 3, R, R])
                for (i, path) in chunk.enumerated() {
                    writeTestImage(try decodeImage(path: path), resolution: R, into: pixels.data + i * 3 * R * R)
                }
                let logits = learner.predict(pixels: pixels, textFeatures: textFeatures)
                for (i, path) in chunk.enumerated() {
                    let best = topClasses(
                        logits.data + i * logits.lastDim, count: logits.lastDim, k: min(top, logits.lastDim))
                    print(
                        "\(path): "
                            + best.map { String(format: "%@ %.1f%%", data.classNames[$0.0], $0.1 * 100) }.joined(
                                separator: ", "))
                    if out != nil {
                        let record: [String: Any] = [
                            "path": path, "prediction": best[0].0, "predictedClass": data.classNames[best[0].0],
                            "top": best.map {
                                ["label": $0.0, "class": data.classNames[$0.0], "probability": $0.1] as [String: Any]
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

/// Files as given and the images of folders (sorted by name), in argument order.
func imageFiles(_ arguments: [String]) throws -> [String] {
    var files: [String] = []
    for argument in arguments {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: argument, isDirectory: &isFolder) else {
            throw TrainingError.input("\(argument): no such file or folder")
        }
        if isFolder.boolValue {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []
            let found = entries.filter { name in
                let lower = name.lowercased()
                return !name.hasPrefix(".") && ImageFile.hasImageExtension(lower)
            }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            guard !found.isEmpty else {
                throw TrainingError.input("\(argument): no .jpg, .jpeg or .png images in the folder")
            }
            files += found.map { (argument as NSString).appendingPathComponent($0) }
        } else {
            files.append(argument)
        }
    }
    return files
}

/// An image file decoded to RGB (JPEG through libjpeg).
func decodeImage(path: String) throws -> RGBImage { try ImageFile.decode(path: path) }
