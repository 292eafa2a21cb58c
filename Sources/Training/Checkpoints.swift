// Checkpoints (SPEC §6): trained tensors and momentum buffers in safetensors under canonical names,
// plus a JSON state. Each checkpoint is a folder written under a temporary name, fsynced and renamed,
// so a crash never leaves a half checkpoint and the previous one stays loadable.
import CLIP
import Foundation
import Tensor

public struct CheckpointState: Codable, Sendable, Equatable {
    /// Epochs completed; training resumes at this epoch.
    public var epoch: Int
    public var seed: Int
    /// Hash of the effective configuration, for a quick compatibility check.
    public var configHash: String
    /// The effective configuration (YAML), to name differing keys on a mismatch.
    public var config: String
    /// Data order and augmentation are pure functions of (seed, epoch, position): these keys are all
    /// the random state there is.
    public var rngKeys: [String: Int]
    public var ranks: Int
    public var version: String
    /// Set when the checkpoint was taken inside epoch `epoch` (a preemption): training resumes at
    /// step `progress.steps` of it. Absent at an epoch boundary and in state.json of older versions.
    public var progress: EpochProgress? = nil
}

public struct Checkpoint {
    public var state: CheckpointState
    public var parameters: [String: Tensor]
    public var momentum: [String: Tensor]
    public var path: String
}

public enum Checkpoints {
    static let tensorsFile = "state.safetensors"
    static let stateFile = "state.json"

    /// `epoch-NNNN` after NNNN epochs; `epoch-NNNN-step-SSSS` after S more steps (a preemption),
    /// which sorts after epoch-NNNN and before the next epoch's.
    public static func folderName(epoch: Int, step: Int = 0) -> String {
        step == 0 ? String(format: "epoch-%04d", epoch) : String(format: "epoch-%04d-step-%04d", epoch, step)
    }

    /// Writes `dir/epoch-NNNN` (or `epoch-NNNN-step-SSSS`) atomically and keeps the newest `keep` checkpoints.
    public static func write(_ state: CheckpointState, parameters: [(String, Tensor)], momentum: [String: Tensor],
                             to dir: String, keep: Int) throws {
        let fm = FileManager.default
        try createDirectory(dir)
        let final = dir + "/" + folderName(epoch: state.epoch, step: state.progress?.steps ?? 0)
        let temporary = final + ".tmp"
        try? fm.removeItem(atPath: temporary)
        try createDirectory(temporary)
        let tensors = parameters + momentum.keys.sorted().map { ("momentum." + $0, momentum[$0]!) }
        try SafeTensorsFile.write(tensors, metadata: ["format": "cavpt-dist checkpoint"], to: temporary + "/" + tensorsFile)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeDurably(try encoder.encode(state), to: temporary + "/" + stateFile)
        try fsyncPath(temporary)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        guard rename(temporary, final) == 0 else {
            throw TrainingError.checkpoint("cannot rename \(temporary) to \(final): \(String(cString: strerror(errno)))")
        }
        try fsyncPath(dir)
        // Keep the newest `keep` complete checkpoints.
        let complete = try list(dir)
        for old in complete.dropLast(max(keep, 1)) { try? fm.removeItem(atPath: old) }
    }

    /// Complete checkpoint folders in `dir`, oldest first.
    public static func list(_ dir: String) throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.filter { $0.hasPrefix("epoch-") && !$0.hasSuffix(".tmp") }.sorted()
            .map { dir + "/" + $0 }
            .filter { FileManager.default.fileExists(atPath: $0 + "/" + stateFile)
                      && FileManager.default.fileExists(atPath: $0 + "/" + tensorsFile) }
    }

    public static func read(_ path: String) throws -> Checkpoint {
        guard let data = FileManager.default.contents(atPath: path + "/" + stateFile) else {
            throw TrainingError.checkpoint("\(path): no \(stateFile); not a complete checkpoint")
        }
        let state: CheckpointState
        do { state = try JSONDecoder().decode(CheckpointState.self, from: data) } catch {
            throw TrainingError.checkpoint("\(path)/\(stateFile): unreadable checkpoint state (\(error))")
        }
        let file = try SafeTensorsFile(path: path + "/" + tensorsFile)
        var parameters: [String: Tensor] = [:], momentum: [String: Tensor] = [:]
        for name in file.names {
            if name.hasPrefix("momentum.") { momentum[String(name.dropFirst("momentum.".count))] = try file.tensor(name) }
            else { parameters[name] = try file.tensor(name) }
        }
        return Checkpoint(state: state, parameters: parameters, momentum: momentum, path: path)
    }

    /// The newest complete checkpoint that loads, skipping damaged ones; nil when there is none.
    public static func newest(in dir: String) -> Checkpoint? {
        for path in ((try? list(dir)) ?? []).reversed() {
            if let checkpoint = try? read(path) { return checkpoint }
        }
        return nil
    }
}

func createDirectory(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw TrainingError.input("cannot create folder \(path): \(error.localizedDescription)")
    }
}

/// Writes a file and fsyncs it before returning.
func writeDurably(_ data: Data, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TrainingError.input("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    try data.withUnsafeBytes { buf in
        var offset = 0
        while offset < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + offset, buf.count - offset)
            guard n > 0 else { throw TrainingError.input("cannot write \(path): \(String(cString: strerror(errno)))") }
            offset += n
        }
    }
    guard fsync(fd) == 0 else { throw TrainingError.input("cannot fsync \(path): \(String(cString: strerror(errno)))") }
}

func fsyncPath(_ path: String) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = fsync(fd)
}
