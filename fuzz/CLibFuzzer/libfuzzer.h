// libFuzzer's driver entry (compiler-rt FuzzerInterface.h), linked in by -sanitize=fuzzer.
// SwiftPM gives every executable its own main, so each target calls the driver from there.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
