// Shared helpers for the data tests: fixture files, temporary folders, synthetic JPEG datasets.
import Foundation
import Testing

@testable import Data

/// The package root, found from this file's path (Tests/DataTests/Support.swift).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

let fixtureFolder = packageRoot + "/Tests/Fixtures/images"

/// Tests/Fixtures/images/manifest.json, written by make_image_fixtures.py.
struct Manifest: Decodable {
    struct TestOutput: Decodable { let resolution: Int; let file: String }
    struct TrainOutput: Decodable { let box: [Int]; let flip: Bool; let resolution: Int; let file: String }
    struct Image: Decodable {
        let file: String
        let mode: String
        let width: Int
        let height: Int
        let decoded: String?
        let test: [TestOutput]
        let train: [TrainOutput]
    }
    struct Draw: Decodable {
        let kind: String
        let lo: Double?
        let hi: Double?
        let upper: Int?
        let value: Double
    }
    struct CropCase: Decodable {
        let width: Int
        let height: Int
        let seed: Int
        let draws: [Draw]
        let box: [Int]
        let fallback: Bool
    }
    struct CropStats: Decodable {
        let width: Int
        let height: Int
        let samples: Int
        let meanAreaFraction: Double
        let meanLogAspect: Double
        let fallbackRate: Double
        let minAspect: Double
        let maxAspect: Double
    }
    struct ResizeCase: Decodable {
        let file: String
        let box: [Int]
        let width: Int
        let height: Int
        let expected: String
    }
    let images: [Image]
    let resizeCases: [ResizeCase]
    let rrcCases: [CropCase]
    let rrcStats: [CropStats]

    static func load() throws -> Manifest {
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: fixtureFolder + "/manifest.json"))
        return try JSONDecoder().decode(Manifest.self, from: bytes)
    }
}

func fixtureBytes(_ name: String) throws -> [UInt8] {
    [UInt8](try Foundation.Data(contentsOf: URL(fileURLWithPath: fixtureFolder + "/" + name)))
}

/// Largest per-byte difference, and how many bytes differ at all.
func byteDifference(_ a: [UInt8], _ b: [UInt8]) -> (max: Int, count: Int) {
    precondition(a.count == b.count, "comparing \(a.count) bytes with \(b.count)")
    var worst = 0, differing = 0
    for i in a.indices {
        let d = abs(Int(a[i]) - Int(b[i]))
        worst = max(worst, d)
        if d != 0 { differing += 1 }
    }
    return (worst, differing)
}

/// A fresh temporary folder, removed by the caller with `removeTemporaryFolder`.
func makeTemporaryFolder(_ label: String = "data") throws -> String {
    let path = NSTemporaryDirectory() + "cavpt-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeTemporaryFolder(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

func writeFile(_ path: String, _ text: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent,
        withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

func writeFile(_ path: String, bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent,
        withIntermediateDirectories: true)
    try Foundation.Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// A smooth colour pattern with some texture, distinct per `seed`, as an RGB JPEG (or grayscale).
func syntheticJPEG(width: Int, height: Int, seed: Int, gray: Bool = false) throws -> [UInt8] {
    let components = gray ? 1 : 3
    var pixels = [UInt8](repeating: 0, count: width * height * components)
    for y in 0..<height {
        for x in 0..<width {
            for c in 0..<components {
                let wave = sin(Double(x * (c + 1) + seed * 7) / 9) * cos(Double(y * (seed % 5 + 1)) / 13)
                let ramp = Double((x + 2 * y + 31 * seed + 50 * c) % 256)
                pixels[(y * width + x) * components + c] = UInt8(max(0, min(255, 0.6 * ramp + 50 * wave + 40)))
            }
        }
    }
    return try JPEG.encode(pixels: pixels, width: width, height: height, components: components, quality: 90)
}

/// The error a throwing expression raised, for checking its message.
func thrownError<T>(_ body: () throws -> T) -> Error? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
