import Data
// Decode + train-augment throughput, to compare with the trainer's image rate
// (`cavpt-dist bench data`). Prints nothing; the caller reports the number.
import Foundation
import Tensor

/// Images per second that `threads` threads sustain decoding `paths` round-robin and writing the
/// training transform at `resolution` (as the BatchLoader's workers do), measured for about `seconds`.
public func benchmarkDecodeAugment(paths: [String], resolution: Int, threads: Int, seconds: Double) throws -> Double {
    guard !paths.isEmpty, resolution >= 1, threads >= 1, seconds > 0 else {
        throw DataError.invalidArgument(
            "benchmarkDecodeAugment: need images, resolution >= 1, threads >= 1, seconds > 0")
    }
    for path in paths { _ = try ImageFile.decode(path: path) } // fail on a bad file before timing

    final class Counter: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var done = 0
        var failure: Error?
    }
    let counter = Counter()
    let start = DispatchTime.now().uptimeNanoseconds
    let deadline = start + UInt64(seconds * 1e9)
    let group = DispatchGroup()
    for _ in 0..<threads {
        group.enter()
        let thread = Thread {
            let slot = Tensor(uninitialized: [3, resolution, resolution])
            while DispatchTime.now().uptimeNanoseconds < deadline {
                counter.lock.lock()
                let i = counter.next
                counter.next += 1
                counter.lock.unlock()
                do {
                    let image = try ImageFile.decode(path: paths[i % paths.count])
                    var rng = ImageTransforms.augmentationRNG(seed: 0, epoch: 0, position: i)
                    writeTrainImage(image, resolution: resolution, rng: &rng, into: slot.data)
                } catch {
                    counter.lock.lock()
                    counter.failure = error
                    counter.lock.unlock()
                    break
                }
                counter.lock.lock()
                counter.done += 1
                counter.lock.unlock()
            }
            group.leave()
        }
        thread.start()
    }
    group.wait()
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    if let failure = counter.failure { throw failure }
    return Double(counter.done) / elapsed
}
