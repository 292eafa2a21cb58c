// JPEG decoding and encoding through libjpeg with recoverable errors (setjmp shim): the
// library's default error handler calls exit(), which a trainer cannot afford.
#pragma once
#include <stddef.h>

/// Decodes a JPEG held in memory to packed 8-bit RGB, converting the way Pillow's
/// `Image.open(f).convert("RGB")` does: grayscale is replicated, and 4-component (CMYK/YCCK)
/// images are read as Adobe-inverted CMYK and mapped with Pillow's cmyk→rgb formula.
/// Images with more than `max_pixels` pixels are refused before any pixel buffer is allocated.
/// On success returns 0 and sets *rgb (free with cjpeg_free), *width, *height and
/// *components (the colour components in the file: 1, 3 or 4).
/// On failure returns non-zero and writes libjpeg's message (or ours) into err.
int cjpeg_decode_rgb(const unsigned char *data, size_t size, size_t max_pixels,
                     unsigned char **rgb, int *width, int *height, int *components,
                     char *err, size_t err_len);

/// Encodes packed 8-bit pixels (components 1 = grayscale, 3 = RGB) as a baseline JPEG
/// with the given quality (1...100). On success returns 0 and sets *jpeg (free with
/// cjpeg_free) and *jpeg_size. On failure returns non-zero and writes the message into err.
int cjpeg_encode(const unsigned char *pixels, int width, int height, int components,
                 int quality, unsigned char **jpeg, size_t *jpeg_size,
                 char *err, size_t err_len);

void cjpeg_free(void *p);
