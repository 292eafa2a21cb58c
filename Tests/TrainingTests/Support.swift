// Shared by the integration tests: where things are, and running the real binary.
import Foundation
import Tensor

let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path
let goldenDirectory = packageRoot + "/Tests/Fixtures/golden"

/// The debug binary `swift test` builds alongside the tests.
let binaryPath: String = {
    for candidate in [".build/debug/cavpt-dist", ".build/x86_64-unknown-linux-gnu/debug/cavpt-dist"] {
        let path = packageRoot + "/" + candidate
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return packageRoot + "/.build/debug/cavpt-dist"
}()

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program to completion, capturing its output; `timeout` guards a hang, not a speed.
@discardableResult
func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String] = [:],
    directory: String? = nil, timeout: TimeInterval = 600
) throws -> ProcessResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    for (k, v) in environment { env[k] = v }
    process.environment = env
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let outPipe = Pipe(), errPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Drain both pipes concurrently so a chatty child never blocks on a full pipe.
    nonisolated(unsafe) var outData = Data(), errData = Data()
    let group = DispatchGroup()
    group.enter();
    DispatchQueue.global().async {
        outData = outPipe.fileHandleForReading.readDataToEndOfFile(); group.leave()
    }
    group.enter();
    DispatchQueue.global().async {
        errData = errPipe.fileHandleForReading.readDataToEndOfFile(); group.leave()
    }
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning { process.terminate(); kill(-process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    group.wait()
    return ProcessResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

func cavptDist(
    _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
) throws -> ProcessResult {
    try runProcess(binaryPath, arguments, environment: environment, directory: directory)
}

func mpirun(
    _ ranks: Int, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
) throws -> ProcessResult {
    var env = environment
    env["CAVPT_DIST_BLAS_THREADS"] = env["CAVPT_DIST_BLAS_THREADS"] ?? "1"
    return try runProcess(
        "/usr/bin/mpirun",
        [
            "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-q",
            "-np", String(ranks), binaryPath,
        ] + arguments,
        environment: env, directory: directory)
}

/// All of this process's scratch folders live under one root; roots left by earlier test processes
/// that have exited are removed when the first folder is made.
let scratchRoot: String = {
    let base = NSTemporaryDirectory() + "cavpt-dist-tests"
    let fm = FileManager.default
    for entry in (try? fm.contentsOfDirectory(atPath: base)) ?? [] {
        if let pid = Int32(entry), kill(pid, 0) != 0 { try? fm.removeItem(atPath: base + "/" + entry) }
    }
    let root = base + "/\(getpid())"
    try? fm.createDirectory(atPath: root, withIntermediateDirectories: true)
    return root
}()

func temporaryDirectory(_ name: String) -> String {
    let path = scratchRoot + "/\(name)-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func relativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
    var diff: Float = 0, ref: Float = 0
    for i in 0..<min(actual.count, expected.count) {
        diff = max(diff, abs(actual.data[i] - expected.data[i]))
        ref = max(ref, abs(expected.data[i]))
    }
    return actual.count == expected.count ? diff / max(ref, 1e-30) : .infinity
}
