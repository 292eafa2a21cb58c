// oneDNN's C API (Debian's libdnnl-dev, OpenMP runtime) plus the OpenMP thread control it obeys.
#pragma once
#include <dnnl.h>
#include <dlfcn.h>

// libdnnl pulls in libgomp; reach omp_set_num_threads through it rather than linking libgomp
// ourselves (its development symlink lives in GCC's private directory).
static inline int cdnnl_set_omp_threads(int n) {
    void (*set)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
    if (!set) return 0;
    set(n);
    return 1;
}

static inline int cdnnl_omp_max_threads(void) {
    int (*get)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    return get ? get() : 1;
}
