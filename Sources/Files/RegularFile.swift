// Untrusted input files (images, weights, configs, split lists): opened so that a FIFO, device or
// folder in their place is refused at once (a plain open() of a FIFO blocks until a writer
// appears, which would hang a decoder thread or the whole run forever), and quoted in errors
// only in part.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an input file could not be read, as a phrase without the path (callers name the file).
public struct RegularFileError: Error, CustomStringConvertible, Equatable, Sendable {
    public var reason: String
    /// The path does not exist (the list and config readers say just "no such file").
    public var missing = false
    public var description: String { reason }

    /// "no such file" for a missing file, else the reason.
    public var briefReason: String { missing ? "no such file" : reason }
}

public enum RegularFile {
    /// Opens `path` read-only, checks that it is a regular file, and returns the descriptor in
    /// blocking mode with the file's size. The caller closes it.
    /// O_NONBLOCK makes open() itself return for a FIFO with no writer; fstat then refuses it.
    public static func open(_ path: String) throws -> (fd: Int32, size: Int) {
        let fd = path.withCString { systemOpen($0, O_RDONLY | O_NONBLOCK | O_CLOEXEC) }
        guard fd >= 0 else {
            let missing = errno == ENOENT
            throw RegularFileError(reason: "cannot open: \(systemError())", missing: missing)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = "cannot stat: \(systemError())"
            close(fd)
            throw RegularFileError(reason: reason)
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw RegularFileError(reason: "not a regular file (\(kind(info.st_mode)))")
        }
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 else {
            let reason = "fcntl: \(systemError())"
            close(fd)
            throw RegularFileError(reason: reason)
        }
        return (fd, Int(info.st_size))
    }

    /// The whole of a regular file of at most `maxBytes` bytes.
    public static func read(_ path: String, maxBytes: Int = 1 << 30) throws -> [UInt8] {
        let (fd, size) = try open(path)
        defer { close(fd) }
        guard size <= maxBytes else {
            throw RegularFileError(reason: "file is \(size) bytes, more than the \(maxBytes)-byte limit")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var filled = 0
        while filled < size {
            let n = bytes.withUnsafeMutableBytes { buffer -> Int in
                guard let base = buffer.baseAddress else { return 0 }
                return systemRead(fd, base + filled, size - filled)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw RegularFileError(reason: "read failed: \(systemError())")
            }
            if n == 0 { break } // the file shrank while we read it
            filled += n
        }
        if filled < size { bytes.removeSubrange(filled...) }
        return bytes
    }

    /// A regular file's text, which must be UTF-8.
    public static func text(_ path: String, maxBytes: Int = 64 << 20) throws -> String {
        let bytes = try read(path, maxBytes: maxBytes)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw RegularFileError(reason: "not UTF-8 text")
        }
        return text
    }

    static func kind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a plain file"
        }
    }

    static func systemError() -> String { String(cString: strerror(errno)) }
}

// The C calls under names that do not collide with `RegularFile.open` / `read`.
@inline(__always) private func systemOpen(_ path: UnsafePointer<CChar>, _ flags: Int32) -> Int32 {
    #if canImport(Glibc)
    Glibc.open(path, flags)
    #else
    Darwin.open(path, flags)
    #endif
}

@inline(__always) private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    Glibc.read(fd, buffer, count)
    #else
    Darwin.read(fd, buffer, count)
    #endif
}

/// At most `limit` characters of `text`, with "…" when cut: error messages quote user input
/// (a key, a value, a line) without echoing megabytes of it.
public func excerpt(_ text: String, limit: Int = 80) -> String {
    var end = text.startIndex
    guard text.formIndex(&end, offsetBy: limit, limitedBy: text.endIndex), end != text.endIndex else { return text }
    return String(text[..<end]) + "…"
}
