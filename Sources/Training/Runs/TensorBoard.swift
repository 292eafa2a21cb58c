// TensorBoard scalars without TensorFlow: `events.out.tfevents.*` files are TFRecords (length,
// masked CRC-32C of the length, data, masked CRC-32C of the data) of `Event` protos, written here
// by hand: Event{wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5},
// Summary{value = 1}, Summary.Value{tag = 1 (string), simple_value = 2 (float, in a oneof)}.
import Foundation

public final class TensorBoardWriter: @unchecked Sendable {
    public let path: String
    let file: AppendOnlyFile

    /// Starts `directory/events.out.tfevents.<seconds>.<host>` with its file_version event.
    public init(
        directory: String, wallTime: Double = Date().timeIntervalSince1970,
        host: String = ProcessInfo.processInfo.hostName
    ) throws {
        let name = String(format: "events.out.tfevents.%010d.", Int(wallTime)) + host.filter { $0 != "/" }
        path = directory + "/" + name
        file = try AppendOnlyFile(path: path)
        var event = ProtoWriter()
        event.double(1, wallTime.rounded(.down))
        event.string(3, "brain.Event:2")
        try file.append(Self.record(event.bytes))
    }

    /// One scalar (TensorBoard reads it as a float32).
    public func scalar(
        _ tag: String, _ value: Double, step: Int, wallTime: Double = Date().timeIntervalSince1970
    ) throws {
        try scalars([(tag, value)], step: step, wallTime: wallTime)
    }

    /// Several scalars of one step, one event each.
    public func scalars(_ values: [(String, Double)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws
    {
        var records = Data()
        for (tag, value) in values {
            var scalar = ProtoWriter()
            scalar.string(1, tag)
            scalar.float(2, Float(value))
            var summary = ProtoWriter()
            summary.message(1, scalar.bytes)
            var event = ProtoWriter()
            event.double(1, wallTime)
            event.varint(2, UInt64(bitPattern: Int64(step)))
            event.message(5, summary.bytes)
            records.append(Self.record(event.bytes))
        }
        try file.append(records)
    }

    /// TFRecord framing.
    static func record(_ data: [UInt8]) -> Data {
        var out = Data()
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Data($0) }
        out.append(lengthBytes)
        appendLittleEndian(&out, maskedCRC(lengthBytes))
        out.append(contentsOf: data)
        appendLittleEndian(&out, maskedCRC(Data(data)))
        return out
    }

    static func maskedCRC(_ data: Data) -> UInt32 {
        let crc = CRC32C.checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    static func appendLittleEndian(_ out: inout Data, _ value: UInt32) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { out.append(contentsOf: $0) }
    }
}

/// Protocol-buffer wire format, the few field kinds events use. Proto3 omits scalar fields equal to
/// their default; fields of a oneof (file_version, summary, simple_value) are always written.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func key(_ field: Int, _ wireType: UInt64) { appendVarint(UInt64(field) << 3 | wireType) }

    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ value: UInt64) {
        guard value != 0 else { return }
        key(field, 0)
        appendVarint(value)
    }

    mutating func double(_ field: Int, _ value: Double) {
        guard value.bitPattern != 0 else { return }
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ field: Int, _ value: String) { message(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ payload: [UInt8]) {
        key(field, 2)
        appendVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }
}
