// oneDNN at run time: the engine and stream, the instruction set it will use, its OpenMP threads,
// and matmul primitives (bf16 × bf16 → fp32, or fp32) created once per shape and reused.
import CDNNL
import CKernels
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A failing oneDNN call, named.
public struct OneDNNError: Error, CustomStringConvertible {
    public let call: String
    public let status: dnnl_status_t
    public var description: String { "\(call) failed with oneDNN status \(status.rawValue)" }
}

@inline(__always) func check(_ status: dnnl_status_t, _ call: @autoclosure () -> String) {
    // A failure here is a programming error (a shape or layout oneDNN cannot do): stop with its name.
    if status != dnnl_success { fatalError("\(OneDNNError(call: call(), status: status))") }
}

public enum OneDNN {
    /// The CPU engine and its stream, created on first use.
    nonisolated(unsafe) static let engine: dnnl_engine_t = {
        var e: dnnl_engine_t?
        check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create")
        return e!
    }()
    nonisolated(unsafe) static let stream: dnnl_stream_t = {
        var s: dnnl_stream_t?
        check(dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
        return s!
    }()

    /// The instruction set oneDNN's kernels will use: the CPU's, capped by `ONEDNN_MAX_CPU_ISA`.
    public static var isa: dnnl_cpu_isa_t { dnnl_get_effective_cpu_isa() }

    public static var isaName: String { name(of: isa) }

    static func name(of isa: dnnl_cpu_isa_t) -> String {
        switch isa {
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_sse41: return "sse41"
        default: return String(format: "isa 0x%x", isa.rawValue)
        }
    }

    /// Whether oneDNN has native bf16 dot products here (AVX-512 BF16 or AMX-BF16, as it sees the CPU).
    public static var bf16Native: Bool {
        let bf16Bits = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return isa.rawValue & bf16Bits == bf16Bits
    }

    /// `CAVPT_DIST_BF16_EMULATION=1` (tests and CI on CPUs without bf16 dot products): bf16 runs anyway,
    /// on oneDNN's emulated bf16 (exact bf16 × bf16 products accumulated in fp32, the same arithmetic,
    /// many times slower than fp32). Only meaningful where bf16 is not native.
    public static var bf16Emulated: Bool {
        guard let flag = getenv("CAVPT_DIST_BF16_EMULATION"), String(cString: flag) == "1" else { return false }
        return !bf16Native
    }

    /// bf16 products need native bf16 dot products (AVX-512 BF16, or AMX-BF16 tiles); on anything
    /// less oneDNN emulates them, slower than fp32. Nil when this CPU (as oneDNN sees it) has them or
    /// when emulation was asked for (`bf16Emulated`), else the one-line reason, naming what is missing.
    public static var bf16Unsupported: String? {
        if bf16Native || bf16Emulated { return nil }
        var reason =
            "runtime.precision bf16 needs AVX-512 BF16 (avx512_bf16) or AMX-BF16, and oneDNN finds neither: "
            + "it would run \(isaName) kernels on this CPU"
        if let cap = ProcessInfo.processInfo.environment["ONEDNN_MAX_CPU_ISA"]
            ?? ProcessInfo.processInfo.environment["DNNL_MAX_CPU_ISA"]
        {
            reason += " (capped by ONEDNN_MAX_CPU_ISA=\(cap))"
        }
        return reason + "; use runtime.precision fp32"
    }

    public static var version: String {
        guard let v = dnnl_version()?.pointee else { return "unknown" }
        return "\(v.major).\(v.minor).\(v.patch)"
    }

    /// Debian's libdnnl runs its kernels on OpenMP threads (libgomp). The count is the calling
    /// thread's OpenMP setting, kept equal to the BLAS threads (cores on the node ÷ ranks on the node).
    public static func setThreads(_ n: Int) {
        threads = max(1, n)
        _ = cdnnl_set_omp_threads(Int32(threads))
    }
    nonisolated(unsafe) public private(set) static var threads = 1

    public static var openMPThreads: Int { Int(cdnnl_omp_max_threads()) }

    // MARK: Matmul primitives

    /// A matmul's shape and layouts: dims and strides (batch…, rows, inner / inner, cols / rows, cols)
    /// in elements, data types, bias, scale and accumulation.
    struct Key: Hashable {
        var src: [Int64], srcStrides: [Int64]
        var weights: [Int64], weightStrides: [Int64]
        var dst: [Int64], dstStrides: [Int64]
        var srcType: UInt32, weightType: UInt32, dstType: UInt32
        var bias: Bool, alpha: Float, accumulate: Bool
        /// oneDNN fixes a primitive's thread count when it creates it: another count is another primitive.
        var threads: Int = OneDNN.threads
    }

    final class Primitive {
        let primitive: dnnl_primitive_t
        let memories: [dnnl_memory_t] // src, weights, dst, bias? (handles set per call)
        let scratchpad: dnnl_memory_t?
        let scratchBytes: Int
        let implementation: String
        init(
            primitive: dnnl_primitive_t, memories: [dnnl_memory_t], scratchpad: dnnl_memory_t?,
            scratchBytes: Int, implementation: String
        ) {
            self.primitive = primitive; self.memories = memories; self.scratchpad = scratchpad
            self.scratchBytes = scratchBytes; self.implementation = implementation
        }
    }

    nonisolated(unsafe) static var cache: [Key: Primitive] = [:]
    /// One scratchpad for all primitives (they run one at a time, under `lock`), grown as needed:
    /// per-primitive scratchpads (packed weight panels) would add up over the many shapes of a step.
    nonisolated(unsafe) static var scratch: UnsafeMutableRawPointer?
    nonisolated(unsafe) static var scratchCapacity = 0
    /// How often a primitive was created for each key (tests: exactly once).
    nonisolated(unsafe) static var creations: [Key: Int] = [:]
    static let lock = NSLock()

    /// Number of distinct matmul primitives created so far (each shape once).
    public static var primitiveCount: Int { lock.lock(); defer { lock.unlock() }; return cache.count }

    /// Times a primitive was created for the frozen-weight product y[m, n] = x[m, k] Wᵀ (W [n, k]).
    static func creations(forwardM m: Int, n: Int, k: Int, bias: Bool) -> Int {
        let key = Key(
            src: [Int64(m), Int64(k)], srcStrides: [Int64(k), 1], weights: [Int64(k), Int64(n)],
            weightStrides: [1, Int64(k)], dst: [Int64(m), Int64(n)], dstStrides: [Int64(n), 1],
            srcType: dnnl_bf16.rawValue, weightType: dnnl_bf16.rawValue, dstType: dnnl_f32.rawValue,
            bias: bias, alpha: 1, accumulate: false)
        lock.lock(); defer { lock.unlock() }
        return creations[key] ?? 0
    }

    /// The implementation oneDNN picked for each cached primitive (e.g. "brg:avx512_core_bf16").
    public static var implementations: [String] {
        lock.lock(); defer { lock.unlock() }
        return Array(Set(cache.values.map(\.implementation))).sorted()
    }

    static func memoryDesc(_ dims: [Int64], _ strides: [Int64], _ type: dnnl_data_type_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        var d = dims + Array(repeating: 0, count: 12 - dims.count)
        var s = strides + Array(repeating: 0, count: 12 - strides.count)
        check(
            dnnl_memory_desc_init_by_strides(&md, Int32(dims.count), &d, type, &s),
            "dnnl_memory_desc_init_by_strides \(dims)")
        return md
    }

    /// A bf16 product on CPUs without bf16 dot products (see `emulates`): batch dims padded to two.
    static func emulate(
        _ key: Key, src: UnsafeRawPointer, weights: UnsafeRawPointer, dst: UnsafeMutableRawPointer,
        bias: UnsafeRawPointer?
    ) {
        func padded(_ v: [Int64], _ fill: Int64) -> [Int] {
            (Array(repeating: fill, count: 4 - v.count) + v).map(Int.init)
        }
        let dims = padded(key.dst, 1), inner = Int(key.src.last!)
        let (a, b, c) = (padded(key.srcStrides, 0), padded(key.weightStrides, 0), padded(key.dstStrides, 0))
        ck_matmul_bf16_emulated(
            dims[0], dims[1], dims[2], dims[3], inner, key.alpha,
            src.assumingMemoryBound(to: UInt16.self), a, weights.assumingMemoryBound(to: UInt16.self), b,
            dst.assumingMemoryBound(to: Float.self), c, bias?.assumingMemoryBound(to: Float.self),
            key.accumulate ? 1 : 0)
    }

    /// Whether this bf16 product runs emulated: oneDNN 2.6 has no bf16 matmul below AVX-512, so with
    /// CAVPT_DIST_BF16_EMULATION it runs in ck_matmul_bf16_emulated instead (exact bf16 × bf16 products
    /// summed in fp32, row by row in a fixed order, so a row never depends on the batch it is in).
    static func emulates(_ key: Key) -> Bool { key.srcType == dnnl_bf16.rawValue && bf16Emulated }

    static func primitive(_ key: Key) -> Primitive {
        if let p = cache[key] { return p }
        let srcType = dnnl_data_type_t(key.srcType), weightType = dnnl_data_type_t(key.weightType)
        let dstType = dnnl_data_type_t(key.dstType)
        var srcMD = memoryDesc(key.src, key.srcStrides, srcType)
        var weightMD = memoryDesc(key.weights, key.weightStrides, weightType)
        var dstMD = memoryDesc(key.dst, key.dstStrides, dstType)
        let n = key.dst.count
        var biasDims = Array(repeating: Int64(1), count: n)
        biasDims[n - 1] = key.dst[n - 1]
        var biasStrides = Array(repeating: key.dst[n - 1], count: n)
        biasStrides[n - 1] = 1
        var biasMD = memoryDesc(biasDims, biasStrides, dnnl_f32)
        var desc = dnnl_matmul_desc_t()
        let described =
            key.bias
            ? dnnl_matmul_desc_init(&desc, &srcMD, &weightMD, &biasMD, &dstMD)
            : dnnl_matmul_desc_init(&desc, &srcMD, &weightMD, nil, &dstMD)
        check(described, "dnnl_matmul_desc_init")
        var attr: dnnl_primitive_attr_t?
        check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attr) }
        // A user-managed scratchpad: each primitive keeps its own, so nothing is allocated per call.
        check(
            dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
            "dnnl_primitive_attr_set_scratchpad_mode")
        if key.alpha != 1 {
            var alpha = key.alpha
            check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "dnnl_primitive_attr_set_output_scales")
        }
        if key.accumulate {
            var ops: dnnl_post_ops_t?
            check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
            check(dnnl_post_ops_append_sum(ops, 1), "dnnl_post_ops_append_sum")
            check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
            dnnl_post_ops_destroy(ops)
        }
        var pd: dnnl_primitive_desc_t?
        let created = withUnsafePointer(to: &desc) {
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), attr, engine, nil)
        }
        check(created, "dnnl_primitive_desc_create (matmul \(key.src) × \(key.weights) -> \(key.dst))")
        defer { dnnl_primitive_desc_destroy(pd) }
        var info: UnsafePointer<CChar>?
        _ = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info)
        var prim: dnnl_primitive_t?
        check(dnnl_primitive_create(&prim, pd), "dnnl_primitive_create")
        func memory(_ md: dnnl_memory_desc_t) -> dnnl_memory_t {
            var md = md
            var m: dnnl_memory_t?
            check(dnnl_memory_create(&m, &md, engine, nil), "dnnl_memory_create")
            return m!
        }
        var memories = [memory(srcMD), memory(weightMD), memory(dstMD)]
        if key.bias { memories.append(memory(biasMD)) }
        var scratchpad: dnnl_memory_t?, scratchBytes = 0
        if let smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) {
            scratchBytes = dnnl_memory_desc_get_size(smd)
            if scratchBytes > 0 {
                check(dnnl_memory_create(&scratchpad, smd, engine, nil), "dnnl_memory_create (scratchpad)")
            }
        }
        let p = Primitive(
            primitive: prim!, memories: memories, scratchpad: scratchpad, scratchBytes: scratchBytes,
            implementation: info.map { String(cString: $0) } ?? "unknown")
        cache[key] = p
        creations[key, default: 0] += 1
        return p
    }

    /// Runs a cached primitive on the given buffers (src, weights, dst, bias).
    static func execute(
        _ key: Key, src: UnsafeRawPointer, weights: UnsafeRawPointer,
        dst: UnsafeMutableRawPointer, bias: UnsafeRawPointer?
    ) {
        if emulates(key) {
            lock.lock()
            if creations[key] == nil { creations[key] = 1 } // one "primitive" per shape, as natively
            lock.unlock()
            emulate(key, src: src, weights: weights, dst: dst, bias: bias)
            return
        }
        lock.lock()
        defer { lock.unlock() }
        let p = primitive(key)
        let handles: [UnsafeMutableRawPointer?] = [
            UnsafeMutableRawPointer(mutating: src), UnsafeMutableRawPointer(mutating: weights),
            dst, bias.map { UnsafeMutableRawPointer(mutating: $0) },
        ]
        var args: [dnnl_exec_arg_t] = []
        let names = [DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS]
        for (i, m) in p.memories.enumerated() {
            check(dnnl_memory_set_data_handle(m, handles[i]), "dnnl_memory_set_data_handle")
            args.append(dnnl_exec_arg_t(arg: Int32(names[i]), memory: m))
        }
        if let s = p.scratchpad {
            if p.scratchBytes > scratchCapacity {
                free(scratch)
                scratch = nil
                _ = posix_memalign(&scratch, 64, p.scratchBytes)
                scratchCapacity = p.scratchBytes
            }
            check(dnnl_memory_set_data_handle(s, scratch), "dnnl_memory_set_data_handle (scratchpad)")
            args.append(dnnl_exec_arg_t(arg: Int32(DNNL_ARG_SCRATCHPAD), memory: s))
        }
        // The OpenMP thread count is per calling thread: set it for whichever thread runs this.
        _ = cdnnl_set_omp_threads(Int32(threads))
        check(dnnl_primitive_execute(p.primitive, stream, Int32(args.count), args), "dnnl_primitive_execute")
        check(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }
}
