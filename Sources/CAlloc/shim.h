// glibc allocator tuning for the tensor library (mallopt lives in <malloc.h>, which Swift's Glibc
// module does not export).
#pragma once
#include <malloc.h>

/// Serve large blocks from the heap and never trim it, so the activations a training step frees
/// are reused by the next step instead of being unmapped, page-faulted and zero-filled again.
static inline void cavpt_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
