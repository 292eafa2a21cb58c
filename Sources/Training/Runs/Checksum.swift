// CRC-32C (Castagnoli), the checksum checkpoints record for each file they hold (and the one
// TFRecord framing uses). Slicing-by-8 tables: a few hundred MB/s, far more than a checkpoint needs.
import Files
import Foundation
import Tensor

public enum CRC32C {
    static let tables: [[UInt32]] = {
        var tables = Array(repeating: Array(repeating: UInt32(0), count: 256), count: 8)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            tables[0][i] = c
        }
        for i in 0..<256 {
            for t in 1..<8 { tables[t][i] = (tables[t - 1][i] >> 8) ^ tables[0][Int(tables[t - 1][i] & 0xff)] }
        }
        return tables
    }()

    /// The CRC-32C of `bytes`, continuing from `crc` (0 for a fresh checksum).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        var i = 0
        let n = bytes.count
        tables.withUnsafeBufferPointer { t in
            let t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3], t4 = t[4], t5 = t[5], t6 = t[6], t7 = t[7]
            while i + 8 <= n {
                let lo =
                    c
                    ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3])
                        << 24)
                c =
                    t7[Int(lo & 0xff)] ^ t6[Int((lo >> 8) & 0xff)] ^ t5[Int((lo >> 16) & 0xff)] ^ t4[Int(lo >> 24)]
                    ^ t3[Int(bytes[i + 4])] ^ t2[Int(bytes[i + 5])] ^ t1[Int(bytes[i + 6])] ^ t0[Int(bytes[i + 7])]
                i += 8
            }
            while i < n {
                c = t0[Int((c ^ UInt32(bytes[i])) & 0xff)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    public static func checksum(_ data: Data) -> UInt32 { data.withUnsafeBytes { checksum($0) } }

    /// The file's checksum as 8 hex digits, read in 8 MB pieces (a 600 MB weight file never sits in
    /// memory); nil when it cannot be read.
    public static func file(_ path: String) -> String? {
        guard let (fd, _) = try? RegularFile.open(path) else { return nil }
        defer { close(fd) }
        var crc: UInt32 = 0
        let size = 8 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer, size)
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return nil }
            if n == 0 { break }
            crc = checksum(UnsafeRawBufferPointer(start: buffer, count: n), continuing: crc)
        }
        return String(format: "%08x", crc)
    }
}
