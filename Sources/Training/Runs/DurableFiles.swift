// How a run writes files (DESIGN §6 "Every write"): whole files replaced atomically (temporary name,
// fsync, rename) and appends cut back on failure, so a crash, a full disk or a read-only volume leaves
// the old file or the new one, never a torn one; every error names the file.
import Foundation

func createDirectory(_ path: String) throws {
    do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
        throw TrainingError.input("cannot create folder \(path): \(error.localizedDescription)")
    }
}

/// Writes a file under a temporary name, fsyncs it and renames it into place, so a crash or a full
/// disk leaves either the old file or the new one, never a torn one. Errors name the file.
public func writeDurably(_ data: Data, to path: String) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TrainingError.input("cannot write \(path): \(String(cString: strerror(errno)))") }
    func fail(_ what: String) -> TrainingError {
        let reason = String(cString: strerror(errno))
        close(fd)
        unlink(temporary)
        return TrainingError.input("cannot \(what) \(path): \(reason)")
    }
    try data.withUnsafeBytes { buf in
        var offset = 0
        while offset < buf.count {
            let n = Glibc.write(fd, buf.baseAddress! + offset, buf.count - offset)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw fail("write") }
            offset += n
        }
    }
    guard fsync(fd) == 0 else { throw fail("fsync") }
    close(fd)
    guard rename(temporary, path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw TrainingError.input("cannot write \(path): \(reason)")
    }
}

func fsyncPath(_ path: String) throws {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = fsync(fd)
}

/// A file written by appending whole records: each append is written completely or, on failure
/// (a full disk, a read-only volume), cut back so no partial record remains, and reported.
final class AppendOnlyFile: @unchecked Sendable {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.input("cannot open \(path) for writing: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    func append(_ data: Data) throws {
        let start = lseek(fd, 0, SEEK_END)
        try data.withUnsafeBytes { buf in
            var offset = 0
            while offset < buf.count {
                let n = write(fd, buf.baseAddress! + offset, buf.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    let reason = String(cString: strerror(errno))
                    if start >= 0 { _ = ftruncate(fd, start) }
                    throw TrainingError.input("cannot append to \(path): \(reason)")
                }
                offset += n
            }
        }
    }
}
