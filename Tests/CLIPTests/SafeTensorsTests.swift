import Foundation
import Tensor
import Testing

@testable import CLIP
// safetensors: round trips, dtype conversion against torch's, and every malformed-file error.
@testable import Files

@Suite struct SafeTensorsTests {
    @Test func roundTripKeepsNamesShapesValuesAndMetadata() throws {
        let folder = try makeScratchFolder()
        let path = folder + "/round.safetensors"
        let a = Tensor.randn([3, 5], seed: 1)
        let b = Tensor(shape: [2], values: [1.5, -0.25])
        let scalar = Tensor(scalar: 4.6052)
        let empty = Tensor(zeros: [0, 7])
        // A view into the middle of a larger storage must be written from its own offset.
        let view = Tensor.randn([4, 3], seed: 2).slice(1..<3)
        try SafeTensorsFile.write(
            [("a", a), ("b", b), ("scalar", scalar), ("empty", empty), ("we\"ird\\name", view)],
            integers: [("labels", [3, -1, 1 << 40])],
            metadata: ["epoch": "7", "note": "line\nbreak"], to: path)
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))

        let file = try SafeTensorsFile(path: path)
        #expect(Set(file.names) == ["a", "b", "scalar", "empty", "we\"ird\\name", "labels"])
        #expect(file.metadata == ["epoch": "7", "note": "line\nbreak"])
        #expect(try file.tensor("a").scalars == a.scalars)
        #expect(try file.tensor("a").shape == [3, 5])
        #expect(try file.tensor("b").scalars == [1.5, -0.25])
        #expect(try file.tensor("scalar").shape == [])
        #expect(try file.tensor("scalar").scalar == 4.6052)
        #expect(try file.tensor("empty").shape == [0, 7])
        #expect(try file.tensor("we\"ird\\name").scalars == view.scalars)
        #expect(try file.integers("labels") == [3, -1, 1 << 40])
        #expect(file.dtype("labels") == .i64)
        // The data section starts 8-byte aligned, as the reference writer does.
        let raw = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = raw.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect((8 + headerLength) % 8 == 0)
    }

    @Test func writeReplacesAnExistingFileAtomically() throws {
        let folder = try makeScratchFolder()
        let path = folder + "/ckpt.safetensors"
        try SafeTensorsFile.write([("x", Tensor(shape: [1], values: [1]))], to: path)
        try SafeTensorsFile.write([("x", Tensor(shape: [2], values: [2, 3]))], to: path)
        #expect(try SafeTensorsFile(path: path).tensor("x").scalars == [2, 3])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["ckpt.safetensors"])

        // A failed write (duplicate name) leaves the previous file intact and no temporary behind.
        let message = thrownMessage {
            try SafeTensorsFile.write([("x", Tensor(scalar: 0)), ("x", Tensor(scalar: 1))], to: path)
        }
        #expect(message?.contains("\"x\" is given twice") == true)
        #expect(try SafeTensorsFile(path: path).tensor("x").scalars == [2, 3])
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
    }

    /// F16/BF16/F64 files written by the `safetensors` package load to exactly torch's F32 values.
    @Test func torchWrittenDtypesConvertExactly() throws {
        let file = try SafeTensorsFile(path: fixturePath("safetensors/dtypes.safetensors"))
        let expected = try #require(try loadJSON("safetensors/dtypes.json") as? [String: Any])
        #expect(file.metadata == (expected["metadata"] as? [String: String]))
        let floats = try #require(expected["floats"] as? [String: [String: Any]])
        #expect(floats.count == 6)
        for (name, info) in floats {
            let tensor = try file.tensor(name)
            #expect(tensor.shape == (info["shape"] as? [Int]), "\(name)")
            let bits = try #require(info["bits"] as? [Int])
            let got = tensor.scalars.map { Int(Int32(bitPattern: $0.bitPattern)) }
            #expect(got == bits, "\(name) (\(info["dtype"] ?? ""))")
        }
        #expect(file.dtype("f16") == .f16 && file.dtype("bf16") == .bf16 && file.dtype("f64") == .f64)
        let integers = try #require(expected["integers"] as? [String: [String: Any]])
        for (name, info) in integers {
            #expect(try file.integers(name) == (info["values"] as? [Int]), "\(name)")
        }
        // Asking for the wrong kind is an error, not a reinterpretation.
        #expect(thrownMessage { _ = try file.tensor("labels") }?.contains("has dtype I64") == true)
        #expect(thrownMessage { _ = try file.integers("f16") }?.contains("has dtype F16") == true)
        #expect(thrownMessage { _ = try file.tensor("nope") }?.contains("no tensor named \"nope\"") == true)
    }

    @Test func halfConversionCoversSubnormalsAndSpecials() {
        #expect(floatFromHalfBits(0x0000) == 0)
        #expect(floatFromHalfBits(0x8000).sign == .minus)
        #expect(floatFromHalfBits(0x3C00) == 1)
        #expect(floatFromHalfBits(0xC000) == -2)
        #expect(floatFromHalfBits(0x7BFF) == 65504)
        #expect(floatFromHalfBits(0x0001) == 0x1p-24) // smallest subnormal
        #expect(floatFromHalfBits(0x03FF) == Float(1023) * 0x1p-24)
        #expect(floatFromHalfBits(0x0400) == 0x1p-14) // smallest normal
        #expect(floatFromHalfBits(0x7C00) == .infinity)
        #expect(floatFromHalfBits(0xFC00) == -.infinity)
        #expect(floatFromHalfBits(0x7E00).isNaN)
    }

    // MARK: Malformed files: each gives one line naming the file and the problem.

    private func openError(_ path: String) -> String? { thrownMessage { _ = try SafeTensorsFile(path: path) } }

    private func expectOneLine(
        _ message: String?, _ fragments: [String], file path: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let message else {
            Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
            return
        }
        #expect(!message.contains("\n"), "not one line: \(message)", sourceLocation: sourceLocation)
        #expect(message.hasPrefix(path), "does not name the file: \(message)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(message.contains(fragment), "\(message) lacks \(fragment)", sourceLocation: sourceLocation)
        }
    }

    private let goodHeader = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#

    @Test func missingFileAndTooShortFile() throws {
        let folder = try makeScratchFolder()
        expectOneLine(
            openError(folder + "/absent.safetensors"), ["cannot read", "No such file"],
            file: folder + "/absent.safetensors")
        let short = folder + "/short.safetensors"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: short))
        expectOneLine(openError(short), ["truncated", "3 bytes"], file: short)
        let empty = folder + "/empty.safetensors"
        try Data().write(to: URL(fileURLWithPath: empty))
        expectOneLine(openError(empty), ["truncated", "0 bytes"], file: empty)
        expectOneLine(openError(folder), ["not a regular file"], file: folder)
    }

    @Test func truncatedDataSection() throws {
        let path = try makeScratchFolder() + "/cut.safetensors"
        try writeRawSafeTensors(header: goodHeader, data: [0, 0, 0, 0, 0], to: path) // 5 of 8 bytes
        expectOneLine(openError(path), ["\"a\"", "[0, 8]", "outside the 5-byte data section"], file: path)
    }

    @Test func headerLengthPastEndOfFile() throws {
        let folder = try makeScratchFolder()
        let path = folder + "/long.safetensors"
        try writeRawSafeTensors(
            header: goodHeader, data: [UInt8](repeating: 0, count: 8),
            headerLength: 1000, to: path)
        expectOneLine(openError(path), ["header length 1000", "exceeds"], file: path)
        // A huge length (a random 8 bytes) is rejected before anything is allocated.
        let huge = folder + "/huge.safetensors"
        try writeRawSafeTensors(header: goodHeader, data: [], headerLength: UInt64.max - 3, to: huge)
        expectOneLine(openError(huge), ["header length 18446744073709551612", "exceeds"], file: huge)
    }

    @Test func headerThatIsNotJSON() throws {
        let folder = try makeScratchFolder()
        let garbage = folder + "/garbage.safetensors"
        try writeRawSafeTensors(header: "{\"a\": {\"dtype\": ", data: [], to: garbage)
        expectOneLine(openError(garbage), ["header is not a JSON object", "invalid JSON"], file: garbage)
        let array = folder + "/array.safetensors"
        try writeRawSafeTensors(header: "[1, 2]", data: [], to: array)
        expectOneLine(openError(array), ["top level is not an object"], file: array)
        let emptyHeader = folder + "/emptyheader.safetensors"
        try writeRawSafeTensors(header: "", data: [], to: emptyHeader)
        expectOneLine(openError(emptyHeader), ["header is not a JSON object"], file: emptyHeader)
    }

    @Test func entriesMissingFieldsOrWithBadValues() throws {
        let folder = try makeScratchFolder()
        let cases: [(String, String)] = [
            (#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#, "missing \"dtype\""),
            (#"{"a":{"dtype":"F32","data_offsets":[0,8]}}"#, "missing \"shape\""),
            (#"{"a":{"dtype":"F32","shape":[2]}}"#, "missing \"data_offsets\""),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#, "missing \"data_offsets\""),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "not a non-negative integer"),
            (#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, "not a non-negative integer"),
            (#"{"a":7}"#, "entry is not an object"),
            (#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, "is not a string"),
            (#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#, "too large"),
        ]
        for (index, (header, fragment)) in cases.enumerated() {
            let path = folder + "/bad\(index).safetensors"
            try writeRawSafeTensors(header: header, data: [UInt8](repeating: 0, count: 8), to: path)
            expectOneLine(openError(path), [fragment], file: path)
        }
    }

    @Test func offsetsOutsideTheDataSection() throws {
        let folder = try makeScratchFolder()
        let past = folder + "/past.safetensors"
        try writeRawSafeTensors(
            header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
            data: [UInt8](repeating: 0, count: 12), to: past)
        expectOneLine(openError(past), ["\"a\"", "[8, 16]", "outside the 12-byte data section"], file: past)
        let backwards = folder + "/backwards.safetensors"
        try writeRawSafeTensors(
            header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#,
            data: [UInt8](repeating: 0, count: 12), to: backwards)
        expectOneLine(openError(backwards), ["[8, 4]", "outside"], file: backwards)
    }

    @Test func overlappingRanges() throws {
        let path = try makeScratchFolder() + "/overlap.safetensors"
        let header =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        try writeRawSafeTensors(header: header, data: [UInt8](repeating: 0, count: 12), to: path)
        expectOneLine(openError(path), ["\"a\" and \"b\"", "overlapping"], file: path)
        // Adjacent ranges and empty tensors anywhere are fine.
        let fine =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"#
            + #""z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
        try writeRawSafeTensors(header: fine, data: [UInt8](repeating: 0, count: 12), to: path)
        #expect(try SafeTensorsFile(path: path).names == ["a", "z", "b"])
    }

    @Test func unknownDType() throws {
        let path = try makeScratchFolder() + "/dtype.safetensors"
        try writeRawSafeTensors(
            header: #"{"a":{"dtype":"F24","shape":[2],"data_offsets":[0,6]}}"#,
            data: [UInt8](repeating: 0, count: 6), to: path)
        expectOneLine(openError(path), ["\"a\"", "unknown dtype \"F24\""], file: path)
    }

    @Test func shapeDisagreeingWithByteRange() throws {
        let path = try makeScratchFolder() + "/size.safetensors"
        try writeRawSafeTensors(
            header: #"{"a":{"dtype":"F16","shape":[3,2],"data_offsets":[0,8]}}"#,
            data: [UInt8](repeating: 0, count: 8), to: path)
        expectOneLine(openError(path), ["\"a\" (F16 [3, 2]) needs 12 bytes", "span 8"], file: path)
    }

    @Test func unalignedDataSectionStillReads() throws {
        // Pad the header so the data section starts at an odd offset; reads must not assume alignment.
        let path = try makeScratchFolder() + "/odd.safetensors"
        var header =
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""h":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}}"#
        while (8 + header.utf8.count) % 8 != 3 { header += " " }
        var data: [UInt8] = []
        for v: Float in [1.25, -3] { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
        data += [0x00, 0x3C, 0x00, 0xC0] // F16 1, -2
        try writeRawSafeTensors(header: header, data: data, to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(try file.tensor("a").scalars == [1.25, -3])
        #expect(try file.tensor("h").scalars == [1, -2])
    }
}
