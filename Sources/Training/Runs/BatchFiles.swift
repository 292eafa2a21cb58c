// The files a batch is given in to `gradients`, `features` and `attention`: class names one per line,
// normalised `pixels` [n, 3, R, R] and integer `labels` [n] in safetensors.
import CLIP
import Data
import Files
import Foundation
import Tensor

public func readClassNames(_ path: String) throws -> [String] {
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

/// `pixels` [n, 3, R, R] of a safetensors file, at the model's resolution R.
public func readPixels(_ path: String, resolution R: Int) throws -> Tensor {
    let file = try SafeTensorsFile(path: path)
    guard file.contains("pixels") else { throw TrainingError.input("\(path): no tensor named \"pixels\"") }
    let pixels = try file.tensor("pixels")
    guard pixels.rank == 4, pixels.shape[1] == 3, pixels.shape[2] == R, pixels.shape[3] == R else {
        throw TrainingError.input(
            "\(path): \"pixels\" has shape \(pixels.shape), expected [n, 3, \(R), \(R)] for this model")
    }
    return pixels
}

/// `pixels` [n,3,R,R] at the model's resolution and `labels` [n] in 0..<classes.
public func readBatch(
    pixels: String, labels: String, model: CLIPModel, classes: Int
) throws -> (pixels: Tensor, labels: [Int]) {
    let p = try readPixels(pixels, resolution: model.image.resolution)
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
