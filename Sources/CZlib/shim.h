// zlib's inflate API, for reading the gzip-compressed CLIP BPE vocabulary.
#pragma once
#include <zlib.h>
