// Checkpoints (DESIGN §6): trained tensors and momentum buffers in safetensors under canonical names,
// plus a JSON state. Each checkpoint is a folder written under a temporary name, fsynced and renamed,
// so a crash never leaves a half checkpoint and the previous one stays loadable.
import CLIP
import Data
import Files
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
    /// CRC-32C of each file the checkpoint holds besides this state (`state.safetensors`), as
    /// "crc32c:xxxxxxxx"; verified on load. Absent in checkpoints written before 0.2.
    public var files: [String: String]?
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
    /// which comes after epoch-NNNN and before the next epoch's.
    public static func folderName(epoch: Int, step: Int = 0) -> String {
        step == 0 ? String(format: "epoch-%04d", epoch) : String(format: "epoch-%04d-step-%04d", epoch, step)
    }

    /// The epoch a checkpoint folder's name says (`epoch-0012` → 12, `epoch-0012-step-0003` → 12);
    /// nil for other names.
    public static func epoch(ofFolder name: String) -> Int? { position(ofFolder: name)?.epoch }

    /// Epochs and further steps a checkpoint folder's name says (`epoch-0012-step-0003` → (12, 3),
    /// `epoch-0012` → (12, 0)); checkpoints are ordered by it. nil for other names.
    public static func position(ofFolder name: String) -> (epoch: Int, step: Int)? {
        guard name.hasPrefix("epoch-"), !name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropFirst("epoch-".count).split(separator: "-", omittingEmptySubsequences: false)
        func number(_ digits: Substring) -> Int? {
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
            return Int(digits)
        }
        if parts.count == 1, let epoch = number(parts[0]) { return (epoch, 0) }
        if parts.count == 3, parts[1] == "step", let epoch = number(parts[0]), let step = number(parts[2]), step > 0 {
            return (epoch, step)
        }
        return nil
    }

    /// Writes `dir/epoch-NNNN` (or `epoch-NNNN-step-SSSS`) atomically and keeps the newest `keep` checkpoints.
    public static func write(
        _ state: CheckpointState, parameters: [(String, Tensor)], momentum: [String: Tensor],
        to dir: String, keep: Int
    ) throws {
        var state = state
        let fm = FileManager.default
        try createDirectory(dir)
        let final = dir + "/" + folderName(epoch: state.epoch, step: state.progress?.steps ?? 0)
        let temporary = final + ".tmp"
        try? fm.removeItem(atPath: temporary)
        try createDirectory(temporary)
        // A failed write (a full disk) leaves no half folder behind.
        var written = false
        defer { if !written { try? fm.removeItem(atPath: temporary) } }
        let tensors = parameters + momentum.keys.sorted().map { ("momentum." + $0, momentum[$0]!) }
        try SafeTensorsFile.write(
            tensors, metadata: ["format": "cavpt-dist checkpoint"], to: temporary + "/" + tensorsFile)
        guard let crc = CRC32C.file(temporary + "/" + tensorsFile) else {
            throw TrainingError.checkpoint("cannot read back \(temporary)/\(tensorsFile)")
        }
        state.files = [tensorsFile: "crc32c:" + crc]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeDurably(try encoder.encode(state), to: temporary + "/" + stateFile)
        try fsyncPath(temporary)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        guard rename(temporary, final) == 0 else {
            throw TrainingError.checkpoint(
                "cannot rename \(temporary) to \(final): \(String(cString: strerror(errno)))")
        }
        written = true
        try fsyncPath(dir)
        // Keep the newest `keep` complete checkpoints (by epoch number, not name: epoch-10000 > epoch-9999).
        let complete = try list(dir)
        for old in complete.dropLast(max(keep, 1)) { try? fm.removeItem(atPath: old) }
    }

    /// Complete checkpoint folders in `dir`, oldest first (ordered by epoch, then step, number).
    public static func list(_ dir: String) throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.compactMap { name in position(ofFolder: name).map { (name, $0) } }
            .sorted { ($0.1.epoch, $0.1.step) < ($1.1.epoch, $1.1.step) }
            .map { dir + "/" + $0.0 }
            .filter {
                FileManager.default.fileExists(atPath: $0 + "/" + stateFile)
                    && FileManager.default.fileExists(atPath: $0 + "/" + tensorsFile)
            }
    }

    public static func read(_ path: String) throws -> Checkpoint {
        let data: Data
        do { data = Data(try RegularFile.read(path + "/" + stateFile)) } catch let error as RegularFileError {
            throw TrainingError.checkpoint(
                error.missing
                    ? "\(path): no \(stateFile); not a complete checkpoint"
                    : "\(path)/\(stateFile): \(error.reason)")
        }
        let state: CheckpointState
        do { state = try JSONDecoder().decode(CheckpointState.self, from: data) } catch let error as DecodingError {
            throw TrainingError.checkpoint(
                "\(path)/\(stateFile): unreadable checkpoint state (\(describeDecoding(error)))")
        } catch {
            throw TrainingError.checkpoint("\(path)/\(stateFile): unreadable checkpoint state (not valid JSON)")
        }
        try validate(state, path: path)
        let tensorsPath = path + "/" + tensorsFile
        if let recorded = state.files?[tensorsFile] {
            guard let actual = CRC32C.file(tensorsPath) else {
                throw TrainingError.checkpoint("\(tensorsPath): cannot read it")
            }
            guard recorded == "crc32c:" + actual else {
                throw TrainingError.checkpoint(
                    "\(tensorsPath): checksum mismatch (state.json records \(recorded), "
                        + "the file has crc32c:\(actual)); the checkpoint is damaged")
            }
        }
        let file = try SafeTensorsFile(path: tensorsPath)
        var parameters: [String: Tensor] = [:], momentum: [String: Tensor] = [:]
        for name in file.names {
            let tensor = try file.tensor(name)
            // train never checkpoints a non-finite state (the divergence guard stops first).
            guard allFinite(tensor) else {
                throw TrainingError.checkpoint(
                    "\(tensorsPath): tensor \(name) holds NaN or infinity; the checkpoint is not usable")
            }
            if name.hasPrefix("momentum.") {
                momentum[String(name.dropFirst("momentum.".count))] = tensor
            } else {
                parameters[name] = tensor
            }
        }
        return Checkpoint(state: state, parameters: parameters, momentum: momentum, path: path)
    }

    /// The state's own consistency: the epoch is the folder's, not negative, and within the run's
    /// configured epochs.
    static func validate(_ state: CheckpointState, path: String) throws {
        let folder = (path as NSString).lastPathComponent
        guard state.epoch >= 0 else {
            throw TrainingError.checkpoint("\(path)/\(stateFile): epoch \(state.epoch) is negative")
        }
        if let named = position(ofFolder: folder),
            named.epoch != state.epoch || named.step != (state.progress?.steps ?? 0)
        {
            throw TrainingError.checkpoint(
                "\(path)/\(stateFile): epoch \(state.epoch)"
                    + (state.progress.map { " step \($0.steps)" } ?? "")
                    + " does not match the folder name \(folder)")
        }
        var saved = Config()
        if (try? saved.merge(savedRun: state.config, source: path + "/" + stateFile)) != nil,
            state.epoch > saved.settings.train.epochs
        {
            throw TrainingError.checkpoint(
                "\(path)/\(stateFile): epoch \(state.epoch) is beyond the run's "
                    + "\(saved.settings.train.epochs) epochs")
        }
    }

    /// The newest complete checkpoint that loads. Each damaged or invalid one skipped on the way is
    /// reported through `skipped` (path and reason), so a caller can say so; nil when none loads.
    public static func newest(in dir: String, skipped: (String, String) -> Void = { _, _ in }) -> Checkpoint? {
        for path in ((try? list(dir)) ?? []).reversed() {
            do { return try read(path) } catch { skipped(path, "\(error)") }
        }
        return nil
    }
}
