// A small synthetic dataset in CoOp layout (split JSON + JPEG folders + dataset YAML), for the demo
// and the integration tests: it goes through exactly the code path users' datasets take.
import Foundation
import Tensor

public enum SyntheticDataset {
    /// Class names and the look of each class: a base colour and a stripe orientation.
    public static let classes: [(name: String, color: (Double, Double, Double), stripes: Int)] = [
        ("red_disc", (0.85, 0.15, 0.15), 0), ("green_field", (0.2, 0.75, 0.25), 1),
        ("blue_sky", (0.2, 0.35, 0.9), 2), ("yellow_sand", (0.9, 0.85, 0.3), 3),
        ("purple_wave", (0.6, 0.2, 0.7), 1), ("gray_stone", (0.5, 0.5, 0.5), 2),
        ("orange_fire", (0.95, 0.5, 0.1), 3), ("teal_water", (0.1, 0.6, 0.6), 0),
    ]

    /// Writes `root/synthetic/` with `perClass` train, `perClass / 2` val and `testPerClass` test images
    /// per class (size × size JPEGs) and `root/synthetic.yaml`. Returns the dataset YAML path.
    @discardableResult
    public static func write(
        root: String, classCount: Int = 6, perClass: Int = 16, testPerClass: Int = 10,
        size: Int = 40, seed: UInt64 = 1
    ) throws -> String {
        let folder = root + "/synthetic"
        let fm = FileManager.default
        var splits: [String: [[Any]]] = ["train": [], "val": [], "test": []]
        var rng = SplitMix64(seed: seed)
        for (label, spec) in classes.prefix(max(1, min(classCount, classes.count))).enumerated() {
            let dir = folder + "/images/" + spec.name
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let counts = [("train", perClass), ("val", max(1, perClass / 2)), ("test", testPerClass)]
            var index = 0
            for (split, count) in counts {
                for _ in 0..<count {
                    let pixels = render(spec.color, stripes: spec.stripes, size: size, rng: &rng)
                    let name = String(format: "%@_%04d.jpg", spec.name, index)
                    let bytes = try JPEG.encode(pixels: pixels, width: size, height: size, components: 3, quality: 90)
                    guard fm.createFile(atPath: dir + "/" + name, contents: Data(bytes)) else {
                        throw DataError.invalidArgument("cannot write \(dir)/\(name)")
                    }
                    splits[split]!.append([spec.name + "/" + name, label, spec.name])
                    index += 1
                }
            }
        }
        let json = try JSONSerialization.data(withJSONObject: splits, options: [.sortedKeys])
        try json.write(to: URL(fileURLWithPath: folder + "/split_synthetic.json"))
        let yaml = """
            # A synthetic dataset written by `cavpt-dist demo` (CoOp layout: split JSON + image folders).
            dataset:
              name: synthetic
              layout: coop-split
              folder: synthetic
              images: images
              splitFile: split_synthetic.json
              template: "a photo of a {}."
            cavpt:
              topK: 3

            """
        let yamlPath = root + "/synthetic.yaml"
        try yaml.write(toFile: yamlPath, atomically: true, encoding: .utf8)
        return yamlPath
    }

    /// Colour plus noise plus stripes of the class's orientation, shifted at random.
    static func render(_ color: (Double, Double, Double), stripes: Int, size: Int, rng: inout SplitMix64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size * size * 3)
        let phase = rng.uniform() * 6.28, period = 5 + rng.uniform() * 4
        let brightness = 0.8 + 0.4 * rng.uniform()
        for y in 0..<size {
            for x in 0..<size {
                let t: Double
                switch stripes {
                case 0: t = Double(x)
                case 1: t = Double(y)
                case 2: t = Double(x + y) / 1.4
                default: t = Double(x - y) / 1.4
                }
                let stripe = 0.75 + 0.25 * sin(t / period * 6.28 + phase)
                let channels = [color.0, color.1, color.2]
                for c in 0..<3 {
                    let noise = (rng.uniform() - 0.5) * 0.15
                    let v = (channels[c] * stripe * brightness + noise) * 255
                    out[(y * size + x) * 3 + c] = UInt8(max(0, min(255, v.rounded())))
                }
            }
        }
        return out
    }
}
