// exp without a libm call, so the loops that use it (QuickGELU, softmax) vectorise.
//
// exp(x) = 2^n · 2^f with n = round(x·log2 e) and f ∈ [−½, ½]; 2^f by its Taylor series to degree 7,
// whose truncation error (ln2·½)^8/8! ≈ 5e-9 is below Float's rounding. The inputs are clamped to
// ±126·ln2, where the result saturates at 2^±126 instead of overflowing (callers only need that
// range: sigmoid and softmax after the max is subtracted).
@inline(__always) public func fastExp(_ x: Float) -> Float {
    let t = min(max(x * 1.442_695_04, -126), 126)
    // Round to nearest with the 1.5·2^23 trick (no call, vectorises).
    let n = (t + 12_582_912) - 12_582_912
    let f = t - n
    var p: Float = 1.525_273_4e-5
    p = p * f + 1.540_353_0e-4
    p = p * f + 1.333_355_8e-3
    p = p * f + 9.618_129_1e-3
    p = p * f + 5.550_410_9e-2
    p = p * f + 0.240_226_51
    p = p * f + 0.693_147_18
    p = p * f + 1
    let scale = Float(bitPattern: UInt32(bitPattern: (Int32(n) &+ 127) &<< 23))
    return p * scale
}
