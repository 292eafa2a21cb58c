// Checkpoint folders: atomic replacement, keep-last-N, and resume skipping damaged or partial ones.
import Foundation
import Tensor
import Testing

@testable import Training

@Suite struct CheckpointTests {
    func state(_ epoch: Int) -> CheckpointState {
        CheckpointState(
            epoch: epoch, seed: 1, configHash: "h", config: Config().yaml(), rngKeys: ["seed": 1, "epoch": epoch],
            ranks: 1, version: cavptDistVersion)
    }

    @Test func keepsTheNewestAndSkipsDamagedOnes() throws {
        let dir = temporaryDirectory("checkpoints") + "/checkpoints"
        for epoch in 1...4 {
            try Checkpoints.write(
                state(epoch), parameters: [("visual.prompts", Tensor(shape: [2], repeating: Float(epoch)))],
                momentum: ["visual.prompts": Tensor(shape: [2], repeating: -Float(epoch))], to: dir, keep: 3)
        }
        #expect(
            try Checkpoints.list(dir).map { URL(fileURLWithPath: $0).lastPathComponent } == [
                "epoch-0002", "epoch-0003", "epoch-0004",
            ])
        let newest = try #require(Checkpoints.newest(in: dir))
        #expect(newest.state.epoch == 4)
        #expect(newest.parameters["visual.prompts"]?.scalars == [4, 4])
        #expect(newest.momentum["visual.prompts"]?.scalars == [-4, -4])
        // A damaged newest checkpoint (truncated tensors) is skipped; a half-written .tmp is never listed.
        let damaged = dir + "/epoch-0004/state.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: damaged))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: damaged))
        try FileManager.default.createDirectory(atPath: dir + "/epoch-0005.tmp", withIntermediateDirectories: true)
        #expect(Checkpoints.newest(in: dir)?.state.epoch == 3)
        #expect(throws: (any Error).self) { try Checkpoints.read(dir + "/epoch-0004") }
    }
}

@Suite struct CheckpointIntegrityTests {
    func state(_ epoch: Int, epochs: Int = 200) -> CheckpointState {
        var c = Config()
        try? c.set("train.epochs", raw: epochs, source: "test")
        return CheckpointState(
            epoch: epoch, seed: 1, configHash: "h", config: c.yaml(), rngKeys: ["seed": 1, "epoch": epoch],
            ranks: 1, version: cavptDistVersion)
    }

    func write(_ epoch: Int, to dir: String, keep: Int = 10, epochs: Int = 20_000) throws {
        try Checkpoints.write(
            state(epoch, epochs: epochs), parameters: [("visual.prompts", Tensor(shape: [3], repeating: Float(epoch)))],
            momentum: [:], to: dir, keep: keep)
    }

    @Test func rotationOrdersByEpochNumberNotName() throws {
        let dir = temporaryDirectory("rotation") + "/checkpoints"
        for epoch in [9_998, 9_999, 10_000, 10_001] { try write(epoch, to: dir, keep: 2) }
        // As text "epoch-10000" < "epoch-9999": a name sort would delete the two newest.
        #expect(try Checkpoints.list(dir).map { ($0 as NSString).lastPathComponent } == ["epoch-10000", "epoch-10001"])
        #expect(Checkpoints.newest(in: dir)?.state.epoch == 10_001)
    }

    @Test func aBitFlipInTheTensorsIsFoundAndNamed() throws {
        let dir = temporaryDirectory("bitflip") + "/checkpoints"
        try write(1, to: dir)
        try write(2, to: dir)
        let stateText = try String(contentsOfFile: dir + "/epoch-0002/state.json", encoding: .utf8)
        #expect(stateText.contains("\"state.safetensors\" : \"crc32c:"))
        // Flip one bit of the last tensor byte (the data, not the header: the file still parses).
        let path = dir + "/epoch-0002/state.safetensors"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 1] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: path))
        let message = thrownText { _ = try Checkpoints.read(dir + "/epoch-0002") }
        #expect(message.contains("epoch-0002/state.safetensors: checksum mismatch"), "\(message)")
        var skipped: [String] = []
        let newest = Checkpoints.newest(in: dir) { path, reason in skipped.append("\(path): \(reason)") }
        #expect(newest?.state.epoch == 1)
        #expect(
            skipped.count == 1 && skipped[0].contains("epoch-0002") && skipped[0].contains("checksum mismatch"),
            "\(skipped)")
    }

    @Test func theStatesEpochIsValidated() throws {
        let dir = temporaryDirectory("epochs") + "/checkpoints"
        try write(3, to: dir, epochs: 5)
        func rewrite(_ change: (inout [String: Any]) -> Void) throws {
            let url = URL(fileURLWithPath: dir + "/epoch-0003/state.json")
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            change(&object)
            try JSONSerialization.data(withJSONObject: object).write(to: url)
        }
        try rewrite { $0["epoch"] = -1 }
        #expect(thrownText { _ = try Checkpoints.read(dir + "/epoch-0003") }.contains("epoch -1 is negative"))
        try rewrite { $0["epoch"] = 4 }
        #expect(
            thrownText { _ = try Checkpoints.read(dir + "/epoch-0003") }.contains(
                "does not match the folder name epoch-0003"))
        // Beyond the run's 5 epochs, in a folder whose name agrees.
        try FileManager.default.moveItem(atPath: dir + "/epoch-0003", toPath: dir + "/epoch-0009")
        try rewrite2(dir + "/epoch-0009") { $0["epoch"] = 9 }
        #expect(
            thrownText { _ = try Checkpoints.read(dir + "/epoch-0009") }.contains(
                "epoch 9 is beyond the run's 5 epochs"))
    }

    func rewrite2(_ folder: String, _ change: (inout [String: Any]) -> Void) throws {
        let url = URL(fileURLWithPath: folder + "/state.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        change(&object)
        try JSONSerialization.data(withJSONObject: object).write(to: url)
    }

    @Test func crc32cMatchesTheStandardCheckValues() {
        // RFC 3720 / iSCSI test vectors.
        #expect(CRC32C.checksum(Data("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum(Data(repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum(Data(repeating: 0xff, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(Data((0..<32).map { UInt8($0) })) == 0x46DD_794E)
        // Continuing a checksum over two pieces equals one pass.
        let text = Data("The quick brown fox jumps over the lazy dog, twice or more.".utf8)
        let whole = CRC32C.checksum(text)
        let first = text.prefix(13).withUnsafeBytes { CRC32C.checksum($0) }
        #expect(text.suffix(from: 13).withUnsafeBytes { CRC32C.checksum($0, continuing: first) } == whole)
    }
}

/// The description of what `body` throws; "" when it does not throw.
func thrownText(_ body: () throws -> Void) -> String {
    do { try body(); return "" } catch { return "\(error)" }
}
