// PNG decoding through libpng with recoverable errors (setjmp shim): libpng reports errors by
// longjmp, which Swift cannot catch.
#pragma once
#include <stddef.h>

/// Decodes a PNG held in memory to packed 8-bit RGB the way Pillow's `Image.open(f).convert("RGB")`
/// does: palette expanded, grayscale replicated, alpha (and tRNS) dropped without compositing,
/// 16-bit samples reduced to their high byte, interlacing undone. Images with more than
/// `max_pixels` pixels are refused before any pixel buffer is allocated.
/// On success returns 0 and sets *rgb (free with cpng_free), *width and *height.
/// On failure returns non-zero and writes libpng's message (or ours) into err.
int cpng_decode_rgb(const unsigned char *data, size_t size, size_t max_pixels,
                    unsigned char **rgb, int *width, int *height, char *err, size_t err_len);

void cpng_free(void *p);
