// Test and train transforms against Pillow + torchvision: Resize + CenterCrop on real photos,
// crop + resize + flip, RandomResizedCrop boxes for torchvision's own draws and their statistics.
import Foundation
import Tensor
import Testing

@testable import Data

@Suite struct TransformTests {
    @Test func torchvisionResizeAndCropArithmetic() {
        // Resize(224): the shorter side becomes 224, the longer int(224 * long / short).
        #expect(ImageTransforms.resizedSize(width: 500, height: 375, shorterSide: 224) == (298, 224))
        #expect(ImageTransforms.resizedSize(width: 375, height: 500, shorterSide: 224) == (224, 298))
        #expect(ImageTransforms.resizedSize(width: 150, height: 200, shorterSide: 224) == (224, 298))
        #expect(ImageTransforms.resizedSize(width: 224, height: 224, shorterSide: 224) == (224, 224))
        #expect(ImageTransforms.resizedSize(width: 200, height: 50, shorterSide: 64) == (256, 64))
        // CenterCrop: round((extent - size) / 2) half to even: 74/2 = 37, 1/2 -> 0, 3/2 -> 2.
        #expect(
            ImageTransforms.centerCropBox(width: 298, height: 224, size: 224)
                == CropBox(top: 0, left: 37, height: 224, width: 224))
        #expect(
            ImageTransforms.centerCropBox(width: 225, height: 227, size: 224)
                == CropBox(top: 2, left: 0, height: 224, width: 224))
    }

    /// Pillow's own decode of a fixture, so resampler checks do not depend on the local libjpeg.
    func pillowDecode(_ entry: Manifest.Image) throws -> RGBImage? {
        guard let decoded = entry.decoded else { return nil }
        return RGBImage(width: entry.width, height: entry.height, pixels: try fixtureBytes(decoded))
    }

    @Test func testTransformMatchesPillowAndTorchvision() throws {
        let manifest = try Manifest.load()
        var resolutions = Set<Int>(), exactChecks = 0
        for entry in manifest.images {
            let image = try JPEG.decode(path: fixtureFolder + "/" + entry.file)
            for expected in entry.test {
                let want = try fixtureBytes(expected.file)
                // The contract (DESIGN §2): our decode + transform within 2/255 of Pillow + torchvision.
                let endToEnd = byteDifference(ImageTransforms.testPixels(image, resolution: expected.resolution), want)
                #expect(endToEnd.max <= 2, "\(expected.file): \(endToEnd.count) bytes differ, by up to \(endToEnd.max)")
                // The resampler itself follows Pillow's integer arithmetic: exact on Pillow's decode.
                if let pillow = try pillowDecode(entry) {
                    let difference = byteDifference(
                        ImageTransforms.testPixels(pillow, resolution: expected.resolution), want)
                    #expect(
                        difference.max == 0,
                        "\(expected.file): \(difference.count) bytes differ, by up to \(difference.max)")
                    exactChecks += 1
                }
                resolutions.insert(expected.resolution)
            }
        }
        #expect(resolutions == [64, 224])
        #expect(exactChecks == 6)
    }

    @Test func trainCropResizeFlipMatchesTorchvision() throws {
        let manifest = try Manifest.load()
        var cases = 0, exactChecks = 0
        for entry in manifest.images {
            let image = try JPEG.decode(path: fixtureFolder + "/" + entry.file)
            let pillow = try pillowDecode(entry)
            for expected in entry.train {
                let box = CropBox(
                    top: expected.box[0], left: expected.box[1], height: expected.box[2], width: expected.box[3])
                let want = try fixtureBytes(expected.file)
                let endToEnd = byteDifference(
                    ImageTransforms.cropResizeFlip(
                        image, box: box, resolution: expected.resolution, flip: expected.flip), want)
                #expect(endToEnd.max <= 2, "\(expected.file): \(endToEnd.count) bytes differ, by up to \(endToEnd.max)")
                if let pillow {
                    let difference = byteDifference(
                        ImageTransforms.cropResizeFlip(
                            pillow, box: box, resolution: expected.resolution, flip: expected.flip), want)
                    #expect(
                        difference.max == 0,
                        "\(expected.file): \(difference.count) bytes differ, by up to \(difference.max)")
                    exactChecks += 1
                }
                cases += 1
            }
        }
        #expect(cases == 14)
        #expect(exactChecks == 11)
    }

    @Test func cropAndResizeMatchPillowInBothPassOrders() throws {
        let manifest = try Manifest.load()
        for resize in manifest.resizeCases {
            let entry = try #require(manifest.images.first { $0.file == resize.file })
            let image = try #require(try pillowDecode(entry))
            let box = CropBox(top: resize.box[0], left: resize.box[1], height: resize.box[2], width: resize.box[3])
            let pixels = resizeBicubic(
                image, region: box, outWidth: resize.width, outHeight: resize.height,
                window: CropBox(top: 0, left: 0, height: resize.height, width: resize.width))
            let expected = try fixtureBytes(resize.expected)
            let difference = byteDifference(pixels, expected)
            #expect(
                difference.max == 0,
                "\(box) -> \(resize.width)x\(resize.height): \(difference.count) bytes differ by \(difference.max)"
            )
            // Any window of the output is the same window of the full output.
            let window = CropBox(
                top: resize.height / 3, left: resize.width / 4, height: (resize.height + 1) / 2,
                width: (resize.width + 2) / 2)
            let part = resizeBicubic(
                image, region: box, outWidth: resize.width, outHeight: resize.height, window: window)
            var cut: [UInt8] = []
            for y in window.top..<(window.top + window.height) {
                let start = (y * resize.width + window.left) * 3
                cut += expected[start..<(start + window.width * 3)]
            }
            #expect(part == cut, "window \(window) of \(box) -> \(resize.width)x\(resize.height)")
        }
        #expect(manifest.resizeCases.count == 11)
    }

    @Test func normalisedCHWOutput() throws {
        let manifest = try Manifest.load()
        let entry = try #require(manifest.images.first { $0.file == "cmyk_chelsea.jpg" })
        let r = 64
        let expected = try fixtureBytes(try #require(entry.test.first { $0.resolution == r }).file)
        let image = try JPEG.decode(path: fixtureFolder + "/" + entry.file)
        let slot = Tensor(zeros: [2, 3, r, r])
        writeTestImage(image, resolution: r, into: slot.data + 3 * r * r)
        let mean: [Float] = [0.48145466, 0.4578275, 0.40821073], std: [Float] = [0.26862954, 0.26130258, 0.27577711]
        var mismatches = 0
        for c in 0..<3 {
            for y in 0..<r {
                for x in 0..<r {
                    let want = (Float(expected[(y * r + x) * 3 + c]) / 255 - mean[c]) / std[c]
                    if slot.data[3 * r * r + (c * r + y) * r + x] != want { mismatches += 1 }
                }
            }
        }
        #expect(mismatches == 0)
        #expect(slot[0].scalars.allSatisfy { $0 == 0 }, "writing slot 1 touched slot 0")
    }

    /// Hands RandomResizedCrop the draws torchvision made, checking each request matches.
    struct ReplayedDraws: CropRandomSource {
        let draws: [Manifest.Draw]
        var used = 0
        var mismatches: [String] = []

        mutating func uniform(_ lo: Double, _ hi: Double) -> Double {
            guard used < draws.count else { mismatches.append("uniform beyond the recorded draws"); return lo }
            let draw = draws[used]
            used += 1
            if draw.kind != "uniform" || abs((draw.lo ?? .nan) - lo) > 1e-6 || abs((draw.hi ?? .nan) - hi) > 1e-6 {
                mismatches.append("draw \(used - 1): asked uniform(\(lo), \(hi)), torchvision drew \(draw)")
            }
            return draw.value
        }

        mutating func integer(below upperBound: Int) -> Int {
            guard used < draws.count else { mismatches.append("integer beyond the recorded draws"); return 0 }
            let draw = draws[used]
            used += 1
            if draw.kind != "integer" || draw.upper != upperBound {
                mismatches.append("draw \(used - 1): asked integer(below: \(upperBound)), torchvision drew \(draw)")
            }
            return Int(draw.value)
        }
    }

    @Test func randomResizedCropPicksTorchvisionsBox() throws {
        let manifest = try Manifest.load()
        var fallbacks = 0
        for crop in manifest.rrcCases {
            var source = ReplayedDraws(draws: crop.draws)
            let box = ImageTransforms.randomResizedCropBox(width: crop.width, height: crop.height, using: &source)
            let expected = CropBox(top: crop.box[0], left: crop.box[1], height: crop.box[2], width: crop.box[3])
            #expect(box == expected, "\(crop.width)x\(crop.height) seed \(crop.seed)")
            #expect(source.mismatches.isEmpty, "\(source.mismatches)")
            #expect(source.used == crop.draws.count)
            if crop.fallback { fallbacks += 1 }
        }
        #expect(manifest.rrcCases.count == 48)
        #expect(fallbacks >= 12, "the fixture should exercise the fallback") // 1000x30 and 30x1000 always fall back
    }

    @Test func randomResizedCropFallbackClampsTheRatio() {
        // No try can fit a 1000x30 strip (h = sqrt(area/ratio) > 30 for every area >= 0.08 * 30000),
        // so the box is the centred crop with ratio clamped to 4/3: h 30, w round(30 * 4/3) = 40.
        var rng = SplitMix64(seed: 5)
        #expect(
            ImageTransforms.randomResizedCropBox(width: 1000, height: 30, using: &rng)
                == CropBox(top: 0, left: 480, height: 30, width: 40))
        #expect(
            ImageTransforms.randomResizedCropBox(width: 30, height: 1000, using: &rng)
                == CropBox(top: 480, left: 0, height: 40, width: 30))
    }

    @Test func randomResizedCropStatisticsMatchTorchvision() throws {
        let manifest = try Manifest.load()
        for reference in manifest.rrcStats {
            var rng = SplitMix64(seed: 99)
            let n = reference.samples
            var areaSum = 0.0, logAspectSum = 0.0, fallbacks = 0
            var minAspect = Double.infinity, maxAspect = 0.0
            var tooLarge = AlwaysTooLarge()
            let fallbackBox = ImageTransforms.randomResizedCropBox(
                width: reference.width, height: reference.height,
                using: &tooLarge)
            for _ in 0..<n {
                let box = ImageTransforms.randomResizedCropBox(
                    width: reference.width, height: reference.height, using: &rng)
                #expect(
                    box.top >= 0 && box.left >= 0 && box.top + box.height <= reference.height
                        && box.left + box.width <= reference.width)
                areaSum += Double(box.width * box.height) / Double(reference.width * reference.height)
                logAspectSum += log(Double(box.width) / Double(box.height))
                if box == fallbackBox {
                    fallbacks += 1
                } else {
                    minAspect = min(minAspect, Double(box.width) / Double(box.height))
                    maxAspect = max(maxAspect, Double(box.width) / Double(box.height))
                }
            }
            let size = "\(reference.width)x\(reference.height)"
            // Standard errors over 20000 draws are about 0.0015 (area), 0.0012 (log aspect), 0.0023 (fallback).
            #expect(
                abs(areaSum / Double(n) - reference.meanAreaFraction) < 0.01, "\(size) mean area \(areaSum / Double(n))"
            )
            #expect(abs(logAspectSum / Double(n) - reference.meanLogAspect) < 0.01, "\(size) mean log aspect")
            #expect(
                abs(Double(fallbacks) / Double(n) - reference.fallbackRate) < 0.012,
                "\(size) fallback rate \(Double(fallbacks) / Double(n))")
            #expect(minAspect >= reference.minAspect - 0.02 && minAspect < 0.77, "\(size) min aspect \(minAspect)")
            #expect(maxAspect <= reference.maxAspect + 0.02 && maxAspect > 1.30, "\(size) max aspect \(maxAspect)")
        }
    }

    /// Draws that make every try too large, to get the fallback box.
    struct AlwaysTooLarge: CropRandomSource {
        mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo < 0 ? hi : 1 + 100 * hi }
        mutating func integer(below upperBound: Int) -> Int { 0 }
    }

    @Test func augmentationDependsOnlyOnSeedEpochAndPosition() throws {
        let image = try JPEG.decode(path: fixtureFolder + "/small_rocket.jpg")
        func pixels(_ seed: Int, _ epoch: Int, _ position: Int) -> [UInt8] {
            var rng = ImageTransforms.augmentationRNG(seed: seed, epoch: epoch, position: position)
            return ImageTransforms.trainPixels(image, resolution: 32, rng: &rng)
        }
        #expect(pixels(1, 2, 3) == pixels(1, 2, 3))
        #expect(pixels(1, 2, 3) != pixels(1, 2, 4))
        #expect(pixels(1, 2, 3) != pixels(1, 3, 3))
        #expect(pixels(1, 2, 3) != pixels(2, 2, 3))
        // Flips happen about half the time.
        var flips = 0
        for position in 0..<2000 {
            var rng = ImageTransforms.augmentationRNG(seed: 7, epoch: 0, position: position)
            _ = ImageTransforms.randomResizedCropBox(width: 40, height: 60, using: &rng)
            if rng.uniform() < 0.5 { flips += 1 }
        }
        #expect(abs(flips - 1000) < 100)
    }

    @Test func boundedIntegersAreUniformAndInRange() {
        var rng = SplitMix64(seed: 1)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<7000 { counts[rng.integer(below: 7)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 1000) < 120 }, "\(counts)")
        #expect((0..<100).allSatisfy { _ in rng.integer(below: 1) == 0 })
    }
}
