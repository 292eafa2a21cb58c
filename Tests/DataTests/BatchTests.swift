// Epoch plans, rank shards and the background loader: a sample's pixels do not depend on the
// rank count, the shards of N ranks reassemble the single-rank batch exactly, and image errors
// surface with the file and the list that referenced it.
import Foundation
import Tensor
import Testing

@testable import Data

@Suite struct BatchTests {
    @Test func epochOrderIsASeededPermutation() {
        let plan = EpochPlan(trainCount: 100, batchSize: 32, seed: 1, epoch: 0)
        #expect(plan.order.sorted() == Array(0..<100))
        #expect(plan.order != Array(0..<100))
        #expect(plan == EpochPlan(trainCount: 100, batchSize: 32, seed: 1, epoch: 0))
        #expect(plan.order != EpochPlan(trainCount: 100, batchSize: 32, seed: 1, epoch: 1).order)
        #expect(plan.order != EpochPlan(trainCount: 100, batchSize: 32, seed: 2, epoch: 0).order)
        // Every sample lands first about equally often over many epochs.
        var firsts = [Int](repeating: 0, count: 5)
        for epoch in 0..<5000 { firsts[EpochPlan(trainCount: 5, batchSize: 5, seed: 9, epoch: epoch).order[0]] += 1 }
        #expect(firsts.allSatisfy { abs($0 - 1000) < 120 }, "\(firsts)")
    }

    @Test func dropLastOnlyWithAtLeastOneFullBatch() {
        #expect(
            EpochPlan(trainCount: 100, batchSize: 32, seed: 1, epoch: 0).globalBatches == [0..<32, 32..<64, 64..<96])
        #expect(EpochPlan(trainCount: 64, batchSize: 32, seed: 1, epoch: 0).globalBatches == [0..<32, 32..<64])
        #expect(EpochPlan(trainCount: 20, batchSize: 32, seed: 1, epoch: 0).globalBatches == [0..<20])
        #expect(EpochPlan(trainCount: 0, batchSize: 32, seed: 1, epoch: 0).globalBatches.isEmpty)
        #expect(EpochPlan.evaluationBatches(count: 10, batchSize: 4) == [0..<4, 4..<8, 8..<10])
    }

    @Test func shardsAreContiguousNearEqualAndCover() {
        #expect(EpochPlan.shard(0..<32, rank: 0, size: 3) == 0..<11)
        #expect(EpochPlan.shard(0..<32, rank: 1, size: 3) == 11..<22)
        #expect(EpochPlan.shard(0..<32, rank: 2, size: 3) == 22..<32)
        #expect(EpochPlan.shard(64..<66, rank: 2, size: 3) == 66..<66)
        for count in 0...12 {
            for size in 1...5 {
                let batch = 7..<(7 + count)
                let shards = (0..<size).map { EpochPlan.shard(batch, rank: $0, size: size) }
                #expect(shards.flatMap { Array($0) } == Array(batch))
                #expect(shards.map(\.count) == (0..<size).map { count / size + ($0 < count % size ? 1 : 0) })
            }
        }
    }

    /// A synthetic CoOp dataset on disk: sizes vary, a few grayscale images.
    func makeDataset(_ root: String) throws -> DatasetSplits {
        try writeCoOpDataset(
            root: root, folder: "dtd", images: "images", splitFile: "split_zhou_DescribableTextures.json",
            classes: ["banded", "dotted", "zig_zagged"], perClass: ["train": 4, "val": 1, "test": 3])
        return try loadDataset(spec: try datasetSpec(named: "dtd"), dataRoot: root)
    }

    /// All batches of a loader, in order.
    func drain(_ loader: BatchLoader) throws -> [Batch] {
        var batches: [Batch] = []
        while let batch = try loader.next() { batches.append(batch) }
        return batches
    }

    @Test func rankShardsReassembleTheSingleRankBatchExactly() throws {
        let root = try makeTemporaryFolder("shards")
        defer { removeTemporaryFolder(root) }
        let splits = try makeDataset(root)
        let r = 24
        let plan = EpochPlan(trainCount: splits.train.count, batchSize: 5, seed: 3, epoch: 2) // 12 -> 2 batches of 5
        func train(rank: Int, size: Int, workers: Int = 2) throws -> [Batch] {
            try drain(
                try BatchLoader.training(
                    samples: splits.train, imageRoot: splits.imageRoot, listName: "train",
                    plan: plan, rank: rank, size: size, resolution: r, workers: workers))
        }
        let single = try train(rank: 0, size: 1)
        #expect(single.count == 2 && single.allSatisfy { $0.pixels.shape == [5, 3, r, r] && $0.globalCount == 5 })
        #expect(single.map(\.positions) == [Array(0..<5), Array(5..<10)])
        #expect(single[0].labels == plan.order[0..<5].map { splits.train[$0].label })
        for size in [2, 3] {
            let perRank = try (0..<size).map { try train(rank: $0, size: size, workers: 1 + $0 % 2) }
            for (b, whole) in single.enumerated() {
                let parts = perRank.map { $0[b] }
                #expect(
                    parts.map(\.pixels.shape[0])
                        == (0..<size).map { EpochPlan.shard(0..<5, rank: $0, size: size).count })
                #expect(parts.flatMap(\.positions) == whole.positions)
                #expect(parts.flatMap(\.labels) == whole.labels)
                #expect(parts.flatMap(\.pixels.scalars) == whole.pixels.scalars, "N=\(size) batch \(b)")
                #expect(parts.allSatisfy { $0.globalCount == 5 && $0.index == b })
            }
        }
        // A sample's pixels are its transform with the generator keyed by its position.
        let position = 7, sample = splits.train[plan.order[position]]
        var rng = ImageTransforms.augmentationRNG(seed: 3, epoch: 2, position: position)
        let direct = Tensor(zeros: [3, r, r])
        writeTrainImage(
            try JPEG.decode(path: splits.imagePath(of: sample)), resolution: r, rng: &rng, into: direct.data)
        #expect(single[1].pixels[2].scalars == direct.scalars)
        // Another epoch crops differently.
        let next = try drain(
            try BatchLoader.training(
                samples: splits.train, imageRoot: splits.imageRoot, listName: "train",
                plan: EpochPlan(trainCount: 12, batchSize: 5, seed: 3, epoch: 3),
                rank: 0, size: 1, resolution: r))
        #expect(next[0].pixels.scalars != single[0].pixels.scalars)
    }

    @Test func evaluationShardsReassembleAndKeepListOrder() throws {
        let root = try makeTemporaryFolder("eval")
        defer { removeTemporaryFolder(root) }
        let splits = try makeDataset(root)
        func eval(rank: Int, size: Int) throws -> [Batch] {
            try drain(
                try BatchLoader.evaluation(
                    samples: splits.test, imageRoot: splits.imageRoot, listName: "test",
                    batchSize: 4, rank: rank, size: size, resolution: 20, prefetch: 1))
        }
        let single = try eval(rank: 0, size: 1)
        #expect(single.map(\.positions) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]])
        #expect(single.flatMap(\.labels) == splits.test.map(\.label))
        for size in [2, 3] {
            let perRank = try (0..<size).map { try eval(rank: $0, size: size) }
            #expect(perRank.allSatisfy { $0.count == 3 }, "every rank runs every batch, some empty")
            for (b, whole) in single.enumerated() {
                #expect(perRank.flatMap { $0[b].pixels.scalars } == whole.pixels.scalars)
                #expect(perRank.flatMap { $0[b].positions } == whole.positions)
            }
        }
        #expect(try eval(rank: 2, size: 3)[2].pixels.shape == [0, 3, 20, 20])
    }

    @Test func imageErrorsNameTheFileAndTheList() throws {
        let root = try makeTemporaryFolder("errors")
        defer { removeTemporaryFolder(root) }
        let splits = try makeDataset(root)
        var train = splits.train
        train[3] = Sample(path: "banded/missing.jpg", label: 0)
        try writeFile(splits.imageRoot + "/dotted/corrupt.jpg", "garbage")
        train[8] = Sample(path: "dotted/corrupt.jpg", label: 1)
        let plan = EpochPlan(trainCount: train.count, batchSize: 12, seed: 1, epoch: 0)
        let loader = try BatchLoader.training(
            samples: train, imageRoot: splits.imageRoot, listName: "/runs/a/fewshot.json",
            plan: plan, rank: 0, size: 1, resolution: 8)
        let error = thrownError { try loader.next() }
        // The earliest failing image of the batch, by position.
        let first = plan.order.firstIndex { $0 == 3 || $0 == 8 }!
        let message =
            plan.order[first] == 3
            ? "\(splits.imageRoot)/banded/missing.jpg (listed in /runs/a/fewshot.json): cannot open: No such file "
                + "or directory"
            : "\(splits.imageRoot)/dotted/corrupt.jpg (listed in /runs/a/fewshot.json): not a decodable JPEG: Not a "
                + "JPEG file: starts with 0x67 0x61"
        #expect("\(error!)" == message)
        #expect(try loader.next() == nil)

        let test = [Sample(path: "dotted/corrupt.jpg", label: 1)]
        let evaluation = try BatchLoader.evaluation(
            samples: test, imageRoot: splits.imageRoot, listName: "test",
            batchSize: 4, rank: 0, size: 1, resolution: 8)
        #expect(
            "\(thrownError { try evaluation.next() }!)".hasPrefix(
                "\(splits.imageRoot)/dotted/corrupt.jpg (listed in test): not a decodable JPEG"))
    }

    @Test func abandonedLoaderStopsItsWorkers() throws {
        let root = try makeTemporaryFolder("abandon")
        defer { removeTemporaryFolder(root) }
        let splits = try makeDataset(root)
        weak var weakBatchPixels: Storage?
        weak var weakState: LoaderState?
        do {
            let loader = try BatchLoader.evaluation(
                samples: splits.test + splits.test + splits.test, imageRoot: splits.imageRoot,
                listName: "test", batchSize: 2, rank: 0, size: 1, resolution: 8)
            guard let first = try loader.next() else { Issue.record("no batch"); return }
            weakBatchPixels = first.pixels.storage
            weakState = loader.state
            loader.cancel()
            #expect(try loader.next() == nil)
        }
        // The workers see the cancellation, finish the image in hand and exit, releasing the state
        // and every batch tensor.
        for _ in 0..<500 where weakState != nil || weakBatchPixels != nil { usleep(10_000) }
        #expect(weakState == nil, "worker threads still hold the loader state")
        #expect(weakBatchPixels == nil)
        // Dropping a loader without cancel() does the same.
        do {
            let loader = try BatchLoader.evaluation(
                samples: splits.test, imageRoot: splits.imageRoot, listName: "test",
                batchSize: 1, rank: 0, size: 1, resolution: 8)
            weakState = loader.state
        }
        for _ in 0..<500 where weakState != nil { usleep(10_000) }
        #expect(weakState == nil)
        #expect(
            thrownError {
                try BatchLoader.evaluation(
                    samples: [], imageRoot: "/", listName: "t", batchSize: 2, rank: 2,
                    size: 2, resolution: 8)
            } as? DataError
                == .invalidArgument("BatchLoader: rank 2 is not in 0..<2"))
    }
}

extension Batch: Equatable {
    public static func == (a: Batch, b: Batch) -> Bool {
        a.index == b.index && a.labels == b.labels && a.positions == b.positions && a.pixels.scalars == b.pixels.scalars
    }
}
