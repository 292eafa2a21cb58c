// Float32 tensors: a shape over contiguous, 64-byte aligned storage; reshapes and
// leading-axis slices are views that share it.
import CAlloc

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Owns one aligned allocation; freed when the last tensor viewing it goes away.
public final class Storage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Float>
    public let capacity: Int
    /// runtime.precision bf16: the values rounded to bf16, when the op that wrote them also wrote
    /// these (LayerNorm, QuickGELU, QuickGELU's backward) for the bf16 product that reads them next.
    /// Dropped when the values change (a gradient that another gradient is added to).
    var bf16: BF16Storage?

    init(capacity: Int, zeroed: Bool) {
        _ = Self.keepFreedMemory
        var raw: UnsafeMutableRawPointer?
        let bytes = max(capacity, 1) * MemoryLayout<Float>.stride
        // 64-byte alignment keeps AVX-512 loads in OpenBLAS and our loops on cache lines.
        let rc = posix_memalign(&raw, 64, bytes)
        guard rc == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        if zeroed { memset(raw, 0, bytes) }
        base = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
        self.capacity = capacity
    }

    deinit { free(base) }

    /// A training step allocates and frees the same large activations every time. By default glibc
    /// serves blocks over 128 KiB with mmap and returns them with munmap, so every step page-faults
    /// and zero-fills them again (≈12% of a ViT-B/32 step in the kernel's clear_page). Keeping large
    /// blocks on the heap, and freed memory untrimmed, lets the next step reuse them.
    static let keepFreedMemory: Bool = {
        cavpt_keep_freed_memory()
        return true
    }()
}

/// A dense, row-major Float32 tensor.
public struct Tensor: @unchecked Sendable, CustomStringConvertible {
    public let storage: Storage
    public let offset: Int
    public let shape: [Int]
    public let count: Int

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        let n = shape.reduce(1, *)
        self.init(storage: Storage(capacity: n, zeroed: true), offset: 0, shape: shape)
    }

    /// A tensor whose contents the caller will overwrite entirely.
    public init(uninitialized shape: [Int]) {
        let n = shape.reduce(1, *)
        self.init(storage: Storage(capacity: n, zeroed: false), offset: 0, shape: shape)
    }

    public init(shape: [Int], values: [Float]) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.init(uninitialized: shape)
        values.withUnsafeBufferPointer { src in
            if let s = src.baseAddress { data.update(from: s, count: values.count) }
        }
    }

    public init(shape: [Int], repeating value: Float) {
        self.init(uninitialized: shape)
        data.update(repeating: value, count: count)
    }

    public init(scalar: Float) { self.init(shape: [], values: [scalar]) }

    init(storage: Storage, offset: Int, shape: [Int]) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.count = shape.reduce(1, *)
    }

    /// Pointer to the first element; writes through it are visible to every view of the storage.
    @inlinable public var data: UnsafeMutablePointer<Float> { storage.base + offset }

    public var rank: Int { shape.count }
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var scalar: Float { data[0] }

    /// Size of the last axis (the feature width for token tensors).
    public var lastDim: Int { shape.last ?? 1 }
    /// Number of rows when the tensor is viewed as [count / lastDim, lastDim].
    public var rows: Int { lastDim == 0 ? 0 : count / lastDim }

    /// A view with another shape of the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var newShape = newShape
        if let i = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            newShape[i] = known == 0 ? 0 : count / known
        }
        precondition(newShape.reduce(1, *) == count, "cannot view \(shape) as \(newShape)")
        return Tensor(storage: storage, offset: offset, shape: newShape)
    }

    /// A view of entries [range] along the leading axis.
    public func slice(_ range: Range<Int>) -> Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let inner = count / max(shape[0], 1)
        var s = shape
        s[0] = range.count
        return Tensor(storage: storage, offset: offset + range.lowerBound * inner, shape: s)
    }

    /// A view of entry i along the leading axis.
    public subscript(_ i: Int) -> Tensor {
        let v = slice(i..<(i + 1))
        return v.reshaped(Array(shape.dropFirst()))
    }

    /// A copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor(uninitialized: shape)
        t.data.update(from: data, count: count)
        return t
    }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Copies `other`'s elements (same count) into this tensor's storage.
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    public var description: String {
        let head = scalars.prefix(8).map { String(format4($0)) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 8 ? ", …" : "")]"
    }
}

@inline(__always) func format4(_ x: Float) -> String {
    let r = (x * 10000).rounded() / 10000
    return "\(r)"
}

/// Deterministic random numbers for initialisation and tests (SplitMix64 + Box–Muller).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }
    public mutating func normal() -> Double {
        let u1 = max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

extension Tensor {
    /// N(0, std²) entries from a seeded generator.
    public static func randn(_ shape: [Int], std: Float = 1, seed: UInt64) -> Tensor {
        var rng = SplitMix64(seed: seed)
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = Float(rng.normal()) * std }
        return t
    }

    /// U(lo, hi) entries from a seeded generator.
    public static func uniform(_ shape: [Int], _ lo: Float, _ hi: Float, seed: UInt64) -> Tensor {
        var rng = SplitMix64(seed: seed)
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.data[i] = lo + (hi - lo) * Float(rng.uniform()) }
        return t
    }
}
