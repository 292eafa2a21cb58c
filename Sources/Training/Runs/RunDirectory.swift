// The run directory's life cycle on rank 0: a fresh run refuses a directory that already holds
// one (unless --overwrite clears it or --resume continues it), an exclusive lock keeps a second
// process out for the whole run, and a resumed run's metrics are cut back to its checkpoint.
import Files
import Foundation
import Tensor

public enum RunDirectoryMode: Sendable { case fresh, overwrite, resume }

/// An exclusive `flock` on `<run>/.lock`, held while the object lives (and released by the kernel
/// when the process dies, so a crashed run never leaves a stale lock).
public final class RunDirectoryLock: @unchecked Sendable {
    public static let fileName = ".lock"
    let fd: Int32
    public let path: String

    public init(directory: String) throws {
        path = directory + "/" + Self.fileName
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.input("cannot open the run lock \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let holder =
                (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                ?? ""
            close(fd)
            throw TrainingError.input(
                busy
                    ? "\(directory) is in use by another cavpt-dist process\(holder.isEmpty ? "" : " (\(holder))"); "
                        + "wait for it or choose another --output"
                    : "cannot lock \(path): \(String(cString: strerror(errno)))")
        }
        let owner = "pid \(getpid()) on \(ProcessInfo.processInfo.hostName)\n"
        _ = ftruncate(fd, 0)
        _ = owner.withCString { write(fd, $0, strlen($0)) }
    }

    deinit { close(fd) }
}

public enum RunDirectory {
    /// What makes a folder a run directory.
    static let runFiles = [
        "config.yaml", "metrics.jsonl", "results.json", "fewshot.json", "checkpoints", "status.json",
    ]

    /// Creates and locks `directory` for a run in `mode`. A fresh run refuses a folder that holds
    /// anything; `overwrite` clears a run directory (and refuses to clear a folder that is not one);
    /// `resume` keeps everything.
    public static func prepare(_ directory: String, mode: RunDirectoryMode) throws -> RunDirectoryLock {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isFolder), !isFolder.boolValue {
            throw TrainingError.input("\(directory) exists and is not a folder; choose another --output")
        }
        try createDirectory(directory)
        let lock = try RunDirectoryLock(directory: directory)
        let entries = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).filter {
            $0 != RunDirectoryLock.fileName
        }.sorted()
        // A log alone is what an attempt that failed before training leaves (a bad model, a refused
        // precision): a fresh run may take the folder and append to that log.
        let started = entries.filter { $0 != "log.txt" && $0 != "launcher.log" }
        switch mode {
        case .resume:
            openLog(directory)
        case .fresh:
            if !started.isEmpty {
                let what = entries.contains("config.yaml") ? "already holds a run" : "is not empty"
                throw TrainingError.input(
                    "\(directory) \(what) (\(summary(started))); pass --resume to continue it, "
                        + "--overwrite to replace it, or choose another --output")
            }
            openLog(directory)
        case .overwrite:
            defer { openLog(directory) }
            let foreign = entries.filter {
                !runFiles.contains($0) && !$0.hasPrefix("events.out.tfevents") && $0 != "log.txt"
                    && $0 != "launcher.log" && $0 != "evaluations"
            }
            if !entries.isEmpty && !entries.contains("config.yaml") || !foreign.isEmpty {
                throw TrainingError.input(
                    "\(directory) does not look like a cavpt-dist run directory "
                        + "(\(summary(foreign.isEmpty ? entries : foreign))); "
                        + "refusing to clear it for --overwrite")
            }
            for entry in entries {
                do { try fm.removeItem(atPath: directory + "/" + entry) } catch {
                    throw TrainingError.input(
                        "--overwrite: cannot remove \(directory)/\(entry): \(error.localizedDescription)")
                }
            }
        }
        return lock
    }

    /// log.txt, appended to by every run of the directory (a resumed run continues it), each run
    /// starting with its time and command line.
    static func openLog(_ directory: String) {
        RunLog.open(directory + "/log.txt")
        RunLog.append(
            "# \(ISO8601DateFormatter().string(from: Date())) \(CommandLine.arguments.joined(separator: " "))\n")
    }

    static func summary(_ entries: [String]) -> String {
        entries.prefix(4).joined(separator: ", ") + (entries.count > 4 ? ", … \(entries.count) entries" : "")
    }

    /// Cuts `metrics.jsonl` back to the epochs a resumed run keeps (those ≤ `epoch`), dropping any
    /// torn or unparsable line, so no epoch appears twice after the resumed ones are appended.
    public static func truncateMetrics(in directory: String, toEpoch epoch: Int) throws {
        let path = directory + "/metrics.jsonl"
        let data: [UInt8]
        do { data = try RegularFile.read(path) } catch let e as RegularFileError where e.missing { return } catch {
            throw TrainingError.input("\(path): \(error)")
        }
        var kept: [Substring] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                let e = (object["epoch"] as? NSNumber)?.intValue, e <= epoch
            else { continue }
            kept.append(line)
        }
        let text = kept.map { $0 + "\n" }.joined()
        try writeDurably(Data(text.utf8), to: path)
    }
}
