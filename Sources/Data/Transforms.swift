// CLIP's test and train image transforms as Dassl/CoOp run them through torchvision on PIL
// images: Resize(R, BICUBIC) + CenterCrop(R), or RandomResizedCrop(R, BICUBIC) + horizontal
// flip; then ToTensor + Normalize(CLIP mean, std), written as CHW floats into a batch slot.
import Tensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the random numbers of RandomResizedCrop come from. torchvision draws them from torch's
/// global generator; we draw them from a generator keyed by the sample, and tests replay
/// torchvision's own draws through this protocol.
public protocol CropRandomSource {
    /// A uniform value in [lo, hi) (torchvision: `torch.empty(1).uniform_(lo, hi)`).
    mutating func uniform(_ lo: Double, _ hi: Double) -> Double
    /// A uniform integer in 0..<upperBound (torchvision: `torch.randint(0, upperBound, (1,))`).
    mutating func integer(below upperBound: Int) -> Int
}

extension SplitMix64: CropRandomSource {
    public mutating func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * uniform() }

    /// Lemire's multiply-and-reject: unbiased, and the same sequence on every platform
    /// (unlike the standard library's unspecified `Int.random(in:using:)`).
    public mutating func integer(below upperBound: Int) -> Int {
        precondition(upperBound > 0, "integer(below:) needs a positive bound")
        let bound = UInt64(upperBound)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return Int(product.high)
    }
}

/// Independent random streams keyed by small tuples: SplitMix64's finaliser applied to each part
/// in turn, so (seed, epoch, position) and (seed, epoch, position + 1) give unrelated streams.
enum StreamKey {
    static let permutation: UInt64 = 0x7065_726D_7574_6521 // "permute!"
    static let augmentation: UInt64 = 0x6175_676D_656E_7421 // "augment!"

    static func generator(_ domain: UInt64, _ parts: Int...) -> SplitMix64 {
        var h = mix(domain)
        for part in parts { h = mix(h ^ UInt64(bitPattern: Int64(part))) }
        return SplitMix64(seed: h)
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum ImageTransforms {
    /// CLIP's normalisation (DESIGN §2), per RGB channel.
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// RandomResizedCrop's defaults (DESIGN §2 = torchvision's).
    public static let cropScale = (lower: 0.08, upper: 1.0)
    public static let cropRatio = (lower: 3.0 / 4.0, upper: 4.0 / 3.0)

    /// The generator for one training sample's crop and flip, keyed by (seed, epoch, position in
    /// the epoch's order) so the pixels of a sample do not depend on how many ranks share the batch.
    public static func augmentationRNG(seed: Int, epoch: Int, position: Int) -> SplitMix64 {
        StreamKey.generator(StreamKey.augmentation, seed, epoch, position)
    }

    /// torchvision `Resize(shorterSide)`: the shorter side becomes `shorterSide`, the longer one
    /// `int(shorterSide * long / short)` (truncated, computed in double like Python).
    public static func resizedSize(width: Int, height: Int, shorterSide: Int) -> (width: Int, height: Int) {
        let (short, long) = width <= height ? (width, height) : (height, width)
        let newLong = Int(Double(shorterSide * long) / Double(short))
        return width <= height ? (shorterSide, newLong) : (newLong, shorterSide)
    }

    /// torchvision `CenterCrop(size)` on an image at least `size` on each side: offsets are
    /// `int(round((extent - size) / 2))` with Python's round-half-to-even.
    public static func centerCropBox(width: Int, height: Int, size: Int) -> CropBox {
        let top = (Double(height - size) / 2).rounded(.toNearestOrEven)
        let left = (Double(width - size) / 2).rounded(.toNearestOrEven)
        return CropBox(top: Int(top), left: Int(left), height: size, width: size)
    }

    /// torchvision `RandomResizedCrop.get_params`: up to 10 tries of an area fraction uniform in
    /// `scale` and an aspect ratio log-uniform in `ratio`; a try fits when the rounded box lies in
    /// the image, then its offsets are uniform. Otherwise the centred crop of the whole image,
    /// with its aspect ratio clamped into `ratio`.
    public static func randomResizedCropBox<Source: CropRandomSource>(
        width: Int, height: Int, using source: inout Source,
        scale: (lower: Double, upper: Double) = cropScale,
        ratio: (lower: Double, upper: Double) = cropRatio
    ) -> CropBox {
        let area = Double(width * height)
        let logRatio = (lower: log(ratio.lower), upper: log(ratio.upper))
        for _ in 0..<10 {
            let targetArea = area * source.uniform(scale.lower, scale.upper)
            let aspectRatio = exp(source.uniform(logRatio.lower, logRatio.upper))
            // Python's round() is half-to-even.
            let w = Int((targetArea * aspectRatio).squareRoot().rounded(.toNearestOrEven))
            let h = Int((targetArea / aspectRatio).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= width && h > 0 && h <= height {
                let top = source.integer(below: height - h + 1)
                let left = source.integer(below: width - w + 1)
                return CropBox(top: top, left: left, height: h, width: w)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lower {
            h = Int((Double(w) / ratio.lower).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upper {
            w = Int((Double(h) * ratio.upper).rounded(.toNearestOrEven))
        }
        return CropBox(top: (height - h) / 2, left: (width - w) / 2, height: h, width: w)
    }

    /// The test transform before normalisation: Resize(R, BICUBIC) then CenterCrop(R), as
    /// [R, R, 3] bytes. Only the centre window of the resized image is computed.
    public static func testPixels(_ image: RGBImage, resolution: Int) -> [UInt8] {
        let resized = resizedSize(width: image.width, height: image.height, shorterSide: resolution)
        let window = centerCropBox(width: resized.width, height: resized.height, size: resolution)
        return resizeBicubic(
            image, region: CropBox(top: 0, left: 0, height: image.height, width: image.width),
            outWidth: resized.width, outHeight: resized.height, window: window)
    }

    /// The train transform before normalisation: RandomResizedCrop(R, BICUBIC) then a horizontal
    /// flip with probability ½ (drawn after the crop, as torchvision's Compose order does), as [R, R, 3] bytes.
    public static func trainPixels(_ image: RGBImage, resolution: Int, rng: inout SplitMix64) -> [UInt8] {
        let box = randomResizedCropBox(width: image.width, height: image.height, using: &rng)
        let flip = rng.uniform() < 0.5
        return cropResizeFlip(image, box: box, resolution: resolution, flip: flip)
    }

    /// `image.crop(box).resize((R, R), BICUBIC)`, mirrored left-right when `flip`.
    public static func cropResizeFlip(_ image: RGBImage, box: CropBox, resolution: Int, flip: Bool) -> [UInt8] {
        var pixels = resizeBicubic(
            image, region: box, outWidth: resolution, outHeight: resolution,
            window: CropBox(top: 0, left: 0, height: resolution, width: resolution))
        if flip {
            pixels.withUnsafeMutableBufferPointer { buffer in
                for y in 0..<resolution {
                    var a = y * resolution * 3, b = a + (resolution - 1) * 3
                    while a < b {
                        for c in 0..<3 { buffer.swapAt(a + c, b + c) }
                        a += 3
                        b -= 3
                    }
                }
            }
        }
        return pixels
    }

    /// [256] per channel: ToTensor's v / 255 then Normalize's (x - mean) / std, in Float32 as torch does.
    static let normalisationTable: [[Float]] = (0..<3).map { c in
        (0..<256).map { v in (Float(v) / 255 - mean[c]) / std[c] }
    }

    /// Writes [R, R, 3] bytes as normalised CHW floats ([3, R, R]) at `destination`.
    public static func normalize(_ pixels: [UInt8], resolution: Int, into destination: UnsafeMutablePointer<Float>) {
        let plane = resolution * resolution
        precondition(pixels.count == plane * 3, "normalize: \(pixels.count) bytes for resolution \(resolution)")
        let table = normalisationTable
        pixels.withUnsafeBufferPointer { source in
            for c in 0..<3 {
                table[c].withUnsafeBufferPointer { lookup in
                    let out = destination + c * plane
                    for i in 0..<plane { out[i] = lookup[Int(source[i * 3 + c])] }
                }
            }
        }
    }
}

/// Test transform of one image into a batch slot: [3, R, R] normalised floats at `destination`.
public func writeTestImage(_ image: RGBImage, resolution: Int, into destination: UnsafeMutablePointer<Float>) {
    ImageTransforms.normalize(
        ImageTransforms.testPixels(image, resolution: resolution),
        resolution: resolution, into: destination)
}

/// Train transform of one image into a batch slot, with randomness from `rng`
/// (use `ImageTransforms.augmentationRNG(seed:epoch:position:)`).
public func writeTrainImage(
    _ image: RGBImage, resolution: Int, rng: inout SplitMix64,
    into destination: UnsafeMutablePointer<Float>
) {
    ImageTransforms.normalize(
        ImageTransforms.trainPixels(image, resolution: resolution, rng: &rng),
        resolution: resolution, into: destination)
}
