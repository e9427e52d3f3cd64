/*
 * Firmware benchmark runner for the generated @NAME@ library (bench/firmware.py).
 * Reads int8 samples from input.bin, writes int32 outputs to output.bin (semihosting),
 * then counts instructions: under `qemu-system-arm -icount shift=0` every guest
 * instruction advances virtual time by 1 ns, and the CMSDK APB timer 0 (25 MHz) ticks
 * once per 40 instructions.  A loop over the samples through a volatile function
 * pointer is timed, minus the same loop calling an empty function.  With
 * -DSNNCC_PROFILE the library marks the end of every node, and the ticks between marks
 * are summed per node.  The stack below the caller is painted, and the deepest word
 * one inference overwrote is reported.  Counts are instructions, not cycles.
 */
#include <stdio.h>
#include <string.h>

#include "@NAME@.h"

#define TIMER_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER_RELOAD (*(volatile uint32_t *)0x40000008u)
#define MAX_SAMPLES 256
#define MAX_NODES 512
#define PAINT_WORDS 4096 /* 16 KB of stack painted below the caller's frame */

static int8_t samples[MAX_SAMPLES][@UNAME@_INPUT_SIZE];
static int32_t result[@UNAME@_OUTPUT_SIZE];

typedef int (*run_fn)(const int8_t *, int32_t *);

static int empty_run(const int8_t *input, int32_t *output)
{
    (void)input;
    (void)output;
    return 0;
}

static uint32_t loop_ticks(run_fn volatile *fn, long n)
{
    uint32_t t0, t1;
    long i;
    t0 = TIMER_VALUE;
    for (i = 0; i < n; ++i) {
        (*fn)(samples[i], result);
    }
    t1 = TIMER_VALUE;
    return t0 - t1; /* a down counter */
}

#ifdef SNNCC_PROFILE
static uint32_t node_ticks[MAX_NODES];
static uint32_t prev_tick;
void @NAME@_profile_mark(int32_t node)
{
    uint32_t now = TIMER_VALUE;
    if (node >= 0 && node < MAX_NODES) {
        node_ticks[node] += prev_tick - now;
    }
    prev_tick = TIMER_VALUE;
}
#endif

/* Paint PAINT_WORDS words below this frame, run once, return the bytes overwritten. */
static __attribute__((noinline)) uint32_t stack_peak(run_fn volatile *fn)
{
    volatile uint32_t marker = 0;
    uint32_t *top = (uint32_t *)((uintptr_t)&marker & ~(uintptr_t)3) - 64; /* margin for this frame */
    uint32_t *p;
    for (p = top - PAINT_WORDS; p < top; ++p) {
        *p = 0xA5C3A5C3u;
    }
    (*fn)(samples[0], result);
    for (p = top - PAINT_WORDS; p < top && *p == 0xA5C3A5C3u; ++p) {
    }
    return (uint32_t)((uintptr_t)top - (uintptr_t)p);
}

int main(void)
{
    FILE *in = fopen("input.bin", "rb");
    FILE *out = fopen("output.bin", "wb");
    run_fn volatile fn = @NAME@_run;
    run_fn volatile none = empty_run;
    long count = 0, i;
    uint32_t ticks, empty, stack;
    if (in == NULL || out == NULL) {
        printf("snncc firmware: cannot open input.bin/output.bin\n");
        return 2;
    }
    while (count < MAX_SAMPLES && fread(samples[count], 1, sizeof samples[count], in) == sizeof samples[count]) {
        ++count;
    }
    fclose(in);
    for (i = 0; i < count; ++i) {
        if (@NAME@_run(samples[i], result) != 0 || fwrite(result, sizeof result, 1, out) != 1) {
            printf("snncc firmware: inference or write failed\n");
            return 3;
        }
    }
    fclose(out);
    TIMER_CTRL = 0;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1;
    stack = stack_peak(&fn);
#ifdef SNNCC_PROFILE
    memset(node_ticks, 0, sizeof node_ticks);
    prev_tick = TIMER_VALUE;
#endif
    ticks = loop_ticks(&fn, count);
    empty = loop_ticks(&none, count);
    printf("snncc-bench samples %ld ticks %lu empty %lu stack %lu\n", count, (unsigned long)ticks,
           (unsigned long)empty, (unsigned long)stack);
#ifdef SNNCC_PROFILE
    for (i = 0; i < MAX_NODES; ++i) {
        if (node_ticks[i] != 0) {
            printf("snncc-node %ld %lu\n", i, (unsigned long)node_ticks[i]);
        }
    }
#endif
    return 0;
}
