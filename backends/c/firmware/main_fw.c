/*
 * Firmware test runner for the generated @NAME@ library.  Reads int8 samples from the
 * host file input.bin and writes int32 outputs to output.bin, both through
 * semihosting (the files live in qemu's working directory).
 */
#include <stdio.h>

#include "@NAME@.h"
#include "snncc_kernels.h"

static int8_t sample[@UNAME@_INPUT_SIZE];
static int32_t result[@UNAME@_OUTPUT_SIZE];

int main(void)
{
    FILE *in = fopen("input.bin", "rb");
    FILE *out = fopen("output.bin", "wb");
    long count = 0;
    if (in == NULL || out == NULL) {
        printf("snncc firmware: cannot open input.bin/output.bin\n");
        return 2;
    }
    while (fread(sample, 1, sizeof sample, in) == sizeof sample) {
        if (@NAME@_run(sample, result) != 0 || fwrite(result, sizeof result, 1, out) != 1) {
            printf("snncc firmware: inference or write failed\n");
            return 3;
        }
        ++count;
    }
    fclose(in);
    fclose(out);
    printf("snncc firmware: %ld samples, kernels %s\n", count, snncc_simd());
    return 0;
}
