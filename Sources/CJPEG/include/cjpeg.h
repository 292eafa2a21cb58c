// JPEG decoding through libjpeg with recoverable errors (setjmp shim): the
// library's default error handler calls exit(), which a trainer cannot afford.
#pragma once
#include <stddef.h>

/// Decodes a JPEG held in memory to packed 8-bit RGB (grayscale and CMYK/YCCK are converted).
/// On success returns 0 and sets *rgb (free with cjpeg_free), *width, *height.
/// On failure returns non-zero and writes libjpeg's message into err.
int cjpeg_decode_rgb(const unsigned char *data, size_t size,
                     unsigned char **rgb, int *width, int *height,
                     char *err, size_t err_len);
void cjpeg_free(void *p);
