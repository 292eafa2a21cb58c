// A full disk is one error line, never a crash or a torn record: on a real tmpfs of a few
// hundred kilobytes (root only; skipped with a message otherwise).
import Foundation
import Testing

@testable import Training

@Suite(.serialized) struct FullDiskTests {
    /// Mounts a tmpfs of `kilobytes` at a fresh folder; nil (with the reason) when not possible.
    static func mountSmallDisk(_ kilobytes: Int) -> (String?, String) {
        guard getuid() == 0 else { return (nil, "needs root to mount a tmpfs") }
        let dir = temporaryDirectory("fulldisk")
        let r = try? runProcess("/bin/mount", ["-t", "tmpfs", "-o", "size=\(kilobytes)k", "tmpfs", dir])
        guard r?.status == 0 else { return (nil, "mount -t tmpfs failed: \(r?.stderr ?? "")") }
        return (dir, "")
    }

    static func unmount(_ dir: String) { _ = try? runProcess("/bin/umount", ["-l", dir]) }

    /// Fills the file system holding `dir` to the last byte.
    static func fill(_ dir: String) {
        let fd = open(dir + "/filler", O_WRONLY | O_CREAT, 0o644)
        let block = [UInt8](repeating: 1, count: 4096)
        while write(fd, block, block.count) > 0 {}
        while write(fd, block, 1) > 0 {}
        close(fd)
    }

    @Test func appendingToAFullDiskIsAnErrorAndLeavesNoTornLine() throws {
        let (mounted, why) = Self.mountSmallDisk(256)
        guard let dir = mounted else { print("skipped: \(why)"); return }
        defer { Self.unmount(dir) }
        let file = try AppendOnlyFile(path: dir + "/metrics.jsonl")
        try file.append(Data("{\"epoch\": 1}\n".utf8))
        Self.fill(dir)
        let record = Data(("{\"epoch\": 2, \"padding\": \"" + String(repeating: "x", count: 10_000) + "\"}\n").utf8)
        let message = thrownText { try file.append(record) }
        #expect(message.hasPrefix("cannot append to \(dir)/metrics.jsonl: No space left on device"), "\(message)")
        #expect(try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8) == "{\"epoch\": 1}\n")
        // A whole-file write (config.yaml, results.json) fails the same way and keeps the old file.
        try? FileManager.default.removeItem(atPath: dir + "/filler")
        try writeDurably(Data("old\n".utf8), to: dir + "/results.json")
        Self.fill(dir)
        let whole = thrownText { try writeDurably(Data(repeating: 65, count: 100_000), to: dir + "/results.json") }
        #expect(whole.hasPrefix("cannot write \(dir)/results.json: No space left on device"), "\(whole)")
        #expect(try String(contentsOfFile: dir + "/results.json", encoding: .utf8) == "old\n")
        #expect(!FileManager.default.fileExists(atPath: dir + "/results.json.tmp"))
    }

    @Test func aRunOnAFullDiskEndsWithOneLine() throws {
        let (mounted, why) = Self.mountSmallDisk(128)
        guard let dir = mounted else { print("skipped: \(why)"); return }
        defer { Self.unmount(dir) }
        // 32 pages: 25 of padding, the rest for the lock, config, few-shot lists, log, TensorBoard
        // events and metrics.jsonl: full long before the 100th epoch (no checkpoint before the last).
        let padding = open(dir + "/padding", O_WRONLY | O_CREAT, 0o644)
        _ = [UInt8](repeating: 0, count: 100_000).withUnsafeBytes { write(padding, $0.baseAddress, 100_000) }
        close(padding)
        let r = try cavptDist(
            tinyRun.trainArguments(
                method: "vpt_deep", output: dir + "/run", epochs: 100,
                extra: ["--set", "checkpoint.every=0"]))
        #expect(r.status == 1, "\(r.stderr)")
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        // The per-epoch appends (metrics.jsonl, the TensorBoard events) hit the full disk first.
        #expect(
            errors.count == 1 && errors[0].hasPrefix("error: cannot append to \(dir)/run/")
                && errors[0].hasSuffix(": No space left on device"), "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"))
        // Whatever metrics made it are whole lines.
        if let text = try? String(contentsOfFile: dir + "/run/metrics.jsonl", encoding: .utf8), !text.isEmpty {
            #expect(text.hasSuffix("\n"))
            #expect(try metricLines(dir + "/run").count == text.split(separator: "\n").count)
        }
    }
}
