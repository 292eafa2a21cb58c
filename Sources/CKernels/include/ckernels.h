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
