// Fused attention (see include/ckernels.h): one source, attention_impl.h, compiled into four forms —
// portable C with 8 or 16 lanes per vector, AVX2 + FMA with 8, AVX-512F with 16 — picked once by the CPU.
// The 16-lane portable form runs the AVX-512 form's exact source on any CPU (the tests check it there).
#include "ckernels.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FA_RB 4   // query rows per register tile

// The portable forms pass 32- and 64-byte vectors between inlined helpers only: no ABI is involved.
#pragma clang diagnostic ignored "-Wpsabi"

struct fa_operand {
    const void *base;   // element (i, c) at base + offset + i·row + c
    long offset, row;
    int bf16;
};

static inline struct fa_operand fa_operand_of(const void *base, int bf16, long offset, long row) {
    struct fa_operand o = {base, offset, row, bf16};
    return o;
}

static inline float fa_round_scalar(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) b = (b | 0x400000u) & 0xFFFF0000u;
    else b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &b, 4);
    return x;
}

// Columns 0 ..< cols of row i as floats (bf16 widened exactly; fp32 rounded to bf16 when `round`).
static inline void fa_read_row(const struct fa_operand *o, long i, long cols, float *out, int round) {
    if (o->bf16) {
        const uint16_t *p = (const uint16_t *)o->base + o->offset + i * o->row;
        for (long c = 0; c < cols; c++) {
            uint32_t b = (uint32_t)p[c] << 16;
            memcpy(out + c, &b, 4);
        }
    } else {
        const float *p = (const float *)o->base + o->offset + i * o->row;
        if (round) for (long c = 0; c < cols; c++) out[c] = fa_round_scalar(p[c]);
        else memcpy(out, p, sizeof(float) * (size_t)cols);
    }
}

static float *fa_alloc(size_t floats) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (floats + 16) * sizeof(float)) != 0 || !p) abort();
    return p;
}

// fastExp (FastMath.swift), one value.
static inline float fa_exp_scalar(float x) {
    if (x != x) return x;
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

#define FA(name) fa_##name##_generic8
#define FA_VW 8
#define FA_TARGET
#include "attention_impl.h"
#undef FA
#undef FA_VW
#undef FA_TARGET

#define FA(name) fa_##name##_generic16
#define FA_VW 16
#define FA_TARGET
#include "attention_impl.h"
#undef FA
#undef FA_VW
#undef FA_TARGET

#if defined(__x86_64__)
#define FA(name) fa_##name##_avx2
#define FA_VW 8
#define FA_TARGET __attribute__((target("avx2,fma")))
#include "attention_impl.h"
#undef FA
#undef FA_VW
#undef FA_TARGET

#define FA(name) fa_##name##_avx512
#define FA_VW 16
#define FA_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")))
#include "attention_impl.h"
#undef FA
#undef FA_VW
#undef FA_TARGET
#endif

typedef void (*fa_fn)(const ck_attention *, long, long);
struct fa_form { const char *name; fa_fn forward, backward; };

static const struct fa_form fa_forms[] = {
    {"generic8", fa_forward_generic8, fa_backward_generic8},
    {"generic16", fa_forward_generic16, fa_backward_generic16},
#if defined(__x86_64__)
    {"avx2", fa_forward_avx2, fa_backward_avx2},
    {"avx512", fa_forward_avx512, fa_backward_avx512},
#endif
};

static const struct fa_form *fa_chosen;

static int fa_supported(const char *name) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx512")) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    if (!strcmp(name, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return !strcmp(name, "generic8") || !strcmp(name, "generic16");
}

int ck_attention_use(const char *name) {
    if (name && *name) {
        for (size_t i = 0; i < sizeof fa_forms / sizeof fa_forms[0]; i++)
            if (!strcmp(fa_forms[i].name, name) && fa_supported(name)) { fa_chosen = &fa_forms[i]; return 1; }
        return 0;
    }
    const char *best = fa_supported("avx512") ? "avx512" : fa_supported("avx2") ? "avx2" : "generic8";
    return ck_attention_use(best);
}

static const struct fa_form *fa_form(void) {
    if (!fa_chosen) {
        const char *forced = getenv("CAVPT_DIST_ATTENTION_KERNEL");
        if (!forced || !ck_attention_use(forced)) ck_attention_use("");
    }
    return fa_chosen;
}

const char *ck_attention_kernel(void) { return fa_form()->name; }

int ck_attention_form(const char *name) {
    for (size_t i = 0; i < sizeof fa_forms / sizeof fa_forms[0]; i++)
        if (!strcmp(fa_forms[i].name, name) && fa_supported(name)) return (int)i + 1;
    return 0;
}

static const struct fa_form *fa_form_of(const ck_attention *a) {
    int n = (int)(sizeof fa_forms / sizeof fa_forms[0]);
    return a->form > 0 && a->form <= n ? &fa_forms[a->form - 1] : fa_form();
}

void ck_attention_forward(const ck_attention *a, long first, long end) { fa_form_of(a)->forward(a, first, end); }

void ck_attention_backward(const ck_attention *a, long first, long end) { fa_form_of(a)->backward(a, first, end); }
