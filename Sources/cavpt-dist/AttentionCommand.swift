// `cavpt-dist attention`: where the image encoder's class token looks (the CAVPT paper's Figs. 1
// and 4): the last layer's attention over the patches, zero-shot CLIP beside each trained run.
import ArgumentParser
import CLIP
import Data
import Figures
import Foundation
import PromptTuning
import Tensor
import Training

struct Attention: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Class-token attention maps of the last image layer (head mean, with that layer's prompts) for trained "
            + "runs and zero-shot CLIP, side by side.",
        discussion: """
            Columns: the original image, zero-shot CLIP (with --model and --dataset, or --classes), then \
            one per --run (or --method with --params). Rows: the images, centre-cropped as the model \
            sees them. Each map is normalised to its own range and overlaid on the image. The picture \
            is PNG or JPEG by --out's extension (a folder gets attention.png); --save-maps writes the \
            raw maps, [images, grid, grid] per column, as safetensors.
            """)

    @Option(name: .customLong("run"), help: "A trained run directory (repeatable).") var runs: [String] = []
    @Option(help: "CLIP weights: adds a zero-shot CLIP column (and overrides the runs' weights).") var model: String?
    @Option(help: "Dataset whose classes and template the zero-shot column uses.") var dataset: String?
    @Option(name: .customLong("data-root"), help: "Folder holding the datasets.") var dataRoot: String?
    @Option(help: "Class names, one per line, instead of --dataset (with --model).") var classes: String?
    @Option(help: "Template with {} (with --classes).") var template: String = "a photo of a {}."
    @Option(help: "A method preset to show with --params (tests, or tensors from elsewhere).") var method: String?
    @Option(help: "Trained tensors (safetensors, canonical names) for --method.") var params: String?
    @Option(name: .customLong("set"), help: "Override a config key of --method (repeatable).") var sets: [String] = []
    @Option(help: "Tokenizer vocabulary.") var vocab: String?
    @Option(parsing: .upToNextOption, help: "Images (JPEG or PNG).") var images: [String] = []
    @Option(help: "safetensors with normalised F32 `pixels` [n,3,R,R] instead of --images.") var pixels: String?
    @Option(help: "The picture: FILE.png, FILE.jpg, or a folder (attention.png in it).") var out: String?
    @Option(
        name: .customLong("save-maps"), help: "Write the raw maps as safetensors (`attention`, then `attention.1`, …).")
    var saveMaps: String?
    @Option(help: "Pixel size of each cell of the picture.") var cell: Int = 224

    func validate() throws {
        if runs.isEmpty && model == nil {
            throw ValidationError("give --run DIR (repeatable) and/or --model M for zero-shot CLIP")
        }
        if images.isEmpty == (pixels == nil) { throw ValidationError("give either --images IMG… or --pixels FILE") }
        if out == nil && saveMaps == nil {
            throw ValidationError("give --out FILE.png|FILE.jpg|DIR and/or --save-maps FILE")
        }
        if (method == nil) != (params == nil) { throw ValidationError("--method and --params go together") }
        if (method != nil || model != nil) && runs.isEmpty && dataset == nil && classes == nil {
            throw ValidationError("with --model, give --dataset N (or --classes FILE) for the class names")
        }
        if !(32...1024).contains(cell) { throw ValidationError("--cell must be 32…1024, got \(cell)") }
    }

    struct Column { var label: String; var learner: PromptLearner }

    func run() throws {
        try reportingErrors {
            var columns: [Column] = []
            // Zero-shot CLIP (and --method/--params) on --model with the given classes.
            if let model {
                var options = RunOptions()
                options.method = "zsclip"
                options.model = model; options.vocab = vocab; options.dataset = dataset; options.dataRoot = dataRoot
                var load = RunLoad(.options(options))
                if let classes { load.classes = .given(names: try readClassNames(classes), template: template) }
                let zeroShot = try RunLoader.load(load)
                columns.append(Column(label: "zero-shot CLIP", learner: zeroShot.learner))
                if let method, let params {
                    options.method = method
                    options.sets = sets
                    var withMethod = RunLoad(.options(options))
                    withMethod.classes = .given(names: zeroShot.classNames, template: zeroShot.template)
                    withMethod.model = (zeroShot.model, zeroShot.tokenizer)
                    withMethod.tensors = .file(params)
                    columns.append(Column(label: method, learner: try RunLoader.load(withMethod).learner))
                }
            }
            for run in runs {
                var load = RunLoad(.saved(run: run, checkpoint: nil))
                load.override(\.model.path, model, flag: "--model")
                load.override(\.data.root, dataRoot, flag: "--data-root")
                load.override(\.model.vocab, vocab, flag: "--vocab")
                load.tensors = .saved
                let loaded = try RunLoader.load(load)
                columns.append(Column(label: loaded.settings.methodName, learner: loaded.learner))
            }
            let R = columns[0].learner.model.image.resolution
            guard columns.allSatisfy({ $0.learner.model.image.resolution == R }) else {
                throw TrainingError.input("the columns' models have different input resolutions")
            }
            let input = try AttentionMaps.input(images: images, pixels: pixels, resolution: R)
            let labels = columns.map(\.label)
            let maps = AttentionMaps.maps(of: columns.map(\.learner), pixels: input.pixels, count: input.count)
            if let saveMaps {
                try AttentionMaps.writeMaps(maps, labels: labels, to: saveMaps)
                print("attention maps: \(saveMaps) (\(columns.count) × \(maps[0].shape))")
            }
            if let out {
                let path = try AttentionMaps.writePicture(
                    images: input.display, maps: maps, labels: labels, cell: cell, to: out)
                print(
                    "attention: \(path) (\(input.count) image(s) × \(columns.count) column(s): "
                        + "\(labels.joined(separator: ", ")))")
            }
        }
    }
}
