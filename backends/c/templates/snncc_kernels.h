/*
 * snncc kernel library: integer-only kernels for multi-level spiking networks.
 *
 * C99, no malloc, no floating point, no libm, no stdio.  Every kernel follows the
 * snncc numeric contract (docs/ir.md, "Integer SNN") bit for bit.
 *
 * Layouts.  Rank-3 activations (C, H, W) are stored channels-last (HWC) so that the
 * inner loops of the kernels run over contiguous channels.  Every other rank is
 * stored in C order.  Spike levels and int8 pixels are int8_t; currents and sums are
 * int32_t.
 *
 * Weights.  Conv weights are stored per input channel c as [c][ky][kx][j] (j over
 * the output channels of c's group), dense weights as [i][o]; depthwise weights as
 * [ky][kx][c].  Weights of b <= 4 bits are packed into 2- or 4-bit two's-complement
 * fields, little end first, each per-channel slice starting on a byte boundary.
 */
#ifndef SNNCC_KERNELS_H
#define SNNCC_KERNELS_H

#include <stdint.h>

/* Conv geometry; the input and output are HWC. */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_t, pad_l;
    int32_t dil_h, dil_w;
    int32_t group;
    int32_t wbits; /* storage bits of one weight: 2, 4 or 8 */
    int32_t x_unsigned; /* every input value is >= 0 (levels of unsigned neurons) */
} snncc_conv_t;

typedef struct {
    int32_t in_f, out_f;
    int32_t wbits;
} snncc_dense_t;

/* Pool geometry (maxpool pads behave as -inf, sumpool pads as 0). */
typedef struct {
    int32_t in_h, in_w, c;
    int32_t out_h, out_w;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_t, pad_l;
    int32_t dil_h, dil_w;
} snncc_pool_t;

/* Multi-level IF neuron over a tensor seen as [outer][channels][inner]. */
typedef struct {
    int32_t outer, channels, inner;
    int32_t levels;    /* N */
    int32_t is_signed; /* lower clamp -N instead of 0 */
    int32_t vmin, vmax; /* saturation bounds of the B-bit membrane */
    int32_t shift;     /* membrane_shift k: residual kept on a 2^k grid */
} snncc_neuron_t;

/* The kernels this build runs on this CPU: "avx512vnni" or "avx2" (x86-64 with GCC or
 * Clang, chosen at run time), "sse2" (other x86-64 builds), "arm-dsp" (Arm cores with the
 * DSP extension: SMLAD block convs), "c" (portable C99). */
const char *snncc_simd(void);

/* Unpack n packed weights of `bits` (2 or 4) storage bits into int8. */
void snncc_unpack(const uint8_t *src, int8_t *dst, int32_t n, int32_t bits);

/* Synaptic layers: y = sum(W * x) + b in int32.  `sparse` != 0 skips zero inputs
 * (event-driven scatter); scratch holds one unpacked weight slice when wbits < 8. */
void snncc_conv_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const void *w,
                   const int32_t *bias, int8_t *scratch, int sparse);
void snncc_conv_i32(const snncc_conv_t *p, const int32_t *x, int32_t *y, const void *w,
                    const int32_t *bias, int8_t *scratch, int sparse);
/* Conv with 8-bit weights and group 1, gathered per output pixel in blocks of
 * SNNCC_OBLOCK output channels held in registers.  Weights are [ky][kx][c/4][o16][4]
 * (input channel quads interleaved, C padded to a multiple of 4) and bias [o16], the
 * output channels zero-padded to a multiple of SNNCC_OBLOCK; for signed input
 * (x_unsigned == 0) a second row [o16] follows, bias - 128 * sum(W) (x86 kernels feed
 * x + 128).  On x86-64 the AVX-512 VNNI / AVX2 kernels (chosen at run time) run when
 * in_c is a multiple of 4, several output pixels per block.  `sparse` asks for the
 * event-driven variant, which skips silent inputs (zero levels); paths where it measured
 * slower than the dense kernel (AVX-512 VNNI; AVX2 below 32 output channels) ignore it. */
#define SNNCC_OBLOCK 16
void snncc_conv_block_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse);
#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD) /* the x86-64 schedule's */
/* Grouped conv (group > 1, in_c / group a multiple of 4), the x86-64 schedule's: per
 * group g the block layout of its weights and its bias row(s) as above, groups one after
 * the other.  Each group runs as a block conv on its in_c / group channels, with `group`
 * left in its geometry: the block kernels step group * in_c elements from one input
 * pixel to the next, group * out_c in the output (group 1 otherwise). */
void snncc_conv_group_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse);
#endif
/* Block convs with 4- or 2-bit weights (group 1): the block layout's rows [ky][kx][c/4]
 * (C padded to a multiple of 4, no offset row, no x86 SIMD of their own: x86 unpacks
 * them per call), each row the o16 output channels in groups of 16 / wbits; a group is a
 * pair of little-endian 32-bit words, word k holding quad elements k (low halfword) and
 * k + 2 (high halfword), the group's output f in wbits-bit field f of each halfword,
 * offset binary (w + 2^(wbits-1)) except the top field (two's complement).  Silent quads
 * are skipped.  Exact while 2^(16 - wbits) times every output's sum fits int32 (the
 * memory plan checks it from the input's bound). */
void snncc_conv_block_w4(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                         const int32_t *bias, int sparse);
void snncc_conv_block_w2(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                         const int32_t *bias, int sparse);
/* Depthwise conv (group == in_c == out_c), gather over contiguous channels. */
void snncc_dwconv_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const void *w,
                     const int32_t *bias, int8_t *scratch);
void snncc_dwconv_i32(const snncc_conv_t *p, const int32_t *x, int32_t *y, const void *w,
                      const int32_t *bias, int8_t *scratch);
void snncc_dense_i8(const snncc_dense_t *p, const int8_t *x, int32_t *y, const void *w,
                    const int32_t *bias, int8_t *scratch, int sparse);
void snncc_dense_i32(const snncc_dense_t *p, const int32_t *x, int32_t *y, const void *w,
                     const int32_t *bias, int8_t *scratch, int sparse);

/* Per-channel y = x * scale + shift over [outer][channels][inner]. */
void snncc_affine_i8(const int8_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                     int32_t outer, int32_t channels, int32_t inner);
void snncc_affine_i32(const int32_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                      int32_t outer, int32_t channels, int32_t inner);

void snncc_add_i32(int32_t *y, const int32_t *a, const int32_t *b, int32_t n);
void snncc_addto_i32(int32_t *y, const int32_t *a, int32_t n);
void snncc_widen_i8(const int8_t *x, int32_t *y, int32_t n);

void snncc_maxpool_i8(const snncc_pool_t *p, const int8_t *x, int8_t *y);
void snncc_maxpool_i32(const snncc_pool_t *p, const int32_t *x, int32_t *y);
void snncc_sumpool_i8(const snncc_pool_t *p, const int8_t *x, int32_t *y);
void snncc_sumpool_i32(const snncc_pool_t *p, const int32_t *x, int32_t *y);

/* Builds without SIMD (Cortex-M, -DSNNCC_NO_SIMD) count thresholds one element at a time
 * from theta, without the table: the schedule passes SNNCC_NEURON_THR(table), NULL there. */
#if defined(SNNCC_NO_SIMD) || !(defined(__SSE2__) || defined(__ARM_NEON) || defined(__ARM_NEON__))
#define SNNCC_SCALAR_NEURON 1
#define SNNCC_NEURON_THR(table) ((const int32_t *)0)
#else
#define SNNCC_NEURON_THR(table) (table)
#endif

/* One timestep of a neuron population stored [outer][channels] (inner == 1) whose
 * sums provably fit int32 (range analysis): z by comparing v against the per-channel
 * table thr[k][c] = (k + lo + 1) * theta[c], k < N - lo (lo = 0, or -N if signed),
 * which vectorizes; no division (thr NULL in scalar builds: see above).  v == NULL: single
 * timestep from v_init. */
void snncc_neuron_fast(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                       const int32_t *theta, const int32_t *v_init, const int32_t *thr, int8_t *z);
/* Membrane initialisation: v = v_init[c]. */
void snncc_neuron_init(const snncc_neuron_t *p, int32_t *v, const int32_t *v_init);
/* One timestep.  v == NULL means a single timestep: start from v_init, keep nothing. */
void snncc_neuron_step(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                       const int32_t *theta, const int32_t *v_init, int8_t *z);

/* Data movement on elements of esize bytes (1 or 4). */
void snncc_hwc_to_chw(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize);
void snncc_chw_to_hwc(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize);
void snncc_concat_part(void *dst, const void *src, int32_t outer, int32_t src_chunk,
                       int32_t dst_chunk, int32_t dst_offset, int32_t esize);
void snncc_pad_hwc(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t pad_t,
                   int32_t pad_l, int32_t pad_b, int32_t pad_r, int32_t esize);
void snncc_channel_shuffle(const void *x, void *y, int32_t outer, int32_t channels,
                           int32_t inner, int32_t groups, int32_t esize);

/* The windows of a conv on few channels (im2col): per output pixel, its k_h x k_w x in_c
 * input values in [ky][kx][c] order (0 in the padding), then zeros up to kq (a multiple
 * of 4); a 1x1 block conv then reads them in whole quads. */
void snncc_im2col_i8(const snncc_conv_t *p, const int8_t *x, int8_t *y, int32_t kq);

#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD) /* the x86-64 schedule's */
/* The input of a conv on c = 1 or 2 channels with its taps in quads (x86-64 schedule):
 * HWC h x (w + pad_l) x 4, element [iy][i][j * c + ch] = x[iy][i - pad_l + j * dil_w][ch]
 * for j < 4 / c (0 outside the row); layout.tap_quads gives the conv's weights on it. */
void snncc_pack_taps_i8(const int8_t *x, int8_t *y, int32_t h, int32_t w, int32_t c, int32_t pad_l,
                        int32_t dil_w);
#endif

/* HWC int8 of c channels -> cp >= c channels, the extra ones 0 (block conv inputs). */
void snncc_pad_channels_i8(const int8_t *x, int8_t *y, int32_t pixels, int32_t c, int32_t cp);

/* Output accumulation over timesteps: acc (C order) = or += y (HWC when h*w > 1). */
void snncc_accum_i32(int32_t *acc, const int32_t *y, int32_t h, int32_t w, int32_t c, int first);
void snncc_accum_i8(int32_t *acc, const int8_t *y, int32_t h, int32_t w, int32_t c, int first);

#endif /* SNNCC_KERNELS_H */
