// Image files of either kind users' datasets hold: JPEG through libjpeg, PNG through libpng, told
// apart by their first bytes (not their names), both converted to RGB as Pillow converts them.
import CPNG
import Foundation

public enum ImageFile {
    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Reads and decodes a JPEG or PNG file; errors name the file.
    public static func decode(path: String) throws -> RGBImage {
        let bytes = try JPEG.readFile(path)
        return try decode(data: bytes, name: path)
    }

    public static func decode(data: [UInt8], name: String = "<memory>") throws -> RGBImage {
        if data.count >= 8 && Array(data.prefix(8)) == pngSignature {
            return try PNGImage.decode(data: data, name: name)
        }
        return try JPEG.decode(data: data, name: name)
    }

    /// The extensions image folders are searched for (any case).
    public static let extensions = [".jpg", ".jpeg", ".png"]

    public static func hasImageExtension(_ name: String) -> Bool {
        let lower = name.lowercased()
        return extensions.contains { lower.hasSuffix($0) }
    }

    /// Files as given and the images of folders (sorted by name), in argument order.
    public static func files(_ arguments: [String]) throws -> [String] {
        var files: [String] = []
        for argument in arguments {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isFolder) else {
                throw DataError.layout(path: argument, reason: "no such file or folder")
            }
            if isFolder.boolValue {
                let entries = (try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []
                let found = entries.filter { !$0.hasPrefix(".") && hasImageExtension($0) }
                    .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
                guard !found.isEmpty else {
                    throw DataError.layout(path: argument, reason: "no .jpg, .jpeg or .png images in the folder")
                }
                files += found.map { (argument as NSString).appendingPathComponent($0) }
            } else {
                files.append(argument)
            }
        }
        return files
    }
}

public enum PNGImage {
    public static func decode(data: [UInt8], name: String = "<memory>") throws -> RGBImage {
        var rgb: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = data.withUnsafeBufferPointer { buffer in
            cpng_decode_rgb(
                buffer.baseAddress, buffer.count, JPEG.maxPixels, &rgb, &width, &height, &message, message.count)
        }
        guard rc == 0, let rgb else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DataError.image(file: name, reason: "not a decodable PNG: \(reason)")
        }
        defer { cpng_free(rgb) }
        let (w, h) = (Int(width), Int(height))
        return RGBImage(width: w, height: h, pixels: [UInt8](UnsafeBufferPointer(start: rgb, count: w * h * 3)))
    }
}
