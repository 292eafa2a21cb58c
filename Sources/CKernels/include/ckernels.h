// Element-wise kernels of runtime.precision bf16 (LayerNorm, QuickGELU, softmax and the fp32 → bf16
// roundings that feed oneDNN), written with AVX-512 (F, BW, VL, BF16) intrinsics. bf16 runs only where
// oneDNN finds AVX-512 BF16, so these always get their fast form there; each also has a portable form
// with the same arithmetic, used when the CPU lacks the instructions (tests on other machines).
// The fp32 path never calls them: its numbers stay those of the Swift kernels.
#pragma once
#include <stddef.h>
#include <stdint.h>

/// 1 when the AVX-512 BF16 forms run on this CPU.
int ck_avx512bf16(void);

/// dst[i] = bf16(src[i]), round to nearest even; NaN stays NaN.
void ck_round_bf16(const float *src, uint16_t *dst, size_t n);

/// h[i] = bf16(x σ(1.702 x)) (QuickGELU written straight to the operand of the next product).
void ck_gelu_bf16(const float *x, uint16_t *h, size_t n);

/// d[i] *= σ + 1.702 x σ (1 − σ), σ = σ(1.702 x[i]) (QuickGELU's backward, in place); also written
/// rounded to bf16 into dbf16 when it is non-null.
void ck_gelu_backward(const float *x, float *d, uint16_t *dbf16, size_t n);

/// LayerNorm of `rows` rows of width d: xhat = (x − μ)·rstd, y = xhat·γ + β (biased variance).
/// Writes xhat, rstd, and y as fp32 (when y is non-null) and/or bf16 (when ybf16 is non-null).
void ck_layernorm(const float *x, const float *gamma, const float *beta, float *xhat, float *rstd,
                  float *y, uint16_t *ybf16, size_t rows, size_t d, float eps);

/// LayerNorm's input gradient: dx = rstd·(dy·γ − mean(dy·γ) − xhat·mean(dy·γ·xhat)); dx may be dy.
void ck_layernorm_input_grad(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                             float *dx, size_t rows, size_t d);

/// One attention row: softmax over its first `visible` entries in place, zeros after them (a fully
/// masked row is zeros, a NaN row stays NaN), and the row rounded to bf16 into dst.
void ck_softmax_row_bf16(float *row, size_t visible, size_t count, uint16_t *dst);

/// Softmax backward of one row, scaled: g = p·(g − Σ g·p)·scale in place, and rounded to bf16 into dst.
void ck_softmax_backward_row_bf16(const float *p, float *g, size_t count, float scale, uint16_t *dst);

/// x[i] += y[i].
void ck_add_in_place(float *x, const float *y, size_t n);

/// Runs body(ctx, t) for t in 0..<threads on the OpenMP thread team of the calling thread — the
/// team oneDNN's products run on (libgomp, reached through the library oneDNN loaded), so the bf16
/// path's element-wise loops never compete with idle oneDNN workers for the cores. Returns 0 (and
/// runs nothing) when libgomp is not in the process.
typedef void (*ck_body)(void *ctx, long t);
int ck_parallel(long threads, ck_body body, void *ctx);

/// Emulated bf16 matmul (CAVPT_DIST_BF16_EMULATION, CPUs without bf16 dot products, where oneDNN 2.6
/// has no bf16 matmul): C[b0][b1][i][j] = alpha · Σ_k A[b0][b1][i][k] · B[b0][b1][k][j] (+ bias[j])
/// (+ the old C when accumulate), A and B bf16 at any (b0, b1, row, column) strides in elements, C fp32.
/// Every product of two bf16 values is exact in fp32 and each row sums over k in order, in fp32: the
/// native kernels' arithmetic, and a row's result never depends on the other rows (as theirs does not).
void ck_matmul_bf16_emulated(long b0, long b1, long m, long n, long k, float alpha,
                             const uint16_t *a, const long *a_strides, const uint16_t *b, const long *b_strides,
                             float *c, const long *c_strides, const float *bias, int accumulate);

/// Fused multi-head attention for one batch (Sources/CKernels/attention.c): per (sample, head), QKᵀ,
/// softmax online over blocks of keys, the product with V, and only the row statistics (log-sum-exp)
/// kept for the backward, which recomputes the probabilities from them. Heads are strided views of the
/// packed rows: head j of a row starts at column j·hd. Strides are in elements.
typedef struct ck_attention {
    long samples, heads, sq, sk, hd;
    const void *q;              ///< [samples, sq] rows of queries (fp32, or bf16 when qkv_bf16)
    long q_row, q_sample;
    const void *k, *v;          ///< keys and values: [samples, sk] rows each
    long kv_row, kv_sample;
    int qkv_bf16;               ///< q, k, v hold bf16 bit patterns (uint16) instead of floats
    int round;                  ///< bf16 arithmetic: q, k, v, P, dO and dS rounded to bf16 for the products
    const int32_t *visible;     ///< [samples · sq]: query row i of sample s sees keys 0 ..< visible[s·sq + i]
    float scale;                ///< scores = scale · q·k
    long key_block;             ///< keys per online-softmax block (0: 256)
    float *out;                 ///< forward: [samples, sq] rows (fp32)
    long o_row, o_sample;
    float *lse;                 ///< [samples, heads, sq]: written by the forward, read by the backward
    const float *dout;          ///< backward: ∂loss/∂out, fp32, layout of out
    long do_row, do_sample;
    float *dq;                  ///< ∂loss/∂q (may be NULL), fp32, layout of q
    long dq_row, dq_sample;
    float *dk, *dv;             ///< ∂loss/∂k, ∂loss/∂v (both NULL or both set), fp32
    long dkv_row, dkv_sample;
    int form;                   ///< 0: the process's form (ck_attention_kernel); else ck_attention_form(name)
} ck_attention;

/// The (sample, head) pairs first ..< end (pair = sample · heads + head); pairs touch disjoint memory,
/// so ranges may run on different threads. One scratch allocation per call.
void ck_attention_forward(const ck_attention *a, long first, long end);
void ck_attention_backward(const ck_attention *a, long first, long end);

/// Which form ck_attention_* run: "avx512" (AVX-512F, 16 lanes), "avx2" (AVX2 + FMA, 8 lanes), or the
/// portable C forms "generic16" / "generic8" (same source and the same order of every sum). Chosen by
/// the CPU, or by CAVPT_DIST_ATTENTION_KERNEL; ck_attention_use sets it ("" = by the CPU again).
const char *ck_attention_kernel(void);
int ck_attention_use(const char *name);
/// The `form` value that selects the named form for one call; 0 when this CPU cannot run it.
int ck_attention_form(const char *name);
