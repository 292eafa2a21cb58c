// Scenarios DistributedTests runs under real mpirun (one process per rank), plus the allreduce benchmark.
//
//   DistributedCheck collectives DIR   every collective once; each rank writes DIR/rank-R.json
//   DistributedCheck fail              rank 1 (rank 0 alone) fails while the others wait in an allreduce
//   DistributedCheck info              one line per rank: placement and BLAS threads
//   DistributedCheck bench [MB...]     allreduce time per float buffer size (default 1 and 10 MB)
import Distributed
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
guard let scenario = arguments.first else {
    FileHandle.standardError.write(Data("usage: DistributedCheck collectives DIR | fail | info | bench [MB...]\n".utf8))
    exit(2)
}

let communicator: Communicator
do {
    communicator = try Communicators.makeDefault()
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}

do {
    switch scenario {
    case "collectives":
        guard arguments.count == 2 else { communicator.fail("collectives needs an output directory") }
        try runCollectives(communicator, outputDirectory: URL(fileURLWithPath: arguments[1]))
    case "fail":
        try runFailure(communicator)
    case "info":
        try runInfo(communicator)
    case "bench":
        let megabytes = arguments.dropFirst().compactMap(Double.init)
        try runBenchmark(communicator, megabytes: megabytes.isEmpty ? [1, 10] : megabytes)
    default:
        communicator.fail("unknown scenario \"\(scenario)\"; expected collectives, fail, info or bench")
    }
    try Communicators.finalize()
} catch {
    communicator.fail("\(error)")
}

/// What one rank saw; DistributedTests decodes it and checks every value against its own expectations.
struct CollectivesRecord: Codable {
    var backend: String
    var rank: Int
    var size: Int
    var localRank: Int
    var localSize: Int
    var nodeCPUs: Int
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
    var splitRank: Int
    var splitSize: Int
    var splitSumOfWorldRanks: Float
    var splitStats: CommStats
    var stats: CommStats
}

func runCollectives(_ comm: Communicator, outputDirectory: URL) throws {
    let rank = comm.rank, size = comm.size
    // Configuration-like text with multi-byte UTF-8. (A local: main.swift globals below the top-level
    // code are not yet initialised when it runs.)
    let broadcastText = #"{"model": "ViT-B/32", "classes": ["café", "日本の猫"], "lr": 0.002}"#
    comm.resetStats()

    var sumFloat = (0..<7).map { Float(rank + 1) * Float($0) - 0.25 }
    try comm.allreduceSum(&sumFloat)
    var sumDouble = (0..<5).map { Double(rank) + 0.5 * Double($0) }
    try sumDouble.withUnsafeMutableBufferPointer { try comm.allreduceSum($0) }
    var maxDouble = (0..<5).map { Double((rank * 7 + $0) % 5) }
    try comm.allreduce(&maxDouble, .max)
    let sumInt64 = try comm.allreduce(Int64(1) << (40 + rank), .sum)

    var fromFirst = rank == 0 ? [1.5, -2, 3.25, 0, 1e-3, 65504] : [Float](repeating: -1, count: 6)
    try comm.broadcast(&fromFirst, root: 0)
    var fromLast = rank == size - 1 ? [Float(size) + 0.5, -7, 2.75] : [Float](repeating: 0, count: 3)
    try comm.broadcast(&fromLast, root: size - 1)
    let text = try comm.broadcast(rank == 0 ? broadcastText : "stale text on rank \(rank)", root: 0)
    let emptyText = try comm.broadcast(rank == 0 ? "" : "not empty", root: 0)

    // Rank r contributes r + 1 values 100r + j.
    let counts = (0..<size).map { $0 + 1 }
    let contribution = (0..<rank + 1).map { Float(100 * rank + $0) }
    var gatheredFixed = [Float](repeating: .nan, count: counts.reduce(0, +))
    try contribution.withUnsafeBufferPointer { source in
        try gatheredFixed.withUnsafeMutableBufferPointer { try comm.allgather(source, into: $0, counts: counts) }
    }
    // Rank r contributes r values 10r + j: rank 0's part is empty, like an empty shard.
    let gatheredArrays = try comm.allgather((0..<rank).map { Float(10 * rank + $0) })

    // Even and odd ranks, each group in reverse rank order.
    let half = try comm.split(color: rank % 2, key: -rank)
    let splitSum = try half.allreduce(Float(rank), .sum)
    try comm.barrier()

    let record = CollectivesRecord(
        backend: comm is MPICommunicator ? "mpi" : "single",
        rank: rank, size: size, localRank: comm.localRank, localSize: comm.localSize, nodeCPUs: comm.nodeCPUs,
        sumFloat: sumFloat, sumDouble: sumDouble, maxDouble: maxDouble, sumInt64: sumInt64,
        broadcastFromFirst: fromFirst, broadcastFromLast: fromLast,
        broadcastString: text, broadcastEmptyString: emptyText,
        gatheredFixed: gatheredFixed, gatheredArrays: gatheredArrays,
        splitRank: half.rank, splitSize: half.size, splitSumOfWorldRanks: splitSum,
        splitStats: half.stats, stats: comm.stats)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    try encoder.encode(record).write(to: outputDirectory.appendingPathComponent("rank-\(rank).json"))
}

/// The failing rank never enters the allreduce the others wait in; `fail` must end them all.
func runFailure(_ comm: Communicator) throws {
    let failingRank = comm.size > 1 ? 1 : 0
    if comm.rank == failingRank {
        usleep(300_000) // let the other ranks get into the allreduce first
        comm.fail("corrupt image train/cat/003.jpg: not a JPEG file (read only by this rank)")
    }
    var value: [Float] = [1]
    try comm.allreduceSum(&value)
    print("rank \(comm.rank): allreduce returned although rank \(failingRank) never joined")
}

func runInfo(_ comm: Communicator) throws {
    let line =
        "rank \(comm.rank)/\(comm.size) local \(comm.localRank)/\(comm.localSize) nodeCPUs \(comm.nodeCPUs) "
        + "processCPUs \(processCPUCount()) onlineCPUs \(onlineCPUCount()) "
        + "blasThreads \(comm.defaultBLASThreads(override: nil)) backend \(comm.backend)"
    let lines = try comm.allgather(Array(line.utf8))
    if comm.isRoot { for bytes in lines { print(String(decoding: bytes, as: UTF8.self)) } }
}

/// Mean and best time of an in-place float allreduce, the slowest rank's clock counting.
func runBenchmark(_ comm: Communicator, megabytes: [Double]) throws {
    if comm.isRoot { print("allreduce (sum, in place, Float) over \(comm.size) ranks, \(comm.backend)") }
    for size in megabytes {
        let count = max(1, Int(size * 1_048_576) / MemoryLayout<Float>.stride)
        var buffer = [Float](repeating: 1, count: count)
        let iterations = count <= 1 << 20 ? 50 : 10
        var times: [Double] = []
        try buffer.withUnsafeMutableBufferPointer { pointer in
            for _ in 0..<3 { try comm.allreduceSum(pointer) }
            for _ in 0..<iterations {
                try comm.barrier()
                let start = ContinuousClock.now
                try comm.allreduceSum(pointer)
                let elapsed = ContinuousClock.now - start
                times.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
            }
        }
        try comm.allreduce(&times, .max)
        let mean = times.reduce(0, +) / Double(times.count)
        let best = times.min() ?? mean
        let bytes = Double(count * MemoryLayout<Float>.stride)
        if comm.isRoot {
            print(
                String(
                    format: "%6.2f MB (%8d floats): mean %8.3f ms  best %8.3f ms  %6.2f GB/s (buffer/mean)",
                    bytes / 1_048_576, count, mean * 1e3, best * 1e3, bytes / mean / 1e9))
        }
    }
}
