// One form of the fused attention kernels (see attention.c, which includes this file once per form with
// FA(name), FA_VW (floats per vector) and FA_TARGET (the instruction set, or nothing) defined).
//
// Written with the compiler's generic vectors (vector_size), so every form is the same source: the
// lanes of a vector are independent and every sum runs over its terms in the same order in every form,
// whatever the width. Per (sample, head): Sq query rows, Sk keys, hd = head width; RB query rows at a
// time; scratch rows padded to hdp (a multiple of 2·FA_VW) and Skp keys (a multiple of 2·FA_VW).

typedef float FA(vf) __attribute__((vector_size(FA_VW * 4), aligned(4), may_alias));
typedef int32_t FA(vi) __attribute__((vector_size(FA_VW * 4), aligned(4), may_alias));
typedef uint32_t FA(vu) __attribute__((vector_size(FA_VW * 4), aligned(4), may_alias));
#define VF FA(vf)
#define VI FA(vi)
#define VU FA(vu)

static inline __attribute__((always_inline)) FA_TARGET VF FA(splat)(float x) { return (VF){0} + x; }
static inline __attribute__((always_inline)) FA_TARGET VF FA(load)(const float *p) { return *(const VF *)p; }
static inline __attribute__((always_inline)) FA_TARGET void FA(store)(float *p, VF v) { *(VF *)p = v; }
static inline __attribute__((always_inline)) FA_TARGET VF FA(select)(VI mask, VF a, VF b) { return (VF)(((VI)a & mask) | ((VI)b & ~mask)); }

// fastExp (FastMath.swift) on every lane: Cody–Waite reduction, degree-7 Taylor polynomial, 2^n from the
// exponent bits; clamped to ±87; NaN lanes stay NaN.
static inline __attribute__((always_inline)) FA_TARGET VF FA(exp)(VF x) {
    VF lo = FA(splat)(-87.f), hi = FA(splat)(87.f);
    VF xc = FA(select)(x < lo, lo, FA(select)(x > hi, hi, x));
    xc = FA(select)(x != x, FA(splat)(0.f), xc);
    VF n = (xc * 1.44269504f + 12582912.f) - 12582912.f;
    VF r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    VF p = FA(splat)(1.f / 5040);
    p = p * r + 1.f / 720;
    p = p * r + 1.f / 120;
    p = p * r + 1.f / 24;
    p = p * r + 1.f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    VI e = (__builtin_convertvector(n, VI) + 127) << 23;
    return FA(select)(x != x, x, p * (VF)e);
}

// Rounded to the nearest bf16 (ties to even; NaN kept, quiet), as a float.
static inline __attribute__((always_inline)) FA_TARGET VF FA(round_bf16)(VF x) {
    VU b = (VU)x;
    VU r = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    VU nan = (b | 0x400000u) & 0xFFFF0000u;
    VI isnan = (VI)((b & 0x7FFFFFFFu) > 0x7F800000u);
    return (VF)(((VI)nan & isnan) | ((VI)r & ~isnan));
}

// C[r][j] = scale · Σ_{c<hd} A[r][c] · BT[c][j] for the RB rows of A (row stride lda) and the keys
// j0 ≤ j < j1 (both multiples of 2·FA_VW); BT is [hd][ldb].
static FA_TARGET void FA(scores)(const float *A, long lda, const float *BT, long ldb, long hd, long j0, long j1,
                                 float *C, long ldc, float scale) {
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    for (long j = j0; j < j1; j += 2 * FA_VW) {
        VF c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0}, c31 = {0};
        const float *b = BT + j;
        for (long c = 0; c < hd; c++, b += ldb) {
            VF b0 = FA(load)(b), b1 = FA(load)(b + FA_VW);
            float x0 = a0[c], x1 = a1[c], x2 = a2[c], x3 = a3[c];
            c00 += x0 * b0; c01 += x0 * b1;
            c10 += x1 * b0; c11 += x1 * b1;
            c20 += x2 * b0; c21 += x2 * b1;
            c30 += x3 * b0; c31 += x3 * b1;
        }
        FA(store)(C + j, c00 * scale); FA(store)(C + j + FA_VW, c01 * scale);
        FA(store)(C + ldc + j, c10 * scale); FA(store)(C + ldc + j + FA_VW, c11 * scale);
        FA(store)(C + 2 * ldc + j, c20 * scale); FA(store)(C + 2 * ldc + j + FA_VW, c21 * scale);
        FA(store)(C + 3 * ldc + j, c30 * scale); FA(store)(C + 3 * ldc + j + FA_VW, c31 * scale);
    }
}

// C[r][c] += Σ_{k0≤k<k1} A(r, k) · B[k][c] for RB rows r of C (row stride ldc) and the ncols columns of
// B (a multiple of 2·FA_VW); A(r, k) = A[r·ar + k·ak], so A can be read transposed.
static FA_TARGET void FA(accumulate)(float *C, long ldc, const float *A, long ar, long ak, const float *B, long ldb,
                                     long k0, long k1, long ncols) {
    for (long c = 0; c < ncols; c += 2 * FA_VW) {
        float *r0 = C + c, *r1 = C + ldc + c, *r2 = C + 2 * ldc + c, *r3 = C + 3 * ldc + c;
        VF c00 = FA(load)(r0), c01 = FA(load)(r0 + FA_VW), c10 = FA(load)(r1), c11 = FA(load)(r1 + FA_VW);
        VF c20 = FA(load)(r2), c21 = FA(load)(r2 + FA_VW), c30 = FA(load)(r3), c31 = FA(load)(r3 + FA_VW);
        for (long k = k0; k < k1; k++) {
            const float *b = B + k * ldb + c;
            VF b0 = FA(load)(b), b1 = FA(load)(b + FA_VW);
            const float *a = A + k * ak;
            float x0 = a[0], x1 = a[ar], x2 = a[2 * ar], x3 = a[3 * ar];
            c00 += x0 * b0; c01 += x0 * b1;
            c10 += x1 * b0; c11 += x1 * b1;
            c20 += x2 * b0; c21 += x2 * b1;
            c30 += x3 * b0; c31 += x3 * b1;
        }
        FA(store)(r0, c00); FA(store)(r0 + FA_VW, c01); FA(store)(r1, c10); FA(store)(r1 + FA_VW, c11);
        FA(store)(r2, c20); FA(store)(r2 + FA_VW, c21); FA(store)(r3, c30); FA(store)(r3 + FA_VW, c31);
    }
}

// Rows [r0, r0 + RB) of one operand into dst [RB][ld] (the first `cols` columns; zeros after them and
// in rows past `rows`); bf16 operands are widened, fp32 ones rounded to bf16 when `round` is set.
static FA_TARGET void FA(pack_rows)(const struct fa_operand *src, long row0, long rows, long count, long cols,
                                    float *dst, long ld, int round) {
    for (long r = 0; r < count; r++) {
        float *out = dst + r * ld;
        long i = row0 + r;
        if (i < rows) {
            fa_read_row(src, i, cols, out, round);
            for (long c = cols; c < ld; c++) out[c] = 0.f;
        } else {
            for (long c = 0; c < ld; c++) out[c] = 0.f;
        }
    }
}

// The operand's rows 0..<rows transposed into dst [cols][ld] (zeros in columns ≥ rows up to ld).
static FA_TARGET void FA(pack_transposed)(const struct fa_operand *src, long rows, long cols, float *dst, long ld,
                                          float *row, int round) {
    for (long i = 0; i < ld; i++) {
        if (i < rows) {
            fa_read_row(src, i, cols, row, round);
            for (long c = 0; c < cols; c++) dst[c * ld + i] = row[c];
        } else {
            for (long c = 0; c < cols; c++) dst[c * ld + i] = 0.f;
        }
    }
}

static FA_TARGET void FA(forward)(const ck_attention *a, long first, long end) {
    const long Sq = a->sq, Sk = a->sk, hd = a->hd, W = 2 * FA_VW;
    const long hdp = (hd + W - 1) / W * W, Skp = (Sk + W - 1) / W * W, Sqp = (Sq + FA_RB - 1) / FA_RB * FA_RB;
    long block = a->key_block > 0 ? (a->key_block + W - 1) / W * W : 256;
    float *scratch = fa_alloc((size_t)(Sqp * hdp + hd * Skp + Skp * hdp + FA_RB * Skp + FA_RB * hdp + hdp));
    float *Q = scratch, *KT = Q + Sqp * hdp, *V = KT + hd * Skp, *S = V + Skp * hdp, *O = S + FA_RB * Skp;
    float *row = O + FA_RB * hdp;
    VI iota;
    for (int t = 0; t < FA_VW; t++) iota[t] = t;
    for (long pair = first; pair < end; pair++) {
        long s = pair / a->heads, head = pair % a->heads;
        struct fa_operand q = fa_operand_of(a->q, a->qkv_bf16, a->q_sample * s + head * hd, a->q_row);
        struct fa_operand k = fa_operand_of(a->k, a->qkv_bf16, a->kv_sample * s + head * hd, a->kv_row);
        struct fa_operand v = fa_operand_of(a->v, a->qkv_bf16, a->kv_sample * s + head * hd, a->kv_row);
        FA(pack_rows)(&q, 0, Sq, Sqp, hd, Q, hdp, a->round);
        FA(pack_transposed)(&k, Sk, hd, KT, Skp, row, a->round);
        FA(pack_rows)(&v, 0, Sk, Skp, hd, V, hdp, a->round);
        const int32_t *visible = a->visible + s * Sq;
        float *lse = a->lse + pair * Sq;
        for (long r0 = 0; r0 < Sq; r0 += FA_RB) {
            long vis[FA_RB], reach = 0;
            float m[FA_RB], l[FA_RB];
            for (long r = 0; r < FA_RB; r++) {
                vis[r] = r0 + r < Sq ? (visible[r0 + r] < Sk ? visible[r0 + r] : Sk) : 0;
                if (vis[r] > reach) reach = vis[r];
                m[r] = -INFINITY;
                l[r] = 0.f;
            }
            memset(O, 0, sizeof(float) * FA_RB * hdp);
            // Keys in blocks, softmax online: each block rescales what the earlier ones summed.
            for (long k0 = 0; k0 < reach; k0 += block) {
                long k1 = k0 + block < reach ? k0 + block : reach, k1p = (k1 + W - 1) / W * W;
                FA(scores)(Q + r0 * hdp, hdp, KT, Skp, hd, k0, k1p, S, Skp, a->scale);
                for (long r = 0; r < FA_RB; r++) {
                    float *p = S + r * Skp;
                    long end_r = vis[r] < k1 ? vis[r] : k1;
                    float mx = m[r];
                    for (long j = k0; j < end_r; j++)
                        if (p[j] > mx || p[j] != p[j]) mx = p[j];
                    if (end_r <= k0 || mx == -INFINITY) { // nothing visible in this block (yet)
                        for (long j = k0; j < k1p; j++) p[j] = 0.f;
                        continue;
                    }
                    if (m[r] != -INFINITY && m[r] != mx) {
                        float alpha = fa_exp_scalar(m[r] - mx);
                        l[r] *= alpha;
                        for (long c = 0; c < hdp; c++) O[r * hdp + c] *= alpha;
                    }
                    m[r] = mx;
                    VF vm = FA(splat)(mx), total = {0};
                    VI limit = (VI){0} + (int32_t)end_r;
                    for (long j = k0; j < k1p; j += FA_VW) {
                        VI lane = iota + (int32_t)j;
                        VF e = FA(select)(lane < limit, FA(exp)(FA(load)(p + j) - vm), FA(splat)(0.f));
                        total += e;
                        FA(store)(p + j, a->round ? FA(round_bf16)(e) : e);
                    }
                    float sum = 0.f;
                    for (int t = 0; t < FA_VW; t++) sum += total[t];
                    l[r] += sum;
                }
                FA(accumulate)(O, hdp, S, Skp, 1, V, hdp, k0, k1, hdp);
            }
            for (long r = 0; r < FA_RB && r0 + r < Sq; r++) {
                float *out = a->out + a->o_sample * s + a->o_row * (r0 + r) + head * hd;
                float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
                if (l[r] != l[r]) inv = l[r]; // NaN row: stays NaN
                for (long c = 0; c < hd; c++) out[c] = O[r * hdp + c] * inv;
                lse[r0 + r] = l[r] > 0.f ? m[r] + logf(l[r]) : (l[r] != l[r] ? l[r] : -INFINITY);
            }
        }
    }
    free(scratch);
}

static FA_TARGET void FA(backward)(const ck_attention *a, long first, long end) {
    const long Sq = a->sq, Sk = a->sk, hd = a->hd, W = 2 * FA_VW;
    const long hdp = (hd + W - 1) / W * W, Skp = (Sk + W - 1) / W * W, Sqp = (Sq + FA_RB - 1) / FA_RB * FA_RB;
    size_t floats = (size_t)(2 * Sqp * hdp + 2 * hd * Skp + Skp * hdp + 2 * Sqp * Skp + FA_RB * hdp + hdp);
    float *scratch = fa_alloc(floats);
    float *Q = scratch, *dO = Q + Sqp * hdp, *KT = dO + Sqp * hdp, *VT = KT + hd * Skp, *K = VT + hd * Skp;
    float *P = K + Skp * hdp, *dS = P + Sqp * Skp, *C = dS + Sqp * Skp, *row = C + FA_RB * hdp;
    VI iota;
    for (int t = 0; t < FA_VW; t++) iota[t] = t;
    for (long pair = first; pair < end; pair++) {
        long s = pair / a->heads, head = pair % a->heads;
        struct fa_operand q = fa_operand_of(a->q, a->qkv_bf16, a->q_sample * s + head * hd, a->q_row);
        struct fa_operand k = fa_operand_of(a->k, a->qkv_bf16, a->kv_sample * s + head * hd, a->kv_row);
        struct fa_operand v = fa_operand_of(a->v, a->qkv_bf16, a->kv_sample * s + head * hd, a->kv_row);
        struct fa_operand g = fa_operand_of(a->dout, 0, a->do_sample * s + head * hd, a->do_row);
        FA(pack_rows)(&q, 0, Sq, Sqp, hd, Q, hdp, a->round);
        FA(pack_rows)(&g, 0, Sq, Sqp, hd, dO, hdp, a->round);
        FA(pack_transposed)(&k, Sk, hd, KT, Skp, row, a->round);
        FA(pack_transposed)(&v, Sk, hd, VT, Skp, row, a->round);
        FA(pack_rows)(&k, 0, Sk, Skp, hd, K, hdp, a->round);
        const int32_t *visible = a->visible + s * Sq;
        const float *lse = a->lse + pair * Sq;
        long reach_all = 0;
        for (long r0 = 0; r0 < Sqp; r0 += FA_RB) {
            long vis[FA_RB], reach = 0;
            for (long r = 0; r < FA_RB; r++) {
                vis[r] = r0 + r < Sq ? (visible[r0 + r] < Sk ? visible[r0 + r] : Sk) : 0;
                if (vis[r] > reach) reach = vis[r];
            }
            if (reach > reach_all) reach_all = reach;
            long reachp = (reach + W - 1) / W * W;
            float *p = P + r0 * Skp, *ds = dS + r0 * Skp;
            memset(p, 0, sizeof(float) * FA_RB * Skp);
            memset(ds, 0, sizeof(float) * FA_RB * Skp);
            if (reach == 0) continue;
            // P again from the saved row statistics; dP = dO Vᵀ into dS.
            FA(scores)(Q + r0 * hdp, hdp, KT, Skp, hd, 0, reachp, p, Skp, a->scale);
            FA(scores)(dO + r0 * hdp, hdp, VT, Skp, hd, 0, reachp, ds, Skp, 1.f);
            for (long r = 0; r < FA_RB; r++) {
                float *pr = p + r * Skp, *dr = ds + r * Skp;
                VF vl = FA(splat)(vis[r] > 0 ? lse[r0 + r] : 0.f), dot = {0};
                VI limit = (VI){0} + (int32_t)vis[r];
                for (long j = 0; j < reachp; j += FA_VW) {
                    VF e = FA(select)(iota + (int32_t)j < limit, FA(exp)(FA(load)(pr + j) - vl), FA(splat)(0.f));
                    FA(store)(pr + j, e);
                    dot += e * FA(load)(dr + j);
                }
                float D = 0.f;
                for (int t = 0; t < FA_VW; t++) D += dot[t];
                // dS = P ⊙ (dP − Σ_j P dP) · scale (zero where P is); bf16: P, then dS, rounded for the products.
                VF vD = FA(splat)(D), vs = FA(splat)(a->scale);
                for (long j = 0; j < reachp; j += FA_VW) {
                    VF e = FA(load)(pr + j), d = e * (FA(load)(dr + j) - vD) * vs;
                    FA(store)(dr + j, a->round ? FA(round_bf16)(d) : d);
                    if (a->round) FA(store)(pr + j, FA(round_bf16)(e));
                }
            }
            if (a->dq) { // dQ = dS K
                memset(C, 0, sizeof(float) * FA_RB * hdp);
                FA(accumulate)(C, hdp, ds, Skp, 1, K, hdp, 0, reach, hdp);
                for (long r = 0; r < FA_RB && r0 + r < Sq; r++) {
                    float *out = a->dq + a->dq_sample * s + a->dq_row * (r0 + r) + head * hd;
                    for (long c = 0; c < hd; c++) out[c] = C[r * hdp + c];
                }
            }
        }
        if (!a->dk) continue;
        // dK = dSᵀ Q and dV = Pᵀ dO, RB keys at a time (zero for keys no row sees).
        for (long j0 = 0; j0 < Sk; j0 += FA_RB) {
            for (int which = 0; which < 2; which++) {
                memset(C, 0, sizeof(float) * FA_RB * hdp);
                if (j0 < reach_all)
                    FA(accumulate)(C, hdp, (which ? P : dS) + j0, 1, Skp, which ? dO : Q, hdp, 0, Sq, hdp);
                float *base = which ? a->dv : a->dk;
                for (long r = 0; r < FA_RB && j0 + r < Sk; r++) {
                    float *out = base + a->dkv_sample * s + a->dkv_row * (j0 + r) + head * hd;
                    for (long c = 0; c < hd; c++) out[c] = C[r * hdp + c];
                }
            }
        }
    }
    free(scratch);
}

#undef VF
#undef VI
#undef VU
