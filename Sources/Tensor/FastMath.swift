// exp without a libm call, so the loops that use it (QuickGELU, softmax) vectorise.
//
// Cody–Waite reduction: n = round(x·log2 e), r = x − n·ln2 with ln2 split in a high part exact in
// float and a low correction, so r ∈ [−½ln2, ½ln2] is accurate to an ulp even for large |x|; then
// e^r by its Taylor series to degree 7 (truncation (½ln2)^8/8! ≈ 5e-9) and 2^n from the exponent bits.
// Inputs are clamped to ±87, where the result saturates near Float's range instead of overflowing.
// NaN (a diverging run) comes out as NaN for the divergence guard to report, instead of trapping in
// the Int32 conversion.
@inline(__always) public func fastExp(_ x: Float) -> Float {
    let xc = x.isNaN ? 0 : min(max(x, -87), 87)
    // Round to nearest with the 1.5·2^23 trick (no call, vectorises).
    let n = (xc * 1.442_695_04 + 12_582_912) - 12_582_912
    let r = (xc - n * 0.693_145_751_953_125) - n * 1.428_606_765_330_187e-6
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let scale = Float(bitPattern: UInt32(bitPattern: (Int32(n) &+ 127) &<< 23))
    return x.isNaN ? x : p * scale
}
