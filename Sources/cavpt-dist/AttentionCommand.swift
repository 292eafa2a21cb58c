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
                let config = try RunSetup.config(options)
                let (names, prompt) = try classNamesAndTemplate(config)
                let (clip, tokenizer) = try RunSetup.model(config)
                columns.append(
                    Column(
                        label: "zero-shot CLIP",
                        learner: try RunSetup.learner(
                            config, model: clip, tokenizer: tokenizer, classNames: names, template: prompt)))
                if let method, let params {
                    var withMethod = options
                    withMethod.method = method
                    withMethod.sets = sets
                    let c = try RunSetup.config(withMethod)
                    let learner = try RunSetup.learner(
                        c, model: clip, tokenizer: tokenizer, classNames: names, template: prompt)
                    try learner.load(try readTensors(params), requireAll: true, forEvaluation: true)
                    columns.append(Column(label: method, learner: learner))
                }
            }
            for run in runs {
                let (recorded, definition) = try recordedRunConfig(run: run, checkpoint: nil, override: nil)
                var c = recorded
                if let model { try c.set("model.path", raw: model, source: "--model") }
                if let dataRoot { try c.set("data.root", raw: dataRoot, source: "--data-root") }
                if let vocab { try c.set("model.vocab", raw: vocab, source: "--vocab") }
                let data = try RunSetup.data(c, definition: definition)
                let (clip, tokenizer) = try RunSetup.model(c)
                let learner = try RunSetup.learner(
                    c, model: clip, tokenizer: tokenizer, classNames: data.classNames, template: data.template)
                _ = try loadTrainedTensors(
                    into: learner, run: run, checkpoint: nil, epochs: c.int("train.epochs"), warn: true)
                columns.append(Column(label: c.string("method.name"), learner: learner))
            }
            let R = columns[0].learner.model.image.resolution
            guard columns.allSatisfy({ $0.learner.model.image.resolution == R }) else {
                throw TrainingError.input("the columns' models have different input resolutions")
            }
            let input = try inputPixels(resolution: R)
            var maps: [Tensor] = []
            for column in columns {
                var chunks: [Tensor] = []
                for start in stride(from: 0, to: input.count, by: 32) {
                    chunks.append(
                        column.learner.classTokenAttention(
                            pixels: input.pixels.slice(start..<min(start + 32, input.count))))
                }
                maps.append(concatenate(chunks))
            }
            if let saveMaps {
                let named = maps.enumerated().map {
                    ($0.offset == 0 ? "attention" : "attention.\($0.offset)", $0.element)
                }
                try SafeTensorsFile.write(
                    named, metadata: ["columns": columns.map(\.label).joined(separator: "|")], to: saveMaps)
                print("attention maps: \(saveMaps) (\(columns.count) × \(maps[0].shape))")
            }
            if let out {
                let picture = try AttentionFigure.draw(
                    images: input.display, maps: maps, labels: columns.map(\.label), cell: cell)
                let ext = (out as NSString).pathExtension.lowercased()
                let path =
                    ["png", "jpg", "jpeg"].contains(ext)
                    ? out : (out as NSString).appendingPathComponent("attention.png")
                if path != out {
                    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                }
                let data: Data =
                    path.lowercased().hasSuffix(".png")
                    ? try PNG.encode(picture)
                    : Data(
                        try JPEG.encode(
                            pixels: picture.pixels, width: picture.width, height: picture.height, components: 3,
                            quality: 92))
                try writeDurably(data, to: path)
                print(
                    "attention: \(path) (\(input.count) image(s) × \(columns.count) column(s): "
                        + "\(columns.map(\.label).joined(separator: ", ")))"
                )
            }
        }
    }

    func classNamesAndTemplate(_ config: Config) throws -> ([String], String) {
        if let classes { return (try readClassNames(classes), template) }
        let data = try RunSetup.data(config)
        return (data.classNames, data.template)
    }

    /// Normalised pixels for the model, and the RGB crops to show.
    func inputPixels(resolution R: Int) throws -> (pixels: Tensor, count: Int, display: [[UInt8]]) {
        if let pixels {
            let file = try SafeTensorsFile(path: pixels)
            guard file.contains("pixels") else { throw TrainingError.input("\(pixels): no tensor named \"pixels\"") }
            let all = try file.tensor("pixels")
            guard all.rank == 4, all.shape[1] == 3, all.shape[2] == R, all.shape[3] == R else {
                throw TrainingError.input("\(pixels): \"pixels\" has shape \(all.shape), expected [n, 3, \(R), \(R)]")
            }
            let mean: [Float] = [0.48145466, 0.4578275, 0.40821073],
                std: [Float] = [0.26862954, 0.26130258, 0.27577711]
            let display = (0..<all.shape[0]).map { i -> [UInt8] in
                var rgb = [UInt8](repeating: 0, count: R * R * 3)
                for y in 0..<R {
                    for x in 0..<R {
                        for c in 0..<3 {
                            let v = all.data[((i * 3 + c) * R + y) * R + x] * std[c] + mean[c]
                            rgb[(y * R + x) * 3 + c] = UInt8(max(0, min(255, (v * 255).rounded())))
                        }
                    }
                }
                return rgb
            }
            return (all, all.shape[0], display)
        }
        let files = try imageFiles(images)
        let batch = Tensor(uninitialized: [files.count, 3, R, R])
        var display: [[UInt8]] = []
        for (i, path) in files.enumerated() {
            let image = try decodeImage(path: path)
            writeTestImage(image, resolution: R, into: batch.data + i * 3 * R * R)
            display.append(ImageTransforms.testPixels(image, resolution: R))
        }
        return (batch, files.count, display)
    }
}

/// [n_i, …] tensors stacked along the first axis.
func concatenate(_ parts: [Tensor]) -> Tensor {
    let rest = Array(parts[0].shape.dropFirst())
    let out = Tensor(uninitialized: [parts.reduce(0) { $0 + $1.shape[0] }] + rest)
    var offset = 0
    for p in parts { (out.data + offset).update(from: p.data, count: p.count); offset += p.count }
    return out
}

/// The figure: rows of images, the original first, then each column's map overlaid.
enum AttentionFigure {
    static func draw(images: [[UInt8]], maps: [Tensor], labels: [String], cell: Int) throws -> Canvas {
        let rows = images.count, columns = maps.count + 1
        let header = Font.height + 10, gap = 6
        var canvas = Canvas(width: columns * (cell + gap) + gap, height: header + rows * (cell + gap) + gap)
        let titles = ["image"] + labels
        for (j, title) in titles.enumerated() {
            let x = gap + j * (cell + gap) + cell / 2 - Font.width(title) / 2
            canvas.text(title, x: x, y: 4)
        }
        let source = Int((Double(images[0].count / 3)).squareRoot())
        for (i, rgb) in images.enumerated() {
            let base = resize(rgb, from: source, to: cell)
            let y = header + gap + i * (cell + gap)
            canvas.draw(image: base, width: cell, height: cell, x: gap, y: y)
            for (j, map) in maps.enumerated() {
                let grid = map.shape[1]
                let values = Array(UnsafeBufferPointer(start: map.data + i * grid * grid, count: grid * grid))
                let (lo, hi) = (values.min() ?? 0, values.max() ?? 1)
                var overlay = base
                for py in 0..<cell {
                    for px in 0..<cell {
                        // Bilinear upsampling of the grid (cell centres at (k + ½)·cell/grid).
                        let gx = (Double(px) + 0.5) * Double(grid) / Double(cell) - 0.5
                        let gy = (Double(py) + 0.5) * Double(grid) / Double(cell) - 0.5
                        let (x0, y0) = (
                            max(0, min(grid - 1, Int(gx.rounded(.down)))), max(0, min(grid - 1, Int(gy.rounded(.down))))
                        )
                        let (x1, y1) = (min(grid - 1, x0 + 1), min(grid - 1, y0 + 1))
                        let (fx, fy) = (max(0, min(1, gx - Double(x0))), max(0, min(1, gy - Double(y0))))
                        let v =
                            Double(values[y0 * grid + x0]) * (1 - fx) * (1 - fy) + Double(values[y0 * grid + x1]) * fx
                            * (1 - fy)
                            + Double(values[y1 * grid + x0]) * (1 - fx) * fy + Double(values[y1 * grid + x1]) * fx * fy
                        let color = heatColor(hi > lo ? (v - Double(lo)) / Double(hi - lo) : 0.5)
                        let k = (py * cell + px) * 3
                        overlay[k] = UInt8((Double(overlay[k]) * 0.5 + Double(color.r) * 0.5).rounded())
                        overlay[k + 1] = UInt8((Double(overlay[k + 1]) * 0.5 + Double(color.g) * 0.5).rounded())
                        overlay[k + 2] = UInt8((Double(overlay[k + 2]) * 0.5 + Double(color.b) * 0.5).rounded())
                    }
                }
                canvas.draw(image: overlay, width: cell, height: cell, x: gap + (j + 1) * (cell + gap), y: y)
            }
        }
        return canvas
    }

    /// Nearest-neighbour resize of a square RGB image.
    static func resize(_ rgb: [UInt8], from n: Int, to m: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: m * m * 3)
        for y in 0..<m {
            for x in 0..<m {
                let (sx, sy) = (x * n / m, y * n / m)
                for c in 0..<3 { out[(y * m + x) * 3 + c] = rgb[(sy * n + sx) * 3 + c] }
            }
        }
        return out
    }
}
