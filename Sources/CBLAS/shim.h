// OpenBLAS's CBLAS interface plus its run-time controls (thread count, core name).
#pragma once
#include <cblas.h>
