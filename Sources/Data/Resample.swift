// Pillow's antialiased bicubic resize (libImaging/Resample.c), reproduced bit for bit: separable
// passes (horizontal, then vertical), cubic kernel a = -0.5 widened by the scale when shrinking,
// weights in 22-bit fixed point, and rounding + clipping to uint8 between the passes.

/// A pixel rectangle, in torchvision's (top, left, height, width) order.
public struct CropBox: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var top: Int
    public var left: Int
    public var height: Int
    public var width: Int

    public init(top: Int, left: Int, height: Int, width: Int) {
        self.top = top
        self.left = left
        self.height = height
        self.width = width
    }

    public var description: String { "(top \(top), left \(left), height \(height), width \(width))" }
}

/// Pillow's filter taps for one axis of a resize from `inputSize` to `outputSize` samples.
struct BicubicAxis {
    /// Pillow keeps 8 bits for the value and 2 for overshoot of the negative-lobed kernel.
    static let precisionBits = 22

    let kernelSize: Int
    /// [out] first input sample each output reads.
    let first: [Int]
    /// [out] number of input samples each output reads.
    let taps: [Int]
    /// [out, kernelSize] fixed-point weights (unused tail entries are 0).
    let weights: [Int32]

    init(inputSize: Int, outputSize: Int) {
        let scale = Double(inputSize) / Double(outputSize)
        let filterScale = max(scale, 1) // widen the kernel only when shrinking (antialiasing)
        let support = 2.0 * filterScale // bicubic support is 2 input samples at scale 1
        let kernelSize = Int(support.rounded(.up)) * 2 + 1
        var first = [Int](repeating: 0, count: outputSize)
        var taps = [Int](repeating: 0, count: outputSize)
        var weights = [Int32](repeating: 0, count: outputSize * kernelSize)
        var row = [Double](repeating: 0, count: kernelSize)
        let one = Double(1 << Self.precisionBits)
        for out in 0..<outputSize {
            let center = (Double(out) + 0.5) * scale
            // Pillow rounds with (int)(v + 0.5), which truncates toward zero; the clamps make that safe.
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inputSize)
            let n = hi - lo
            var total = 0.0
            for x in 0..<n {
                let w = bicubic((Double(x + lo) - center + 0.5) / filterScale)
                row[x] = w
                total += w
            }
            for x in 0..<n {
                let w = total != 0 ? row[x] / total : row[x]
                // Round half away from zero, then truncate, exactly as normalize_coeffs_8bpc.
                weights[out * kernelSize + x] = Int32(w < 0 ? -0.5 + w * one : 0.5 + w * one)
            }
            first[out] = lo
            taps[out] = n
        }
        self.kernelSize = kernelSize
        self.first = first
        self.taps = taps
        self.weights = weights
    }
}

/// Keys' cubic convolution kernel with a = -0.5 (Pillow's BICUBIC).
@inline(__always) private func bicubic(_ t: Double) -> Double {
    let a = -0.5
    let x = abs(t)
    if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
    if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
    return 0
}

/// Pillow's clip8: drop the fraction bits (floor) and clamp to 0...255.
@inline(__always) private func clip8(_ sum: Int32) -> UInt8 {
    let v = sum >> Int32(BicubicAxis.precisionBits)
    return v < 0 ? 0 : (v > 255 ? 255 : UInt8(truncatingIfNeeded: v))
}

/// `image` cropped to `region` and resized to outWidth×outHeight, exactly as Pillow's
/// `image.crop(region).resize((outWidth, outHeight), Image.BICUBIC)`, but only the output
/// rectangle `window` is computed and returned ([window.height, window.width, 3]). Each output
/// pixel depends only on its own taps, so skipping the rest changes no value.
func resizeBicubic(
    _ image: RGBImage, region: CropBox, outWidth: Int, outHeight: Int,
    window: CropBox
) -> [UInt8] {
    precondition(
        region.left >= 0 && region.top >= 0 && region.width > 0 && region.height > 0
            && region.left + region.width <= image.width && region.top + region.height <= image.height,
        "resizeBicubic: region \(region) outside a \(image.width)x\(image.height) image")
    precondition(
        window.left >= 0 && window.top >= 0 && window.left + window.width <= outWidth
            && window.top + window.height <= outHeight, "resizeBicubic: window \(window) outside the output")
    // Pillow skips a pass whose size does not change (it would be the identity anyway).
    let horizontal = outWidth != region.width ? BicubicAxis(inputSize: region.width, outputSize: outWidth) : nil
    let vertical = outHeight != region.height ? BicubicAxis(inputSize: region.height, outputSize: outHeight) : nil
    let windowRows = window.top..<(window.top + window.height)
    let windowColumns = window.left..<(window.left + window.width)
    var result = [UInt8](repeating: 0, count: window.height * window.width * 3)
    guard !windowRows.isEmpty && !windowColumns.isEmpty else { return result }

    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks by
    // more than twice as many pixels as the width; the order changes the uint8 rounding between
    // passes, so follow it. (Pillow <= 12 always went horizontal first; the two orders differ by
    // at most a few levels on a few pixels.)
    let verticalFirst = outHeight < region.height && region.height - outHeight > 2 * (region.width - outWidth)

    image.pixels.withUnsafeBufferPointer { sourceBuffer in
        result.withUnsafeMutableBufferPointer { resultBuffer in
            guard let pixels = sourceBuffer.baseAddress, let out = resultBuffer.baseAddress else { return }
            let source = pixels + (region.top * image.width + region.left) * 3 // region pixel (0, 0)
            let sourceStride = image.width * 3
            if verticalFirst {
                // Region columns the window's output columns read, all of them vertically resampled.
                let columns = horizontal?.inputRange(of: windowColumns) ?? windowColumns
                var between = [UInt8](repeating: 0, count: window.height * columns.count * 3)
                between.withUnsafeMutableBufferPointer { betweenBuffer in
                    guard let mid = betweenBuffer.baseAddress else { return }
                    verticalPass(
                        source + columns.lowerBound * 3, rowStride: sourceStride, firstRow: 0,
                        axis: vertical, outputRows: windowRows, rowBytes: columns.count * 3, into: mid)
                    horizontalPass(
                        mid, rowStride: columns.count * 3, firstColumn: columns.lowerBound,
                        rows: window.height, axis: horizontal, outputColumns: windowColumns, into: out)
                }
            } else {
                let rows = vertical?.inputRange(of: windowRows) ?? windowRows
                var between = [UInt8](repeating: 0, count: rows.count * window.width * 3)
                between.withUnsafeMutableBufferPointer { betweenBuffer in
                    guard let mid = betweenBuffer.baseAddress else { return }
                    horizontalPass(
                        source + rows.lowerBound * sourceStride, rowStride: sourceStride, firstColumn: 0,
                        rows: rows.count, axis: horizontal, outputColumns: windowColumns, into: mid)
                    verticalPass(
                        mid, rowStride: window.width * 3, firstRow: rows.lowerBound,
                        axis: vertical, outputRows: windowRows, rowBytes: window.width * 3, into: out)
                }
            }
        }
    }
    return result
}

extension BicubicAxis {
    /// Input samples that outputs `outputs` read (they are increasing in the output index).
    func inputRange(of outputs: Range<Int>) -> Range<Int> {
        let lower = first[outputs.lowerBound]
        var upper = lower
        for o in outputs { upper = max(upper, first[o] + taps[o]) }
        return lower..<upper
    }
}

/// Filters `rows` rows along x into `outputColumns.count` columns per row ([rows, columns, 3] at
/// `output`). Input column i of a row is at `source + (i - firstColumn) * 3`; a nil axis copies.
private func horizontalPass(
    _ source: UnsafePointer<UInt8>, rowStride: Int, firstColumn: Int, rows: Int,
    axis: BicubicAxis?, outputColumns: Range<Int>, into output: UnsafeMutablePointer<UInt8>
) {
    let outputStride = outputColumns.count * 3
    let rounding = Int32(1 << (BicubicAxis.precisionBits - 1))
    for r in 0..<rows {
        let sourceRow = source + r * rowStride
        let outputRow = output + r * outputStride
        guard let axis else {
            outputRow.update(from: sourceRow + (outputColumns.lowerBound - firstColumn) * 3, count: outputStride)
            continue
        }
        axis.weights.withUnsafeBufferPointer { weightBuffer in
            guard let weights = weightBuffer.baseAddress else { return }
            for (c, column) in outputColumns.enumerated() {
                let k = weights + column * axis.kernelSize
                var p = sourceRow + (axis.first[column] - firstColumn) * 3
                // Pillow accumulates in 32-bit ints, which these sums never overflow.
                var s0 = rounding, s1 = rounding, s2 = rounding
                for t in 0..<axis.taps[column] {
                    let w = k[t]
                    s0 &+= Int32(p[0]) &* w
                    s1 &+= Int32(p[1]) &* w
                    s2 &+= Int32(p[2]) &* w
                    p += 3
                }
                outputRow[c * 3] = clip8(s0)
                outputRow[c * 3 + 1] = clip8(s1)
                outputRow[c * 3 + 2] = clip8(s2)
            }
        }
    }
}

/// Filters along y into rows `outputRows` ([rows, rowBytes] at `output`). Input row i is at
/// `source + (i - firstRow) * rowStride`; a nil axis copies. One accumulator row, tap by tap,
/// so the inner loop runs over contiguous bytes.
private func verticalPass(
    _ source: UnsafePointer<UInt8>, rowStride: Int, firstRow: Int, axis: BicubicAxis?,
    outputRows: Range<Int>, rowBytes: Int, into output: UnsafeMutablePointer<UInt8>
) {
    let rounding = Int32(1 << (BicubicAxis.precisionBits - 1))
    var sums = [Int32](repeating: 0, count: rowBytes)
    sums.withUnsafeMutableBufferPointer { sumBuffer in
        guard let acc = sumBuffer.baseAddress else { return }
        for (i, outputRow) in outputRows.enumerated() {
            let target = output + i * rowBytes
            guard let axis else {
                target.update(from: source + (outputRow - firstRow) * rowStride, count: rowBytes)
                continue
            }
            acc.update(repeating: rounding, count: rowBytes)
            for t in 0..<axis.taps[outputRow] {
                let w = axis.weights[outputRow * axis.kernelSize + t]
                let row = source + (axis.first[outputRow] + t - firstRow) * rowStride
                for b in 0..<rowBytes { acc[b] &+= Int32(row[b]) &* w }
            }
            for b in 0..<rowBytes { target[b] = clip8(acc[b]) }
        }
    }
}
