// libjpeg shim: decode to packed RGB (as Pillow's convert("RGB") would) and encode, with a
// setjmp/longjmp error manager so a corrupt file becomes an error message instead of exit().
#include "cjpeg.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

// libjpeg keeps pointers to the error manager and the jump buffer for the whole life of the
// codec object, so every piece lives in one heap block that outlives each libjpeg call.
struct decoder {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr errors;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    unsigned char *pixels;  // [height, width, 3] output, handed to the caller on success
    unsigned char *row;     // one decoded row when it needs conversion (gray, CMYK)
};

struct encoder {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr errors;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    unsigned char *jpeg;
    unsigned long jpeg_size;
};

static void copy_message(char *err, size_t err_len, const char *message) {
    if (err_len == 0) return;
    strncpy(err, message, err_len - 1);
    err[err_len - 1] = '\0';
}

static void decoder_error_exit(j_common_ptr cinfo) {
    struct decoder *d = (struct decoder *)cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, d->message);
    longjmp(d->escape, 1);
}

// Pillow decodes through libjpeg's corrupt-data warnings ("extraneous bytes before marker",
// which real datasets contain) but refuses a file that ends early; do the same.
static void decoder_emit_message(j_common_ptr cinfo, int msg_level) {
    if (msg_level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        struct decoder *d = (struct decoder *)cinfo->client_data;
        snprintf(d->message, sizeof d->message, "file is truncated (premature end of JPEG data)");
        longjmp(d->escape, 1);
    }
}

static void encoder_error_exit(j_common_ptr cinfo) {
    struct encoder *e = (struct encoder *)cinfo->client_data;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->escape, 1);
}

static void encoder_emit_message(j_common_ptr cinfo, int msg_level) {
    (void)cinfo;
    (void)msg_level;
}

// Pillow's ImagingConvert cmyk2rgb with MULDIV255(a, b) = ((a*b + 128) >> 8 + a*b + 128) >> 8,
// applied to the "CMYK;I" (Adobe-inverted) values Pillow's JPEG plugin unpacks.
static inline unsigned char muldiv255(int a, int b) {
    int t = a * b + 128;
    return (unsigned char)(((t >> 8) + t) >> 8);
}

static void cmyk_row_to_rgb(const unsigned char *cmyk, unsigned char *rgb, int width) {
    for (int x = 0; x < width; x++) {
        const unsigned char *p = cmyk + 4 * x;
        int nk = p[3];  // 255 - K with K = 255 - stored value
        rgb[3 * x + 0] = (unsigned char)(nk - muldiv255(255 - p[0], nk));
        rgb[3 * x + 1] = (unsigned char)(nk - muldiv255(255 - p[1], nk));
        rgb[3 * x + 2] = (unsigned char)(nk - muldiv255(255 - p[2], nk));
    }
}

static void gray_row_to_rgb(const unsigned char *gray, unsigned char *rgb, int width) {
    for (int x = 0; x < width; x++) {
        rgb[3 * x + 0] = rgb[3 * x + 1] = rgb[3 * x + 2] = gray[x];
    }
}

int cjpeg_decode_rgb(const unsigned char *data, size_t size, size_t max_pixels,
                     unsigned char **rgb, int *width, int *height, int *components,
                     char *err, size_t err_len) {
    *rgb = NULL;
    *width = *height = *components = 0;
    if (size == 0) {
        copy_message(err, err_len, "file is empty");
        return 1;
    }
    struct decoder *d = calloc(1, sizeof *d);
    if (d == NULL) {
        copy_message(err, err_len, "out of memory for the JPEG decoder");
        return 1;
    }
    d->cinfo.err = jpeg_std_error(&d->errors);
    d->errors.error_exit = decoder_error_exit;
    d->errors.emit_message = decoder_emit_message;
    d->cinfo.client_data = d;

    if (setjmp(d->escape)) {
        copy_message(err, err_len, d->message);
        jpeg_destroy_decompress(&d->cinfo);
        free(d->pixels);
        free(d->row);
        free(d);
        return 1;
    }

    jpeg_CreateDecompress(&d->cinfo, JPEG_LIB_VERSION, sizeof(d->cinfo));
    d->cinfo.client_data = d;
    jpeg_mem_src(&d->cinfo, data, (unsigned long)size);
    jpeg_read_header(&d->cinfo, TRUE);

    int file_components = d->cinfo.num_components;
    switch (file_components) {
    case 1: d->cinfo.out_color_space = JCS_GRAYSCALE; break;
    case 3: d->cinfo.out_color_space = JCS_RGB; break;
    case 4: d->cinfo.out_color_space = JCS_CMYK; break;  // libjpeg turns YCCK into CMYK
    default:
        snprintf(d->message, sizeof d->message,
                 "unsupported JPEG with %d colour components (expected 1, 3 or 4)", file_components);
        longjmp(d->escape, 1);
    }
    // Check the header's size before allocating anything from it (Pillow's decompression-bomb limit).
    size_t pixel_count = (size_t)d->cinfo.image_width * (size_t)d->cinfo.image_height;
    if (pixel_count > max_pixels) {
        snprintf(d->message, sizeof d->message, "image is %ux%u, more than the %zu-pixel limit",
                 d->cinfo.image_width, d->cinfo.image_height, max_pixels);
        longjmp(d->escape, 1);
    }

    jpeg_start_decompress(&d->cinfo);
    int w = (int)d->cinfo.output_width, h = (int)d->cinfo.output_height;
    int out_components = d->cinfo.output_components;
    d->pixels = malloc((size_t)w * (size_t)h * 3);
    if (out_components != 3) d->row = malloc((size_t)w * (size_t)out_components);
    if (d->pixels == NULL || (out_components != 3 && d->row == NULL)) {
        snprintf(d->message, sizeof d->message, "out of memory for a %dx%d image", w, h);
        longjmp(d->escape, 1);
    }
    while (d->cinfo.output_scanline < d->cinfo.output_height) {
        unsigned char *dst = d->pixels + (size_t)d->cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW target = out_components == 3 ? dst : d->row;
        if (jpeg_read_scanlines(&d->cinfo, &target, 1) != 1) {
            snprintf(d->message, sizeof d->message, "decoder stopped at row %u of %d",
                     d->cinfo.output_scanline, h);
            longjmp(d->escape, 1);
        }
        if (out_components == 1) gray_row_to_rgb(d->row, dst, w);
        else if (out_components == 4) cmyk_row_to_rgb(d->row, dst, w);
    }
    // Every row is in; like Pillow, do not insist on reading the trailing EOI marker.
    jpeg_abort_decompress(&d->cinfo);
    jpeg_destroy_decompress(&d->cinfo);

    *rgb = d->pixels;
    *width = w;
    *height = h;
    *components = file_components;
    free(d->row);
    free(d);
    return 0;
}

int cjpeg_encode(const unsigned char *pixels, int width, int height, int components,
                 int quality, unsigned char **jpeg, size_t *jpeg_size,
                 char *err, size_t err_len) {
    *jpeg = NULL;
    *jpeg_size = 0;
    if (width <= 0 || height <= 0 || (components != 1 && components != 3) ||
        quality < 1 || quality > 100) {
        copy_message(err, err_len, "cjpeg_encode: invalid size, component count or quality");
        return 1;
    }
    struct encoder *e = calloc(1, sizeof *e);
    if (e == NULL) {
        copy_message(err, err_len, "out of memory for the JPEG encoder");
        return 1;
    }
    e->cinfo.err = jpeg_std_error(&e->errors);
    e->errors.error_exit = encoder_error_exit;
    e->errors.emit_message = encoder_emit_message;
    e->cinfo.client_data = e;

    if (setjmp(e->escape)) {
        copy_message(err, err_len, e->message);
        // The memory destination grows its buffer with malloc and only reports the live one
        // at jpeg_finish_compress, so e->jpeg may already be freed here: leaking the partial
        // output (arguments are validated above, so this path is not expected) beats a double free.
        jpeg_destroy_compress(&e->cinfo);
        free(e);
        return 1;
    }

    jpeg_CreateCompress(&e->cinfo, JPEG_LIB_VERSION, sizeof(e->cinfo));
    e->cinfo.client_data = e;
    jpeg_mem_dest(&e->cinfo, &e->jpeg, &e->jpeg_size);
    e->cinfo.image_width = (JDIMENSION)width;
    e->cinfo.image_height = (JDIMENSION)height;
    e->cinfo.input_components = components;
    e->cinfo.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&e->cinfo);
    jpeg_set_quality(&e->cinfo, quality, TRUE);
    jpeg_start_compress(&e->cinfo, TRUE);
    while (e->cinfo.next_scanline < e->cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)e->cinfo.next_scanline * (size_t)width * (size_t)components);
        jpeg_write_scanlines(&e->cinfo, &row, 1);
    }
    jpeg_finish_compress(&e->cinfo);
    jpeg_destroy_compress(&e->cinfo);

    *jpeg = e->jpeg;
    *jpeg_size = (size_t)e->jpeg_size;
    free(e);
    return 0;
}

void cjpeg_free(void *p) { free(p); }
