// PNG decoding through libpng equals Pillow's convert("RGB") byte for byte in every colour layout
// (fixtures from Tests/Fixtures/make_png_fixtures.py); broken files are one clean error; image
// folders pick PNGs up beside JPEGs.
import Foundation
import Testing

@testable import Data

@Suite struct PNGTests {
    let folder = packageRoot + "/Tests/Fixtures/images/png"

    @Test(arguments: ["rgb", "rgba", "gray", "gray_alpha", "palette", "bilevel", "rgb16", "interlaced"])
    func decodesAsPillowConverts(_ name: String) throws {
        let manifest =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/manifest.json")))
            as! [String: [String: Any]]
        let entry = try #require(manifest[name])
        let image = try ImageFile.decode(path: folder + "/\(name).png")
        #expect(image.width == entry["width"] as? Int && image.height == entry["height"] as? Int)
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/\(name).rgb")))
        #expect(image.pixels == expected, "\(name) (\(entry["mode"] ?? "?"))")
    }

    @Test func brokenPNGsAreOneLineErrors() throws {
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/rgb.png")))
        var flipped = good
        flipped[good.count / 2] ^= 0xff // inside IDAT: CRC or inflate fails
        for (bytes, needle) in [
            (Array(good.prefix(40)), "not a decodable PNG"), (flipped, "not a decodable PNG"),
            (Array(good.prefix(8)), "not a decodable PNG"),
        ] {
            do {
                _ = try ImageFile.decode(data: bytes, name: "x.png")
                Issue.record("no error")
            } catch {
                #expect("\(error)".hasPrefix("x.png: \(needle)") && !"\(error)".contains("\n"), "\(error)")
            }
        }
        // A JPEG named .png is still a JPEG (first bytes decide), and vice versa.
        let root = try makeTemporaryFolder("pngfolder")
        defer { removeTemporaryFolder(root) }
        try writeFile(root + "/cats/a.png", bytes: good)
        try writeFile(root + "/cats/b.PNG", bytes: good)
        try writeFile(root + "/dogs/c.png", bytes: good)
        let splits = try loadDataset(spec: try datasetSpec(named: "imagefolder"), dataRoot: root)
        #expect(splits.train.map(\.path) == ["cats/a.png", "cats/b.PNG", "dogs/c.png"])
    }
}
