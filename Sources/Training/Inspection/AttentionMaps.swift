// Where the image encoder's class token looks (the CAVPT paper's Figs. 1 and 4): each learner's
// last-layer class-token attention over the patches (head mean, with that layer's prompts), and the
// picture that overlays the maps on the images, one column per learner.
import CLIP
import Data
import Figures
import Files
import Foundation
import PromptTuning
import Tensor

public enum AttentionMaps {
    /// Each learner's maps [n, grid, grid] of `pixels` [n, 3, R, R], 32 images at a time.
    public static func maps(of learners: [PromptLearner], pixels: Tensor, count: Int) -> [Tensor] {
        learners.map { learner in
            var chunks: [Tensor] = []
            for start in stride(from: 0, to: count, by: 32) {
                chunks.append(learner.classTokenAttention(pixels: pixels.slice(start..<min(start + 32, count))))
            }
            return concatenate(chunks)
        }
    }

    /// The raw maps as safetensors: `attention`, then `attention.1`, … (one per column).
    public static func writeMaps(_ maps: [Tensor], labels: [String], to path: String) throws {
        let named = maps.enumerated().map { ($0.offset == 0 ? "attention" : "attention.\($0.offset)", $0.element) }
        try SafeTensorsFile.write(named, metadata: ["columns": labels.joined(separator: "|")], to: path)
    }

    /// The picture, PNG or JPEG by `out`'s extension (a folder gets attention.png); returns its path.
    public static func writePicture(
        images: [[UInt8]], maps: [Tensor], labels: [String], cell: Int, to out: String
    ) throws -> String {
        let picture = try AttentionFigure.draw(images: images, maps: maps, labels: labels, cell: cell)
        let ext = (out as NSString).pathExtension.lowercased()
        let path =
            ["png", "jpg", "jpeg"].contains(ext) ? out : (out as NSString).appendingPathComponent("attention.png")
        if path != out { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        let data: Data =
            path.lowercased().hasSuffix(".png")
            ? try PNG.encode(picture)
            : Data(
                try JPEG.encode(
                    pixels: picture.pixels, width: picture.width, height: picture.height, components: 3, quality: 92))
        try writeDurably(data, to: path)
        return path
    }

    /// Normalised pixels for the model, and the RGB crops to show.
    public static func input(
        images: [String], pixels: String?, resolution R: Int
    ) throws -> (pixels: Tensor, count: Int, display: [[UInt8]]) {
        if let pixels {
            let all = try readPixels(pixels, resolution: R)
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
        let files = try ImageFile.files(images)
        let batch = Tensor(uninitialized: [files.count, 3, R, R])
        var display: [[UInt8]] = []
        for (i, path) in files.enumerated() {
            let image = try ImageFile.decode(path: path)
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
