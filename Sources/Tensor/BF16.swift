// bf16 storage for frozen weights (runtime.precision bf16, DESIGN §6a), the fp32 → bf16 rounding of
// activations that feed oneDNN, and the frozen weight matrix that is either fp32 or bf16.
import CAlloc
import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which arithmetic the frozen-weight products use.
public enum Precision: String, Sendable, CaseIterable {
    /// Everything fp32 through OpenBLAS (the reference numbers).
    case fp32
    /// Frozen weights held once in bf16; their products bf16 × bf16 → fp32 through oneDNN.
    case bf16
}

/// One aligned allocation of bf16 values (raw UInt16 bit patterns).
public final class BF16Storage: @unchecked Sendable {
    public let base: UnsafeMutablePointer<UInt16>
    public let capacity: Int

    public init(capacity: Int) {
        var raw: UnsafeMutableRawPointer?
        let bytes = max(capacity, 1) * 2
        let rc = posix_memalign(&raw, 64, bytes)
        guard rc == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
        base = raw.bindMemory(to: UInt16.self, capacity: max(capacity, 1))
        self.capacity = capacity
        BF16Storage.live.add(bytes)
    }

    deinit {
        BF16Storage.live.add(-max(capacity, 1) * 2)
        free(base)
    }

    /// Bytes held in bf16 storages right now (tests check that weights live here, not in fp32).
    static let live = AtomicCounter()
    public static var liveBytes: Int { live.value }
}

/// A dense row-major bf16 tensor; leading-axis slices are views (in_proj's query and key/value rows).
public struct BF16Tensor: @unchecked Sendable {
    public let storage: BF16Storage
    public let offset: Int
    public let shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    public var data: UnsafeMutablePointer<UInt16> { storage.base + offset }
    public var lastDim: Int { shape.last ?? 1 }
    public var rows: Int { lastDim == 0 ? 0 : count / lastDim }

    /// `t` rounded to the nearest bf16 (ties to even).
    public init(rounding t: Tensor) {
        storage = BF16Storage(capacity: t.count)
        offset = 0
        shape = t.shape
        roundToBF16(t.data, into: storage.base, count: t.count)
    }

    init(storage: BF16Storage, offset: Int, shape: [Int]) {
        self.storage = storage; self.offset = offset; self.shape = shape
    }

    public func slice(_ range: Range<Int>) -> BF16Tensor {
        precondition(!shape.isEmpty && range.lowerBound >= 0 && range.upperBound <= shape[0])
        let inner = count / max(shape[0], 1)
        var s = shape
        s[0] = range.count
        return BF16Tensor(storage: storage, offset: offset + range.lowerBound * inner, shape: s)
    }

    public func reshaped(_ newShape: [Int]) -> BF16Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot view \(shape) as \(newShape)")
        return BF16Tensor(storage: storage, offset: offset, shape: newShape)
    }

    /// The values widened back to fp32 (exact).
    public func floats() -> Tensor {
        let t = Tensor(uninitialized: shape)
        widenBF16(data, into: t.data, count: count)
        return t
    }
}

/// fp32 → bf16, round to nearest even (NaN stays NaN). Parallel over the BLAS threads for big buffers.
public func roundToBF16(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
    Parallel.chunks(count, grain: 1 << 16) { range in
        ck_round_bf16(src + range.lowerBound, dst + range.lowerBound, range.count)
    }
}

/// fp32 → bf16 on the calling thread (AVX-512 BF16's conversion where the CPU has it; the same
/// rounding as `bf16Bits`, except that it flushes subnormal inputs to zero).
@inline(__always) func roundRangeToBF16(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int)
{
    ck_round_bf16(src, dst, count)
}

/// The bf16 bit pattern nearest to the float with bit pattern `b` (ties to even; NaN kept quiet).
/// Branch-free, so the loops over it vectorise.
@inline(__always) public func bf16Bits(_ b: UInt32) -> UInt16 {
    let rounded = (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16
    let quietNaN = (b >> 16) | 0x40
    return UInt16(truncatingIfNeeded: b & 0x7FFF_FFFF > 0x7F80_0000 ? quietNaN : rounded)
}

@inline(__always) public func bf16Bits(_ x: Float) -> UInt16 { bf16Bits(x.bitPattern) }

/// bf16 → fp32 (exact).
public func widenBF16(_ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, count: Int) {
    dst.withMemoryRebound(to: UInt32.self, capacity: count) { out in
        for i in 0..<count { out[i] = UInt32(src[i]) << 16 }
    }
}

/// A frozen weight matrix of a product: fp32, or (runtime.precision bf16) held only in bf16.
public enum FrozenMatrix: Sendable {
    case fp32(Tensor)
    case bf16(BF16Tensor)

    /// `t` in the form `precision` keeps (fp32: the tensor itself, no copy).
    public init(_ t: Tensor, precision: Precision) {
        switch precision {
        case .fp32: self = .fp32(t)
        case .bf16: self = .bf16(BF16Tensor(rounding: t))
        }
    }

    public var shape: [Int] {
        switch self {
        case .fp32(let t): return t.shape
        case .bf16(let t): return t.shape
        }
    }

    public var lastDim: Int { shape.last ?? 1 }

    public func slice(_ range: Range<Int>) -> FrozenMatrix {
        switch self {
        case .fp32(let t): return .fp32(t.slice(range))
        case .bf16(let t): return .bf16(t.slice(range))
        }
    }

    public var precision: Precision {
        if case .bf16 = self { return .bf16 }
        return .fp32
    }

    /// The fp32 tensor (fp32 matrices only).
    public var fp32Tensor: Tensor? {
        if case .fp32(let t) = self { return t }
        return nil
    }
}

/// The bf16 rounding of an fp32 activation that feeds a oneDNN product: the copy its producer wrote
/// alongside (see Storage.bf16), else a fresh one. Keeps its storage alive while in use.
struct BF16Buffer {
    let storage: BF16Storage
    let offset: Int
    var data: UnsafeMutablePointer<UInt16> { storage.base + offset }
    init(rounding src: UnsafePointer<Float>, count: Int) {
        storage = BF16Storage(capacity: count)
        offset = 0
        roundToBF16(src, into: storage.base, count: count)
    }
    init(count: Int) { storage = BF16Storage(capacity: count); offset = 0 }
    init(storage: BF16Storage, offset: Int) { self.storage = storage; self.offset = offset }
}

/// A lock-free-enough counter for byte accounting (updated under a spin of atomics via a lock).
final class AtomicCounter: @unchecked Sendable {
    private var v = 0
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    func add(_ n: Int) { pthread_mutex_lock(&mutex); v += n; pthread_mutex_unlock(&mutex) }
    var value: Int { pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }; return v }
}

/// Which form of the element-wise kernels (Sources/CKernels) runs in this process.
public enum ElementwiseKernels {
    /// True when their AVX-512 BF16 form runs (the CPU has it and CAVPT_DIST_PORTABLE_KERNELS is unset);
    /// false where the portable C form does (tests compare the two forms only where both exist).
    public static var avx512BF16: Bool { ck_avx512bf16() != 0 }
}
