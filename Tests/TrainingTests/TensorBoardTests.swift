// The hand-written event writer produces exactly the bytes TensorBoard's own RecordWriter and
// protos produce (Tests/Fixtures/make_tensorboard_fixtures.py), and a training run leaves an event
// file with Dassl's tags.
import Foundation
import Testing

@testable import Training

@Suite struct TensorBoardTests {
    @Test func bytesEqualTensorBoardsOwnWriter() throws {
        let dir = temporaryDirectory("tfevents")
        let writer = try TensorBoardWriter(directory: dir, wallTime: 1_764_580_000.0, host: "fixture")
        #expect((writer.path as NSString).lastPathComponent == "events.out.tfevents.1764580000.fixture")
        let events: [(Double, Int, String, Double)] = [
            (1_764_580_000.25, 1, "train/loss", 2.302585), (1_764_580_000.25, 1, "train/acc", 12.5),
            (1_764_580_000.25, 1, "train/lr", 1e-05), (1_764_580_001.5, 2, "train/loss", 1.75),
            (1_764_580_001.5, 2, "train/lr", 0.01), (1_764_580_002.0, 2, "test/accuracy", 87.5),
            (1_764_580_002.0, 2, "test/macro_f1", -0.0),
            (1_764_580_002.0, 123_456_789, "train/ünïcode tag", 3.4028234663852886e38),
        ]
        for (wall, step, tag, value) in events { try writer.scalar(tag, value, step: step, wallTime: wall) }
        let written = try Data(contentsOf: URL(fileURLWithPath: writer.path))
        let expected = try Data(
            contentsOf: URL(fileURLWithPath: packageRoot + "/Tests/Fixtures/tensorboard/expected.tfevents"))
        #expect(written.count == expected.count)
        if let i = zip(written, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("first differing byte at \(i) of \(expected.count)")
        }
        #expect(written == expected)
    }

    @Test func aTrainingRunWritesDasslsTags() throws {
        let out = temporaryDirectory("tb-run") + "/run"
        let r = try cavptDist(tinyRun.trainArguments(method: "vpt_deep", output: out, epochs: 2))
        try #require(r.status == 0, "\(r.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: out).filter {
            $0.hasPrefix("events.out.tfevents.")
        }
        try #require(files.count == 1, "\(files)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: out + "/" + files[0]))
        let tags = Set(tfrecordTags(bytes))
        for tag in ["train/loss", "train/acc", "train/lr", "test/accuracy", "test/macro_f1"] {
            #expect(tags.contains(tag), "\(tag) not in \(tags)")
        }
        // log.txt holds what rank 0 printed: the command, every progress line, the result.
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        #expect(log.hasPrefix("# ") && log.contains(" train --dataset "))
        for line in r.stdout.split(separator: "\n") { #expect(log.contains(line), "\(line) not in log.txt") }
        // A failure's error line lands there too.
        let failed = try cavptDist(
            tinyRun.trainArguments(
                method: "vpt_deep", output: out, epochs: 3,
                extra: ["--resume", "--set", "optim.visual.lr=0.5"]))
        #expect(failed.status == 1)
        #expect(try String(contentsOfFile: out + "/log.txt", encoding: .utf8).contains("error: cannot resume from"))
    }
}

/// The scalar tags of an event file, read back through the framing (checking both CRCs) and
/// the protobuf fields (Event.summary → Summary.value → Value.tag).
func tfrecordTags(_ data: Data) -> [String] {
    var tags: [String] = []
    var offset = 0
    let bytes = [UInt8](data)
    while offset + 12 <= bytes.count {
        let length = bytes[offset..<offset + 8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let payload = Array(bytes[(offset + 12)..<(offset + 12 + length)])
        #expect(
            TensorBoardWriter.record(payload) == Data(bytes[offset..<(offset + 16 + length)]), "record at \(offset)")
        for summary in fields(payload, number: 5) {
            for value in fields(summary, number: 1) {
                for tag in fields(value, number: 1) { tags.append(String(decoding: tag, as: UTF8.self)) }
            }
        }
        offset += 16 + length
    }
    return tags
}

/// The payloads of the length-delimited fields numbered `number` in a protobuf message.
func fields(_ message: [UInt8], number: Int) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var i = 0
    func varint() -> UInt64 {
        var value: UInt64 = 0, shift: UInt64 = 0
        while i < message.count {
            let b = message[i]; i += 1
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { break }
            shift += 7
        }
        return value
    }
    while i < message.count {
        let key = varint()
        switch key & 7 {
        case 0: _ = varint()
        case 1: i += 8
        case 5: i += 4
        case 2:
            let n = Int(varint())
            if Int(key >> 3) == number { out.append(Array(message[i..<min(i + n, message.count)])) }
            i += n
        default: return out
        }
    }
    return out
}
