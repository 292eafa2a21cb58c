// JPEG decoding against Pillow on real photos (RGB 4:2:0 / 4:4:4 / progressive 4:2:2, grayscale,
// Adobe CMYK), and errors that name the file.
import Foundation
import Testing

@testable import Data

@Suite struct JPEGTests {
    @Test func decodeMatchesPillow() throws {
        let manifest = try Manifest.load()
        var checked = Set<String>()
        for entry in manifest.images {
            let image = try JPEG.decode(path: fixtureFolder + "/" + entry.file)
            #expect(image.width == entry.width && image.height == entry.height, "\(entry.file)")
            guard let decoded = entry.decoded else { continue }
            let difference = byteDifference(image.pixels, try fixtureBytes(decoded))
            // DESIGN §2 allows 1; libjpeg-turbo (2.x here, 3.x in Pillow's wheels) decodes identically.
            #expect(difference.max <= 1, "\(entry.file): max difference \(difference.max) from Pillow")
            checked.insert(entry.mode)
        }
        #expect(checked == ["RGB", "L", "CMYK"])
    }

    @Test func grayscaleIsReplicated() throws {
        let image = try JPEG.decode(path: fixtureFolder + "/gray_camera.jpg")
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            #expect(image.pixels[i] == image.pixels[i + 1] && image.pixels[i] == image.pixels[i + 2])
            if image.pixels[i] != image.pixels[i + 1] { break }
        }
    }

    @Test func encodeRoundTrip() throws {
        let jpeg = try syntheticJPEG(width: 37, height: 21, seed: 3)
        let image = try JPEG.decode(data: jpeg)
        #expect(image.width == 37 && image.height == 21)
        let gray = try JPEG.decode(data: try syntheticJPEG(width: 8, height: 9, seed: 1, gray: true))
        #expect(gray.width == 8 && gray.height == 9)
        #expect(thrownError { try JPEG.encode(pixels: [1, 2], width: 1, height: 1, components: 3) } != nil)
    }

    @Test func missingFileNamesIt() throws {
        let path = "/nonexistent-folder/missing.jpg"
        let error = thrownError { try JPEG.decode(path: path) }
        #expect(error as? DataError == .image(file: path, reason: "cannot open: No such file or directory"))
        #expect("\(error!)" == "/nonexistent-folder/missing.jpg: cannot open: No such file or directory")
    }

    @Test func corruptAndTruncatedFilesNameTheFile() throws {
        let folder = try makeTemporaryFolder("jpeg")
        defer { removeTemporaryFolder(folder) }
        let garbage = folder + "/garbage.jpg"
        try writeFile(garbage, "this is not a JPEG file at all")
        let garbageError = "\(thrownError { try JPEG.decode(path: garbage) }!)"
        #expect(garbageError.hasPrefix(garbage + ": not a decodable JPEG: "), "\(garbageError)")
        #expect(!garbageError.contains("\n"))

        let whole = try fixtureBytes("landscape_coffee.jpg")
        let truncated = folder + "/truncated.jpg"
        try writeFile(truncated, bytes: Array(whole.prefix(whole.count / 2)))
        let truncatedError = "\(thrownError { try JPEG.decode(path: truncated) }!)"
        #expect(truncatedError == truncated + ": not a decodable JPEG: file is truncated (premature end of JPEG data)")

        let empty = folder + "/empty.jpg"
        try writeFile(empty, bytes: [])
        #expect("\(thrownError { try JPEG.decode(path: empty) }!)" == empty + ": not a decodable JPEG: file is empty")

        #expect("\(thrownError { try JPEG.decode(path: folder) }!)" == folder + ": not a regular file (a folder)")
    }

    @Test func hugeHeaderSizesAreRefusedBeforeAllocating() throws {
        // A valid stream whose SOF0 header claims 65000x65000 pixels (4.2 G, 12.7 GB of RGB).
        var bytes = try syntheticJPEG(width: 16, height: 16, seed: 1)
        let sof = try #require((0..<(bytes.count - 9)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        for offset in [sof + 5, sof + 7] {
            bytes[offset] = 0xFD
            bytes[offset + 1] = 0xE8
        }
        let message = "\(thrownError { try JPEG.decode(data: bytes, name: "bomb.jpg") }!)"
        #expect(message == "bomb.jpg: not a decodable JPEG: image is 65000x65000, more than the 178956970-pixel limit")
    }

    @Test func corruptDataInsideTheStreamIsDecodedLikePillow() throws {
        // Flipping bytes in the entropy-coded data gives libjpeg warnings, not errors; Pillow
        // decodes such files too, so they must not stop training.
        // (Pillow 13 loads this very file: a flipped byte 60% into landscape_coffee.jpg's scan.)
        var bytes = try fixtureBytes("landscape_coffee.jpg")
        bytes[bytes.count * 6 / 10] ^= 0x5A
        let image = try JPEG.decode(data: bytes, name: "damaged")
        #expect(image.width == 320 && image.height == 240)
        #expect(image != (try JPEG.decode(path: fixtureFolder + "/landscape_coffee.jpg")))
    }
}
