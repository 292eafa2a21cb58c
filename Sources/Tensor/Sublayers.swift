// The two halves of CLIP's pre-LN residual block, each one autograd op (DESIGN §3a), so that the
// backward keeps only what it reads:
//   attention half  x → x[rows] + out_proj(MHA(ln_1(x)))[rows]   keeps x̂, 1/σ, q and k, v (bf16 runs:
//                   q, k, v in bf16 only) and the attention's row statistics — no LayerNorm output, no
//                   attention output, no probabilities;
//   MLP half        x → x + c_proj(QuickGELU(c_fc(ln_2(x))))      keeps x̂, 1/σ and c_fc's output (bf16
//                   runs: in bf16, the operand precision of the products it feeds).
// With `recompute` an op keeps only its input and recomputes the rest in the backward (DESIGN §3a).
// The fp32 arithmetic is exactly that of the unfused ops (layerNorm, linear, quickGELU, +), attention
// aside; the bf16 arithmetic is the fused bf16 ops' (layerNormLinear, geluLinear).
//
// n samples, S tokens, q query rows per sample, d width, m MLP width.
import CKernels

/// runtime.recompute: what the backward recomputes instead of keeping from the forward.
public enum Recompute: String, Sendable, CaseIterable {
    /// Keep every activation the backward reads (fastest).
    case none
    /// Recompute ln_1 and the q, k, v projections of every block (≈ 3d² of the block's 12d² per token).
    case attention
    /// Recompute both halves' inputs of their frozen products (ln_1, q, k, v, ln_2, c_fc: 7d² of 12d²).
    case blocks
}

/// Which rows of each sample a block outputs (the DESIGN §3 shortcuts).
public enum RowSelection: Sendable, Equatable {
    case all
    case prefix(Int)
    case onePerSample([Int])
}

public struct AttentionWeights: Sendable {
    public let heads: Int
    public let lnWeight: Tensor, lnBias: Tensor
    public let query: FrozenMatrix, queryBias: Tensor
    public let keyValue: FrozenMatrix, keyValueBias: Tensor
    public let out: FrozenMatrix, outBias: Tensor

    public init(
        heads: Int, ln: (Tensor, Tensor), query: FrozenMatrix, queryBias: Tensor, keyValue: FrozenMatrix,
        keyValueBias: Tensor, out: FrozenMatrix, outBias: Tensor
    ) {
        self.heads = heads
        (lnWeight, lnBias) = ln
        self.query = query; self.queryBias = queryBias
        self.keyValue = keyValue; self.keyValueBias = keyValueBias
        self.out = out; self.outBias = outBias
    }
}

public struct MLPWeights: Sendable {
    public let lnWeight: Tensor, lnBias: Tensor
    public let fc: FrozenMatrix, fcBias: Tensor, proj: FrozenMatrix, projBias: Tensor

    public init(ln: (Tensor, Tensor), fc: FrozenMatrix, fcBias: Tensor, proj: FrozenMatrix, projBias: Tensor) {
        (lnWeight, lnBias) = ln
        self.fc = fc; self.fcBias = fcBias; self.proj = proj; self.projBias = projBias
    }
}

// MARK: Products with frozen matrices on raw buffers

/// The input of a frozen product: fp32 values, or their bf16 rounding (bf16 matrices).
enum ProductInput {
    case fp32(Tensor)
    case bf16(BF16Buffer)
}

/// y [n, o] = x Wᵀ + b (W [o, i]). fp32 exactly as `linear` computes it (bias rows, then sgemm with β = 1).
func frozenForward(_ x: ProductInput, rows n: Int, _ w: FrozenMatrix, bias: Tensor) -> Tensor {
    let o = w.shape[0], i = w.lastDim
    let y = Tensor(uninitialized: [n, o])
    switch (x, w) {
    case (.fp32(let xs), .fp32(let wt)):
        let (py, pb) = (y.data, bias.data)
        Parallel.chunks(n, grain: max(1, (1 << 16) / o)) { rows in
            for r in rows { (py + r * o).update(from: pb, count: o) }
        }
        BLAS.gemm(
            transB: true, m: n, n: o, k: i, a: xs.data, lda: i, b: wt.data, ldb: i, beta: 1, c: y.data, ldc: o)
    case (.bf16(let xb), .bf16(let wb)):
        OneDNN.gemm(
            m: n, n: o, k: i, a: xb.data, lda: i, b: wb.data, ldb: i, transB: true,
            bias: UnsafePointer(bias.data), c: y.data, ldc: o)
    default:
        preconditionFailure("frozenForward: the input's precision differs from the matrix's")
    }
    return y
}

/// dx [n, i] = dy W (W [o, i]); bf16 matrices round dy to bf16 first (or use `dyBF16`, its rounding).
func frozenInputGradient(_ dy: Tensor, rows n: Int, _ w: FrozenMatrix, dyBF16: BF16Buffer? = nil) -> Tensor {
    let o = w.shape[0], i = w.lastDim
    let dx = Tensor(uninitialized: [n, i])
    switch w {
    case .fp32(let wt):
        BLAS.gemm(m: n, n: i, k: o, a: dy.data, lda: o, b: wt.data, ldb: i, c: dx.data, ldc: i)
    case .bf16(let wb):
        let g = dyBF16 ?? dy.bf16Rounded()
        OneDNN.gemm(m: n, n: i, k: o, a: g.data, lda: o, b: wb.data, ldb: i, transB: false, c: dx.data, ldc: i)
    }
    return dx
}

/// LayerNorm of x's rows: x̂ and 1/σ, and the output as the next product's input (bf16: only in bf16).
func layerNormForProduct(
    _ x: Tensor, gamma: Tensor, beta: Tensor, bf16: Bool, eps: Float = 1e-5
) -> (xhat: Tensor, rstd: Tensor, y: ProductInput) {
    let d = x.lastDim, n = x.rows
    let xhat = Tensor(uninitialized: [n, d]), rstd = Tensor(uninitialized: [n])
    let (px, ph, pr, pg, pb) = (x.data, xhat.data, rstd.data, gamma.data, beta.data)
    if bf16 {
        let normed = BF16Buffer(count: n * d)
        let pn = normed.data
        Parallel.chunks(n, grain: max(1, (1 << 14) / d)) { rows in
            let r = rows.lowerBound
            ck_layernorm(px + r * d, pg, pb, ph + r * d, pr + r, nil, pn + r * d, rows.count, d, eps)
        }
        return (xhat, rstd, .bf16(normed))
    }
    let y = Tensor(uninitialized: [n, d])
    layerNormRows(px, gamma: pg, beta: pb, xhat: ph, rstd: pr, into: y.data, rows: n, width: d, eps: eps)
    return (xhat, rstd, .fp32(y))
}

/// LayerNorm's input gradient in place (the fp32 or the bf16 path's kernel).
func layerNormBackwardInPlace(_ g: Tensor, xhat: Tensor, rstd: Tensor, gamma: Tensor, bf16: Bool) {
    let d = g.lastDim, n = g.rows
    if bf16 {
        layerNormInputGradientBF16(
            dy: g.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma.data, into: g.data, rows: n, width: d)
    } else {
        layerNormInputGradient(
            dy: g.data, xhat: xhat.data, rstd: rstd.data, gamma: gamma.data, into: g.data, rows: n, width: d)
    }
}

/// Rows `indices` of a [R, d] buffer, gathered ([indices.count, d]).
func gather(_ x: ProductInput, width d: Int, _ indices: [Int]) -> ProductInput {
    switch x {
    case .fp32(let t):
        let y = Tensor(uninitialized: [indices.count, d])
        for (r, i) in indices.enumerated() { (y.data + r * d).update(from: t.data + i * d, count: d) }
        return .fp32(y)
    case .bf16(let b):
        let y = BF16Buffer(count: indices.count * d)
        for (r, i) in indices.enumerated() { (y.data + r * d).update(from: b.data + i * d, count: d) }
        return .bf16(y)
    }
}

// MARK: The attention half

/// x [n, S, d] → x[rows] + out_proj(MHA(ln_1(x)))[rows], [n, q, d]; `causal` for the text encoder.
public func attentionSublayer(
    _ x: Var, _ w: AttentionWeights, rows: RowSelection = .all, causal: Bool = false, recompute: Bool = false
) -> Var {
    let (n, S, d) = (x.shape[0], x.shape[1], x.shape[2])
    let bf16 = w.out.precision == .bf16
    let (q, queryRows, mask): (Int, [Int]?, AttentionMask)
    switch rows {
    case .all: (q, queryRows, mask) = (S, nil, causal ? .causal(offset: 0) : .none)
    case .prefix(let k):
        precondition(k >= 0 && k <= S, "attentionSublayer: \(k) rows of \(S)")
        (q, queryRows, mask) = (
            k, k == S ? nil : (0..<n).flatMap { s in (0..<k).map { s * S + $0 } }, causal ? .causal(offset: 0) : .none
        )
    case .onePerSample(let r):
        precondition(r.count == n && r.allSatisfy { $0 >= 0 && $0 < S }, "attentionSublayer: rows \(r)")
        (q, queryRows, mask) = (
            1, r.enumerated().map { $0.offset * S + $0.element }, causal ? .prefix(r.map { $0 + 1 }) : .none
        )
    }
    let visible = visibleKeys(mask, samples: n, queries: q, keys: S)
    let xs = x.value.reshaped([n * S, d])

    // ln_1, then keys and values of every row and queries of the output rows.
    func project() -> (xhat: Tensor, rstd: Tensor, operands: AttentionOperands) {
        let (xhat, rstd, h) = layerNormForProduct(xs, gamma: w.lnWeight, beta: w.lnBias, bf16: bf16)
        let kv = frozenForward(h, rows: n * S, w.keyValue, bias: w.keyValueBias)
        let hq = queryRows.map { gather(h, width: d, $0) } ?? h
        let qs = frozenForward(hq, rows: n * q, w.query, bias: w.queryBias)
        var operands = AttentionOperands(n: n, Sq: q, Sk: S, d: d, heads: w.heads, visible: visible)
        if bf16 {
            operands.qb = qs.bf16Rounded(); operands.kvb = kv.bf16Rounded()
        } else {
            operands.q = qs; operands.kv = kv
        }
        return (xhat, rstd, operands)
    }

    let projected = project()
    let (attended, lse) = projected.operands.forward()
    let input: ProductInput = bf16 ? .bf16(attended.bf16Rounded()) : .fp32(attended)
    let out = frozenForward(input, rows: n * q, w.out, bias: w.outBias)
    let residual = queryRows.map { gather(.fp32(xs), width: d, $0) } ?? .fp32(xs)
    guard case .fp32(let xq) = residual else { fatalError("unreachable") }
    let y = Tensor(uninitialized: [n, q, d])
    let (pa, pb, py) = (xq.data, out.data, y.data)
    Parallel.chunks(y.count, grain: 1 << 16) { r in
        add(pa + r.lowerBound, pb + r.lowerBound, into: py + r.lowerBound, count: r.count)
    }
    let kept = recompute ? nil : projected
    return Var.op(y, [x]) { dy in
        let p = kept ?? project()
        let dout = frozenInputGradient(dy, rows: n * q, w.out)
        let (dq, dkv) = p.operands.backward(dout: dout, lse: lse, wantQ: true, wantKV: true)
        let dh = frozenInputGradient(dkv!, rows: n * S, w.keyValue)
        let dhq = frozenInputGradient(dq!, rows: n * q, w.query)
        if let queryRows {
            for (r, i) in queryRows.enumerated() { addInPlace(dh.data + i * d, dhq.data + r * d, count: d) }
        } else {
            addInPlace(dh.data, dhq.data, count: dh.count)
        }
        layerNormBackwardInPlace(dh, xhat: p.xhat, rstd: p.rstd, gamma: w.lnWeight, bf16: bf16)
        if let queryRows {
            for (r, i) in queryRows.enumerated() { addInPlace(dh.data + i * d, dy.data + r * d, count: d) }
        } else {
            addInPlace(dh.data, dy.data, count: dh.count)
        }
        x.accumulate(dh.reshaped(x.value.shape))
    }
}

// MARK: The MLP half

/// x [..., d] → x + c_proj(QuickGELU(c_fc(ln_2(x)))).
public func mlpSublayer(_ x: Var, _ w: MLPWeights, recompute: Bool = false) -> Var {
    let d = x.value.lastDim, n = x.value.rows, m = w.fc.shape[0]
    let bf16 = w.proj.precision == .bf16
    let xs = x.value.reshaped([n, d])

    // ln_2 and c_fc: the pre-activation, as the backward reads it (bf16 runs: rounded to bf16).
    func expand() -> (xhat: Tensor, rstd: Tensor, pre: Tensor, preBF16: BF16Buffer?) {
        let (xhat, rstd, h) = layerNormForProduct(xs, gamma: w.lnWeight, beta: w.lnBias, bf16: bf16)
        let pre = frozenForward(h, rows: n, w.fc, bias: w.fcBias)
        return (xhat, rstd, pre, bf16 ? BF16Buffer(rounding: pre.data, count: pre.count) : nil)
    }

    let e = expand()
    let hidden: ProductInput
    let pp = e.pre.data
    if bf16 {
        let hb = BF16Buffer(count: n * m)
        let ph = hb.data
        Parallel.chunks(n * m, grain: 1 << 15) { r in ck_gelu_bf16(pp + r.lowerBound, ph + r.lowerBound, r.count) }
        hidden = .bf16(hb)
    } else {
        let g = Tensor(uninitialized: [n, m])
        let pg = g.data
        Parallel.chunks(n * m, grain: 1 << 15) { range in
            for i in range {
                let z = pp[i]
                pg[i] = z / (1 + _exp(-1.702 * z))
            }
        }
        hidden = .fp32(g)
    }
    let out = frozenForward(hidden, rows: n, w.proj, bias: w.projBias)
    let y = Tensor(uninitialized: x.value.shape)
    let (pa, pb, py) = (xs.data, out.data, y.data)
    Parallel.chunks(y.count, grain: 1 << 16) { r in
        add(pa + r.lowerBound, pb + r.lowerBound, into: py + r.lowerBound, count: r.count)
    }
    // bf16 keeps the pre-activation in bf16 only; fp32 keeps it in fp32.
    let kept: (xhat: Tensor, rstd: Tensor, pre: Tensor?, preBF16: BF16Buffer?)? =
        recompute ? nil : (e.xhat, e.rstd, bf16 ? nil : e.pre, e.preBF16)
    return Var.op(y, [x]) { dy in
        let k =
            kept
            ?? {
                let e = expand(); return (e.xhat, e.rstd, bf16 ? nil : e.pre, e.preBF16)
            }()
        let dg = frozenInputGradient(dy, rows: n, w.proj)
        let pd = dg.data
        let dn: Tensor
        if let preBF16 = k.preBF16 {
            // QuickGELU's backward from the bf16 pre-activation, widened a chunk at a time; its result also
            // rounded to bf16 for the c_fc product.
            let db = BF16Buffer(count: n * m)
            let (pz, pdb) = (preBF16.data, db.data)
            Parallel.chunks(n * m, grain: 1 << 15) { r in
                let z = Tensor(uninitialized: [r.count])
                widenBF16(pz + r.lowerBound, into: z.data, count: r.count)
                ck_gelu_backward(z.data, pd + r.lowerBound, pdb + r.lowerBound, r.count)
            }
            dn = frozenInputGradient(dg, rows: n, w.fc, dyBF16: db)
        } else {
            let pz = k.pre!.data
            Parallel.chunks(n * m, grain: 1 << 15) { range in
                for i in range {
                    let z = pz[i]
                    let s = 1 / (1 + _exp(-1.702 * z))
                    pd[i] = pd[i] * (s + 1.702 * z * s * (1 - s))
                }
            }
            dn = frozenInputGradient(dg, rows: n, w.fc)
        }
        layerNormBackwardInPlace(dn, xhat: k.xhat, rstd: k.rstd, gamma: w.lnWeight, bf16: bf16)
        addInPlace(dn.data, dy.data, count: dn.count)
        x.accumulate(dn.reshaped(x.value.shape))
    }
}
