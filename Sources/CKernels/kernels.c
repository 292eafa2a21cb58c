// The bf16 path's element-wise kernels (see include/ckernels.h): an AVX-512 form and a portable form
// of each, chosen once per process by what the CPU reports.
#include "ckernels.h"
#include <math.h>
#include <string.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CK_X86 1
#define CK_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#endif

// MARK: Portable forms (the Swift kernels' arithmetic)

static inline uint16_t bf16_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((b >> 16) | 0x40);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

// Cody–Waite reduction and a degree-7 Taylor polynomial, as FastMath.swift's fastExp.
static inline float exp_scalar(float x) {
    if (isnan(x)) return x;
    float xc = x < -87.f ? -87.f : (x > 87.f ? 87.f : x);
    float n = (xc * 1.44269504f + 12582912.f) - 12582912.f;
    float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-6f;
    float p = 1.f / 5040;
    p = p * r + 1.f / 720;
    p = p * r + 1.f / 120;
    p = p * r + 1.f / 24;
    p = p * r + 1.f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    return p * scale;
}

static void round_portable(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bf16_bits(src[i]);
}

static void gelu_portable(const float *x, uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] = bf16_bits(x[i] / (1.f + exp_scalar(-1.702f * x[i])));
}

static void gelu_backward_portable(const float *x, float *d, uint16_t *db, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float z = x[i], s = 1.f / (1.f + exp_scalar(-1.702f * z));
        d[i] *= s + 1.702f * z * s * (1.f - s);
        if (db) db[i] = bf16_bits(d[i]);
    }
}

static void layernorm_portable(const float *x, const float *gamma, const float *beta, float *xhat, float *rstd,
                               float *y, uint16_t *yb, size_t rows, size_t d, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * d;
        float mean = 0, variance = 0;
        for (size_t j = 0; j < d; j++) mean += row[j];
        mean /= (float)d;
        for (size_t j = 0; j < d; j++) { float c = row[j] - mean; variance += c * c; }
        variance /= (float)d;
        float s = 1.f / sqrtf(variance + eps);
        rstd[r] = s;
        for (size_t j = 0; j < d; j++) {
            float v = (row[j] - mean) * s, o = v * gamma[j] + beta[j];
            xhat[r * d + j] = v;
            if (y) y[r * d + j] = o;
            if (yb) yb[r * d + j] = bf16_bits(o);
        }
    }
}

static void layernorm_grad_portable(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                                    float *dx, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        const float *g = dy + r * d, *h = xhat + r * d;
        float m1 = 0, m2 = 0;
        for (size_t j = 0; j < d; j++) { float dh = g[j] * gamma[j]; m1 += dh; m2 += dh * h[j]; }
        m1 /= (float)d; m2 /= (float)d;
        float s = rstd[r];
        for (size_t j = 0; j < d; j++) dx[r * d + j] = s * (g[j] * gamma[j] - m1 - h[j] * m2);
    }
}

static void softmax_portable(float *row, size_t visible, size_t count, uint16_t *dst) {
    float mx = -INFINITY;
    int nan = 0;
    for (size_t j = 0; j < visible; j++) { if (row[j] > mx) mx = row[j]; if (isnan(row[j])) nan = 1; }
    if (nan || mx == -INFINITY) {
        for (size_t j = 0; j < count; j++) row[j] = nan ? NAN : 0.f;
    } else {
        float total = 0;
        for (size_t j = 0; j < visible; j++) { float e = exp_scalar(row[j] - mx); row[j] = e; total += e; }
        float inv = 1.f / total;
        for (size_t j = 0; j < visible; j++) row[j] *= inv;
        for (size_t j = visible; j < count; j++) row[j] = 0.f;
    }
    round_portable(row, dst, count);
}

static void softmax_backward_portable(const float *p, float *g, size_t count, float scale, uint16_t *dst) {
    float dot = 0;
    for (size_t j = 0; j < count; j++) dot += g[j] * p[j];
    for (size_t j = 0; j < count; j++) g[j] = p[j] * (g[j] - dot) * scale;
    round_portable(g, dst, count);
}

// MARK: AVX-512 forms

#ifdef CK_X86

static inline __mmask16 CK_TARGET tail_mask(size_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

static inline void CK_TARGET store_bf16(uint16_t *dst, __m512 v, __mmask16 m) {
    __m256i b = (__m256i)_mm512_cvtneps_pbh(v);
    _mm256_mask_storeu_epi16(dst, m, b);
}

// fastExp's arithmetic on 16 lanes; 2^n by scalef. NaN lanes come back NaN.
static inline __m512 CK_TARGET exp512(__m512 x) {
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.f)), _mm512_set1_ps(87.f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-6f), r);
    __m512 p = _mm512_set1_ps(1.f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

// σ(1.702 x) on 16 lanes.
static inline __m512 CK_TARGET sigmoid1702(__m512 z) {
    __m512 e = exp512(_mm512_mul_ps(z, _mm512_set1_ps(-1.702f)));
    return _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

static void CK_TARGET round_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(src + i), b = _mm512_loadu_ps(src + i + 16);
        _mm512_storeu_si512((void *)(dst + i), (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
    for (; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        store_bf16(dst + i, _mm512_maskz_loadu_ps(m, src + i), m);
    }
}

static void CK_TARGET gelu_avx512(const float *x, uint16_t *h, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 z = _mm512_maskz_loadu_ps(m, x + i);
        store_bf16(h + i, _mm512_mul_ps(z, sigmoid1702(z)), m);
    }
}

static void CK_TARGET gelu_backward_avx512(const float *x, float *d, uint16_t *db, size_t n) {
    const __m512 one = _mm512_set1_ps(1.f), a = _mm512_set1_ps(1.702f);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 z = _mm512_maskz_loadu_ps(m, x + i), s = sigmoid1702(z);
        // s + a z s (1 − s)
        __m512 f = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(a, z), s), _mm512_sub_ps(one, s), s);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, d + i), f);
        _mm512_mask_storeu_ps(d + i, m, v);
        if (db) store_bf16(db + i, v, m);
    }
}

static inline float CK_TARGET row_sum(const float *v, size_t d) {
    __m512 acc = _mm512_setzero_ps();
    for (size_t j = 0; j < d; j += 16) acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(tail_mask(d - j), v + j));
    return _mm512_reduce_add_ps(acc);
}

static void CK_TARGET layernorm_avx512(const float *x, const float *gamma, const float *beta, float *xhat, float *rstd,
                                       float *y, uint16_t *yb, size_t rows, size_t d, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * d;
        __m512 mean = _mm512_set1_ps(row_sum(row, d) / (float)d);
        __m512 acc = _mm512_setzero_ps();
        for (size_t j = 0; j < d; j += 16) {
            __mmask16 m = tail_mask(d - j);
            __m512 c = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, row + j), mean);
            acc = _mm512_fmadd_ps(c, c, acc);
        }
        float s = 1.f / sqrtf(_mm512_reduce_add_ps(acc) / (float)d + eps);
        rstd[r] = s;
        __m512 vs = _mm512_set1_ps(s);
        for (size_t j = 0; j < d; j += 16) {
            __mmask16 m = tail_mask(d - j);
            __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), mean), vs);
            __m512 o = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, gamma + j), _mm512_maskz_loadu_ps(m, beta + j));
            _mm512_mask_storeu_ps(xhat + r * d + j, m, v);
            if (y) _mm512_mask_storeu_ps(y + r * d + j, m, o);
            if (yb) store_bf16(yb + r * d + j, o, m);
        }
    }
}

static void CK_TARGET layernorm_grad_avx512(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                                            float *dx, size_t rows, size_t d) {
    for (size_t r = 0; r < rows; r++) {
        const float *g = dy + r * d, *h = xhat + r * d;
        __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();
        for (size_t j = 0; j < d; j += 16) {
            __mmask16 m = tail_mask(d - j);
            __m512 dh = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, gamma + j));
            a1 = _mm512_add_ps(a1, dh);
            a2 = _mm512_fmadd_ps(dh, _mm512_maskz_loadu_ps(m, h + j), a2);
        }
        __m512 m1 = _mm512_set1_ps(_mm512_reduce_add_ps(a1) / (float)d);
        __m512 m2 = _mm512_set1_ps(_mm512_reduce_add_ps(a2) / (float)d);
        __m512 s = _mm512_set1_ps(rstd[r]);
        for (size_t j = 0; j < d; j += 16) {
            __mmask16 m = tail_mask(d - j);
            __m512 dh = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, gamma + j));
            __m512 v = _mm512_mul_ps(s, _mm512_sub_ps(_mm512_sub_ps(dh, m1), _mm512_mul_ps(_mm512_maskz_loadu_ps(m, h + j), m2)));
            _mm512_mask_storeu_ps(dx + r * d + j, m, v);
        }
    }
}

static void CK_TARGET softmax_avx512(float *row, size_t visible, size_t count, uint16_t *dst) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    for (size_t j = 0; j < visible; j += 16) {
        __mmask16 m = tail_mask(visible - j);
        __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, row + j);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, v);
    }
    float mx = _mm512_reduce_max_ps(vmax);
    if (nan || mx == -INFINITY) {
        float fill = nan ? NAN : 0.f;
        for (size_t j = 0; j < count; j++) row[j] = fill;
    } else {
        __m512 vm = _mm512_set1_ps(mx), total = _mm512_setzero_ps();
        for (size_t j = 0; j < visible; j += 16) {
            __mmask16 m = tail_mask(visible - j);
            __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vm)));
            _mm512_mask_storeu_ps(row + j, m, e);
            total = _mm512_add_ps(total, e);
        }
        __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(total));
        for (size_t j = 0; j < visible; j += 16) {
            __mmask16 m = tail_mask(visible - j);
            _mm512_mask_storeu_ps(row + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + j), inv));
        }
        for (size_t j = visible; j < count; j++) row[j] = 0.f;
    }
    round_avx512(row, dst, count);
}

static void CK_TARGET softmax_backward_avx512(const float *p, float *g, size_t count, float scale, uint16_t *dst) {
    __m512 acc = _mm512_setzero_ps();
    for (size_t j = 0; j < count; j += 16) {
        __mmask16 m = tail_mask(count - j);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, g + j), _mm512_maskz_loadu_ps(m, p + j), acc);
    }
    __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), sc = _mm512_set1_ps(scale);
    for (size_t j = 0; j < count; j += 16) {
        __mmask16 m = tail_mask(count - j);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + j),
                                               _mm512_sub_ps(_mm512_maskz_loadu_ps(m, g + j), dot)), sc);
        _mm512_mask_storeu_ps(g + j, m, v);
        store_bf16(dst + j, v, m);
    }
}

static void CK_TARGET add_avx512(float *x, const float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_add_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

#endif

// MARK: Dispatch

static int detect(void) {
#ifdef CK_X86
    if (getenv("CAVPT_DIST_PORTABLE_KERNELS")) return 0;   // A/B switch (README, Precision)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

static int has = -1;

int ck_avx512bf16(void) {
    if (has < 0) has = detect();   // idempotent: a race only repeats the same answer
    return has;
}

#ifdef CK_X86
#define DISPATCH(fast, portable, ...) do { if (ck_avx512bf16()) fast(__VA_ARGS__); else portable(__VA_ARGS__); } while (0)
#else
#define DISPATCH(fast, portable, ...) portable(__VA_ARGS__)
#endif

void ck_round_bf16(const float *src, uint16_t *dst, size_t n) { DISPATCH(round_avx512, round_portable, src, dst, n); }

void ck_gelu_bf16(const float *x, uint16_t *h, size_t n) { DISPATCH(gelu_avx512, gelu_portable, x, h, n); }

void ck_gelu_backward(const float *x, float *d, uint16_t *dbf16, size_t n) {
    DISPATCH(gelu_backward_avx512, gelu_backward_portable, x, d, dbf16, n);
}

void ck_layernorm(const float *x, const float *gamma, const float *beta, float *xhat, float *rstd,
                  float *y, uint16_t *ybf16, size_t rows, size_t d, float eps) {
    DISPATCH(layernorm_avx512, layernorm_portable, x, gamma, beta, xhat, rstd, y, ybf16, rows, d, eps);
}

void ck_layernorm_input_grad(const float *dy, const float *xhat, const float *rstd, const float *gamma,
                             float *dx, size_t rows, size_t d) {
    DISPATCH(layernorm_grad_avx512, layernorm_grad_portable, dy, xhat, rstd, gamma, dx, rows, d);
}

void ck_softmax_row_bf16(float *row, size_t visible, size_t count, uint16_t *dst) {
    DISPATCH(softmax_avx512, softmax_portable, row, visible, count, dst);
}

void ck_softmax_backward_row_bf16(const float *p, float *g, size_t count, float scale, uint16_t *dst) {
    DISPATCH(softmax_backward_avx512, softmax_backward_portable, p, g, count, scale, dst);
}

static void add_portable(float *x, const float *y, size_t n) { for (size_t i = 0; i < n; i++) x[i] += y[i]; }

void ck_add_in_place(float *x, const float *y, size_t n) { DISPATCH(add_avx512, add_portable, x, y, n); }

// MARK: Parallel loops on oneDNN's OpenMP team

#include <dlfcn.h>

struct ck_job { ck_body body; void *ctx; };
static void (*gomp_parallel)(void (*)(void *), void *, unsigned, unsigned);
static int (*omp_thread_num)(void);

static void ck_trampoline(void *p) {
    struct ck_job *job = p;
    job->body(job->ctx, omp_thread_num());
}

int ck_parallel(long threads, ck_body body, void *ctx) {
    if (!gomp_parallel || !omp_thread_num) {
        // libgomp's entry point for `#pragma omp parallel` (what GCC emits), found in the loaded libgomp.
        gomp_parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))dlsym(RTLD_DEFAULT, "GOMP_parallel");
        omp_thread_num = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_thread_num");
        if (!gomp_parallel || !omp_thread_num) return 0;
    }
    struct ck_job job = {body, ctx};
    gomp_parallel(ck_trampoline, &job, (unsigned)threads, 0);
    return 1;
}

// MARK: Emulated bf16 products (see ckernels.h)

static inline float widen_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

void ck_matmul_bf16_emulated(long b0, long b1, long m, long n, long k, float alpha,
                             const uint16_t *a, const long *as, const uint16_t *b, const long *bs,
                             float *c, const long *cs, const float *bias, int accumulate) {
    float *row = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!row) abort();
    for (long x = 0; x < b0; x++)
        for (long y = 0; y < b1; y++) {
            const uint16_t *ab = a + x * as[0] + y * as[1];
            const uint16_t *bb = b + x * bs[0] + y * bs[1];
            float *cb = c + x * cs[0] + y * cs[1];
            for (long i = 0; i < m; i++) {
                for (long j = 0; j < n; j++) row[j] = 0.f;
                for (long p = 0; p < k; p++) {
                    float av = widen_bf16(ab[i * as[2] + p * as[3]]);
                    const uint16_t *brow = bb + p * bs[2];
                    for (long j = 0; j < n; j++) row[j] += av * widen_bf16(brow[j * bs[3]]);
                }
                float *out = cb + i * cs[2];
                for (long j = 0; j < n; j++) {
                    float v = alpha * row[j] + (bias ? bias[j] : 0.f);
                    out[j * cs[3]] = accumulate ? out[j * cs[3]] + v : v;
                }
            }
        }
    free(row);
}
