/*
 * main_host.c: host runner for the generated @NAME@ library (not part of the library).
 *
 *   @NAME@_host INPUT.bin OUTPUT.bin [--bench ITERS] [--dump DUMP.bin]
 *
 * INPUT.bin holds N samples of @UNAME@_INPUT_SIZE int8 values (C order); OUTPUT.bin
 * receives N x @UNAME@_OUTPUT_SIZE int32 values (little-endian on usual hosts).
 * --bench ITERS times ITERS inferences (cycling over the samples) and prints
 *   "ns_per_inference <wall> cpu_ns_per_inference <process CPU time> simd <kernels>" on
 *   stdout (kernels: what snncc_simd() reports).
 * --dump (builds with -DSNNCC_DEBUG only) writes, for every sample, every node's output
 *   at the last timestep as records: int32 node, int32 count, count x int32 values (C order).
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "@NAME@.h"
#include "snncc_kernels.h"

static FILE *dump_file = NULL;

#ifdef SNNCC_DEBUG
void @NAME@_debug_dump(int32_t node, const void *data, int32_t esize, int32_t h, int32_t w, int32_t c,
                        int32_t hwc)
{
    int32_t count = h * w * c, i;
    if (dump_file == NULL) {
        return;
    }
    fwrite(&node, sizeof node, 1, dump_file);
    fwrite(&count, sizeof count, 1, dump_file);
    for (i = 0; i < count; ++i) {
        /* i is the C-order index; find the stored index. */
        int32_t src = i, value;
        if (hwc) {
            int32_t ch = i / (h * w), pix = i % (h * w);
            src = pix * c + ch;
        }
        if (esize == 1) {
            value = ((const int8_t *)data)[src];
        } else {
            value = ((const int32_t *)data)[src];
        }
        fwrite(&value, sizeof value, 1, dump_file);
    }
}
#endif

static int fail(const char *msg, const char *arg)
{
    fprintf(stderr, "@NAME@_host: %s%s\n", msg, arg);
    return 2;
}

int main(int argc, char **argv)
{
    FILE *f;
    long size;
    size_t n, i;
    int8_t *inputs;
    int32_t *outputs;
    long iters = 0;
    const char *dump_path = NULL;
    int a;
    if (argc < 3) {
        return fail("usage: INPUT.bin OUTPUT.bin [--bench ITERS] [--dump DUMP.bin]", "");
    }
    for (a = 3; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--bench") == 0) {
            iters = strtol(argv[a + 1], NULL, 10);
        } else if (strcmp(argv[a], "--dump") == 0) {
            dump_path = argv[a + 1];
        } else {
            return fail("unknown option ", argv[a]);
        }
    }
    f = fopen(argv[1], "rb");
    if (f == NULL) {
        return fail("cannot open ", argv[1]);
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size <= 0 || size % @UNAME@_INPUT_SIZE != 0) {
        fclose(f);
        return fail("input size is not a multiple of the sample size: ", argv[1]);
    }
    n = (size_t)size / @UNAME@_INPUT_SIZE;
    inputs = (int8_t *)malloc((size_t)size);
    outputs = (int32_t *)malloc(n * @UNAME@_OUTPUT_SIZE * sizeof(int32_t));
    if (inputs == NULL || outputs == NULL || fread(inputs, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return fail("cannot read ", argv[1]);
    }
    fclose(f);
    if (dump_path != NULL) {
        dump_file = fopen(dump_path, "wb");
        if (dump_file == NULL) {
            return fail("cannot write ", dump_path);
        }
    }
    for (i = 0; i < n; ++i) {
        if (@NAME@_run(inputs + i * @UNAME@_INPUT_SIZE, outputs + i * @UNAME@_OUTPUT_SIZE) != 0) {
            return fail("inference failed", "");
        }
    }
    if (dump_file != NULL) {
        fclose(dump_file);
        dump_file = NULL;
    }
    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(outputs, sizeof(int32_t), n * @UNAME@_OUTPUT_SIZE, f) != n * @UNAME@_OUTPUT_SIZE) {
        return fail("cannot write ", argv[2]);
    }
    fclose(f);
    if (iters > 0) {
        struct timespec t0, t1, c0, c1;
        long k;
        double ns, cpu_ns;
        volatile int32_t sink = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        for (k = 0; k < iters; ++k) {
            size_t s = (size_t)k % n;
            @NAME@_run(inputs + s * @UNAME@_INPUT_SIZE, outputs);
            sink += outputs[0];
        }
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)iters;
        cpu_ns = ((double)(c1.tv_sec - c0.tv_sec) * 1e9 + (double)(c1.tv_nsec - c0.tv_nsec)) / (double)iters;
        printf("ns_per_inference %.1f cpu_ns_per_inference %.1f simd %s\n", ns, cpu_ns, snncc_simd());
        (void)sink;
    }
    free(inputs);
    free(outputs);
    return 0;
}
