// The safetensors format: a validating memory-mapped reader (floats → F32 tensors, integers → [Int])
// and a crash-safe writer (temporary file, fsync, rename) used for weights, features and checkpoints.
//
// Layout: 8-byte little-endian header length n, n bytes of JSON
// `{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`,
// then the data section; offsets are relative to its start.
import Foundation
import Tensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

#if _endian(big)
#error("safetensors data is little-endian; this reader copies it as-is")
#endif

public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case bool = "BOOL", u8 = "U8", i8 = "I8", f8e5m2 = "F8_E5M2", f8e4m3 = "F8_E4M3"
    case i16 = "I16", u16 = "U16", f16 = "F16", bf16 = "BF16"
    case i32 = "I32", u32 = "U32", f32 = "F32"
    case i64 = "I64", u64 = "U64", f64 = "F64"

    public var byteSize: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .i64, .u64, .f64: return 8
        }
    }
}

public enum SafeTensorsError: Error, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case truncated(file: String, size: Int)
    case headerLength(file: String, length: UInt64, available: Int)
    case headerNotJSON(file: String, reason: String)
    case badEntry(file: String, name: String, reason: String)
    case unknownDType(file: String, name: String, dtype: String)
    case byteCount(file: String, name: String, dtype: String, shape: [Int], expected: Int, found: Int)
    case outOfBounds(file: String, name: String, begin: Int, end: Int, dataBytes: Int)
    case overlap(file: String, first: String, second: String)
    case missing(file: String, name: String)
    case wrongKind(file: String, name: String, dtype: String, wanted: String)
    case write(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason):
            return "\(file): cannot read: \(reason)"
        case let .truncated(file, size):
            return "\(file): truncated: \(size) bytes, too short for the 8-byte safetensors header length"
        case let .headerLength(file, length, available):
            return
                "\(file): safetensors header length \(length) exceeds the \(available) bytes after it (truncated or "
                + "not a safetensors file)"
        case let .headerNotJSON(file, reason):
            return "\(file): safetensors header is not a JSON object: \(reason)"
        case let .badEntry(file, name, reason):
            return "\(file): tensor \"\(excerpt(name))\": \(reason)"
        case let .unknownDType(file, name, dtype):
            return "\(file): tensor \"\(excerpt(name))\" has unknown dtype \"\(excerpt(dtype))\""
        case let .byteCount(file, name, dtype, shape, expected, found):
            return
                "\(file): tensor \"\(excerpt(name))\" (\(excerpt(dtype)) \(excerpt("\(shape)"))) needs \(expected) "
                + "bytes but its data_offsets span \(found)"
        case let .outOfBounds(file, name, begin, end, dataBytes):
            return
                "\(file): tensor \"\(excerpt(name))\" data_offsets [\(begin), \(end)] lie outside the "
                + "\(dataBytes)-byte data section (truncated file?)"
        case let .overlap(file, first, second):
            return "\(file): tensors \"\(excerpt(first))\" and \"\(excerpt(second))\" have overlapping data_offsets"
        case let .missing(file, name):
            return "\(file): no tensor named \"\(excerpt(name))\""
        case let .wrongKind(file, name, dtype, wanted):
            return "\(file): tensor \"\(excerpt(name))\" has dtype \(excerpt(dtype)), expected \(wanted)"
        case let .write(file, reason):
            return "\(file): cannot write: \(reason)"
        }
    }
}

/// One tensor's description in the header. `byteRange` is relative to the data section.
public struct SafeTensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    public let byteRange: Range<Int>
    public var count: Int { shape.reduce(1, *) }
}

/// A validated, memory-mapped safetensors file. Tensors are copied out on request, so
/// they outlive the mapping; the mapping is released when the last reference goes.
public final class SafeTensorsFile: @unchecked Sendable {
    /// Headers beyond this are rejected before anything is allocated (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    public let path: String
    /// Tensor names in data order.
    public let names: [String]
    public let entries: [String: SafeTensorsEntry]
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]

    private let mapping: UnsafeMutableRawPointer
    private let mappedBytes: Int
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let fd: Int32, fileBytes: Int
        do { (fd, fileBytes) = try RegularFile.open(path) } catch let error as RegularFileError {
            throw SafeTensorsError.unreadable(file: path, reason: error.reason)
        }
        defer { close(fd) }
        guard fileBytes >= 8 else { throw SafeTensorsError.truncated(file: path, size: fileBytes) }

        guard let base = mmap(nil, fileBytes, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw SafeTensorsError.unreadable(file: path, reason: "mmap: \(String(cString: strerror(errno)))")
        }
        // From here on the mapping must be released on every error path.
        var parsed: (entries: [SafeTensorsEntry], metadata: [String: String], dataStart: Int)
        do {
            parsed = try SafeTensorsFile.parseHeader(UnsafeRawPointer(base), fileBytes: fileBytes, file: path)
        } catch {
            munmap(base, fileBytes)
            throw error
        }
        mapping = base
        mappedBytes = fileBytes
        dataStart = parsed.dataStart
        metadata = parsed.metadata
        names = parsed.entries.map(\.name)
        entries = Dictionary(parsed.entries.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    deinit { munmap(mapping, mappedBytes) }

    public func shape(_ name: String) -> [Int]? { entries[name]?.shape }
    public func dtype(_ name: String) -> SafeTensorsDType? { entries[name]?.dtype }
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// A floating-point tensor (F32, F16, BF16 or F64) converted to an F32 copy.
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw SafeTensorsError.missing(file: path, name: name) }
        let source = UnsafeRawPointer(mapping) + dataStart + entry.byteRange.lowerBound
        let result = Tensor(uninitialized: entry.shape)
        let out = result.data
        let n = entry.count
        switch entry.dtype {
        case .f32:
            // memcpy: the data section need not be 4-byte aligned.
            memcpy(out, source, n * 4)
        case .f16:
            for i in 0..<n { out[i] = floatFromHalfBits(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<n {
                let bits = UInt32(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
                out[i] = Float(bitPattern: bits)
            }
        case .f64:
            for i in 0..<n { out[i] = Float(source.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        default:
            throw SafeTensorsError.wrongKind(
                file: path, name: name, dtype: entry.dtype.rawValue,
                wanted: "a floating-point dtype (F32, F16, BF16, F64)")
        }
        return result
    }

    /// An integer tensor (I64, I32, I16, I8, U8, U16, U32, U64, BOOL), flattened.
    public func integers(_ name: String) throws -> [Int] {
        guard let entry = entries[name] else { throw SafeTensorsError.missing(file: path, name: name) }
        let source = UnsafeRawPointer(mapping) + dataStart + entry.byteRange.lowerBound
        let n = entry.count
        switch entry.dtype {
        case .i64: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .i32: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        case .i16: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) }
        case .i8: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: $0, as: Int8.self)) }
        case .u8, .bool: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: $0, as: UInt8.self)) }
        case .u16: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
        case .u32: return (0..<n).map { Int(source.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        case .u64:
            var values: [Int] = []
            values.reserveCapacity(n)
            for i in 0..<n {
                let v = source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)
                guard v <= UInt64(Int.max) else {
                    throw SafeTensorsError.badEntry(
                        file: path, name: name, reason: "U64 value \(v) does not fit in Int")
                }
                values.append(Int(v))
            }
            return values
        default:
            throw SafeTensorsError.wrongKind(
                file: path, name: name, dtype: entry.dtype.rawValue, wanted: "an integer dtype")
        }
    }

    /// Every floating-point tensor in the file, as F32 copies.
    public func allTensors() throws -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        for name in names where entries[name].map({ [.f32, .f16, .bf16, .f64].contains($0.dtype) }) == true {
            result[name] = try tensor(name)
        }
        return result
    }

    // MARK: Header validation

    static func parseHeader(
        _ base: UnsafeRawPointer, fileBytes: Int, file: String
    ) throws
        -> (entries: [SafeTensorsEntry], metadata: [String: String], dataStart: Int)
    {
        let headerLength = base.loadUnaligned(as: UInt64.self) // little-endian host, checked above
        let available = fileBytes - 8
        guard headerLength <= UInt64(available) else {
            throw SafeTensorsError.headerLength(file: file, length: headerLength, available: available)
        }
        guard headerLength <= UInt64(maxHeaderBytes) else {
            throw SafeTensorsError.headerNotJSON(
                file: file, reason: "header of \(headerLength) bytes is larger than the \(maxHeaderBytes)-byte limit")
        }
        let n = Int(headerLength)
        let headerData = Data(bytes: base + 8, count: n)
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: headerData, options: [])
        } catch {
            let reason = n == 0 ? "it is empty" : "invalid JSON in \(n) bytes"
            throw SafeTensorsError.headerNotJSON(file: file, reason: reason)
        }
        guard let object = json as? [String: Any] else {
            throw SafeTensorsError.headerNotJSON(file: file, reason: "top level is not an object")
        }

        let dataStart = 8 + n
        let dataBytes = fileBytes - dataStart
        var metadata: [String: String] = [:]
        var entries: [SafeTensorsEntry] = []
        // Sorted names make the first reported problem deterministic.
        for name in object.keys.sorted() {
            let value = object[name]!
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafeTensorsError.badEntry(
                        file: file, name: name, reason: "__metadata__ must be an object of strings")
                }
                for (key, item) in map {
                    guard let text = item as? String else {
                        throw SafeTensorsError.badEntry(
                            file: file, name: name, reason: "__metadata__ value for \"\(excerpt(key))\" is not a string"
                        )
                    }
                    metadata[key] = text
                }
                continue
            }
            entries.append(try parseEntry(name: name, value: value, dataBytes: dataBytes, file: file))
        }

        // Non-empty ranges must not share bytes (zero-length tensors may sit anywhere).
        let ordered = entries.sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        var previous: SafeTensorsEntry?
        for entry in ordered where !entry.byteRange.isEmpty {
            if let p = previous, entry.byteRange.lowerBound < p.byteRange.upperBound {
                throw SafeTensorsError.overlap(file: file, first: p.name, second: entry.name)
            }
            previous = entry
        }
        return (ordered, metadata, dataStart)
    }

    private static func parseEntry(name: String, value: Any, dataBytes: Int, file: String) throws -> SafeTensorsEntry {
        func bad(_ reason: String) -> SafeTensorsError { .badEntry(file: file, name: name, reason: reason) }
        guard let info = value as? [String: Any] else { throw bad("entry is not an object") }
        guard let dtypeName = info["dtype"] as? String else { throw bad("missing \"dtype\" string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw SafeTensorsError.unknownDType(file: file, name: name, dtype: dtypeName)
        }
        guard let shapeValues = info["shape"] as? [Any] else { throw bad("missing \"shape\" array") }
        var shape: [Int] = []
        for v in shapeValues {
            guard let d = jsonInteger(v), d >= 0 else {
                throw bad("shape \(excerpt("\(shapeValues)")) has an entry that is not a non-negative integer")
            }
            shape.append(d)
        }
        guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
            let begin = jsonInteger(offsets[0]), let end = jsonInteger(offsets[1])
        else {
            throw bad("missing \"data_offsets\" [begin, end] integer pair")
        }
        guard begin >= 0, end >= begin, end <= dataBytes else {
            throw SafeTensorsError.outOfBounds(file: file, name: name, begin: begin, end: end, dataBytes: dataBytes)
        }
        var bytes = dtype.byteSize
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("shape \(shape) is too large") }
            bytes = product
        }
        guard bytes == end - begin else {
            throw SafeTensorsError.byteCount(
                file: file, name: name, dtype: dtypeName, shape: shape,
                expected: bytes, found: end - begin)
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
    }

    /// JSON numbers arrive as NSNumber/Int/Double depending on the platform; accept exact integers only.
    private static func jsonInteger(_ value: Any) -> Int? {
        if let i = value as? Int { return i }
        if let d = value as? Double, d.rounded() == d, abs(d) < 9.0e15 { return Int(d) }
        return nil
    }
}

/// IEEE 754 binary16 bits → Float, including subnormals, infinities and NaN.
@inline(__always)
func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F { // inf / NaN
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    if exponent == 0 { // zero / subnormal: mantissa · 2⁻²⁴
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

// MARK: Writing

extension SafeTensorsFile {
    /// Writes F32 `tensors` and I64 `integers` (each stored flat, shape [n]) with optional string
    /// metadata. The file appears atomically: data goes to `path + ".tmp"`, is fsynced, then renamed
    /// over `path`, so a crash leaves either the previous file or the complete new one.
    public static func write(
        _ tensors: [(String, Tensor)], integers: [(String, [Int])] = [],
        metadata: [String: String] = [:], to path: String
    ) throws {
        var seen = Set<String>()
        for name in tensors.map(\.0) + integers.map(\.0) {
            guard name != "__metadata__" else {
                throw SafeTensorsError.write(file: path, reason: "\"__metadata__\" is reserved")
            }
            guard seen.insert(name).inserted else {
                throw SafeTensorsError.write(file: path, reason: "tensor \"\(name)\" is given twice")
            }
        }

        var header = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{\(items.joined(separator: ","))}")
        }
        var offset = 0
        for (name, tensor) in tensors {
            let bytes = tensor.count * 4
            fields.append(
                "\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":\(tensor.shape),"
                    + "\"data_offsets\":[\(offset),\(offset + bytes)]}"
            )
            offset += bytes
        }
        for (name, values) in integers {
            let bytes = values.count * 8
            fields.append(
                "\(jsonString(name)):{\"dtype\":\"I64\",\"shape\":[\(values.count)],"
                    + "\"data_offsets\":[\(offset),\(offset + bytes)]}"
            )
            offset += bytes
        }
        header += fields.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }

        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw SafeTensorsError.write(file: temporary, reason: String(cString: strerror(errno))) }
        var closed = false
        defer { if !closed { close(fd); unlink(temporary) } }

        func writeAll(_ pointer: UnsafeRawPointer?, _ count: Int) throws {
            guard count > 0, let pointer else { return }
            var done = 0
            while done < count {
                let n = posixWrite(fd, pointer + done, min(count - done, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError.write(file: temporary, reason: String(cString: strerror(errno)))
                }
                done += n
            }
        }

        var length = UInt64(headerBytes.count).littleEndian
        try withUnsafeBytes(of: &length) { try writeAll($0.baseAddress, 8) }
        try headerBytes.withUnsafeBytes { try writeAll($0.baseAddress, $0.count) }
        for (_, tensor) in tensors { try writeAll(UnsafeRawPointer(tensor.data), tensor.count * 4) }
        for (_, values) in integers {
            let wide = values.map { Int64($0).littleEndian }
            try wide.withUnsafeBytes { try writeAll($0.baseAddress, $0.count) }
        }
        guard fsync(fd) == 0 else {
            throw SafeTensorsError.write(file: temporary, reason: "fsync: \(String(cString: strerror(errno)))")
        }
        closed = true
        guard close(fd) == 0 else {
            unlink(temporary)
            throw SafeTensorsError.write(file: temporary, reason: "close: \(String(cString: strerror(errno)))")
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SafeTensorsError.write(file: path, reason: "rename from \(temporary): \(reason)")
        }
        // Persist the rename itself; failure here only weakens durability, not correctness.
        let directory = (path as NSString).deletingLastPathComponent
        let dirfd = open(directory.isEmpty ? "." : directory, O_RDONLY)
        if dirfd >= 0 { _ = fsync(dirfd); close(dirfd) }
    }
}

/// write(2), named apart from `SafeTensorsFile.write`.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}

/// A JSON string literal for `text`.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
