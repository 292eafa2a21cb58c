// PNG files written with zlib (the compression library cavpt-dist already links): signature,
// IHDR (8-bit RGB), one zlib-compressed IDAT of filter-0 scanlines, IEND, each chunk CRC-32'd.
import CZlib
import Foundation

public enum PNG {
    public static func encode(_ canvas: Canvas) throws -> Data {
        var raw = [UInt8]()
        raw.reserveCapacity(canvas.height * (canvas.width * 3 + 1))
        for y in 0..<canvas.height {
            raw.append(0)
            raw.append(contentsOf: canvas.pixels[(y * canvas.width * 3)..<((y + 1) * canvas.width * 3)])
        }
        var compressedSize = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedSize))
        let status = compress2(&compressed, &compressedSize, raw, uLong(raw.count), 6)
        guard status == Z_OK else { throw FigureError.encode("zlib compress2 failed (\(status))") }
        var header = Data()
        appendBigEndian(&header, UInt32(canvas.width))
        appendBigEndian(&header, UInt32(canvas.height))
        header.append(contentsOf: [8, 2, 0, 0, 0]) // 8-bit, RGB, deflate, no filter method, no interlace
        var out = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        chunk(&out, "IHDR", header)
        chunk(&out, "IDAT", Data(compressed.prefix(Int(compressedSize))))
        chunk(&out, "IEND", Data())
        return out
    }

    static func chunk(_ out: inout Data, _ type: String, _ payload: Data) {
        appendBigEndian(&out, UInt32(payload.count))
        var body = Data(type.utf8)
        body.append(payload)
        out.append(body)
        let crc = body.withUnsafeBytes { crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count)) }
        appendBigEndian(&out, UInt32(crc))
    }

    static func appendBigEndian(_ out: inout Data, _ v: UInt32) {
        out.append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)])
    }
}

public enum FigureError: Error, CustomStringConvertible {
    case encode(String)
    case input(String)
    public var description: String {
        switch self {
        case .encode(let m), .input(let m): return m
        }
    }
}
