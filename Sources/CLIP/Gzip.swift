// gzip decompression through zlib, bounded so a corrupt or hostile file cannot exhaust memory.
import CZlib
import Files
import Foundation
import Tensor

public enum GzipError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case corrupt(file: String, reason: String)
    case tooLarge(file: String, limit: Int)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "\(file): cannot read: \(reason)"
        case let .corrupt(file, reason): return "\(file): not a valid gzip file: \(reason)"
        case let .tooLarge(file, limit):
            return "\(file): decompresses to more than \(limit) bytes; not a CLIP vocabulary"
        }
    }
}

public enum Gzip {
    /// The decompressed bytes of every gzip member in `data` (`gzip -c a b > c` style files included).
    /// `file` only names the source in errors.
    public static func decompress(_ data: [UInt8], file: String, maxOutputBytes: Int = 256 << 20) throws -> [UInt8] {
        if data.isEmpty { throw GzipError.corrupt(file: file, reason: "empty file") }
        var stream = z_stream()
        // 16 + MAX_WBITS: expect a gzip header and trailer, not a raw zlib stream.
        var rc = inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size))
        guard rc == Z_OK else { throw GzipError.corrupt(file: file, reason: "inflateInit2 failed (\(rc))") }
        defer { inflateEnd(&stream) }

        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        try data.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            while true {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    rc = inflate(&stream, Z_NO_FLUSH)
                    return out.count - Int(stream.avail_out)
                }
                if output.count + produced > maxOutputBytes {
                    throw GzipError.tooLarge(file: file, limit: maxOutputBytes)
                }
                output.append(contentsOf: chunk[0..<produced])
                switch rc {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    // Another member may follow (concatenated gzip files); trailing zero padding is
                    // tolerated as gzip(1) does, anything else must be a valid member.
                    if stream.avail_in == 0 { return }
                    let rest = UnsafeBufferPointer(start: stream.next_in, count: Int(stream.avail_in))
                    if rest.allSatisfy({ $0 == 0 }) { return }
                    guard inflateReset(&stream) == Z_OK else {
                        throw GzipError.corrupt(file: file, reason: "inflateReset failed")
                    }
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw GzipError.corrupt(file: file, reason: "truncated (ends inside the compressed stream)")
                default:
                    let message = stream.msg.map { String(cString: $0) } ?? "zlib error \(rc)"
                    throw GzipError.corrupt(file: file, reason: message)
                }
            }
        }
        return output
    }

    /// Reads and decompresses a .gz file.
    public static func decompress(file path: String, maxOutputBytes: Int = 256 << 20) throws -> [UInt8] {
        let data: [UInt8]
        do { data = try RegularFile.read(path) } catch let error as RegularFileError {
            throw GzipError.unreadable(file: path, reason: error.briefReason)
        }
        return try decompress(data, file: path, maxOutputBytes: maxOutputBytes)
    }
}
