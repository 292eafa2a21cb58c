// Fused multi-head attention (DESIGN §3a): one C kernel per (sample, head) — QKᵀ, softmax online over
// blocks of keys, the product with V — that keeps only each query row's log-sum-exp for the backward,
// which recomputes the probabilities from it (flash attention). No [S, S] map outlives the kernel.
// fp32 and bf16 (operands, probabilities and their gradients rounded to bf16, fp32 sums) forms.
//
// n samples, Sq query rows, Sk key rows, d width, h heads, hd = d / h.
import CKernels
import Dispatch

#if canImport(Glibc)
import Glibc
#endif

public enum FusedAttention {
    /// Attention runs fused unless CAVPT_DIST_ATTENTION=unfused (A/B switch: the per-head sgemms in fp32,
    /// the batched oneDNN products in bf16, both keeping the probabilities, and the unfused block).
    public static let enabled: Bool = {
        guard let v = getenv("CAVPT_DIST_ATTENTION") else { return true }
        return String(cString: v) != "unfused"
    }()

    /// The form of the kernel in use: "avx512", "avx2", "generic16" or "generic8" (README, Performance).
    public static var kernel: String { String(cString: ck_attention_kernel()) }

    /// Whether this CPU runs the named form.
    public static func runs(_ form: String) -> Bool { ck_attention_form(form) != 0 }
}

/// Per query row, how many leading keys it sees.
func visibleKeys(_ mask: AttentionMask, samples n: Int, queries Sq: Int, keys Sk: Int) -> [Int32] {
    var visible = [Int32](repeating: Int32(Sk), count: n * Sq)
    if case .none = mask { return visible }
    for s in 0..<n {
        for j in 0..<Sq { visible[s * Sq + j] = Int32(mask.visibleKeys(sample: s, row: j, queries: Sq, keys: Sk)) }
    }
    return visible
}

/// The operands of one fused attention (q [n, Sq, d], keys and values [n, Sk, 2d]), fp32 or bf16.
struct AttentionOperands {
    let n: Int, Sq: Int, Sk: Int, d: Int, heads: Int
    var q: Tensor?, kv: Tensor? // fp32
    var qb: BF16Buffer?, kvb: BF16Buffer? // bf16 (runtime.precision bf16)
    let visible: [Int32]
    /// A form of the kernel by name (tests), or nil for the process's.
    var form: String? = nil

    var bf16: Bool { qb != nil }

    /// Runs the kernel over all (sample, head) pairs with `a` filled by `fill`, on the rank's threads.
    func run(
        keyBlock: Int = 0, backward: Bool,
        _ fill: (inout ck_attention) -> Void
    ) {
        let hd = d / heads
        withExtendedLifetime((q, kv, qb, kvb)) {
            visible.withUnsafeBufferPointer { vis in
                var a = ck_attention()
                a.samples = n; a.heads = heads; a.sq = Sq; a.sk = Sk; a.hd = hd
                a.q_row = d; a.q_sample = Sq * d; a.kv_row = 2 * d; a.kv_sample = Sk * 2 * d
                if let qb, let kvb {
                    a.q = UnsafeRawPointer(qb.data); a.k = UnsafeRawPointer(kvb.data)
                    a.v = UnsafeRawPointer(kvb.data + d)
                    a.qkv_bf16 = 1; a.round = 1
                } else if let q, let kv {
                    a.q = UnsafeRawPointer(q.data); a.k = UnsafeRawPointer(kv.data)
                    a.v = UnsafeRawPointer(kv.data + d)
                }
                a.visible = vis.baseAddress
                a.scale = 1 / Float(hd).squareRoot()
                a.key_block = keyBlock
                a.form = form.map { ck_attention_form($0) } ?? 0
                fill(&a)
                let job = a
                Parallel.chunks(n * heads, grain: 1) { range in
                    withUnsafePointer(to: job) { p in
                        if backward {
                            ck_attention_backward(p, range.lowerBound, range.upperBound)
                        } else {
                            ck_attention_forward(p, range.lowerBound, range.upperBound)
                        }
                    }
                }
            }
        }
    }

    /// out [n, Sq, d] and the row statistics [n, heads, Sq].
    func forward(keyBlock: Int = 0) -> (out: Tensor, lse: Tensor) {
        let out = Tensor(uninitialized: [n, Sq, d]), lse = Tensor(uninitialized: [n, heads, Sq])
        let flops = 4 * Double(n * Sq) * Double(Sk) * Double(d)
        countFusedAttention(flops: flops) {
            run(keyBlock: keyBlock, backward: false) { a in
                a.out = out.data; a.o_row = d; a.o_sample = Sq * d
                a.lse = lse.data
            }
        }
        return (out, lse)
    }

    /// ∂loss/∂q [n, Sq, d] and ∂loss/∂(keys, values) [n, Sk, 2d] (each only when asked for).
    func backward(dout: Tensor, lse: Tensor, wantQ: Bool, wantKV: Bool) -> (dq: Tensor?, dkv: Tensor?) {
        let dq = wantQ ? Tensor(uninitialized: [n, Sq, d]) : nil
        let dkv = wantKV ? Tensor(uninitialized: [n, Sk, 2 * d]) : nil
        let flops = 10 * Double(n * Sq) * Double(Sk) * Double(d)
        countFusedAttention(flops: flops) {
            run(backward: true) { a in
                a.lse = lse.data
                a.dout = UnsafePointer(dout.data); a.do_row = d; a.do_sample = Sq * d
                if let dq { a.dq = dq.data; a.dq_row = d; a.dq_sample = Sq * d }
                if let dkv {
                    a.dk = dkv.data; a.dv = dkv.data + d; a.dkv_row = 2 * d; a.dkv_sample = Sk * 2 * d
                }
            }
        }
        return (dq, dkv)
    }
}

/// Counts a fused attention call as one small product of the step (bench step's attention share).
@inline(__always) func countFusedAttention(flops: Double, _ body: () -> Void) {
    guard let counter = BLAS.counter else { body(); return }
    let start = counter.timed ? DispatchTime.now().uptimeNanoseconds : 0
    body()
    let seconds = counter.timed ? Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 : 0
    counter.lock.lock()
    defer { counter.lock.unlock() }
    counter.fusedAttentionCalls += 1
    counter.fusedAttentionFlops += flops
    counter.fusedAttentionSeconds += seconds
}

/// attention(q, kv, heads:, mask:) as the fused kernel: same shapes, masks and (to fp32 rounding, or
/// bf16's in bf16) the same values and gradients. `bf16` rounds the operands of its products to bf16.
/// `keyBlock`: keys per online-softmax block (0: the kernel's 256; tests use small ones).
public func fusedAttention(
    _ q: Var, _ kv: Var, heads h: Int, mask: AttentionMask = .none, bf16: Bool = false, keyBlock: Int = 0,
    form: String? = nil
) -> Var {
    let (n, Sq, d) = (q.value.shape[0], q.value.shape[1], q.value.shape[2])
    let Sk = kv.value.shape[1]
    precondition(
        kv.value.shape[0] == n && kv.value.shape[2] == 2 * d && d % h == 0,
        "attention: q \(q.shape), kv \(kv.shape), heads \(h)")
    var operands = AttentionOperands(
        n: n, Sq: Sq, Sk: Sk, d: d, heads: h, visible: visibleKeys(mask, samples: n, queries: Sq, keys: Sk),
        form: form)
    if bf16 {
        operands.qb = q.value.bf16Rounded(); operands.kvb = kv.value.bf16Rounded()
    } else {
        operands.q = q.value; operands.kv = kv.value
    }
    let (out, lse) = operands.forward(keyBlock: keyBlock)
    return Var.op(out, [q, kv]) { dout in
        let (dq, dkv) = operands.backward(dout: dout, lse: lse, wantQ: q.requiresGrad, wantKV: kv.requiresGrad)
        if let dq { q.accumulate(dq) }
        if let dkv { kv.accumulate(dkv) }
    }
}
