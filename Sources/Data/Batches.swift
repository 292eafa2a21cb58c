// Epoch plans (seeded order, global batches, rank shards) and the loader that decodes and
// transforms a rank's shard of each batch on background threads, a bounded number of batches ahead.
// b per-rank batch, B global batch, N ranks, R resolution.
import Foundation
import Tensor

/// One epoch's order and global batches (DESIGN §4, §5). The order is a permutation of the train
/// list keyed by (seed, epoch); batch i covers positions `globalBatches[i]` of that order. With at
/// least B samples, only full batches are kept (drop_last); with fewer, one batch holds them all.
public struct EpochPlan: Sendable, Equatable {
    public let seed: Int
    public let epoch: Int
    public let batchSize: Int
    /// [n] the train-list index at each position of the epoch.
    public let order: [Int]
    /// Position ranges of the global batches, in order.
    public let globalBatches: [Range<Int>]

    public init(trainCount: Int, batchSize: Int, seed: Int, epoch: Int) {
        precondition(trainCount >= 0 && batchSize >= 1, "EpochPlan: \(trainCount) samples, batch size \(batchSize)")
        self.seed = seed
        self.epoch = epoch
        self.batchSize = batchSize
        var order = Array(0..<trainCount)
        var rng = StreamKey.generator(StreamKey.permutation, seed, epoch)
        // Fisher–Yates from the back: position i swaps with a uniform j in 0...i.
        var i = trainCount - 1
        while i > 0 {
            order.swapAt(i, rng.integer(below: i + 1))
            i -= 1
        }
        self.order = order
        if trainCount >= batchSize {
            globalBatches = (0..<(trainCount / batchSize)).map { ($0 * batchSize)..<(($0 + 1) * batchSize) }
        } else {
            globalBatches = trainCount > 0 ? [0..<trainCount] : []
        }
    }

    /// Rank `rank`'s contiguous part of a global batch: near-equal parts, the first
    /// `count % size` ranks one larger; empty when the batch has fewer entries than ranks.
    public static func shard(_ globalBatch: Range<Int>, rank: Int, size: Int) -> Range<Int> {
        precondition(size >= 1 && (0..<size).contains(rank), "shard: rank \(rank) of \(size)")
        let base = globalBatch.count / size, extra = globalBatch.count % size
        let start = globalBatch.lowerBound + rank * base + min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// Evaluation batches over a list of `count` samples: consecutive, in list order, none dropped.
    public static func evaluationBatches(count: Int, batchSize: Int) -> [Range<Int>] {
        precondition(count >= 0 && batchSize >= 1, "evaluationBatches: \(count) samples, batch size \(batchSize)")
        return stride(from: 0, to: count, by: batchSize).map { $0..<min($0 + batchSize, count) }
    }
}

/// One rank's part of one global batch, ready for the model.
public struct Batch: @unchecked Sendable {
    /// Which global batch of the epoch (or evaluation pass) this is.
    public let index: Int
    /// [b, 3, R, R] normalised pixels.
    public let pixels: Tensor
    /// [b] labels.
    public let labels: [Int]
    /// [b] epoch positions (training) or list indices (evaluation) of the samples.
    public let positions: [Int]
    /// B: the number of samples in the whole global batch, across ranks.
    public let globalCount: Int

    /// A shard with no samples (this rank takes part in the step's collectives with nothing), as a
    /// rank whose images could not be read sends while its group learns of the failure.
    public static func empty(index: Int, globalCount: Int, resolution: Int) -> Batch {
        Batch(
            index: index, pixels: Tensor(zeros: [0, 3, resolution, resolution]), labels: [], positions: [],
            globalCount: globalCount)
    }
}

/// Decodes and transforms one rank's shards on `workers` background threads, at most `prefetch`
/// batches ahead of the consumer. `next()` returns the batches in order, then nil; a sample that
/// cannot be read or decoded surfaces there as a thrown `DataError` naming the file and the list.
public final class BatchLoader: @unchecked Sendable {
    public enum Transform: Sendable, Equatable {
        /// RandomResizedCrop + flip, keyed by (seed, epoch, position).
        case train(seed: Int, epoch: Int)
        /// Resize + centre crop.
        case test
    }

    let state: LoaderState
    public var batchCount: Int { state.jobs.count }

    /// Training batches of one epoch for rank `rank` of `size`. `samples` is the train list (the
    /// few-shot list, usually) whose paths are relative to `imageRoot`; `listName` names it in errors.
    /// `firstBatch` > 0 skips the batches a resumed mid-epoch checkpoint has already trained.
    public static func training(
        samples: [Sample], imageRoot: String, listName: String, plan: EpochPlan,
        rank: Int, size: Int, resolution: Int,
        workers: Int = 2, prefetch: Int = 2, firstBatch: Int = 0
    ) throws -> BatchLoader {
        guard plan.order.count == samples.count else {
            throw DataError.invalidArgument(
                "BatchLoader: the epoch plan covers \(plan.order.count) samples, "
                    + "the \(listName) list has \(samples.count)")
        }
        try checkRank(rank, size)
        guard (0...plan.globalBatches.count).contains(firstBatch) else {
            throw DataError.invalidArgument(
                "BatchLoader: first batch \(firstBatch) is outside the epoch's "
                    + "\(plan.globalBatches.count) batches")
        }
        let jobs = plan.globalBatches.enumerated().dropFirst(firstBatch).map { index, batch in
            let positions = Array(EpochPlan.shard(batch, rank: rank, size: size))
            return BatchJob(
                index: index, samples: positions.map { samples[plan.order[$0]] },
                positions: positions, globalCount: batch.count)
        }
        return try BatchLoader(
            jobs: jobs, imageRoot: imageRoot, listName: listName,
            transform: .train(seed: plan.seed, epoch: plan.epoch),
            resolution: resolution, workers: workers, prefetch: prefetch)
    }

    /// Evaluation batches: the list in order, in global batches of `batchSize`, each split across
    /// ranks like training batches (so every rank runs the same number of batches).
    public static func evaluation(
        samples: [Sample], imageRoot: String, listName: String, batchSize: Int,
        rank: Int, size: Int, resolution: Int,
        workers: Int = 2, prefetch: Int = 2
    ) throws -> BatchLoader {
        guard batchSize >= 1 else {
            throw DataError.invalidArgument("BatchLoader: batch size \(batchSize) must be >= 1")
        }
        try checkRank(rank, size)
        let jobs = EpochPlan.evaluationBatches(count: samples.count, batchSize: batchSize).enumerated().map {
            index, batch in
            let positions = Array(EpochPlan.shard(batch, rank: rank, size: size))
            return BatchJob(
                index: index, samples: positions.map { samples[$0] }, positions: positions,
                globalCount: batch.count)
        }
        return try BatchLoader(
            jobs: jobs, imageRoot: imageRoot, listName: listName, transform: .test,
            resolution: resolution, workers: workers, prefetch: prefetch)
    }

    private static func checkRank(_ rank: Int, _ size: Int) throws {
        guard size >= 1, (0..<size).contains(rank) else {
            throw DataError.invalidArgument("BatchLoader: rank \(rank) is not in 0..<\(size)")
        }
    }

    init(
        jobs: [BatchJob], imageRoot: String, listName: String, transform: Transform, resolution: Int,
        workers: Int, prefetch: Int
    ) throws {
        guard resolution >= 1 else {
            throw DataError.invalidArgument("BatchLoader: resolution \(resolution) must be >= 1")
        }
        guard workers >= 1 else {
            throw DataError.invalidArgument("BatchLoader: \(workers) worker threads; need at least 1")
        }
        state = LoaderState(
            jobs: jobs, imageRoot: imageRoot, listName: listName, transform: transform,
            resolution: resolution, prefetch: max(prefetch, 1))
        for _ in 0..<workers {
            let thread = Thread { [state] in state.work() }
            thread.name = "cavpt-dist data worker"
            thread.start()
        }
    }

    deinit { state.cancel() }

    /// The next batch in order, or nil after the last. Blocks until its images are ready.
    public func next() throws -> Batch? { try state.next() }

    /// Stops the workers; `next()` returns nil afterwards.
    public func cancel() { state.cancel() }
}

struct BatchJob: Sendable {
    let index: Int
    let samples: [Sample]
    let positions: [Int]
    let globalCount: Int
}

/// The loader's shared state; every mutable field is guarded by `condition`.
final class LoaderState: @unchecked Sendable {
    let jobs: [BatchJob]
    let imageRoot: String
    let listName: String
    let transform: BatchLoader.Transform
    let resolution: Int
    let prefetch: Int

    final class Slot {
        /// [b, 3, R, R]
        let pixels: Tensor
        var remaining: Int
        var errors: [(item: Int, error: Error)] = []
        init(pixels: Tensor, remaining: Int) {
            self.pixels = pixels
            self.remaining = remaining
        }
    }

    private let condition = NSCondition()
    private var claimBatch = 0, claimItem = 0 // the next image a worker takes
    private var consumed = 0 // batches handed to the consumer
    private var slots: [Int: Slot] = [:]
    private var cancelled = false

    init(
        jobs: [BatchJob], imageRoot: String, listName: String, transform: BatchLoader.Transform,
        resolution: Int, prefetch: Int
    ) {
        self.jobs = jobs
        self.imageRoot = imageRoot
        self.listName = listName
        self.transform = transform
        self.resolution = resolution
        self.prefetch = prefetch
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// Worker loop: take the next image inside the prefetch window, decode and transform it into
    /// its batch's tensor, report completion.
    func work() {
        let imageFloats = 3 * resolution * resolution
        while true {
            condition.lock()
            var claimed: (slot: Slot, job: BatchJob, item: Int)?
            while claimed == nil {
                while claimBatch < jobs.count && jobs[claimBatch].samples.isEmpty { claimBatch += 1 }
                if cancelled || claimBatch >= jobs.count { break }
                if claimBatch >= consumed + prefetch {
                    condition.wait()
                    continue
                }
                let job = jobs[claimBatch]
                let slot: Slot
                if let existing = slots[claimBatch] {
                    slot = existing
                } else {
                    slot = Slot(
                        pixels: Tensor(uninitialized: [job.samples.count, 3, resolution, resolution]),
                        remaining: job.samples.count)
                    slots[claimBatch] = slot
                }
                claimed = (slot, job, claimItem)
                claimItem += 1
                if claimItem == job.samples.count {
                    claimBatch += 1
                    claimItem = 0
                }
            }
            condition.unlock()
            guard let (slot, job, item) = claimed else { return }

            var failure: Error?
            do {
                let path = joinPath(imageRoot, job.samples[item].path)
                let image: RGBImage
                do { image = try ImageFile.decode(path: path) } catch let error as DataError {
                    throw error.listed(in: listName)
                }
                let destination = slot.pixels.data + item * imageFloats
                switch transform {
                case let .train(seed, epoch):
                    var rng = ImageTransforms.augmentationRNG(seed: seed, epoch: epoch, position: job.positions[item])
                    writeTrainImage(image, resolution: resolution, rng: &rng, into: destination)
                case .test:
                    writeTestImage(image, resolution: resolution, into: destination)
                }
            } catch {
                failure = error
            }

            condition.lock()
            slot.remaining -= 1
            if let failure { slot.errors.append((item, failure)) }
            if slot.remaining == 0 { condition.broadcast() }
            condition.unlock()
        }
    }

    func next() throws -> Batch? {
        condition.lock()
        guard !cancelled, consumed < jobs.count else {
            condition.unlock()
            return nil
        }
        let index = consumed
        let job = jobs[index]
        var slot: Slot?
        if !job.samples.isEmpty {
            while !cancelled && (slots[index]?.remaining ?? 1) > 0 { condition.wait() }
            slot = slots.removeValue(forKey: index)
            if cancelled {
                condition.unlock()
                return nil
            }
        }
        consumed += 1
        condition.broadcast() // the prefetch window moved
        condition.unlock()

        if let first = slot?.errors.min(by: { $0.item < $1.item }) { throw first.error }
        let pixels = slot?.pixels ?? Tensor(zeros: [0, 3, resolution, resolution])
        return Batch(
            index: job.index, pixels: pixels, labels: job.samples.map(\.label),
            positions: job.positions, globalCount: job.globalCount)
    }
}
