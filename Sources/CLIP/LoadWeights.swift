// Strict loading of CLIP weights from safetensors in either naming scheme: find the file, infer the
// architecture, check every name and shape at once, and hand back canonical F32 tensors.
import Files
import Foundation
import Tensor

/// A tensor name with its shape, as reported in errors.
public struct NamedShape: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    public let shape: [Int]
    public var description: String { "\(name) \(shape)" }
}

/// A tensor whose shape is not what the architecture needs.
public struct ShapeMismatch: Sendable, Equatable, CustomStringConvertible {
    public let name: String
    public let expected: [Int]
    public let found: [Int]
    public var description: String { "\(name): expected \(expected), found \(found)" }
}

public enum WeightError: Error, CustomStringConvertible {
    case notFound(path: String)
    case noWeightsFile(folder: String)
    case ambiguousFolder(folder: String, candidates: [String])
    case cannotInfer(file: String, reason: String)
    case mismatch(
        file: String, naming: WeightNaming, missing: [NamedShape], unexpected: [NamedShape],
        wrongShape: [ShapeMismatch])
    /// A NaN or infinity in a frozen tensor would only surface as a diverged first step.
    case nonFinite(file: String, name: String, index: Int, value: Float)

    public var description: String {
        switch self {
        case let .notFound(path):
            return
                "\(path): no such file or folder (expected a .safetensors file or a folder holding model.safetensors)"
        case let .noWeightsFile(folder):
            return
                "\(folder): no model.safetensors, open_clip_model.safetensors or other *.safetensors file in this "
                + "folder"
        case let .ambiguousFolder(folder, candidates):
            return "\(folder): several safetensors files (\(candidates.joined(separator: ", "))); pass the one to use"
        case let .cannotInfer(file, reason):
            return "\(file): cannot infer the CLIP architecture: \(reason)"
        case let .mismatch(file, naming, missing, unexpected, wrongShape):
            var parts: [String] = []
            if !missing.isEmpty {
                parts.append("\(missing.count) missing: " + missing.map(\.description).joined(separator: ", "))
            }
            if !unexpected.isEmpty {
                parts.append("\(unexpected.count) unexpected: " + unexpected.map(\.description).joined(separator: ", "))
            }
            if !wrongShape.isEmpty {
                parts.append(
                    "\(wrongShape.count) with wrong shape: " + wrongShape.map(\.description).joined(separator: ", "))
            }
            return "\(file): weights (\(naming.rawValue) names) do not fit the CLIP architecture their shapes imply: "
                + parts.joined(separator: "; ")
        case let .nonFinite(file, name, index, value):
            return "\(file): tensor \(name) holds \(value) at element \(index); the weights file is damaged"
        }
    }
}

/// The safetensors file a weights path names: the file itself, or in a folder `model.safetensors`
/// (Hugging Face), `open_clip_model.safetensors` (open_clip hub), or its only `*.safetensors`.
public func resolveWeightsFile(_ path: String) throws -> String {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw WeightError.notFound(path: path)
    }
    guard isDirectory.boolValue else { return path }
    let folder = URL(fileURLWithPath: path)
    for name in ["model.safetensors", "open_clip_model.safetensors"] {
        let candidate = folder.appendingPathComponent(name).path
        if FileManager.default.fileExists(atPath: candidate) { return candidate }
    }
    let all = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
        .filter { $0.hasSuffix(".safetensors") }.sorted()
    guard !all.isEmpty else { throw WeightError.noWeightsFile(folder: path) }
    guard all.count == 1 else { throw WeightError.ambiguousFolder(folder: path, candidates: all) }
    return folder.appendingPathComponent(all[0]).path
}

/// Loads a CLIP from a .safetensors file or a folder holding one (see `resolveWeightsFile`).
/// Returns the inferred architecture and every parameter under its canonical (OpenAI) name as F32.
public func loadCLIPWeights(path: String) throws -> (config: CLIPConfig, tensors: [String: Tensor]) {
    let file = try SafeTensorsFile(path: try resolveWeightsFile(path))
    return try loadCLIPWeights(from: file)
}

public func loadCLIPWeights(from file: SafeTensorsFile) throws -> (config: CLIPConfig, tensors: [String: Tensor]) {
    let sourceNames = file.names.filter { !WeightNaming.isIgnoredBuffer($0) }
    let naming = WeightNaming.detect(sourceNames)

    // Shapes under canonical names, enough to read the architecture off.
    var canonicalShapes: [String: [Int]] = [:]
    for source in sourceNames {
        let (name, transform) = naming.canonical(source)
        guard canonicalShapes[name] == nil, let shape = file.shape(source) else { continue }
        canonicalShapes[name] = canonicalShape(ofSource: shape, transform)
    }
    let config = try CLIPConfig.infer(from: canonicalShapes, file: file.path)

    // Every source tensor the architecture needs, with the shape it must have in the file.
    struct Need { let canonical: String; let source: String; let transform: WeightTransform; let shape: [Int] }
    var needs: [Need] = []
    var missing: [NamedShape] = []
    for (name, shape) in config.expectedShapes {
        let sources = naming.sources(of: name)
        if sources.isEmpty { missing.append(NamedShape(name: name, shape: shape)) }
        for (source, transform) in sources {
            needs.append(
                Need(
                    canonical: name, source: source, transform: transform,
                    shape: sourceShape(ofCanonical: shape, transform)))
        }
    }
    var wrongShape: [ShapeMismatch] = []
    for need in needs {
        guard let found = file.shape(need.source) else {
            missing.append(NamedShape(name: need.source, shape: need.shape))
            continue
        }
        // A scalar saved as [1] (some exporters do this for logit_scale) is still a scalar.
        let scalarAsVector = need.shape.isEmpty && found == [1]
        if found != need.shape && !scalarAsVector {
            wrongShape.append(ShapeMismatch(name: need.source, expected: need.shape, found: found))
        }
    }
    let needed = Set(needs.map(\.source))
    let unexpected = sourceNames.filter { !needed.contains($0) }
        .map { NamedShape(name: $0, shape: file.shape($0) ?? []) }
    guard missing.isEmpty, unexpected.isEmpty, wrongShape.isEmpty else {
        throw WeightError.mismatch(
            file: file.path, naming: naming, missing: missing, unexpected: unexpected,
            wrongShape: wrongShape)
    }

    // Assemble canonical tensors: copy, transpose, or stack the parts.
    var tensors: [String: Tensor] = [:]
    let expected = Dictionary(config.expectedShapes.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
    for need in needs {
        let stored = try file.tensor(need.source)
        if let index = firstNonFiniteElement(stored) {
            throw WeightError.nonFinite(file: file.path, name: need.source, index: index, value: stored.data[index])
        }
        let shape = expected[need.canonical]!
        switch need.transform {
        case .none:
            tensors[need.canonical] = stored.shape == shape ? stored : stored.reshaped(shape)
        case .transposed:
            tensors[need.canonical] = transposed2D(stored)
        case let .part(index, of: _):
            let whole = tensors[need.canonical] ?? Tensor(uninitialized: shape)
            whole.data.advanced(by: index * stored.count).update(from: stored.data, count: stored.count)
            tensors[need.canonical] = whole
        }
    }
    return (config, tensors)
}

/// The index of the first NaN or infinity, if any (one pass at load).
func firstNonFiniteElement(_ t: Tensor) -> Int? {
    let x = t.data
    for i in 0..<t.count where !x[i].isFinite { return i }
    return nil
}

/// The canonical shape a source tensor of `shape` stands for.
func canonicalShape(ofSource shape: [Int], _ transform: WeightTransform) -> [Int] {
    switch transform {
    case .none: return shape
    case .transposed: return shape.count == 2 ? shape.reversed() : shape
    case let .part(_, of: n):
        guard let rows = shape.first else { return shape }
        return [rows * n] + shape.dropFirst()
    }
}

/// The shape the source tensor must have for a canonical tensor of `shape`.
func sourceShape(ofCanonical shape: [Int], _ transform: WeightTransform) -> [Int] {
    switch transform {
    case .none: return shape
    case .transposed: return shape.reversed()
    case let .part(_, of: n):
        guard let rows = shape.first else { return shape }
        return [rows / n] + shape.dropFirst()
    }
}

/// [r, c] → [c, r] copy.
func transposed2D(_ x: Tensor) -> Tensor {
    let rows = x.shape[0], columns = x.shape[1]
    let y = Tensor(uninitialized: [columns, rows])
    let src = x.data, dst = y.data
    for r in 0..<rows {
        for c in 0..<columns { dst[c * rows + r] = src[r * columns + c] }
    }
    return y
}
