// Communicator backends: the single-process one in this process, the MPI one under real mpirun (1–3 ranks).
import Foundation
import Testing

@testable import Distributed

// MARK: - Single process, in this process

@Suite struct SingleProcessTests {
    @Test func collectivesLeaveValuesAndCountCalls() throws {
        let comm = SingleProcessCommunicator()
        #expect(comm.rank == 0 && comm.size == 1 && comm.localRank == 0 && comm.localSize == 1)
        #expect(comm.isRoot)
        #expect(comm.nodeCPUs == processCPUCount())

        var values: [Float] = [1.5, -2, 3]
        try comm.allreduceSum(&values)
        #expect(values == [1.5, -2, 3])
        try comm.allreduce(&values, .max)
        #expect(try comm.allreduce(Int64(7), .sum) == 7)
        try comm.broadcast(&values, root: 0)
        #expect(values == [1.5, -2, 3])
        #expect(try comm.broadcast("café config", root: 0) == "café config")
        #expect(try comm.broadcast(Data([1, 2, 3]), root: 0) == Data([1, 2, 3]))
        #expect(try comm.allgather([Float(4), 5]) == [[4, 5]])
        #expect(try comm.allgather(Int32(9)) == [9])
        try comm.barrier()
        let sub = try comm.split(color: 3, key: -1)
        #expect(sub.rank == 0 && sub.size == 1)

        var expected = CommStats()
        expected.allreduces = 3
        expected.bytesReduced = 12 + 12 + 8
        expected.broadcasts = 1 + 2 + 2
        expected.bytesBroadcast = 12 + (8 + 12) + (8 + 3)
        expected.allgathers = 2 + 1
        expected.bytesGathered = 8 + 8 + 4
        expected.barriers = 1
        expected.splits = 1
        #expect(comm.stats == expected)
        comm.resetStats()
        #expect(comm.stats == CommStats())
    }

    @Test func allgatherCopiesTheContribution() throws {
        let comm = SingleProcessCommunicator()
        let contribution: [Double] = [0.25, -1, 8]
        var gathered = [Double](repeating: .nan, count: 3)
        try contribution.withUnsafeBufferPointer { source in
            try gathered.withUnsafeMutableBufferPointer { try comm.allgather(source, into: $0, counts: [3]) }
        }
        #expect(gathered == contribution)
    }

    @Test func wrongArgumentsThrowNamedErrors() throws {
        let comm = SingleProcessCommunicator()
        var values: [Float] = [1]
        #expect(throws: CommError.invalidRoot(call: "broadcast", root: 1, size: 1)) {
            try comm.broadcast(&values, root: 1)
        }
        #expect(throws: CommError.invalidColor(color: -1)) { _ = try comm.split(color: -1, key: 0) }
        var gathered = [Float](repeating: 0, count: 2)
        let error = #expect(throws: CommError.self) {
            try values.withUnsafeBufferPointer { source in
                try gathered.withUnsafeMutableBufferPointer { try comm.allgather(source, into: $0, counts: [2]) }
            }
        }
        #expect(error?.description == "allgather: rank 0 contributes 1 elements but counts[0] is 2")
        #expect(comm.stats == CommStats())
    }
}

// MARK: - Pure helpers

@Suite struct HelperTests {
    @Test func backendFollowsTheLauncherEnvironment() throws {
        #expect(!Communicators.launchedByMPI(environment: [:]))
        #expect(!Communicators.launchedByMPI(environment: ["SLURM_PROCID": "0", "HOME": "/root"]))
        #expect(Communicators.launchedByMPI(environment: ["OMPI_COMM_WORLD_SIZE": "2"]))
        #expect(Communicators.launchedByMPI(environment: ["PMIX_RANK": "0"]))
        #expect(Communicators.launchedByMPI(environment: ["PMI_RANK": "1"]))
        #expect(try Communicators.makeDefault(environment: [:]) is SingleProcessCommunicator)
    }

    @Test func blasThreadsShareTheNodeCPUs() {
        #expect(defaultBLASThreads(localSize: 1, override: nil, nodeCPUs: 2) == 2)
        #expect(defaultBLASThreads(localSize: 2, override: nil, nodeCPUs: 2) == 1)
        #expect(defaultBLASThreads(localSize: 3, override: nil, nodeCPUs: 2) == 1)
        #expect(defaultBLASThreads(localSize: 4, override: nil, nodeCPUs: 64) == 16)
        #expect(defaultBLASThreads(localSize: 3, override: nil, nodeCPUs: 16) == 5)
        #expect(defaultBLASThreads(localSize: 2, override: 3, nodeCPUs: 2) == 3)
        #expect(defaultBLASThreads(localSize: 2, override: 0, nodeCPUs: 8) == 1)
        #expect(defaultBLASThreads(localSize: 0, override: nil, nodeCPUs: 8) == 8)
        #expect(SingleProcessCommunicator().defaultBLASThreads(override: nil) == processCPUCount())
        #expect(processCPUCount() >= 1 && processCPUCount() <= onlineCPUCount())
    }

    @Test func failureLinesAreOneLineAndNameTheRank() {
        #expect(failureLine("bad image x.jpg", rank: 0, size: 1) == "error: bad image x.jpg\n")
        #expect(failureLine("bad image x.jpg", rank: 1, size: 3) == "error: [rank 1] bad image x.jpg\n")
        #expect(failureLine("first\nsecond\n", rank: 0, size: 2) == "error: [rank 0] first second\n")
    }

    @Test func mpiErrorsNameTheCallAndCode() throws {
        // 15 is Open MPI's MPI_ERR_TRUNCATE. MPI is not initialised in this process, so there is no
        // MPI text to add (Open MPI aborts on MPI_Error_string before MPI_Init).
        #expect(throws: CommError.mpi(call: "MPI_Allreduce", code: 15, message: "")) {
            try mpiCheck(15, "MPI_Allreduce")
        }
        #expect(
            CommError.mpi(call: "MPI_Allreduce", code: 15, message: "MPI_ERR_TRUNCATE: message truncated")
                .description == "MPI_Allreduce failed (rc=15: MPI_ERR_TRUNCATE: message truncated)")
        #expect(throws: Never.self) { try mpiCheck(0, "MPI_Barrier") }
        #expect(CommError.mpi(call: "MPI_Bcast", code: 3, message: "").description == "MPI_Bcast failed (rc=3)")
        #expect(throws: CommError.countTooLarge(call: "MPI_Bcast", count: 1 << 31)) {
            _ = try mpiCount(1 << 31, call: "MPI_Bcast")
        }
    }
}

// MARK: - Real processes: DistributedCheck with and without mpirun

/// mpirun runs are serialized: on a 2-core CI machine parallel jobs would only oversubscribe further.
@Suite(.serialized) struct LaunchedTests {
    @Test(arguments: [1, 2, 3]) func collectivesUnderMPIRun(ranks: Int) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let launch = try launch(mpirun(ranks: ranks, ["collectives", directory.path]))
        try #require(launch.status == 0, "mpirun -np \(ranks) failed:\n\(launch.stderr)")
        let records = try (0..<ranks).map { try readRecord(directory, rank: $0) }
        for record in records { expectCollectives(record, size: ranks, backend: "mpi") }
    }

    @Test func collectivesWithoutMPIRunUseTheSingleProcessBackend() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let launch = try launch(check(["collectives", directory.path]))
        try #require(launch.status == 0, "DistributedCheck failed:\n\(launch.stderr)")
        #expect(launch.stderr.isEmpty) // no MPI start-up warnings
        expectCollectives(try readRecord(directory, rank: 0), size: 1, backend: "single")
    }

    /// Rank 1 fails while the others wait in an allreduce it never joins: the job must end (no hang)
    /// with a non-zero status and rank 1's one line.
    @Test(arguments: [2, 3]) func failingRankEndsTheJob(ranks: Int) throws {
        let launch = try launch(mpirun(ranks: ranks, ["fail"]))
        #expect(!launch.timedOut, "mpirun -np \(ranks) hung after rank 1 failed")
        #expect(launch.status != 0)
        let errorLines = launch.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(
            errorLines == [
                "error: [rank 1] corrupt image train/cat/003.jpg: not a JPEG file (read only by this rank)"
            ])
        #expect(!launch.stdout.contains("allreduce returned"))
    }

    @Test func failingSingleProcessExitsWithItsLine() throws {
        let launch = try launch(check(["fail"]))
        #expect(!launch.timedOut)
        #expect(launch.status == 1)
        #expect(launch.stderr == "error: corrupt image train/cat/003.jpg: not a JPEG file (read only by this rank)\n")
    }
}

// MARK: - Expectations for the `collectives` scenario, computed independently of DistributedCheck

struct CollectivesRecord: Decodable {
    var backend: String
    var rank, size, localRank, localSize, nodeCPUs: Int
    var sumFloat: [Float]
    var sumDouble: [Double]
    var maxDouble: [Double]
    var sumInt64: Int64
    var broadcastFromFirst: [Float]
    var broadcastFromLast: [Float]
    var broadcastString: String
    var broadcastEmptyString: String
    var gatheredFixed: [Float]
    var gatheredArrays: [[Float]]
    var splitRank, splitSize: Int
    var splitSumOfWorldRanks: Float
    var splitStats: CommStats
    var stats: CommStats
}

let broadcastText = #"{"model": "ViT-B/32", "classes": ["café", "日本の猫"], "lr": 0.002}"#

func expectCollectives(_ record: CollectivesRecord, size n: Int, backend: String) {
    let rank = record.rank
    #expect(record.backend == backend)
    #expect(record.size == n)
    #expect((0..<n).contains(rank))
    // One node: local and world ranks coincide; --bind-to none gives every rank this process's CPUs.
    #expect(record.localRank == rank)
    #expect(record.localSize == n)
    #expect(record.nodeCPUs == processCPUCount())

    let ranks = 0..<n
    // Rank r holds (r+1)·i − 0.25 (exact in Float at these sizes).
    #expect(record.sumFloat == (0..<7).map { Float($0 * n * (n + 1) / 2) - 0.25 * Float(n) })
    #expect(record.sumDouble == (0..<5).map { Double(n * (n - 1) / 2) + 0.5 * Double($0 * n) })
    #expect(record.maxDouble == (0..<5).map { i in Double(ranks.map { ($0 * 7 + i) % 5 }.max() ?? -1) })
    #expect(record.sumInt64 == ranks.reduce(Int64(0)) { $0 + (Int64(1) << (40 + $1)) })

    #expect(record.broadcastFromFirst == [1.5, -2, 3.25, 0, 1e-3, 65504])
    #expect(record.broadcastFromLast == [Float(n) + 0.5, -7, 2.75])
    #expect(record.broadcastString == broadcastText)
    #expect(record.broadcastEmptyString == "")

    #expect(record.gatheredFixed == ranks.flatMap { r in (0..<r + 1).map { Float(100 * r + $0) } })
    #expect(record.gatheredArrays == ranks.map { r in (0..<r).map { Float(10 * r + $0) } })

    // split(color: rank % 2, key: -rank): same parity, highest world rank first.
    let group = ranks.filter { $0 % 2 == rank % 2 }.sorted(by: >)
    #expect(record.splitRank == group.firstIndex(of: rank))
    #expect(record.splitSize == group.count)
    #expect(record.splitSumOfWorldRanks == Float(group.reduce(0, +)))
    var splitStats = CommStats()
    splitStats.allreduces = 1
    splitStats.bytesReduced = 4
    splitStats.secondsInCollectives = record.splitStats.secondsInCollectives
    #expect(record.splitStats == splitStats)

    var stats = CommStats()
    stats.allreduces = 4
    stats.bytesReduced = 7 * 4 + 5 * 8 + 5 * 8 + 8
    // floats from 0, floats from n−1, string (length + payload), empty string (length only)
    stats.broadcasts = 1 + 1 + 2 + 1
    stats.bytesBroadcast = 6 * 4 + 3 * 4 + (8 + broadcastText.utf8.count) + 8
    // fixed counts; then counts + payload, where the payload is skipped when every rank is empty (n = 1)
    stats.allgathers = n > 1 ? 3 : 2
    stats.bytesGathered = 4 * n * (n + 1) / 2 + 8 * n + 4 * n * (n - 1) / 2
    stats.barriers = 1
    stats.splits = 1
    stats.secondsInCollectives = record.stats.secondsInCollectives
    #expect(record.stats == stats)
    #expect(record.stats.secondsInCollectives >= 0)
}

// MARK: - Launching

struct Launch {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
}

struct Command {
    var executable: URL
    var arguments: [String]
}

let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// `swift test` builds DistributedCheck next to the test bundle; fall back to the debug build folder.
func checkExecutable() throws -> URL {
    let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("DistributedCheck")
    let candidates = [besideTests, packageRoot.appendingPathComponent(".build/debug/DistributedCheck")]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw LaunchError(
            "DistributedCheck not found at \(candidates.map(\.path)); run `swift build --product DistributedCheck`")
    }
    return found
}

func findInPath(_ name: String) throws -> URL {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    for directory in path.split(separator: ":") {
        let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
    }
    throw LaunchError("\(name) not found in PATH; install libopenmpi-dev / openmpi-bin")
}

func check(_ arguments: [String]) throws -> Command {
    Command(executable: try checkExecutable(), arguments: arguments)
}

/// Flags for a test machine: root in CI containers, more ranks than cores, no pinning so ranks may share.
func mpirun(ranks: Int, _ arguments: [String]) throws -> Command {
    Command(
        executable: try findInPath("mpirun"),
        arguments: [
            "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", String(ranks),
            try checkExecutable().path,
        ] + arguments)
}

struct LaunchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("distributed-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func readRecord(_ directory: URL, rank: Int) throws -> CollectivesRecord {
    try JSONDecoder().decode(
        CollectivesRecord.self,
        from: Data(contentsOf: directory.appendingPathComponent("rank-\(rank).json")))
}

/// Runs a command with output in files (no pipe can fill up) and kills it after `timeout` seconds,
/// which only a hang reaches: the jobs take about a second.
func launch(_ command: Command, timeout: Double = 60) throws -> Launch {
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let stdoutURL = directory.appendingPathComponent("stdout"), stderrURL = directory.appendingPathComponent("stderr")
    for url in [stdoutURL, stderrURL] { try Data().write(to: url) }
    let process = Process()
    process.executableURL = command.executable
    process.arguments = command.arguments
    // Only the launcher under test may make a process a rank.
    process.environment = ProcessInfo.processInfo.environment.filter { key, _ in
        !(key.hasPrefix("OMPI_") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_"))
    }
    process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
    process.standardError = try FileHandle(forWritingTo: stderrURL)
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
        if Date() > deadline {
            timedOut = true
            process.terminate() // mpirun forwards SIGTERM to its ranks
            break
        }
        usleep(20_000)
    }
    process.waitUntilExit()
    return Launch(
        status: process.terminationStatus,
        stdout: String(decoding: try Data(contentsOf: stdoutURL), as: UTF8.self),
        stderr: String(decoding: try Data(contentsOf: stderrURL), as: UTF8.self),
        timedOut: timedOut)
}
