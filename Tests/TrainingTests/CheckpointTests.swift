// Checkpoint folders: atomic replacement, keep-last-N, and resume skipping damaged or partial ones.
import Foundation
import Tensor
import Testing
@testable import Training

@Suite struct CheckpointTests {
    func state(_ epoch: Int) -> CheckpointState {
        CheckpointState(epoch: epoch, seed: 1, configHash: "h", config: Config().yaml(), rngKeys: ["seed": 1, "epoch": epoch],
                        ranks: 1, version: cavptDistVersion)
    }

    @Test func keepsTheNewestAndSkipsDamagedOnes() throws {
        let dir = temporaryDirectory("checkpoints") + "/checkpoints"
        for epoch in 1...4 {
            try Checkpoints.write(state(epoch), parameters: [("visual.prompts", Tensor(shape: [2], repeating: Float(epoch)))],
                                  momentum: ["visual.prompts": Tensor(shape: [2], repeating: -Float(epoch))], to: dir, keep: 3)
        }
        #expect(try Checkpoints.list(dir).map { URL(fileURLWithPath: $0).lastPathComponent } == ["epoch-0002", "epoch-0003", "epoch-0004"])
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
