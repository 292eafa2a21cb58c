// libpng with its errors turned into return codes: png_error longjmps back to cpng_decode_rgb.
#include "cpng.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const unsigned char *data;
    size_t size, offset;
    char *err;
    size_t err_len;
} reader;

static void on_error(png_structp png, png_const_charp message) {
    reader *r = (reader *)png_get_error_ptr(png);
    if (r && r->err && r->err_len) snprintf(r->err, r->err_len, "%s", message);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp message) { (void)png; (void)message; }

static void read_bytes(png_structp png, png_bytep out, png_size_t length) {
    reader *r = (reader *)png_get_io_ptr(png);
    if (length > r->size - r->offset) png_error(png, "truncated PNG data");
    memcpy(out, r->data + r->offset, length);
    r->offset += length;
}

int cpng_decode_rgb(const unsigned char *data, size_t size, size_t max_pixels,
                    unsigned char **rgb, int *width, int *height, char *err, size_t err_len) {
    *rgb = NULL;
    if (err_len) err[0] = 0;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(err, err_len, "not a PNG file");
        return 1;
    }
    reader r = {data, size, 8, err, err_len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &r, on_error, on_warning);
    if (!png) { snprintf(err, err_len, "out of memory for the PNG decoder"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(err, err_len, "out of memory for the PNG decoder"); return 1; }
    unsigned char *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (err_len && !err[0]) snprintf(err, err_len, "corrupt PNG data");
        return 1;
    }
    png_set_read_fn(png, &r, read_bytes);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, 1u << 20, 1u << 20);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if ((size_t)w * (size_t)h > max_pixels) {
        snprintf(err, err_len, "%ux%u pixels is more than the %zu-pixel limit (a decompression bomb?)", w, h, max_pixels);
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    int color = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) {
        if (png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_strip_alpha(png);          // Pillow's RGBA → RGB drops alpha, no compositing
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
        snprintf(err, err_len, "unsupported PNG layout (%d channels, %d bits)", png_get_channels(png, info), png_get_bit_depth(png, info));
        png_destroy_read_struct(&png, &info, NULL);
        return 1;
    }
    size_t stride = (size_t)w * 3;
    pixels = malloc(stride * h ? stride * h : 1);
    rows = malloc(sizeof(png_bytep) * (h ? h : 1));
    if (!pixels || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + y * stride;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    *rgb = pixels;
    *width = (int)w;
    *height = (int)h;
    return 0;
}

void cpng_free(void *p) { free(p); }
