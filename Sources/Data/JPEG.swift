// JPEG files to packed RGB pixels through libjpeg, converted the way Pillow's
// `Image.open(f).convert("RGB")` converts them (grayscale replicated, Adobe CMYK inverted).
import CJPEG
import Files
import Tensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An 8-bit RGB image, rows top to bottom, pixels packed as R, G, B.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// [height, width, 3]
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(
            width >= 0 && height >= 0 && pixels.count == width * height * 3,
            "RGBImage: \(pixels.count) bytes do not hold \(width)x\(height) RGB pixels")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

public enum JPEG {
    /// Pillow refuses images above 2 × MAX_IMAGE_PIXELS as decompression bombs; so do we,
    /// before allocating anything sized from the header.
    public static let maxPixels = 178_956_970

    /// Files larger than this are refused before reading (no real photo comes close).
    static let maxFileBytes = 1 << 30

    /// Reads and decodes a JPEG file; errors name the file.
    public static func decode(path: String) throws -> RGBImage {
        let bytes = try readFile(path)
        return try decode(data: bytes, name: path)
    }

    /// Decodes a JPEG held in memory; `name` labels errors.
    public static func decode(data: [UInt8], name: String = "<memory>") throws -> RGBImage {
        var rgb: UnsafeMutablePointer<UInt8>?
        var width: Int32 = 0, height: Int32 = 0, components: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = data.withUnsafeBufferPointer { buffer in
            cjpeg_decode_rgb(
                buffer.baseAddress, buffer.count, maxPixels,
                &rgb, &width, &height, &components, &message, message.count)
        }
        guard rc == 0, let rgb else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DataError.image(file: name, reason: "not a decodable JPEG: \(reason)")
        }
        defer { cjpeg_free(rgb) }
        let w = Int(width), h = Int(height)
        let pixels = [UInt8](UnsafeBufferPointer(start: rgb, count: w * h * 3))
        return RGBImage(width: w, height: h, pixels: pixels)
    }

    /// Encodes 8-bit pixels (1 component = grayscale, 3 = RGB, packed rows) as a baseline JPEG.
    /// Used by tests and demos to write datasets; training only decodes.
    public static func encode(
        pixels: [UInt8], width: Int, height: Int, components: Int,
        quality: Int = 95
    ) throws -> [UInt8] {
        guard width > 0, height > 0, components == 1 || components == 3,
            pixels.count == width * height * components, (1...100).contains(quality)
        else {
            throw DataError.invalidArgument(
                "JPEG.encode: \(pixels.count) bytes for \(width)x\(height)x\(components) at quality \(quality)")
        }
        var jpeg: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        let rc = pixels.withUnsafeBufferPointer { buffer in
            cjpeg_encode(
                buffer.baseAddress, Int32(width), Int32(height), Int32(components), Int32(quality),
                &jpeg, &size, &message, message.count)
        }
        guard rc == 0, let jpeg else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DataError.invalidArgument("JPEG.encode: \(reason)")
        }
        defer { cjpeg_free(jpeg) }
        return [UInt8](UnsafeBufferPointer(start: jpeg, count: size))
    }

    public static func encode(_ image: RGBImage, quality: Int = 95) throws -> [UInt8] {
        try encode(pixels: image.pixels, width: image.width, height: image.height, components: 3, quality: quality)
    }

    /// The whole file, or an error naming it with the system's reason; a FIFO or device is refused before it can block.
    static func readFile(_ path: String) throws -> [UInt8] {
        do { return try RegularFile.read(path, maxBytes: maxFileBytes) } catch let error as RegularFileError {
            throw DataError.image(file: path, reason: error.reason)
        }
    }
}

func systemError() -> String { String(cString: strerror(errno)) }
