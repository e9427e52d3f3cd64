/*
 * snncc kernel library (see snncc_kernels.h for layouts and conventions).
 *
 * Overflow: the compiler's range analysis proves that every current, sum and
 * membrane fits int32, so the kernels add in int32 without checks.  Division and
 * shifts of negative values never reach C's truncating `/` or `>>`: floors are
 * written out.
 */
#include "snncc_kernels.h"

#include <string.h>

/* Arm cores with the DSP extension (SMLAD, SXTB16) get their own block convs. */
#if (defined(__ARM_FEATURE_DSP) || defined(__ARM_FEATURE_SIMD32)) && !defined(SNNCC_NO_SIMD)
#define SNNCC_ARM_DSP 1
#endif

void snncc_unpack(const uint8_t *src, int8_t *dst, int32_t n, int32_t bits)
{
    int32_t i;
    if (bits == 4) {
        for (i = 0; i + 1 < n; i += 2) {
            int32_t byte = src[i >> 1];
            dst[i] = (int8_t)(((byte & 15) ^ 8) - 8);
            dst[i + 1] = (int8_t)((((byte >> 4) & 15) ^ 8) - 8);
        }
        if (i < n) {
            dst[i] = (int8_t)(((src[i >> 1] & 15) ^ 8) - 8);
        }
    } else {
        for (i = 0; i < n; ++i) {
            int32_t field = (src[i >> 2] >> ((i & 3) * 2)) & 3;
            dst[i] = (int8_t)((field ^ 2) - 2);
        }
    }
}

/* The weights of one slice as int8: in place for 8-bit storage, else unpacked. */
static const int8_t *weight_slice(const void *w, int32_t index, int32_t len, int32_t bits,
                                  int8_t *scratch)
{
    int32_t nbytes;
    if (bits == 8) {
        return (const int8_t *)w + (int32_t)index * len;
    }
    nbytes = (len * bits + 7) / 8;
    snncc_unpack((const uint8_t *)w + index * nbytes, scratch, len, bits);
    return scratch;
}

static void fill_bias(int32_t *y, const int32_t *bias, int32_t pixels, int32_t c)
{
    int32_t p, o;
    for (p = 0; p < pixels; ++p) {
        for (o = 0; o < c; ++o) {
            y[p * c + o] = bias[o];
        }
    }
}

/*
 * Conv as a scatter over the fan-out of each input: every input (iy, ix, c) adds
 * s * W[c][ky][kx][:] to the output pixel it reaches through (ky, kx).  With
 * `sparse`, zero inputs (silent neurons) are skipped: the work is proportional to
 * the number of spike events.  The innermost loop runs over contiguous output
 * channels of one group, which compilers vectorize.
 */
#define SNNCC_CONV_BODY()                                                               \
    int32_t ig = p->in_c / p->group, og = p->out_c / p->group;                             \
    int32_t slice = p->k_h * p->k_w * og;                                                  \
    int32_t c, iy, ix, ky, kx, j;                                                          \
    fill_bias(y, bias, p->out_h * p->out_w, p->out_c);                                     \
    for (c = 0; c < p->in_c; ++c) {                                                        \
        const int8_t *wc = weight_slice(w, c, slice, p->wbits, scratch);                   \
        int32_t obase = (c / ig) * og;                                                     \
        for (iy = 0; iy < p->in_h; ++iy) {                                                 \
            for (ix = 0; ix < p->in_w; ++ix) {                                             \
                int32_t s = x[(iy * p->in_w + ix) * p->in_c + c];                          \
                if (s == 0 && sparse) {                                                    \
                    continue;                                                              \
                }                                                                          \
                for (ky = 0; ky < p->k_h; ++ky) {                                          \
                    int32_t ty = iy + p->pad_t - ky * p->dil_h, oy;                        \
                    if (ty < 0) {                                                          \
                        break;                                                             \
                    }                                                                      \
                    if (ty % p->stride_h != 0) {                                           \
                        continue;                                                          \
                    }                                                                      \
                    oy = ty / p->stride_h;                                                 \
                    if (oy >= p->out_h) {                                                  \
                        continue;                                                          \
                    }                                                                      \
                    for (kx = 0; kx < p->k_w; ++kx) {                                      \
                        int32_t tx = ix + p->pad_l - kx * p->dil_w, ox;                    \
                        int32_t *yrow;                                                     \
                        const int8_t *wrow;                                                \
                        if (tx < 0) {                                                      \
                            break;                                                         \
                        }                                                                  \
                        if (tx % p->stride_w != 0) {                                       \
                            continue;                                                      \
                        }                                                                  \
                        ox = tx / p->stride_w;                                             \
                        if (ox >= p->out_w) {                                              \
                            continue;                                                      \
                        }                                                                  \
                        yrow = y + (oy * p->out_w + ox) * p->out_c + obase;                \
                        wrow = wc + (ky * p->k_w + kx) * og;                               \
                        for (j = 0; j < og; ++j) {                                         \
                            yrow[j] += s * wrow[j];                                        \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

void snncc_conv_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const void *w,
                   const int32_t *bias, int8_t *scratch, int sparse)
{
    SNNCC_CONV_BODY()
}

void snncc_conv_i32(const snncc_conv_t *p, const int32_t *x, int32_t *y, const void *w,
                    const int32_t *bias, int8_t *scratch, int sparse)
{
    SNNCC_CONV_BODY()
}

/*
 * Gather conv: for each output pixel and block of SNNCC_OBLOCK output channels the
 * accumulators stay in registers while every tap (ky, kx) and quad of input channels
 * (c..c+3) adds sum_i x[c+i] * W[c+i][o].  Weights are interleaved by channel quads,
 * [ky][kx][c/4][o16][4], the operand order of 4-way byte dot-product instructions
 * (x86 VNNI vpdpbusd, Arm SDOT) and of pairs of 16-bit multiply-adds (pmaddwd).
 */

/* Input channels c4*4 .. c4*4+3 of one pixel as little-endian bytes; 0 beyond in_c. */
static int32_t load_quad(const int8_t *xin, int32_t cq, int32_t in_c)
{
    const int32_t n = in_c - 4 * cq; /* 1..3: a partial last quad */
    const int8_t *q = xin + 4 * cq;
    uint32_t u = (uint8_t)q[0];
    int32_t v;
    if (n > 1) {
        u |= (uint32_t)(uint8_t)q[1] << 8;
    }
    if (n > 2) {
        u |= (uint32_t)(uint8_t)q[2] << 16;
    }
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Input channels c4*4 .. c4*4+3 of one pixel as little-endian bytes, whole or partial. */
static int32_t quad_at(const int8_t *xin, int32_t cq, int32_t in_c)
{
    int32_t q;
    if (4 * cq + 4 <= in_c) {
        memcpy(&q, xin + 4 * cq, sizeof q);
        return q;
    }
    return load_quad(xin, cq, in_c);
}

/* Block convs of a grouped conv (snncc_conv_group_i8, x86-64 schedule only) keep `group`
 * in their geometry: the input and output pixels are group times their channels apart. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD)
#define SNNCC_PITCH_GROUPS(p) ((p)->group)
#else
#define SNNCC_PITCH_GROUPS(p) 1
#endif

/* The conv geometry as locals, declared by every blocked conv kernel. */
#define SNNCC_CONV_GEOMETRY                                                                \
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, c4 = (p->in_c + 3) / 4;  \
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;                    \
    const int32_t k_h = p->k_h, k_w = p->k_w, sh = p->stride_h, sw = p->stride_w;          \
    const int32_t pt = p->pad_t, pl = p->pad_l, dh = p->dil_h, dw = p->dil_w;              \
    const int32_t o16 = (out_c + SNNCC_OBLOCK - 1) / SNNCC_OBLOCK * SNNCC_OBLOCK;           \
    const int32_t xs = in_c * SNNCC_PITCH_GROUPS(p), ys = out_c * SNNCC_PITCH_GROUPS(p);

/* The loop nest shared by every path: BW output channels per pass; each path defines
 * BLOCK_INIT, BLOCK_STEP (`quad` holds four input levels, `wr` their 4 x BW weights)
 * and BLOCK_STORE before expanding it. */
#define SNNCC_CONV_BLOCK_LOOP(BW)                                       \
    SNNCC_CONV_GEOMETRY                                                                    \
    int32_t oy, ox, ob, ky, kx, cq;                                                        \
    for (oy = 0; oy < out_h; ++oy) {                                                       \
        for (ox = 0; ox < out_w; ++ox) {                                                   \
            int32_t *yp = y + (oy * out_w + ox) * ys;                                      \
            for (ob = 0; ob < o16; ob += (BW)) {                                           \
                const int32_t nblk = (o16 - ob) / SNNCC_OBLOCK < (BW) / SNNCC_OBLOCK       \
                                         ? (o16 - ob) / SNNCC_OBLOCK                       \
                                         : (BW) / SNNCC_OBLOCK;                            \
                BLOCK_INIT                                                                 \
                (void)nblk;                                                                \
                for (ky = 0; ky < k_h; ++ky) {                                             \
                    int32_t iy = oy * sh - pt + ky * dh;                                   \
                    if (iy < 0 || iy >= in_h) {                                            \
                        continue;                                                          \
                    }                                                                      \
                    for (kx = 0; kx < k_w; ++kx) {                                         \
                        int32_t ix = ox * sw - pl + kx * dw;                               \
                        const int8_t *xin, *wk;                                            \
                        if (ix < 0 || ix >= in_w) {                                        \
                            continue;                                                      \
                        }                                                                  \
                        xin = x + (iy * in_w + ix) * xs;                                   \
                        wk = w + ((ky * k_w + kx) * c4) * o16 * 4 + ob * 4;                \
                        for (cq = 0; cq < c4; ++cq) {                                      \
                            const int8_t *wr = wk + cq * o16 * 4;                          \
                            const int32_t quad = quad_at(xin, cq, in_c);                   \
                            if (sparse && quad == 0) {                                     \
                                continue;                                                  \
                            }                                                              \
                            BLOCK_STEP                                                     \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
                BLOCK_STORE                                                                \
            }                                                                              \
        }                                                                                  \
    }

/* Portable C99 (Cortex-M, other compilers, -DSNNCC_NO_SIMD). */
static void conv_block_c(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse)
{
    int32_t acc[SNNCC_OBLOCK], j;
#define BLOCK_INIT                                                                         \
    for (j = 0; j < SNNCC_OBLOCK; ++j) {                                                   \
        acc[j] = bias[ob + j];                                                             \
    }
#define BLOCK_STEP                                                                         \
    {                                                                                      \
        int8_t xq[4]; /* the four levels in memory order */                                \
        memcpy(xq, &quad, sizeof xq);                                                      \
        for (j = 0; j < SNNCC_OBLOCK; ++j) {                                               \
            acc[j] += xq[0] * wr[4 * j] + xq[1] * wr[4 * j + 1] + xq[2] * wr[4 * j + 2] +  \
                      xq[3] * wr[4 * j + 3];                                               \
        }                                                                                  \
    }
#define BLOCK_STORE                                                                        \
    for (j = 0; j < SNNCC_OBLOCK && ob + j < out_c; ++j) {                                 \
        yp[ob + j] = acc[j];                                                               \
    }
    SNNCC_CONV_BLOCK_LOOP(SNNCC_OBLOCK)
#undef BLOCK_INIT
#undef BLOCK_STEP
#undef BLOCK_STORE
}

/* Zero quads (4 silent input levels) are skipped: a test per quad, no list entry and no
 * multiply-adds for a zero one.  -DSNNCC_NO_ZERO_SKIP lists every quad (its products are
 * 0, so the sums are the same bit for bit): the dense loop that bench/firmware.py
 * --skip-compare measures the break-even against. */
#if defined(SNNCC_NO_ZERO_SKIP)
#define SNNCC_QUAD_SKIP(quad) 0
#else
#define SNNCC_QUAD_SKIP(quad) ((quad) == 0)
#endif
/* The output pixels of a block conv: per pixel, the non-zero input quads of its taps
 * pushed on a list (PUSH(quad, weights of its row), with n and list in scope), which RUN
 * adds up (init: bias, then yp for the later lists of a fan-in over QUADS quads).
 * Shared by the packed portable and the Arm DSP kernels. */
#define SNNCC_QUAD_WALK(QUADS, PUSH, RUN)                                                  \
    int32_t oy, ox, ky, kx, cq, n;                                                         \
    for (oy = 0; oy < out_h; ++oy) {                                                       \
        for (ox = 0; ox < out_w; ++ox) {                                                   \
            int32_t *yp = y + (oy * out_w + ox) * ys;                                      \
            const int32_t *init = bias;                                                    \
            n = 0;                                                                         \
            for (ky = 0; ky < k_h; ++ky) {                                                 \
                const int32_t iy = oy * sh - pt + ky * dh;                                 \
                if (iy < 0 || iy >= in_h) {                                                \
                    continue;                                                              \
                }                                                                          \
                for (kx = 0; kx < k_w; ++kx) {                                             \
                    const int32_t ix = ox * sw - pl + kx * dw;                             \
                    const int8_t *xin = x + (iy * in_w + ix) * xs;                         \
                    const int8_t *wk = (const int8_t *)(const void *)w + (ky * k_w + kx) * c4 * rowbytes; \
                    if (ix < 0 || ix >= in_w) {                                            \
                        continue;                                                          \
                    }                                                                      \
                    for (cq = 0; cq < c4; ++cq) {                                          \
                        const int32_t quad = quad_at(xin, cq, in_c);                       \
                        if (SNNCC_QUAD_SKIP(quad)) {                                       \
                            continue;                                                      \
                        }                                                                  \
                        PUSH(quad, wk + cq * rowbytes)                                     \
                        if (++n == (QUADS)) { /* a full list: add it up, go on */          \
                            RUN;                                                           \
                            init = yp;                                                     \
                            n = 0;                                                         \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            RUN;                                                                           \
        }                                                                                  \
    }

/*
 * Conv with 2- or 4-bit weights in the packed block layout (snncc_kernels.h): per row
 * (tap, quad), the 16/wbits output channels ob.. of a group share a pair of 32-bit
 * words; word k holds the quad's elements k and k + 2 (halfwords 0 and 1), output ob + f
 * in field f of each halfword, offset binary (w + 2^(wbits-1)) except the top field
 * (two's complement).
 * Portable: per output pixel a list of its non-zero input quads, then per group of
 * outputs a pass down the list, the fields cut out with constant shifts, all read as
 * offset binary (the top one with its sign bit flipped); the offsets come off at the
 * end as 2^(wbits-1) times the sum of the inputs.
 */
#if !defined(SNNCC_ARM_DSP)
typedef struct {
    int32_t x[4];
    const uint8_t *w;
} snncc_pk_quad_t;
#define SNNCC_PK_QUADS 32
/* Field F of halfword H of word V (BITS wide) as w + 2^(BITS-1): T flips the sign bit of
 * the top field, stored two's complement. */
#define SNNCC_PK_F(V, H, F, BITS, T) ((((V) >> (16 * (H) + (BITS) * (F))) & ((1u << (BITS)) - 1u)) ^ (T))
/* outputs ob..ob+3 += the levels XA (element k) and XB (k + 2) times their fields in
 * word k of the group, V (shifted to field F0) */
#define SNNCC_PK_HALF(V, XA, XB, BITS, T)                                                  \
    {                                                                                      \
        const uint32_t v_ = (V), xa_ = (uint32_t)(XA), xb_ = (uint32_t)(XB);               \
        a0 += xa_ * SNNCC_PK_F(v_, 0, 0, BITS, 0u) + xb_ * SNNCC_PK_F(v_, 1, 0, BITS, 0u);  \
        a1 += xa_ * SNNCC_PK_F(v_, 0, 1, BITS, 0u) + xb_ * SNNCC_PK_F(v_, 1, 1, BITS, 0u);  \
        a2 += xa_ * SNNCC_PK_F(v_, 0, 2, BITS, 0u) + xb_ * SNNCC_PK_F(v_, 1, 2, BITS, 0u);  \
        a3 += xa_ * SNNCC_PK_F(v_, 0, 3, BITS, T) + xb_ * SNNCC_PK_F(v_, 1, 3, BITS, T);    \
    }
/* A little-endian word of packed weights. */
static uint32_t pk_word(const uint8_t *b)
{
    uint32_t v;
    memcpy(&v, b, sizeof v);
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = (v >> 24) | (v >> 8 & 0xFF00u) | (v << 8 & 0xFF0000u) | (v << 24);
#endif
    return v;
}
/* One pass down the list: outputs ob..ob+3, fields F0..F0+3 of their group's words (T:
 * the last is the top field); unsigned arithmetic wraps, and the true sums fit int32. */
#define SNNCC_PK_PASS(BITS, F0, T)                                                         \
    {                                                                                      \
        uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                           \
        const int32_t off = ob / (16 / (BITS)) * 8;                                        \
        for (q = list; q < end; ++q) {                                                     \
            SNNCC_PK_HALF(pk_word(q->w + off) >> ((BITS) * (F0)), q->x[0], q->x[2], BITS, T) \
            SNNCC_PK_HALF(pk_word(q->w + off + 4) >> ((BITS) * (F0)), q->x[1], q->x[3], BITS, T) \
        }                                                                                  \
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;                                \
        for (j = 0; j < 4 && ob + j < out_c; ++j) {                                        \
            yp[ob + j] = init[ob + j] + (int32_t)(acc[j] - sx);                            \
        }                                                                                  \
        ob += 4;                                                                           \
    }

/* The passes of a list: 4 outputs each, the offsets off at the end (2^(BITS-1) times
 * the sum of the inputs). */
#define SNNCC_PK_RUN(NAME, BITS, PASSES)                                                   \
    static void NAME(const snncc_pk_quad_t *list, int32_t n, const int32_t *init, int32_t *yp, \
                     int32_t out_c)                                                        \
    {                                                                                      \
        const snncc_pk_quad_t *end = list + n, *q;                                         \
        uint32_t sx = 0, acc[4];                                                           \
        int32_t ob = 0, j;                                                                 \
        for (q = list; q < end; ++q) {                                                     \
            sx += (uint32_t)(q->x[0] + q->x[1] + q->x[2] + q->x[3]);                       \
        }                                                                                  \
        sx <<= (BITS) - 1;                                                                 \
        while (ob < out_c) {                                                               \
            PASSES                                                                         \
        }                                                                                  \
    }
SNNCC_PK_RUN(packed_run4, 4, SNNCC_PK_PASS(4, 0, 8u))
SNNCC_PK_RUN(packed_run2, 2, SNNCC_PK_PASS(2, 0, 0u) SNNCC_PK_PASS(2, 4, 2u))

#define SNNCC_PK_PUSH(quad, wrow)                                                          \
    {                                                                                      \
        int8_t xq_[4];                                                                     \
        memcpy(xq_, &quad, sizeof xq_);                                                    \
        list[n].x[0] = xq_[0];                                                             \
        list[n].x[1] = xq_[1];                                                             \
        list[n].x[2] = xq_[2];                                                             \
        list[n].x[3] = xq_[3];                                                             \
        list[n].w = (const uint8_t *)(const void *)(wrow);                                 \
    }

typedef void (*snncc_pk_run_fn)(const snncc_pk_quad_t *, int32_t, const int32_t *, int32_t *, int32_t);

static void conv_block_packed_c(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                                const int32_t *bias, snncc_pk_run_fn run)
{
    SNNCC_CONV_GEOMETRY
    const int32_t rowbytes = o16 * p->wbits / 2;
    snncc_pk_quad_t list[SNNCC_PK_QUADS];
    SNNCC_QUAD_WALK(SNNCC_PK_QUADS, SNNCC_PK_PUSH, run(list, n, init, yp, out_c))
}
#endif

/*
 * Arm cores with the DSP extension (Cortex-M4/M7/M33/M55; __ARM_FEATURE_DSP): SMLAD adds
 * two 16 x 16-bit products to an int32 accumulator.  SXTB16 sign-extends bytes 0 and 2
 * of a word (and, rotated by 8, bytes 1 and 3) into two halfwords, so a quad of levels
 * (x0 x1 x2 x3) and a word of four weights of one output (w0 w1 w2 w3, the block
 * layout) pair up as (x0 x2).(w0 w2) + (x1 x3).(w1 w3) without any reordering.
 * Per output pixel, the non-zero input quads of its taps are unpacked once into a list
 * (both halfword pairs and the weights' address: zero quads, silent neurons, cost
 * nothing more), then every pass of 8 output channels runs down the list with its
 * accumulators in registers.  The list ends in a null weights pointer, and each pass
 * moves an entry's pointer on to the next pass's weights, so the loop keeps neither an
 * end nor an offset in a register.  Lists hold at most SNNCC_DSP_QUADS quads (stack);
 * longer fan-ins run in chunks that add to the output.  The accumulators wrap like int32
 * adds (SMLAD only sets the sticky Q flag), so the sum is exact whenever the result
 * fits int32 (range analysis).
 *
 * Packed weights need no unpacking instruction: an AND with a constant (an encodable
 * immediate) keeps field f of both halfwords of a word, which SMLAD reads as 2^(wbits f)
 * times the field, and pairs with (x0 x2) (word 0) or (x1 x3) (word 1): one AND and one
 * SMLAD per two products, one load per 8 (4-bit) or 16 (2-bit) weights, against a load
 * and two SXTB16 per 4 weights at 8 bits.  Output f of a group thus holds 2^(wbits f)
 * times its sum over the offset fields; the offsets come off as that times 2^(wbits-1)
 * times the sum of the inputs (not for the top field, stored two's complement), modulo
 * 2^32.  The memory plan keeps 2^(16-wbits) times every partial sum inside int32, so
 * the division is exact.
 */
#if defined(SNNCC_ARM_DSP)
#include <arm_acle.h>
#define SNNCC_DSP_QUADS 48
#define SNNCC_D_ROR8(v) ((int32_t)(((uint32_t)(v) >> 8) | ((uint32_t)(v) << 24)))
/* sxtb16 with its operand rotated by 8 in one instruction (ACLE has no rotation form) */
#if defined(__GNUC__)
#define SNNCC_D_SXTB16_R8(dst, v) __asm__("sxtb16 %0, %1, ror #8" : "=r"(dst) : "r"(v))
#else
#define SNNCC_D_SXTB16_R8(dst, v) (dst) = __sxtb16(SNNCC_D_ROR8(v))
#endif
#define SNNCC_D_8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

typedef struct {
    int32_t xa, xb;  /* the quad's halfword pairs (x0 x2) and (x1 x3) */
    const int8_t *w; /* its weights, this pass's output channels; NULL ends the list */
} snncc_dsp_quad_t;

/* Each macro below is one statement with its load: GCC would otherwise hoist the loads
 * of all words of a pass and spill the accumulators. */
#if defined(__GNUC__)
/* 8-bit weights: output j += word j of the row, each byte sign-extended, dotted with
 * the quad */
#define SNNCC_D_MAC(j)                                                                     \
    __asm__("ldr %[w], [%[p], #" #j " * 4]\n\t"                                            \
            "sxtb16 %[t], %[w]\n\t"                                                        \
            "smlad %[a], %[t], %[xa], %[a]\n\t"                                            \
            "sxtb16 %[t], %[w], ror #8\n\t"                                                \
            "smlad %[a], %[t], %[xb], %[a]"                                                \
            : [a] "+r"(a##j), [w] "=&r"(w_), [t] "=&r"(t_)                                 \
            : [p] "r"(wr), [xa] "r"(xa_), [xb] "r"(xb_));
#define SNNCC_D_AM(A, M) "and %[t], %[w], #" #M "\n\tsmlad %[" #A "], %[t], %[x], %[" #A "]\n\t"
#define SNNCC_D_W4_ASM                                                                     \
    SNNCC_D_AM(a, 0x000F000F) SNNCC_D_AM(b, 0x00F000F0) SNNCC_D_AM(c, 0x0F000F00)          \
    "and %[w], %[w], #0xF000F000\n\t"                                                      \
    "smlad %[d], %[w], %[x], %[d]"
#define SNNCC_D_W2_ASM                                                                     \
    SNNCC_D_AM(a, 0x00030003) SNNCC_D_AM(b, 0x000C000C) SNNCC_D_AM(c, 0x00300030)          \
    SNNCC_D_AM(d, 0x00C000C0) SNNCC_D_AM(e, 0x03000300) SNNCC_D_AM(f, 0x0C000C00)          \
    SNNCC_D_AM(g, 0x30003000)                                                              \
    "and %[w], %[w], #0xC000C000\n\t"                                                      \
    "smlad %[h], %[w], %[x], %[h]"
/* 4-bit: word k of the row, the fields of outputs j0..j3 dotted with x_, which the
 * first form loads (pair K of the quad: 0 (x0 x2), 4 (x1 x3)) */
#define SNNCC_D_W4X(K, k, j0, j1, j2, j3)                                                  \
    __asm__("ldr %[x], [%[q], #" #K "]\n\t"                                               \
            "ldr %[w], [%[p], #" #k " * 4]\n\t" SNNCC_D_W4_ASM                            \
            : [a] "+r"(a##j0), [b] "+r"(a##j1), [c] "+r"(a##j2), [d] "+r"(a##j3),          \
              [x] "=&r"(x_), [w] "=&r"(w_), [t] "=&r"(t_)                                  \
            : [p] "r"(wr), [q] "r"(q));
#define SNNCC_D_W4(k, j0, j1, j2, j3)                                                      \
    __asm__("ldr %[w], [%[p], #" #k " * 4]\n\t" SNNCC_D_W4_ASM                            \
            : [a] "+r"(a##j0), [b] "+r"(a##j1), [c] "+r"(a##j2), [d] "+r"(a##j3),          \
              [w] "=&r"(w_), [t] "=&r"(t_)                                                 \
            : [p] "r"(wr), [x] "r"(x_));
/* 2-bit: word k of the row, the fields of outputs 0..7 dotted with pair K of the quad */
#define SNNCC_D_W2X(K, k)                                                                  \
    __asm__("ldr %[x], [%[q], #" #K "]\n\t"                                               \
            "ldr %[w], [%[p], #" #k " * 4]\n\t" SNNCC_D_W2_ASM                            \
            : [a] "+r"(a0), [b] "+r"(a1), [c] "+r"(a2), [d] "+r"(a3), [e] "+r"(a4),        \
              [f] "+r"(a5), [g] "+r"(a6), [h] "+r"(a7), [x] "=&r"(x_), [w] "=&r"(w_),      \
              [t] "=&r"(t_)                                                                \
            : [p] "r"(wr), [q] "r"(q));
#else
#define SNNCC_D_MAC(j)                                                                     \
    memcpy(&w_, wr + 4 * (j), sizeof w_);                                                  \
    a##j = __smlad(__sxtb16(w_), xa_, a##j);                                               \
    SNNCC_D_SXTB16_R8(t_, w_);                                                             \
    a##j = __smlad(t_, xb_, a##j);
#define SNNCC_D_AM(j, M) a##j = __smlad((int32_t)((uint32_t)w_ & M##u), x_, a##j);
#define SNNCC_D_W4(k, j0, j1, j2, j3)                                                      \
    memcpy(&w_, wr + 4 * (k), sizeof w_);                                                  \
    SNNCC_D_AM(j0, 0x000F000F) SNNCC_D_AM(j1, 0x00F000F0)                                  \
    SNNCC_D_AM(j2, 0x0F000F00) SNNCC_D_AM(j3, 0xF000F000)
#define SNNCC_D_W4X(K, k, j0, j1, j2, j3)                                                  \
    x_ = (K) ? q->xb : q->xa;                                                              \
    SNNCC_D_W4(k, j0, j1, j2, j3)
#define SNNCC_D_W2X(K, k)                                                                  \
    x_ = (K) ? q->xb : q->xa;                                                              \
    memcpy(&w_, wr + 4 * (k), sizeof w_);                                                  \
    SNNCC_D_AM(0, 0x00030003) SNNCC_D_AM(1, 0x000C000C) SNNCC_D_AM(2, 0x00300030)          \
    SNNCC_D_AM(3, 0x00C000C0) SNNCC_D_AM(4, 0x03000300) SNNCC_D_AM(5, 0x0C000C00)          \
    SNNCC_D_AM(6, 0x30003000) SNNCC_D_AM(7, 0xC000C000)
#endif

/* The passes of a list, 8 output channels (PASS weight bytes) each: the last pass reads
 * the zero-padded weights of up to 7 channels past out_c.  The accumulators start at 0;
 * FIN stores outputs ob.. (init plus the accumulators), every one of a whole pass
 * without a check (SNNCC_D_PASS_OF). */
#define SNNCC_D_8C(M)                                                                      \
    if (left > 0) { M(0) } if (left > 1) { M(1) } if (left > 2) { M(2) }                   \
    if (left > 3) { M(3) } if (left > 4) { M(4) } if (left > 5) { M(5) }                   \
    if (left > 6) { M(6) }
#define SNNCC_D_RUN(NAME, PASS, BODY, FIN)                                                 \
    static void NAME(snncc_dsp_quad_t *list, int32_t n, const int32_t *init, int32_t *yp,  \
                     int32_t out_c, int32_t sx)                                            \
    {                                                                                      \
        snncc_dsp_quad_t *q;                                                               \
        const int8_t *wr;                                                                  \
        int32_t ob, w_, t_, x_;                                                            \
        list[n].w = 0;                                                                     \
        for (ob = 0; ob < out_c; ob += 8) {                                                \
            const int32_t left = out_c - ob;                                               \
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;        \
            for (q = list; (wr = q->w) != 0; ++q) {                                        \
                q->w = wr + (PASS);                                                        \
                BODY                                                                       \
            }                                                                              \
            FIN                                                                            \
        }                                                                                  \
        (void)w_;                                                                          \
        (void)t_;                                                                          \
        (void)x_;                                                                          \
        (void)sx;                                                                          \
    }
#define SNNCC_D_STORE(j) yp[ob + (j)] = init[ob + (j)] + a##j;
/* v / 2^k for a multiple v of 2^k: an arithmetic shift (C leaves >> of negative values to
 * the implementation; GCC and Clang shift arithmetically, said here in assembly) */
#if defined(__GNUC__)
#define SNNCC_D_EXACT_DIV(dst, v, k)                                                       \
    if ((k) == 0) {                                                                        \
        (dst) = (v);                                                                       \
    } else {                                                                               \
        __asm__("asr %0, %1, #%c2" : "=r"(dst) : "r"(v), "n"((k) ? (k) : 1));              \
    }
#else
#define SNNCC_D_EXACT_DIV(dst, v, k) (dst) = (v) / (1 << (k));
#endif
/* output ob + j of a packed group: field F of its words, scale 2^(BITS F) (F = 16 / BITS -
 * 1: the top field, two's complement, no offset) */
#define SNNCC_D_PK_FIN(j, BITS, F)                                                         \
    {                                                                                      \
        const uint32_t off_ = (F) == 16 / (BITS) - 1 ? 0u : (uint32_t)sx << ((BITS) * ((F) + 1) - 1); \
        int32_t d_;                                                                        \
        SNNCC_D_EXACT_DIV(d_, (int32_t)((uint32_t)a##j - off_), SNNCC_D_SH##BITS##_##F)    \
        yp[ob + (j)] = init[ob + (j)] + d_;                                                \
    }
#define SNNCC_D_SH4_0 0
#define SNNCC_D_SH4_1 4
#define SNNCC_D_SH4_2 8
#define SNNCC_D_SH4_3 12
#define SNNCC_D_SH2_0 0
#define SNNCC_D_SH2_1 2
#define SNNCC_D_SH2_2 4
#define SNNCC_D_SH2_3 6
#define SNNCC_D_SH2_4 8
#define SNNCC_D_SH2_5 10
#define SNNCC_D_SH2_6 12
#define SNNCC_D_SH2_7 14
#define SNNCC_D_FIN4(j) SNNCC_D_FIN4_##j
#define SNNCC_D_FIN4_0 SNNCC_D_PK_FIN(0, 4, 0)
#define SNNCC_D_FIN4_1 SNNCC_D_PK_FIN(1, 4, 1)
#define SNNCC_D_FIN4_2 SNNCC_D_PK_FIN(2, 4, 2)
#define SNNCC_D_FIN4_3 SNNCC_D_PK_FIN(3, 4, 3)
#define SNNCC_D_FIN4_4 SNNCC_D_PK_FIN(4, 4, 0)
#define SNNCC_D_FIN4_5 SNNCC_D_PK_FIN(5, 4, 1)
#define SNNCC_D_FIN4_6 SNNCC_D_PK_FIN(6, 4, 2)
#define SNNCC_D_FIN4_7 SNNCC_D_PK_FIN(7, 4, 3)
#define SNNCC_D_FIN2(j) SNNCC_D_PK_FIN(j, 2, j)
/* the stores of a pass, M(j) for output ob + j */
#define SNNCC_D_PASS_OF(M)                                                                 \
    if (left >= 8) {                                                                       \
        SNNCC_D_8(M)                                                                       \
    } else {                                                                               \
        SNNCC_D_8C(M)                                                                      \
    }
SNNCC_D_RUN(dsp_run_list, 32, const int32_t xa_ = q->xa; const int32_t xb_ = q->xb; SNNCC_D_8(SNNCC_D_MAC),
            SNNCC_D_PASS_OF(SNNCC_D_STORE))
#if defined(__OPTIMIZE_SIZE__)
/* At -Os (where GCC spilled accumulators in the list loop of the inline stores) a call
 * stores the outputs of a packed pass: output j is field f = j % (16 / bits) of its
 * words, scaled by 2^(bits f) (an exact arithmetic shift, in assembly for GCC and Clang)
 * less its offsets, none for the top field (two's complement). */
static void dsp_pk_store(const int32_t *acc, int32_t left, const int32_t *init, int32_t *yp, int32_t sx,
                         int32_t bits)
{
    const int32_t per = 16 / bits, n = left < 8 ? left : 8;
    int32_t j;
    for (j = 0; j < n; ++j) {
        const int32_t f = j % per, k = bits * f;
        const uint32_t off = f == per - 1 ? 0u : (uint32_t)sx << (k + bits - 1);
        int32_t d = (int32_t)((uint32_t)acc[j] - off);
#if defined(__GNUC__)
        __asm__("asr %0, %0, %1" : "+r"(d) : "r"(k));
#else
        d /= 1 << k;
#endif
        yp[j] = init[j] + d;
    }
}
#define SNNCC_D_FINP(BITS)                                                                 \
    {                                                                                      \
        const int32_t acc_[8] = {a0, a1, a2, a3, a4, a5, a6, a7};                          \
        dsp_pk_store(acc_, left, init + ob, yp + ob, sx, BITS);                            \
    }
#else
#define SNNCC_D_FINP(BITS) SNNCC_D_PASS_OF(SNNCC_D_FIN##BITS)
#endif
/* packed: the words of (x0 x2) first, then those of (x1 x3), one register for both */
SNNCC_D_RUN(dsp_run_list4, 16,
            SNNCC_D_W4X(0, 0, 0, 1, 2, 3) SNNCC_D_W4(2, 4, 5, 6, 7) SNNCC_D_W4X(4, 1, 0, 1, 2, 3)
            SNNCC_D_W4(3, 4, 5, 6, 7), SNNCC_D_FINP(4))
SNNCC_D_RUN(dsp_run_list2, 8, SNNCC_D_W2X(0, 0) SNNCC_D_W2X(4, 1), SNNCC_D_FINP(2))

typedef void (*snncc_dsp_run_fn)(snncc_dsp_quad_t *, int32_t, const int32_t *, int32_t *, int32_t, int32_t);

/* A quad on the list: its halfword pairs and weights; packed kernels also sum the
 * inputs (SUM). */
#define SNNCC_D_PUSH_(quad, wrow, SUM)                                                     \
    {                                                                                      \
        const int32_t xa_ = __sxtb16(quad);                                                \
        int32_t xb_;                                                                       \
        SNNCC_D_SXTB16_R8(xb_, quad);                                                      \
        SUM                                                                                \
        list[n].xa = xa_;                                                                  \
        list[n].xb = xb_;                                                                  \
        list[n].w = (wrow);                                                                \
    }
#define SNNCC_D_PUSH(quad, wrow) SNNCC_D_PUSH_(quad, wrow, )
#define SNNCC_D_PUSH_SUM(quad, wrow) SNNCC_D_PUSH_(quad, wrow, sx = __smlad(xb_, 0x00010001, __smlad(xa_, 0x00010001, sx));)

static void conv_block_dsp(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                           const int32_t *bias)
{
    SNNCC_CONV_GEOMETRY
    const int32_t rowbytes = o16 * 4; /* one (tap, quad) row: o16 x 4 weights */
    snncc_dsp_quad_t list[SNNCC_DSP_QUADS + 1];
    SNNCC_QUAD_WALK(SNNCC_DSP_QUADS, SNNCC_D_PUSH, dsp_run_list(list, n, init, yp, out_c, 0))
}

static void conv_block_dsp_packed(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                                  const int32_t *bias, snncc_dsp_run_fn run)
{
    SNNCC_CONV_GEOMETRY
    const int32_t rowbytes = o16 * p->wbits / 2;
    int32_t sx = 0;
    snncc_dsp_quad_t list[SNNCC_DSP_QUADS + 1];
    SNNCC_QUAD_WALK(SNNCC_DSP_QUADS, SNNCC_D_PUSH_SUM, (run(list, n, init, yp, out_c, sx), sx = 0))
}
#endif

#if defined(__SSE2__) && !defined(SNNCC_NO_SIMD)
#include <emmintrin.h>
#define SNNCC_HAVE_SSE2_BLOCK 1

/* SSE2 (every x86-64): pmaddwd on 128-bit registers, pairwise sums kept per lane. */
static void conv_block_sse2(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                            const int32_t *bias, int sparse)
{
    __m128i a[8];
    int32_t tmp[32], j;
#define BLOCK_INIT                                                                         \
    for (j = 0; j < 8; ++j) {                                                              \
        a[j] = _mm_setzero_si128();                                                        \
    }
#define BLOCK_STEP                                                                         \
    {                                                                                      \
        const __m128i xb = _mm_set1_epi32(quad);                                           \
        const __m128i xv = _mm_srai_epi16(_mm_unpacklo_epi8(xb, xb), 8);                   \
        for (j = 0; j < 4; ++j) {                                                          \
            const __m128i wv = _mm_loadu_si128((const __m128i *)(const void *)(wr + 16 * j)); \
            a[2 * j] = _mm_add_epi32(a[2 * j],                                             \
                                     _mm_madd_epi16(_mm_srai_epi16(_mm_unpacklo_epi8(wv, wv), 8), xv)); \
            a[2 * j + 1] = _mm_add_epi32(a[2 * j + 1],                                     \
                                         _mm_madd_epi16(_mm_srai_epi16(_mm_unpackhi_epi8(wv, wv), 8), xv)); \
        }                                                                                  \
    }
#define BLOCK_STORE                                                                        \
    for (j = 0; j < 8; ++j) {                                                              \
        _mm_storeu_si128((__m128i *)(void *)(tmp + 4 * j), a[j]);                          \
    }                                                                                      \
    for (j = 0; j < SNNCC_OBLOCK && ob + j < out_c; ++j) {                                 \
        yp[ob + j] = bias[ob + j] + tmp[2 * j] + tmp[2 * j + 1];                           \
    }
    SNNCC_CONV_BLOCK_LOOP(SNNCC_OBLOCK)
#undef BLOCK_INIT
#undef BLOCK_STEP
#undef BLOCK_STORE
}
#endif

/*
 * x86-64 with GCC >= 8 or Clang >= 8: AVX-512 VNNI and AVX2 kernels are compiled with
 * target attributes and chosen at run time (__builtin_cpu_supports, which also checks
 * that the OS saves the registers), so a plain -O2 build runs them on CPUs that have
 * them.  -DSNNCC_NO_AVX512 or -DSNNCC_NO_AVX2 leaves a level out.
 */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD)
#if defined(__clang__) ? (__clang_major__ >= 8) : (__GNUC__ >= 8)
#include <immintrin.h>
#if !defined(SNNCC_NO_AVX512)
#define SNNCC_X86_AVX512 1
#endif
#if !defined(SNNCC_NO_AVX2)
#define SNNCC_X86_AVX2 1
#endif
#endif
#endif

#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
/* 2: AVX-512 F + VNNI, 1: AVX2, 0: neither (or left out). */
static int x86_level(void)
{
#if defined(SNNCC_X86_AVX512)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni")) {
        return 2;
    }
#endif
#if defined(SNNCC_X86_AVX2)
    if (__builtin_cpu_supports("avx2")) {
        return 1;
    }
#endif
    return 0;
}
#endif

#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
/*
 * Multi-pixel kernels.  A block of MR output pixels shares every weight load; each
 * pixel keeps its own accumulators, so MR independent dependency chains hide the
 * multiply-add latency.  Pixels whose taps all lie inside the input (most of them) read
 * through one pointer per pixel and block, taps being offsets from it; pixels with taps
 * in the padding read through a pointer per tap, snncc_zeros for padded taps (see
 * SNNCC_MP_LOOP).  Block pixels past the last are computed and not stored.  Input
 * channel quads are read whole: in_c is a multiple of 4 (the memory plan pads the
 * channels of other inputs; snncc_conv_block_i8 sends them to the portable kernels).
 */
#define SNNCC_ZQ 128
static const int8_t snncc_zeros[4 * SNNCC_ZQ] = {0};

#define SNNCC_REP1(M) M(0)
#define SNNCC_REP2(M) M(0) M(1)
#define SNNCC_REP3(M) SNNCC_REP2(M) M(2)
#define SNNCC_REP4(M) SNNCC_REP3(M) M(3)
#define SNNCC_REP6(M) SNNCC_REP4(M) M(4) M(5)
#define SNNCC_REP8(M) SNNCC_REP6(M) M(6) M(7)

/* Output pixels whose taps all lie inside the input: rows [r[0], r[1]), columns
 * [r[2], r[3]) (empty ranges when there are none). */
static void conv_interior(const snncc_conv_t *p, int32_t r[4])
{
    const int32_t n[2] = {p->out_h, p->out_w}, in[2] = {p->in_h, p->in_w};
    const int32_t s[2] = {p->stride_h, p->stride_w}, pad[2] = {p->pad_t, p->pad_l};
    const int32_t span[2] = {(p->k_h - 1) * p->dil_h, (p->k_w - 1) * p->dil_w};
    int32_t d;
    for (d = 0; d < 2; ++d) {
        const int32_t last = in[d] - 1 + pad[d] - span[d]; /* o * s <= last */
        int32_t lo = pad[d] > 0 ? (pad[d] + s[d] - 1) / s[d] : 0;
        int32_t hi = last < 0 ? 0 : last / s[d] + 1;
        hi = hi > n[d] ? n[d] : hi;
        lo = lo > hi ? hi : lo;
        r[2 * d] = lo;
        r[2 * d + 1] = hi;
    }
}

/* Border pixel b (row-major over the pixels outside rows [r[0], r[1]) x columns
 * [r[2], r[3])) as an output index. */
static int32_t conv_border_pixel(int32_t b, const int32_t r[4], int32_t out_w)
{
    const int32_t per = out_w - (r[3] - r[2]), top = r[0] * out_w, mid = (r[1] - r[0]) * per;
    int32_t k;
    if (b < top) {
        return b;
    }
    b -= top;
    if (b < mid) {
        k = b % per;
        return (r[0] + b / per) * out_w + (k < r[2] ? k : r[3] + k - r[2]);
    }
    return r[1] * out_w + (b - mid);
}

/* Tap rows [*lo, *hi) of output row oy that lie inside the input (maybe none). */
static void conv_tap_rows(const snncc_conv_t *p, int32_t oy, int32_t *lo, int32_t *hi)
{
    const int32_t iy = oy * p->stride_h - p->pad_t;
    const int32_t l = iy >= 0 ? 0 : (p->dil_h - 1 - iy) / p->dil_h;
    int32_t h = iy > p->in_h - 1 ? 0 : (p->in_h - 1 - iy) / p->dil_h + 1;
    h = h > p->k_h ? p->k_h : h;
    *lo = l;
    *hi = h > l ? h : l;
}

#define SNNCC_MP_DECLS(MR)                                                                 \
    SNNCC_CONV_GEOMETRY                                                                    \
    const int8_t *xp[MR];                                                                  \
    int32_t iy0[MR], ix0[MR], pix[MR], ir[4], br[4], nj, nint, nkx, runq, kylo, kyhi, rowclip, q0, \
        rq, p0, ob, ky, kx, c0, cq, oy_, ox_, iy_i, ix_i;

/* Interior block pixel r: the next pixel of the interior (row-major), its input at tap
 * (0, 0); past the last one: pix -1 (not stored), reading the image's first pixels. */
#define SNNCC_MP_IPOS(r)                                                                   \
    if (p0 + (r) < nint) {                                                                 \
        if ((r) > 0 && ++ix_i == ir[3]) {                                                  \
            ix_i = ir[2];                                                                  \
            ++iy_i;                                                                        \
        }                                                                                  \
        pix[r] = iy_i * out_w + ix_i;                                                      \
        xp[r] = x + ((iy_i * sh - pt) * in_w + ix_i * sw - pl) * xs;                       \
    } else {                                                                               \
        pix[r] = -1;                                                                       \
        xp[r] = x;                                                                         \
    }
/* Row-clipped block pixel r: interior column p0 + r of row oy_, its input at tap row
 * kylo; past the row's last: pix -1, reading what pixel 0 reads. */
#define SNNCC_MP_RPOS(r)                                                                   \
    if (p0 + (r) < nj) {                                                                   \
        ox_ = ir[2] + p0 + (r);                                                            \
        pix[r] = oy_ * out_w + ox_;                                                        \
        xp[r] = kylo < kyhi ? x + ((oy_ * sh - pt + kylo * dh) * in_w + ox_ * sw - pl) * xs : x; \
    } else {                                                                               \
        pix[r] = -1;                                                                       \
        xp[r] = xp[0];                                                                     \
    }
/* Border block pixel r: its input position at tap (0, 0); past the last: in_h (every
 * tap reads zeros). */
#define SNNCC_MP_BPOS(r)                                                                   \
    if (p0 + (r) < out_h * out_w - (br[1] - br[0]) * nj) {                                 \
        pix[r] = conv_border_pixel(p0 + (r), br, out_w);                                   \
        iy0[r] = pix[r] / out_w * sh - pt;                                                 \
        ix0[r] = pix[r] % out_w * sw - pl;                                                 \
    } else {                                                                               \
        pix[r] = -1;                                                                       \
        iy0[r] = in_h;                                                                     \
        ix0[r] = 0;                                                                        \
    }
#define SNNCC_MP_PTR(r)                                                                    \
    {                                                                                      \
        const int32_t iy_ = iy0[r] + ky * dh, ix_ = ix0[r] + kx * dw;                      \
        xp[r] = (uint32_t)iy_ < (uint32_t)in_h && (uint32_t)ix_ < (uint32_t)in_w           \
                    ? x + (iy_ * in_w + ix_) * xs + 4 * c0                                 \
                    : snncc_zeros;                                                         \
    }

/* One input channel quad: skipped if silent (sparse, MR == 1), else weights and steps. */
#define SNNCC_MP_QUAD(MR)                                                                  \
    if (sparse) {                                                                          \
        int32_t q0_;                                                                       \
        memcpy(&q0_, xp[0] + xo, sizeof q0_);                                              \
        if (q0_ == 0) {                                                                    \
            continue;                                                                      \
        }                                                                                  \
    }                                                                                      \
    {                                                                                      \
        WLOAD                                                                              \
        SNNCC_REP##MR(STEP)                                                                \
    }

/* The pixels of a block, all taps on rows [kylo, kyhi) inside the input, xp[r] at row
 * kylo: tap offsets from it; with dilation 1 and whole quads a row of taps is one run of
 * quads, contiguous in input and weights. */
#define SNNCC_MP_INSIDE(MR, PASS, QS)                                                      \
    for (ob = 0; ob < o16; ob += (PASS)) {                                                 \
        PASS_INIT                                                                          \
        SNNCC_REP##MR(INIT)                                                                \
        for (ky = kylo; ky < kyhi; ++ky) {                                                 \
            for (kx = 0; kx < nkx; ++kx) {                                                 \
                const int32_t toff = ((ky - kylo) * dh * in_w + kx * dw) * xs;             \
                const int8_t *wk = w + (ky * k_w + kx) * c4 * o16 * 4 + ob * 4;            \
                for (cq = 0; cq < runq; cq += (QS)) {                                      \
                    const int8_t *wr = wk + cq * o16 * 4;                                  \
                    const int32_t xo = toff + 4 * cq;                                      \
                    SNNCC_MP_QUAD(MR)                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        SNNCC_REP##MR(STORE)                                                               \
    }

/* The loop nest, PASS output channels per pass, QS quads per step, in three parts:
 * interior pixels (every tap inside; blocks run on across rows), the interior columns
 * of the other rows when at least a block wide (tap rows in the padding skipped; not
 * with PADDED, where padding must be read as zeros), and the rest (a pointer per tap,
 * snncc_zeros in the padding, channels in chunks of SNNCC_ZQ quads, its extent).  Each
 * path defines, before expanding it: PASS_INIT (once per pass), INIT(r) and STORE(r)
 * (per block pixel), WLOAD (the weights of one step, at wr) and STEP(r) (reading the
 * pixel's input at xp[r] + xo). */
#define SNNCC_MP_LOOP(MR, PASS, QS, PADDED)                                                \
    conv_interior(p, ir);                                                                  \
    nj = ir[3] - ir[2];                                                                    \
    nint = (ir[1] - ir[0]) * nj;                                                           \
    nkx = dw == 1 && 4 * c4 == xs ? 1 : k_w;                                                \
    runq = nkx == 1 ? k_w * c4 : c4;                                                       \
    rowclip = !(PADDED) && nj >= (MR);                                                     \
    br[0] = rowclip ? 0 : ir[0];                                                           \
    br[1] = rowclip ? out_h : ir[1];                                                       \
    br[2] = ir[2];                                                                         \
    br[3] = ir[3];                                                                         \
    kylo = 0;                                                                              \
    kyhi = k_h;                                                                            \
    q0 = 0;                                                                                \
    oy_ = -1;                                                                              \
    rq = nj;                                                                               \
    for (;;) {                                                                             \
        if (q0 < nint) {                                                                   \
            p0 = q0;                                                                       \
            q0 += (MR);                                                                    \
            kylo = 0;                                                                      \
            kyhi = k_h;                                                                    \
            iy_i = ir[0] + p0 / nj;                                                        \
            ix_i = ir[2] + p0 % nj;                                                        \
            SNNCC_REP##MR(SNNCC_MP_IPOS)                                                   \
        } else {                                                                           \
            if (!rowclip) {                                                                \
                break;                                                                     \
            }                                                                              \
            if (rq >= nj) { /* the next row with tap rows in the padding */                \
                do {                                                                       \
                    ++oy_;                                                                 \
                } while (oy_ < out_h && oy_ >= ir[0] && oy_ < ir[1]);                      \
                if (oy_ >= out_h) {                                                        \
                    break;                                                                 \
                }                                                                          \
                conv_tap_rows(p, oy_, &kylo, &kyhi);                                       \
                rq = 0;                                                                    \
            }                                                                              \
            p0 = rq;                                                                       \
            rq += (MR);                                                                    \
            SNNCC_REP##MR(SNNCC_MP_RPOS)                                                   \
        }                                                                                  \
        SNNCC_MP_INSIDE(MR, PASS, QS)                                                      \
    }                                                                                      \
    for (p0 = 0; p0 < out_h * out_w - (br[1] - br[0]) * nj; p0 += (MR)) {                  \
        SNNCC_REP##MR(SNNCC_MP_BPOS)                                                       \
        for (ob = 0; ob < o16; ob += (PASS)) {                                             \
            PASS_INIT                                                                      \
            SNNCC_REP##MR(INIT)                                                            \
            for (ky = 0; ky < k_h; ++ky) {                                                 \
                for (kx = 0; kx < k_w; ++kx) {                                             \
                    const int8_t *wk = w + (ky * k_w + kx) * c4 * o16 * 4 + ob * 4;        \
                    for (c0 = 0; c0 < c4; c0 += SNNCC_ZQ) {                                \
                        const int32_t ce = c4 - c0 < SNNCC_ZQ ? c4 : c0 + SNNCC_ZQ;        \
                        SNNCC_REP##MR(SNNCC_MP_PTR)                                        \
                        for (cq = c0; cq < ce; cq += (QS)) {                               \
                            const int8_t *wr = wk + cq * o16 * 4;                          \
                            const int32_t xo = 4 * (cq - c0);                              \
                            SNNCC_MP_QUAD(MR)                                              \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            SNNCC_REP##MR(STORE)                                                           \
        }                                                                                  \
    }
#endif

#if defined(SNNCC_X86_AVX512)
/*
 * AVX-512 VNNI: vpdpbusd adds four u8 x s8 products per int32 lane without saturation,
 * 16 output channels per register, NB registers per pass.  Levels of unsigned neurons
 * (0..N, N <= 127) are the u8 operand as they are.  Signed inputs are offset to
 * x + 128 (xor 0x80, also in the padding, whose zeros become 128) and the bias table
 * holds a second row, bias - 128 * sum(W), that cancels the offset; int32 lanes wrap,
 * so the sum is exact whenever the true result fits int32 (range analysis).
 */
#define SNNCC_TARGET_AVX512 __attribute__((target("avx512f,avx512vnni")))
#define PASS_INIT                                                                          \
    bv0 = _mm512_loadu_si512((const void *)(bb + ob));                                     \
    bv1 = nb > 1 ? _mm512_loadu_si512((const void *)(bb + ob + 16)) : bv0;                 \
    bv2 = nb > 2 ? _mm512_loadu_si512((const void *)(bb + ob + 32)) : bv0;                 \
    bv3 = nb > 3 ? _mm512_loadu_si512((const void *)(bb + ob + 48)) : bv0;                 \
    m0 = SNNCC_V512_MASK(0);                                                               \
    m1 = SNNCC_V512_MASK(1);                                                               \
    m2 = SNNCC_V512_MASK(2);                                                               \
    m3 = SNNCC_V512_MASK(3);
/* Lanes of output channels ob + 16 k ..: all, the first `left`, or (past out_c) none. */
#define SNNCC_V512_MASK(k)                                                                 \
    (out_c - ob - 16 * (k) >= 16  ? (__mmask16)0xFFFF                                      \
     : out_c - ob - 16 * (k) <= 0 ? (__mmask16)0                                           \
                                  : (__mmask16)((1u << (out_c - ob - 16 * (k))) - 1u))
#define INIT(r)                                                                            \
    acc[4 * (r)] = bv0;                                                                    \
    acc[4 * (r) + 1] = bv1;                                                                \
    acc[4 * (r) + 2] = bv2;                                                                \
    acc[4 * (r) + 3] = bv3;
#define WLOAD                                                                              \
    const __m512i w0 = _mm512_loadu_si512((const void *)wr);                               \
    const __m512i w1 = nb > 1 ? _mm512_loadu_si512((const void *)(wr + 64)) : w0;         \
    const __m512i w2 = nb > 2 ? _mm512_loadu_si512((const void *)(wr + 128)) : w0;        \
    const __m512i w3 = nb > 3 ? _mm512_loadu_si512((const void *)(wr + 192)) : w0;
#define STEP(r)                                                                            \
    {                                                                                      \
        int32_t q_;                                                                        \
        __m512i xb_;                                                                       \
        memcpy(&q_, xp[r] + xo, sizeof q_);                                                \
        xb_ = _mm512_set1_epi32(q_);                                                       \
        if (sgn) {                                                                         \
            xb_ = _mm512_xor_si512(xb_, k80);                                              \
        }                                                                                  \
        acc[4 * (r)] = _mm512_dpbusd_epi32(acc[4 * (r)], xb_, w0);                         \
        if (nb > 1) {                                                                      \
            acc[4 * (r) + 1] = _mm512_dpbusd_epi32(acc[4 * (r) + 1], xb_, w1);             \
        }                                                                                  \
        if (nb > 2) {                                                                      \
            acc[4 * (r) + 2] = _mm512_dpbusd_epi32(acc[4 * (r) + 2], xb_, w2);             \
        }                                                                                  \
        if (nb > 3) {                                                                      \
            acc[4 * (r) + 3] = _mm512_dpbusd_epi32(acc[4 * (r) + 3], xb_, w3);             \
        }                                                                                  \
    }
#define STORE(r)                                                                           \
    if (pix[r] >= 0) {                                                                     \
        int32_t *yp_ = y + pix[r] * ys + ob;                                               \
        _mm512_mask_storeu_epi32((void *)yp_, m0, acc[4 * (r)]);                           \
        if (nb > 1) {                                                                      \
            _mm512_mask_storeu_epi32((void *)(yp_ + 16), m1, acc[4 * (r) + 1]);            \
        }                                                                                  \
        if (nb > 2) {                                                                      \
            _mm512_mask_storeu_epi32((void *)(yp_ + 32), m2, acc[4 * (r) + 2]);            \
        }                                                                                  \
        if (nb > 3) {                                                                      \
            _mm512_mask_storeu_epi32((void *)(yp_ + 48), m3, acc[4 * (r) + 3]);            \
        }                                                                                  \
    }
#define SNNCC_V512_KERNEL(NAME, MR, NB, SIGNED, SPARSE)                                    \
    static SNNCC_TARGET_AVX512 void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y, \
                                         const int8_t *w, const int32_t *bias)             \
    {                                                                                      \
        SNNCC_MP_DECLS(MR)                                                                 \
        const int32_t nb = (NB), sgn = (SIGNED), sparse = (SPARSE);                        \
        const int32_t *bb = bias + (sgn ? o16 : 0);                                        \
        const __m512i k80 = _mm512_set1_epi8(-128);                                        \
        __m512i acc[4 * (MR)], bv0, bv1, bv2, bv3;                                         \
        __mmask16 m0, m1, m2, m3;                                                          \
        SNNCC_MP_LOOP(MR, 16 * (NB), 1, sgn)                                               \
    }
/* MR pixels x NB registers of accumulators (24 of 32 registers at most; more pixels per
 * block measured no faster with one or two registers). */
SNNCC_V512_KERNEL(v512_u4, 6, 4, 0, 0)
SNNCC_V512_KERNEL(v512_u2, 8, 2, 0, 0)
SNNCC_V512_KERNEL(v512_u1, 8, 1, 0, 0)
/* Signed inputs (the image, signed neurons: few layers) take one kernel. */
SNNCC_V512_KERNEL(v512_s1, 8, 1, 1, 0)
#undef PASS_INIT
#undef INIT
#undef WLOAD
#undef STEP
#undef STORE

/*
 * 16 output channels and whole groups of 16 input channels: one 128-bit broadcast
 * carries a pixel's four quads (x0 x1 x2 x3 in every 128-bit lane), and four weight
 * registers W_m hold, in lane k, element i, the weights of output m + 4k for quad i, so
 * each vpdpbusd does 64 useful MACs per input load (one 4-byte broadcast per vpdpbusd
 * otherwise).  Accumulator m of a pixel keeps (output m + 4k, quad i) partial sums; a
 * 4 x 4 transpose-add per 128-bit lane gives outputs 0..15 in order.  The weights are
 * permuted into that order (a 4 x 4 transpose per lane of the four quads' registers)
 * on the stack, per call (at most SNNCC_G16_BYTES).
 */
#define SNNCC_G16_BYTES 16384
#define PASS_INIT
#define INIT(r)                                                                            \
    acc[4 * (r)] = _mm512_setzero_si512();                                                 \
    acc[4 * (r) + 1] = acc[4 * (r)];                                                       \
    acc[4 * (r) + 2] = acc[4 * (r)];                                                       \
    acc[4 * (r) + 3] = acc[4 * (r)];
#define WLOAD                                                                              \
    const __m512i w0 = _mm512_loadu_si512((const void *)wr);                               \
    const __m512i w1 = _mm512_loadu_si512((const void *)(wr + 64));                        \
    const __m512i w2 = _mm512_loadu_si512((const void *)(wr + 128));                       \
    const __m512i w3 = _mm512_loadu_si512((const void *)(wr + 192));
#define STEP(r)                                                                            \
    {                                                                                      \
        __m512i xb_ = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(xp[r] + xo))); \
        if (sgn) {                                                                         \
            xb_ = _mm512_xor_si512(xb_, k80);                                              \
        }                                                                                  \
        acc[4 * (r)] = _mm512_dpbusd_epi32(acc[4 * (r)], xb_, w0);                         \
        acc[4 * (r) + 1] = _mm512_dpbusd_epi32(acc[4 * (r) + 1], xb_, w1);                 \
        acc[4 * (r) + 2] = _mm512_dpbusd_epi32(acc[4 * (r) + 2], xb_, w2);                 \
        acc[4 * (r) + 3] = _mm512_dpbusd_epi32(acc[4 * (r) + 3], xb_, w3);                 \
    }
#define STORE(r)                                                                           \
    if (pix[r] >= 0) {                                                                     \
        const __m512i s01_ = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[4 * (r)], acc[4 * (r) + 1]), \
                                              _mm512_unpackhi_epi32(acc[4 * (r)], acc[4 * (r) + 1])); \
        const __m512i s23_ = _mm512_add_epi32(_mm512_unpacklo_epi32(acc[4 * (r) + 2], acc[4 * (r) + 3]), \
                                              _mm512_unpackhi_epi32(acc[4 * (r) + 2], acc[4 * (r) + 3])); \
        const __m512i sum_ = _mm512_add_epi32(_mm512_unpacklo_epi64(s01_, s23_),           \
                                              _mm512_unpackhi_epi64(s01_, s23_));          \
        _mm512_mask_storeu_epi32((void *)(y + pix[r] * ys), m0, _mm512_add_epi32(sum_, bv0));    \
    }
#define SNNCC_G16_KERNEL(NAME, MR, SIGNED)                                                 \
    static SNNCC_TARGET_AVX512 void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y, \
                                         const int8_t *wsrc, const int32_t *bias)          \
    {                                                                                      \
        SNNCC_MP_DECLS(MR)                                                                 \
        const int32_t sgn = (SIGNED), sparse = 0;                                          \
        const __m512i k80 = _mm512_set1_epi8(-128);                                        \
        const __m512i bv0 = _mm512_loadu_si512((const void *)(bias + ((SIGNED) ? 16 : 0)));  \
        const __mmask16 m0 = (__mmask16)((1u << out_c) - 1u);                              \
        __m512i wt[SNNCC_G16_BYTES / 64], acc[4 * (MR)];                                   \
        const int8_t *w = (const int8_t *)wt;                                              \
        int32_t blk;                                                                       \
        for (blk = 0; blk < k_h * k_w * c4 / 4; ++blk) { /* a 4 x 4 transpose per lane */  \
            const int8_t *s_ = wsrc + 256 * blk;                                           \
            const __m512i s0_ = _mm512_loadu_si512((const void *)s_);                      \
            const __m512i s1_ = _mm512_loadu_si512((const void *)(s_ + 64));               \
            const __m512i s2_ = _mm512_loadu_si512((const void *)(s_ + 128));              \
            const __m512i s3_ = _mm512_loadu_si512((const void *)(s_ + 192));              \
            const __m512i t0_ = _mm512_unpacklo_epi32(s0_, s1_), t1_ = _mm512_unpackhi_epi32(s0_, s1_); \
            const __m512i t2_ = _mm512_unpacklo_epi32(s2_, s3_), t3_ = _mm512_unpackhi_epi32(s2_, s3_); \
            wt[4 * blk] = _mm512_unpacklo_epi64(t0_, t2_);                                 \
            wt[4 * blk + 1] = _mm512_unpackhi_epi64(t0_, t2_);                             \
            wt[4 * blk + 2] = _mm512_unpacklo_epi64(t1_, t3_);                             \
            wt[4 * blk + 3] = _mm512_unpackhi_epi64(t1_, t3_);                             \
        }                                                                                  \
        SNNCC_MP_LOOP(MR, 16, 4, sgn)                                                      \
    }
SNNCC_G16_KERNEL(v512_g16, 6, 0)
#undef PASS_INIT
#undef INIT
#undef WLOAD
#undef STEP
#undef STORE

/*
 * At most 8 output channels (LeNet's first conv has 6): two pixels per register, pixel r
 * in lanes 0..7 and pixel r + 1 in lanes 8..15, each lane group with its own broadcast
 * quad and the same 8 channels' weights, so no vpdpbusd spends half its lanes on padding.
 * The macros act on even r for the pair (r, r | 1).
 */
#define PASS_INIT bv0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(bb + ob)));
#define INIT(r)                                                                            \
    if ((r) % 2 == 0) {                                                                    \
        acc[(r) / 2] = bv0;                                                                \
    }
#define WLOAD const __m512i w0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)wr));
#define STEP(r)                                                                            \
    if ((r) % 2 == 0) {                                                                    \
        int32_t qa_, qb_;                                                                  \
        __m512i xb_;                                                                       \
        memcpy(&qa_, xp[r] + xo, sizeof qa_);                                              \
        memcpy(&qb_, xp[(r) | 1] + xo, sizeof qb_);                                        \
        xb_ = _mm512_mask_set1_epi32(_mm512_set1_epi32(qa_), (__mmask16)0xFF00, qb_);      \
        if (sgn) {                                                                         \
            xb_ = _mm512_xor_si512(xb_, k80);                                              \
        }                                                                                  \
        acc[(r) / 2] = _mm512_dpbusd_epi32(acc[(r) / 2], xb_, w0);                         \
    }
#define STORE(r)                                                                           \
    if ((r) % 2 == 0) {                                                                    \
        if (pix[r] >= 0) {                                                                 \
            _mm512_mask_storeu_epi32((void *)(y + pix[r] * ys), m0, acc[(r) / 2]);        \
        }                                                                                  \
        if (pix[(r) | 1] >= 0) {                                                           \
            _mm512_mask_storeu_epi32((void *)(y + pix[(r) | 1] * ys), m0,                  \
                                     _mm512_shuffle_i64x2(acc[(r) / 2], acc[(r) / 2], 0xEE)); \
        }                                                                                  \
    }
#define SNNCC_H8_KERNEL(NAME, MR, SIGNED)                                                  \
    static SNNCC_TARGET_AVX512 void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y, \
                                         const int8_t *w, const int32_t *bias)             \
    {                                                                                      \
        SNNCC_MP_DECLS(MR)                                                                 \
        const int32_t sgn = (SIGNED), sparse = 0;                                          \
        const int32_t *bb = bias + (sgn ? o16 : 0);                                        \
        const __m512i k80 = _mm512_set1_epi8(-128);                                        \
        const __mmask16 m0 = (__mmask16)((1u << out_c) - 1u);                              \
        __m512i acc[(MR) / 2], bv0;                                                        \
        SNNCC_MP_LOOP(MR, 16, 1, sgn)                                                      \
    }
SNNCC_H8_KERNEL(v512_h8u, 8, 0)
SNNCC_H8_KERNEL(v512_h8s, 8, 1)
#undef PASS_INIT
#undef INIT
#undef WLOAD
#undef STEP
#undef STORE

/*
 * One channel quad per pixel (in_c 4: a first conv's taps packed by snncc_pack_taps_i8),
 * stride 1, at most 8 output channels: the lanes are 16 pixels of an output row, whose
 * quads one (masked) load reads for each tap, times 8 broadcast weight quads (one per
 * output channel), then an 8 x 16 transpose in registers and a masked store per pixel.
 * Per tap and 16 pixels: 1 load and 8 vpdpbusd, against 16 broadcasts and 8 (pixel
 * pairs) or 16 vpdpbusd above; LeNet's 5x5 conv on 1 channel ran 6.6k -> 3.5k cycles.
 * Taps outside the input read zeros (x + 128 = 128 when signed, as the bias expects).
 */
static SNNCC_TARGET_AVX512 void v512_rows4(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                                           const int32_t *bias)
{
    SNNCC_CONV_GEOMETRY
    const int32_t sgn = !p->x_unsigned;
    const int32_t *bb = bias + (sgn ? o16 : 0);
    const __m512i k80 = _mm512_set1_epi8(-128);
    const __m512i idx[4] = {_mm512_set_epi64(15, 14, 7, 6, 9, 8, 1, 0), _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2),
                            _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4), _mm512_set_epi64(15, 14, 7, 6, 15, 14, 7, 6)};
    int32_t ob, oy, ox, ky, kx, j;
    (void)in_c;
    (void)c4;
    (void)sw;
    (void)xs; /* 4: the dispatch checks (group 1) */
    for (ob = 0; ob < out_c; ob += 8) {
        const int32_t nc = out_c - ob < 8 ? out_c - ob : 8;
        const __mmask16 mc = (__mmask16)((1u << nc) - 1u);
        for (oy = 0; oy < out_h; ++oy) {
            for (ox = 0; ox < out_w; ox += 16) {
                const int32_t np = out_w - ox < 16 ? out_w - ox : 16;
                __m512i a[8], t[8], u[8];
                for (j = 0; j < 8; ++j) {
                    a[j] = _mm512_set1_epi32(bb[ob + j]);
                }
                for (ky = 0; ky < k_h; ++ky) {
                    const int32_t iy = oy * sh - pt + ky * dh;
                    const int8_t *xr = x + iy * in_w * 4;
                    for (kx = 0; kx < k_w; ++kx) {
                        const int32_t *wr = (const int32_t *)(const void *)(w + ((ky * k_w + kx) * o16 + ob) * 4);
                        const int32_t ix0 = ox - pl + kx * dw, lo = ix0 < 0 ? -ix0 : 0;
                        const int32_t hi = in_w - ix0 < np ? in_w - ix0 : np;
                        __m512i xv = _mm512_setzero_si512();
                        if (iy >= 0 && iy < in_h && hi > lo) {
                            const __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
                            xv = lo == 0 ? _mm512_maskz_loadu_epi32(m, (const void *)(xr + ix0 * 4))
                                         : _mm512_maskz_expandloadu_epi32(m, (const void *)xr);
                        }
                        if (sgn) {
                            xv = _mm512_xor_si512(xv, k80);
                        }
                        for (j = 0; j < 8; ++j) {
                            if (j < nc) { /* predictable; channels past out_c stay bias (not stored) */
                                a[j] = _mm512_dpbusd_epi32(a[j], xv, _mm512_set1_epi32(wr[j]));
                            }
                        }
                    }
                }
                /* per 128-bit lane L (pixels 4L..4L+3): u[i] = channels 0-3 of pixel 4L + i,
                 * u[4 + i] channels 4-7 */
                for (j = 0; j < 4; ++j) {
                    t[2 * j] = _mm512_unpacklo_epi32(a[2 * j], a[2 * j + 1]);
                    t[2 * j + 1] = _mm512_unpackhi_epi32(a[2 * j], a[2 * j + 1]);
                }
                for (j = 0; j < 2; ++j) {
                    u[4 * j] = _mm512_unpacklo_epi64(t[4 * j], t[4 * j + 2]);
                    u[4 * j + 1] = _mm512_unpackhi_epi64(t[4 * j], t[4 * j + 2]);
                    u[4 * j + 2] = _mm512_unpacklo_epi64(t[4 * j + 1], t[4 * j + 3]);
                    u[4 * j + 3] = _mm512_unpackhi_epi64(t[4 * j + 1], t[4 * j + 3]);
                }
                for (j = 0; j < np; ++j) {
                    const __m512i v = _mm512_permutex2var_epi64(u[j % 4], idx[j / 4], u[4 + j % 4]);
                    _mm512_mask_storeu_epi32((void *)(y + (oy * out_w + ox + j) * ys + ob), mc, v);
                }
            }
        }
    }
}

typedef void (*snncc_block_fn)(const snncc_conv_t *, const int8_t *, int32_t *, const int8_t *,
                               const int32_t *);

/* NB = 4, 2 or 1 registers per pass, whichever divides the padded output channels.
 * Event-driven layers take these kernels too: skipping silent quads one pixel at a time
 * was slower than the multi-pixel kernels at every spike rate measured (0.5 % to 30 %,
 * 16 to 64 channels). */
static void conv_block_avx512(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                              const int32_t *bias)
{
    static const snncc_block_fn fns[3] = {v512_u1, v512_u2, v512_u4};
    const int32_t blocks = (p->out_c + 15) / 16;
    if (p->in_c == 4 && p->group == 1 && p->stride_w == 1 && p->out_c <= 8) {
        v512_rows4(p, x, y, w, bias);
    } else if (p->out_c <= 8) {
        (p->x_unsigned ? v512_h8u : v512_h8s)(p, x, y, w, bias);
    } else if (!p->x_unsigned) {
        v512_s1(p, x, y, w, bias);
    } else if (blocks == 1 && p->in_c % 16 == 0 && p->k_h * p->k_w * p->in_c * 16 <= SNNCC_G16_BYTES) {
        v512_g16(p, x, y, w, bias);
    } else {
        fns[blocks % 4 == 0 ? 2 : blocks % 2 == 0 ? 1 : 0](p, x, y, w, bias);
    }
}
#endif

#if defined(SNNCC_X86_AVX2)
/*
 * AVX2, 8 output channels per register.  Levels of unsigned neurons: vpmaddubsw
 * multiplies u8 levels by s8 weights and adds pairs with int16 saturation, which never
 * triggers: levels are 0..N with N <= 127 and weights -128..127, so a pair sum lies in
 * [2 * 127 * -128, 2 * 127 * 127] = [-32512, 32258]; vpmaddwd by ones then adds the two
 * pairs of a quad in int32.  Signed inputs: sign-extended weights times the quad as int16
 * with vpmaddwd, the two pair sums of each output kept in adjacent lanes and added at
 * the end (vphaddd).
 */
#define SNNCC_TARGET_AVX2 __attribute__((target("avx2")))
#define SNNCC_Y_STORE8(dst, v, left)                                                       \
    if ((left) >= 8) {                                                                     \
        _mm256_storeu_si256((__m256i *)(void *)(dst), (v));                                \
    } else if ((left) > 0) {                                                               \
        int32_t t_[8], j_;                                                                 \
        _mm256_storeu_si256((__m256i *)(void *)t_, (v));                                   \
        for (j_ = 0; j_ < (left); ++j_) {                                                  \
            (dst)[j_] = t_[j_];                                                            \
        }                                                                                  \
    }
#define SNNCC_Y_LOAD(ptr) _mm256_loadu_si256((const __m256i *)(const void *)(ptr))

/* Unsigned levels: NB registers (8 channels each) per pass. */
#define PASS_INIT                                                                          \
    bv0 = SNNCC_Y_LOAD(bias + ob);                                                         \
    bv1 = SNNCC_Y_LOAD(bias + ob + 8);                                                     \
    bv2 = nb > 2 ? SNNCC_Y_LOAD(bias + ob + 16) : bv0;                                     \
    bv3 = nb > 3 ? SNNCC_Y_LOAD(bias + ob + 24) : bv0;
#define INIT(r)                                                                            \
    acc[4 * (r)] = bv0;                                                                    \
    acc[4 * (r) + 1] = bv1;                                                                \
    acc[4 * (r) + 2] = bv2;                                                                \
    acc[4 * (r) + 3] = bv3;
#define WLOAD                                                                              \
    const __m256i w0 = SNNCC_Y_LOAD(wr);                                                   \
    const __m256i w1 = SNNCC_Y_LOAD(wr + 32);                                              \
    const __m256i w2 = nb > 2 ? SNNCC_Y_LOAD(wr + 64) : w0;                                \
    const __m256i w3 = nb > 3 ? SNNCC_Y_LOAD(wr + 96) : w0;
#define SNNCC_Y_MAC(a, xb, wv) a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, wv), ones))
#define STEP(r)                                                                            \
    {                                                                                      \
        int32_t q_;                                                                        \
        __m256i xb_;                                                                       \
        memcpy(&q_, xp[r] + xo, sizeof q_);                                                \
        xb_ = _mm256_set1_epi32(q_);                                                       \
        SNNCC_Y_MAC(acc[4 * (r)], xb_, w0);                                                \
        SNNCC_Y_MAC(acc[4 * (r) + 1], xb_, w1);                                            \
        if (nb > 2) {                                                                      \
            SNNCC_Y_MAC(acc[4 * (r) + 2], xb_, w2);                                        \
        }                                                                                  \
        if (nb > 3) {                                                                      \
            SNNCC_Y_MAC(acc[4 * (r) + 3], xb_, w3);                                        \
        }                                                                                  \
    }
#define STORE(r)                                                                           \
    if (pix[r] >= 0) {                                                                     \
        int32_t *yp_ = y + pix[r] * ys + ob;                                               \
        SNNCC_Y_STORE8(yp_, acc[4 * (r)], out_c - ob)                                      \
        SNNCC_Y_STORE8(yp_ + 8, acc[4 * (r) + 1], out_c - ob - 8)                          \
        if (nb > 2) {                                                                      \
            SNNCC_Y_STORE8(yp_ + 16, acc[4 * (r) + 2], out_c - ob - 16)                    \
        }                                                                                  \
        if (nb > 3) {                                                                      \
            SNNCC_Y_STORE8(yp_ + 24, acc[4 * (r) + 3], out_c - ob - 24)                    \
        }                                                                                  \
    }
#define SNNCC_Y_KERNEL_U(NAME, MR, NB, SPARSE)                                             \
    static SNNCC_TARGET_AVX2 void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y,  \
                                       const int8_t *w, const int32_t *bias)               \
    {                                                                                      \
        SNNCC_MP_DECLS(MR)                                                                 \
        const int32_t nb = (NB), sparse = (SPARSE);                                        \
        const __m256i ones = _mm256_set1_epi16(1);                                         \
        __m256i acc[4 * (MR)], bv0, bv1, bv2, bv3;                                         \
        SNNCC_MP_LOOP(MR, 8 * (NB), 1, 0)                                                  \
    }
SNNCC_Y_KERNEL_U(y_u4, 2, 4, 0)
SNNCC_Y_KERNEL_U(y_u2, 4, 2, 0)
SNNCC_Y_KERNEL_U(y_u4e, 1, 4, 1)
#undef PASS_INIT
#undef INIT
#undef WLOAD
#undef STEP
#undef STORE

/* Signed inputs: 16 output channels per pass as pair sums in four registers. */
#define PASS_INIT                                                                          \
    bv0 = SNNCC_Y_LOAD(bias + ob);                                                         \
    bv1 = SNNCC_Y_LOAD(bias + ob + 8);
#define INIT(r)                                                                            \
    acc[4 * (r)] = _mm256_setzero_si256();                                                 \
    acc[4 * (r) + 1] = acc[4 * (r)];                                                       \
    acc[4 * (r) + 2] = acc[4 * (r)];                                                       \
    acc[4 * (r) + 3] = acc[4 * (r)];
#define SNNCC_Y_W16(k) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(wr + 16 * (k))))
#define WLOAD                                                                              \
    const __m256i w0 = SNNCC_Y_W16(0), w1 = SNNCC_Y_W16(1), w2 = SNNCC_Y_W16(2),           \
                  w3 = SNNCC_Y_W16(3);
#define STEP(r)                                                                            \
    {                                                                                      \
        int32_t q_;                                                                        \
        __m256i xv_;                                                                       \
        memcpy(&q_, xp[r] + xo, sizeof q_);                                                \
        xv_ = _mm256_cvtepi8_epi16(_mm_set1_epi32(q_));                                    \
        acc[4 * (r)] = _mm256_add_epi32(acc[4 * (r)], _mm256_madd_epi16(w0, xv_));         \
        acc[4 * (r) + 1] = _mm256_add_epi32(acc[4 * (r) + 1], _mm256_madd_epi16(w1, xv_)); \
        acc[4 * (r) + 2] = _mm256_add_epi32(acc[4 * (r) + 2], _mm256_madd_epi16(w2, xv_)); \
        acc[4 * (r) + 3] = _mm256_add_epi32(acc[4 * (r) + 3], _mm256_madd_epi16(w3, xv_)); \
    }
/* hadd gives outputs (0 1 4 5 | 2 3 6 7); the 64-bit permute restores their order. */
#define SNNCC_Y_PAIRS(a, b) _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), 0xD8)
#define STORE(r)                                                                           \
    if (pix[r] >= 0) {                                                                     \
        int32_t *yp_ = y + pix[r] * ys + ob;                                               \
        const __m256i lo_ = _mm256_add_epi32(bv0, SNNCC_Y_PAIRS(acc[4 * (r)], acc[4 * (r) + 1])); \
        const __m256i hi_ = _mm256_add_epi32(bv1, SNNCC_Y_PAIRS(acc[4 * (r) + 2], acc[4 * (r) + 3])); \
        SNNCC_Y_STORE8(yp_, lo_, out_c - ob)                                               \
        SNNCC_Y_STORE8(yp_ + 8, hi_, out_c - ob - 8)                                       \
    }
#define SNNCC_Y_KERNEL_S(NAME, MR, SPARSE)                                                 \
    static SNNCC_TARGET_AVX2 void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y,  \
                                       const int8_t *w, const int32_t *bias)               \
    {                                                                                      \
        SNNCC_MP_DECLS(MR)                                                                 \
        const int32_t sparse = (SPARSE);                                                   \
        __m256i acc[4 * (MR)], bv0, bv1;                                                   \
        SNNCC_MP_LOOP(MR, 16, 1, 0)                                                        \
    }
SNNCC_Y_KERNEL_S(y_s1, 2, 0)
#undef PASS_INIT
#undef INIT
#undef WLOAD
#undef STEP
#undef STORE

/* Event-driven (one pixel, silent quads skipped) only with 32 output channels per pass:
 * measured faster than the multi-pixel kernel below about 10 % spikes at 32 channels and
 * 20 % at 64; with 16 channels (two accumulator chains) it never was. */
static void conv_block_avx2(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                            const int32_t *bias, int sparse)
{
    if (!p->x_unsigned) {
        y_s1(p, x, y, w, bias);
    } else if ((p->out_c + 15) / 16 % 2 == 0) {
        (sparse ? y_u4e : y_u4)(p, x, y, w, bias);
    } else {
        y_u2(p, x, y, w, bias);
    }
}
#endif

const char *snncc_simd(void)
{
#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
    const int level = x86_level();
    if (level > 0) {
        return level == 2 ? "avx512vnni" : "avx2";
    }
#endif
#if defined(SNNCC_HAVE_SSE2_BLOCK)
    return "sse2";
#elif defined(SNNCC_ARM_DSP)
    return "arm-dsp";
#else
    return "c";
#endif
}

void snncc_conv_block_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse)
{
#if defined(SNNCC_X86_AVX512)
    if (x86_level() == 2 && p->in_c % 4 == 0) {
        conv_block_avx512(p, x, y, w, bias);
        return;
    }
#endif
#if defined(SNNCC_X86_AVX2)
    if (x86_level() == 1 && p->in_c % 4 == 0) {
        conv_block_avx2(p, x, y, w, bias, sparse);
        return;
    }
#endif
#if defined(SNNCC_HAVE_SSE2_BLOCK)
    conv_block_sse2(p, x, y, w, bias, sparse);
    return;
#endif
#if defined(SNNCC_ARM_DSP)
    conv_block_dsp(p, x, y, w, bias);
    return;
#endif
    conv_block_c(p, x, y, w, bias, sparse);
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD) /* the x86-64 schedule's */
/* Grouped conv, in_c / group a multiple of 4: each group a block conv on its channels,
 * reading and writing every in_c-th / out_c-th element (its geometry keeps `group`),
 * with its own block-layout weights and bias rows (plan.group_block_consts). */
void snncc_conv_group_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse)
{
    const int32_t ng = p->group, cig = p->in_c / ng, cog = p->out_c / ng;
    const int32_t o16 = (cog + SNNCC_OBLOCK - 1) / SNNCC_OBLOCK * SNNCC_OBLOCK;
    const int32_t wsz = p->k_h * p->k_w * (cig / 4) * o16 * 4, bsz = o16 * (p->x_unsigned ? 1 : 2);
    snncc_conv_t q = *p;
    int32_t g;
    q.in_c = cig; /* group stays: the pixel pitches in x and y */
    q.out_c = cog;
    for (g = 0; g < ng; ++g) {
        snncc_conv_block_i8(&q, x + g * cig, y + g * cog, w + g * wsz, bias + g * bsz, sparse);
    }
}
#endif

/* Depthwise conv: gather, vectorized over channels. */
#define SNNCC_DWCONV_BODY()                                                                \
    int32_t cc = p->out_c, oy, ox, ky, kx, c;                                              \
    const int8_t *wt = weight_slice(w, 0, p->k_h * p->k_w * cc, p->wbits, scratch);        \
    fill_bias(y, bias, p->out_h * p->out_w, cc);                                           \
    for (oy = 0; oy < p->out_h; ++oy) {                                                    \
        for (ox = 0; ox < p->out_w; ++ox) {                                                \
            int32_t *yrow = y + (oy * p->out_w + ox) * cc;                                 \
            for (ky = 0; ky < p->k_h; ++ky) {                                              \
                int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;                  \
                if (iy < 0 || iy >= p->in_h) {                                             \
                    continue;                                                              \
                }                                                                          \
                for (kx = 0; kx < p->k_w; ++kx) {                                          \
                    int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;              \
                    const int8_t *wrow = wt + (ky * p->k_w + kx) * cc;                     \
                    if (ix < 0 || ix >= p->in_w) {                                         \
                        continue;                                                          \
                    }                                                                      \
                    for (c = 0; c < cc; ++c) {                                             \
                        yrow[c] += x[(iy * p->in_w + ix) * cc + c] * wrow[c];              \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }


void snncc_dwconv_i32(const snncc_conv_t *p, const int32_t *x, int32_t *y, const void *w,
                      const int32_t *bias, int8_t *scratch)
{
    SNNCC_DWCONV_BODY()
}

/* Dense: y[:] = b + sum over inputs i of x[i] * W[i][:]; zero inputs skipped if sparse. */
#define SNNCC_DENSE_BODY()                                                                 \
    int32_t i, o;                                                                          \
    for (o = 0; o < p->out_f; ++o) {                                                       \
        y[o] = bias[o];                                                                    \
    }                                                                                      \
    for (i = 0; i < p->in_f; ++i) {                                                        \
        int32_t s = x[i];                                                                  \
        const int8_t *wrow;                                                                \
        if (s == 0 && sparse) {                                                            \
            continue;                                                                      \
        }                                                                                  \
        wrow = weight_slice(w, i, p->out_f, p->wbits, scratch);                            \
        for (o = 0; o < p->out_f; ++o) {                                                   \
            y[o] += s * wrow[o];                                                           \
        }                                                                                  \
    }

void snncc_dense_i8(const snncc_dense_t *p, const int8_t *x, int32_t *y, const void *w,
                    const int32_t *bias, int8_t *scratch, int sparse)
{
    SNNCC_DENSE_BODY()
}

void snncc_dense_i32(const snncc_dense_t *p, const int32_t *x, int32_t *y, const void *w,
                     const int32_t *bias, int8_t *scratch, int sparse)
{
    SNNCC_DENSE_BODY()
}

#define SNNCC_AFFINE_BODY()                                                                \
    int32_t a, c, i;                                                                       \
    if (inner == 1) { /* channels innermost (HWC): vectorizes over c */                   \
        for (a = 0; a < outer; ++a) {                                                      \
            for (c = 0; c < channels; ++c) {                                               \
                y[a * channels + c] = x[a * channels + c] * scale[c] + shift[c];           \
            }                                                                              \
        }                                                                                  \
        return;                                                                            \
    }                                                                                      \
    for (a = 0; a < outer; ++a) {                                                          \
        for (c = 0; c < channels; ++c) {                                                   \
            int32_t base = (a * channels + c) * inner;                                     \
            for (i = 0; i < inner; ++i) {                                                  \
                y[base + i] = x[base + i] * scale[c] + shift[c];                           \
            }                                                                              \
        }                                                                                  \
    }

#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
/* Elementwise kernels on x86: a chunk of channels at a time with its scale and shift in
 * registers (the channel loop outside the pixel loop), and n-element adds; the same
 * int32 arithmetic (wrapping lanes; the range analysis keeps every value in range). */
#define SNNCC_X86_ELEMENTWISE(ISA, TGT, VEC, W, LOAD, STORE, SET1, ADD, MUL, LOADX)       \
    static TGT void affine_i8_##ISA(const int8_t *x, int32_t *y, const int32_t *scale,      \
                                    const int32_t *shift, int32_t outer, int32_t ch)       \
    {                                                                                      \
        const int32_t vec = ch / (W) * (W);                                                \
        int32_t a, c0, c;                                                                  \
        for (c0 = 0; c0 < vec; c0 += (W)) {                                                \
            const VEC sc = LOAD(scale + c0), sh = LOAD(shift + c0);                         \
            for (a = 0; a < outer; ++a) {                                                  \
                STORE(y + a * ch + c0, ADD(MUL(LOADX(x + a * ch + c0), sc), sh));          \
            }                                                                              \
        }                                                                                  \
        for (a = 0; a < outer; ++a) {                                                      \
            for (c = vec; c < ch; ++c) {                                                   \
                y[a * ch + c] = x[a * ch + c] * scale[c] + shift[c];                       \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    static TGT void add_i32_##ISA(int32_t *y, const int32_t *a, const int32_t *b, int32_t n) \
    {                                                                                      \
        int32_t i;                                                                         \
        for (i = 0; i + (W) <= n; i += (W)) {                                              \
            STORE(y + i, ADD(LOAD(a + i), LOAD(b + i)));                                   \
        }                                                                                  \
        for (; i < n; ++i) {                                                               \
            y[i] = a[i] + b[i];                                                            \
        }                                                                                  \
    }
#endif
#if defined(SNNCC_X86_AVX512)
#define SNNCC_Z_LOAD(ptr) _mm512_loadu_si512((const void *)(ptr))
#define SNNCC_Z_STORE(ptr, v) _mm512_storeu_si512((void *)(ptr), (v))
#define SNNCC_Z_LOADX(ptr) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(ptr)))
SNNCC_X86_ELEMENTWISE(avx512, __attribute__((target("avx512f"))), __m512i, 16, SNNCC_Z_LOAD,
                      SNNCC_Z_STORE, _mm512_set1_epi32, _mm512_add_epi32, _mm512_mullo_epi32,
                      SNNCC_Z_LOADX)
#endif
#if defined(SNNCC_X86_AVX2)
#define SNNCC_Y_STORE(ptr, v) _mm256_storeu_si256((__m256i *)(void *)(ptr), (v))
#define SNNCC_Y_LOADX(ptr) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(ptr)))
SNNCC_X86_ELEMENTWISE(avx2, __attribute__((target("avx2"))), __m256i, 8, SNNCC_Y_LOAD, SNNCC_Y_STORE,
                      _mm256_set1_epi32, _mm256_add_epi32, _mm256_mullo_epi32, SNNCC_Y_LOADX)
#endif

#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
/*
 * Depthwise conv on x86: per output pixel, VW channels at a time with their accumulators
 * in a register over every tap (x and w sign-extended to int32, vpmulld); a row's last
 * channels (in_c % VW) are copied to a zero-padded block first, so no load reads past a
 * buffer.
 */
#define SNNCC_DW_X86(ISA, TGT, VEC, VW, LOADX, LOADB, STOREB, ADD, MUL)                    \
    static TGT void dwconv_##ISA(const snncc_conv_t *p, const int8_t *x, int32_t *y,        \
                                 const int8_t *wt, const int32_t *bias)                    \
    {                                                                                      \
        const int32_t cc = p->out_c, k_w = p->k_w;                                         \
        int32_t oy, ox, ky, kx, c0, j;                                                     \
        for (oy = 0; oy < p->out_h; ++oy) {                                                \
            for (ox = 0; ox < p->out_w; ++ox) {                                            \
                int32_t *yrow = y + (oy * p->out_w + ox) * cc;                             \
                for (c0 = 0; c0 < cc; c0 += (VW)) {                                        \
                    const int32_t n = cc - c0 < (VW) ? cc - c0 : (VW);                     \
                    int32_t btmp[VW];                                                      \
                    VEC acc;                                                               \
                    for (j = 0; j < (VW); ++j) {                                           \
                        btmp[j] = j < n ? bias[c0 + j] : 0;                                \
                    }                                                                      \
                    acc = LOADB(btmp);                                                     \
                    for (ky = 0; ky < p->k_h; ++ky) {                                      \
                        const int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;    \
                        if (iy < 0 || iy >= p->in_h) {                                     \
                            continue;                                                      \
                        }                                                                  \
                        for (kx = 0; kx < k_w; ++kx) {                                     \
                            const int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w; \
                            const int8_t *xs, *ws;                                         \
                            int8_t xt[VW], wtt[VW];                                        \
                            if (ix < 0 || ix >= p->in_w) {                                 \
                                continue;                                                  \
                            }                                                              \
                            xs = x + (iy * p->in_w + ix) * cc + c0;                        \
                            ws = wt + (ky * k_w + kx) * cc + c0;                           \
                            if (n < (VW)) {                                                \
                                memset(xt, 0, sizeof xt);                                  \
                                memset(wtt, 0, sizeof wtt);                                \
                                memcpy(xt, xs, (size_t)n);                                 \
                                memcpy(wtt, ws, (size_t)n);                                \
                                xs = xt;                                                   \
                                ws = wtt;                                                  \
                            }                                                              \
                            acc = ADD(acc, MUL(LOADX(xs), LOADX(ws)));                     \
                        }                                                                  \
                    }                                                                      \
                    STOREB(btmp, acc);                                                     \
                    for (j = 0; j < n; ++j) {                                              \
                        yrow[c0 + j] = btmp[j];                                            \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }
#endif
#if defined(SNNCC_X86_AVX512)
#define SNNCC_DW_Z_LOADX(ptr) _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(ptr)))
SNNCC_DW_X86(avx512, __attribute__((target("avx512f"))), __m512i, 16, SNNCC_DW_Z_LOADX, SNNCC_Z_LOAD,
             SNNCC_Z_STORE, _mm512_add_epi32, _mm512_mullo_epi32)
#endif
#if defined(SNNCC_X86_AVX2)
SNNCC_DW_X86(avx2, __attribute__((target("avx2"))), __m256i, 8, SNNCC_Y_LOADX, SNNCC_Y_LOAD, SNNCC_Y_STORE,
             _mm256_add_epi32, _mm256_mullo_epi32)
#endif

#if defined(SNNCC_ARM_DSP)
/* The taps [*lo, *hi) of a window starting at i0 (stride-free), dilation d, that lie in
 * [0, n). */
static void dw_taps(int32_t i0, int32_t d, int32_t k, int32_t n, int32_t *lo, int32_t *hi)
{
    const int32_t l = i0 >= 0 ? 0 : (d - 1 - i0) / d;
    int32_t h = i0 > n - 1 ? 0 : (n - 1 - i0) / d + 1;
    h = h > k ? k : h;
    *lo = l;
    *hi = h > l ? h : l;
}

/* Depthwise on the DSP extension: per output pixel, 4 channels a step with all their
 * taps in four accumulators; a word of 4 levels and the word of their 4 weights
 * ([ky][kx][c] int8, as unpacked) split by SXTB16 into halfword pairs (c0 c2) and
 * (c1 c3), and SMLABB / SMLATT add one product each (the scalar gather measured 8.5
 * instructions per multiply-add on the MobileNetV2-style digits net).  Only taps inside
 * the input are visited; channels past a multiple of 4 take the scalar loop. */
static void dwconv_dsp(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *wt, const int32_t *bias)
{
    const int32_t cc = p->out_c, c4 = cc & ~3, in_w = p->in_w, k_w = p->k_w;
    const int32_t sy = p->dil_h * in_w * cc, sx = p->dil_w * cc;
    int32_t oy, ox, ky, kx, c, kylo, kyhi, kxlo, kxhi;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t iy0 = oy * p->stride_h - p->pad_t;
        dw_taps(iy0, p->dil_h, p->k_h, p->in_h, &kylo, &kyhi);
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t ix0 = ox * p->stride_w - p->pad_l;
            int32_t *yrow = y + (oy * p->out_w + ox) * cc;
            const int8_t *xp;
            dw_taps(ix0, p->dil_w, k_w, in_w, &kxlo, &kxhi);
            xp = x + ((iy0 + kylo * p->dil_h) * in_w + ix0 + kxlo * p->dil_w) * cc;
            for (c = 0; c < c4; c += 4) {
                int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
                const int8_t *xr = xp + c;
                for (ky = kylo; ky < kyhi; ++ky, xr += sy) {
                    const int8_t *xt = xr, *wk = wt + (ky * k_w + kxlo) * cc + c;
                    for (kx = kxlo; kx < kxhi; ++kx, xt += sx, wk += cc) {
                        int32_t xv, wv, xo, wo, xe, we;
                        memcpy(&xv, xt, sizeof xv);
                        memcpy(&wv, wk, sizeof wv);
                        xe = __sxtb16(xv);
                        we = __sxtb16(wv);
                        SNNCC_D_SXTB16_R8(xo, xv);
                        SNNCC_D_SXTB16_R8(wo, wv);
                        a0 = __smlabb(xe, we, a0);
                        a2 = __smlatt(xe, we, a2);
                        a1 = __smlabb(xo, wo, a1);
                        a3 = __smlatt(xo, wo, a3);
                    }
                }
                yrow[c] = a0;
                yrow[c + 1] = a1;
                yrow[c + 2] = a2;
                yrow[c + 3] = a3;
            }
            for (; c < cc; ++c) {
                int32_t a = bias[c];
                const int8_t *xr = xp + c;
                for (ky = kylo; ky < kyhi; ++ky, xr += sy) {
                    for (kx = kxlo; kx < kxhi; ++kx) {
                        a += xr[(kx - kxlo) * sx] * wt[(ky * k_w + kx) * cc + c];
                    }
                }
                yrow[c] = a;
            }
        }
    }
}
#endif

void snncc_dwconv_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const void *w,
                     const int32_t *bias, int8_t *scratch)
{
#if defined(SNNCC_ARM_DSP)
    dwconv_dsp(p, x, y, weight_slice(w, 0, p->k_h * p->k_w * p->out_c, p->wbits, scratch), bias);
    return;
#endif
#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
    const int level = x86_level();
    if (level > 0) {
        const int8_t *wt = weight_slice(w, 0, p->k_h * p->k_w * p->out_c, p->wbits, scratch);
#if defined(SNNCC_X86_AVX512)
        if (level == 2) {
            dwconv_avx512(p, x, y, wt, bias);
            return;
        }
#endif
#if defined(SNNCC_X86_AVX2)
        if (level == 1) {
            dwconv_avx2(p, x, y, wt, bias);
            return;
        }
#endif
    }
#endif
    {
        SNNCC_DWCONV_BODY()
    }
}

void snncc_affine_i8(const int8_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                     int32_t outer, int32_t channels, int32_t inner)
{
#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
    if (inner == 1) {
        const int level = x86_level();
#if defined(SNNCC_X86_AVX512)
        if (level == 2) {
            affine_i8_avx512(x, y, scale, shift, outer, channels);
            return;
        }
#endif
#if defined(SNNCC_X86_AVX2)
        if (level == 1) {
            affine_i8_avx2(x, y, scale, shift, outer, channels);
            return;
        }
#endif
    }
#endif
    {
        SNNCC_AFFINE_BODY()
    }
}

void snncc_affine_i32(const int32_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                      int32_t outer, int32_t channels, int32_t inner)
{
    SNNCC_AFFINE_BODY()
}

void snncc_add_i32(int32_t *y, const int32_t *a, const int32_t *b, int32_t n)
{
    int32_t i;
#if defined(SNNCC_X86_AVX512)
    if (x86_level() == 2) {
        add_i32_avx512(y, a, b, n);
        return;
    }
#endif
#if defined(SNNCC_X86_AVX2)
    if (x86_level() == 1) {
        add_i32_avx2(y, a, b, n);
        return;
    }
#endif
    for (i = 0; i < n; ++i) {
        y[i] = a[i] + b[i];
    }
}

void snncc_addto_i32(int32_t *y, const int32_t *a, int32_t n)
{
    snncc_add_i32(y, y, a, n);
}

void snncc_widen_i8(const int8_t *x, int32_t *y, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        y[i] = x[i];
    }
}

/* Pools over HWC, vectorized over channels: the first valid tap of a window is copied,
 * the others reduced into it, so maxpool padding (-inf) never enters a max and an
 * all-padding sumpool window stays 0.  Input and output buffers never overlap. */
#define SNNCC_POOL_BODY(TIN, TOUT, COPY, REDUCE)                                           \
    int32_t oy, ox, ky, kx, ch;                                                            \
    const int32_t c = p->c;                                                                \
    for (oy = 0; oy < p->out_h; ++oy) {                                                    \
        for (ox = 0; ox < p->out_w; ++ox) {                                                \
            TOUT *restrict yrow = y + (oy * p->out_w + ox) * c;                            \
            int first = 1;                                                                 \
            for (ky = 0; ky < p->k_h; ++ky) {                                              \
                int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;                  \
                if (iy < 0 || iy >= p->in_h) {                                             \
                    continue;                                                              \
                }                                                                          \
                for (kx = 0; kx < p->k_w; ++kx) {                                          \
                    int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;              \
                    const TIN *restrict xrow = x + (iy * p->in_w + ix) * c;                \
                    if (ix < 0 || ix >= p->in_w) {                                         \
                        continue;                                                          \
                    }                                                                      \
                    if (first) {                                                           \
                        for (ch = 0; ch < c; ++ch) {                                       \
                            COPY;                                                          \
                        }                                                                  \
                        first = 0;                                                         \
                    } else {                                                               \
                        for (ch = 0; ch < c; ++ch) {                                       \
                            REDUCE;                                                        \
                        }                                                                  \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            if (first) {                                                                   \
                for (ch = 0; ch < c; ++ch) {                                               \
                    yrow[ch] = 0;                                                          \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

#define SNNCC_COPY yrow[ch] = xrow[ch]
#define SNNCC_MAX yrow[ch] = xrow[ch] > yrow[ch] ? xrow[ch] : yrow[ch]
#define SNNCC_SUM yrow[ch] += xrow[ch]

#if defined(SNNCC_HAVE_SSE2_BLOCK)
/* Signed bytes max on SSE2 (pmaxsb is SSE4.1): flip the sign bits around pmaxub. */
#define SNNCC_MAX_I8(a, b)                                                                 \
    _mm_xor_si128(_mm_max_epu8(_mm_xor_si128((a), k80), _mm_xor_si128((b), k80)), k80)

/* Max pool on x86: 16 channels per step.  A pixel with fewer than 16 channels (the
 * per-pixel loop of the portable body measured 10k cycles on LeNet's 24x24x6 pool, its
 * channel loops too short to vectorize) reads 16 bytes per tap and stores 16, the
 * excess landing on the next pixels, which are written after it; pixels with taps in the
 * padding, or whose 16 bytes would pass either tensor's end, take the portable body. */
static void maxpool_i8_c(const snncc_pool_t *p, const int8_t *x, int8_t *y)
{
    SNNCC_POOL_BODY(int8_t, int8_t, SNNCC_COPY, SNNCC_MAX)
}

#define SNNCC_POOL_ROW 4096
static void maxpool_i8_sse2(const snncc_pool_t *p, const int8_t *x, int8_t *y)
{
    const int32_t c = p->c, in_end = p->in_h * p->in_w * c, out_end = p->out_h * p->out_w * c;
    const int32_t rowb = p->in_w * c;
    const __m128i k80 = _mm_set1_epi8(-128);
    int32_t oy, ox, ky, kx, ch;
    if (c < 16 && p->pad_t == 0 && p->pad_l == 0 && rowb <= SNNCC_POOL_ROW &&
        (p->out_h - 1) * p->stride_h + (p->k_h - 1) * p->dil_h < p->in_h &&
        (p->out_w - 1) * p->stride_w + (p->k_w - 1) * p->dil_w < p->in_w) {
        /* No window in the padding, few channels: per output row the max over its tap
         * rows first (16 bytes a step over the whole row, sign bits flipped), then per
         * pixel over its taps in that row, 16 bytes read and stored per pixel as above. */
        uint8_t row[SNNCC_POOL_ROW + 16];
        int32_t i;
        for (oy = 0; oy < p->out_h; ++oy) {
            const int8_t *x0 = x + oy * p->stride_h * rowb;
            for (i = 0; i + 16 <= rowb; i += 16) {
                __m128i m = _mm_loadu_si128((const __m128i *)(const void *)(x0 + i));
                for (ky = 1; ky < p->k_h; ++ky) {
                    m = _mm_max_epu8(_mm_xor_si128(m, k80), _mm_xor_si128(_mm_loadu_si128(
                        (const __m128i *)(const void *)(x0 + ky * p->dil_h * rowb + i)), k80));
                    m = _mm_xor_si128(m, k80);
                }
                _mm_storeu_si128((__m128i *)(void *)(row + i), _mm_xor_si128(m, k80));
            }
            for (; i < rowb; ++i) {
                int8_t m = x0[i];
                for (ky = 1; ky < p->k_h; ++ky) {
                    const int8_t v = x0[ky * p->dil_h * rowb + i];
                    m = v > m ? v : m;
                }
                row[i] = (uint8_t)(m ^ 0x80);
            }
            memset(row + rowb, 0, 16);
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t o = (oy * p->out_w + ox) * c;
                const uint8_t *r0 = row + ox * p->stride_w * c;
                __m128i m = _mm_loadu_si128((const __m128i *)(const void *)r0);
                for (kx = 1; kx < p->k_w; ++kx) {
                    m = _mm_max_epu8(m, _mm_loadu_si128((const __m128i *)(const void *)(r0 + kx * p->dil_w * c)));
                }
                m = _mm_xor_si128(m, k80);
                if (o + 16 <= out_end) {
                    _mm_storeu_si128((__m128i *)(void *)(y + o), m);
                } else {
                    int8_t t[16];
                    _mm_storeu_si128((__m128i *)(void *)t, m);
                    memcpy(y + o, t, (size_t)c);
                }
            }
        }
        return;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox * p->stride_w - p->pad_l;
            const int32_t iy1 = iy0 + (p->k_h - 1) * p->dil_h, ix1 = ix0 + (p->k_w - 1) * p->dil_w;
            const int32_t o = (oy * p->out_w + ox) * c;
            if (iy0 < 0 || ix0 < 0 || iy1 >= p->in_h || ix1 >= p->in_w ||
                (c < 16 && (o + 16 > out_end || (iy1 * p->in_w + ix1) * c + 16 > in_end))) {
                snncc_pool_t q = *p; /* this pixel alone, through the portable body */
                q.out_h = 1;
                q.out_w = 1;
                q.pad_t = -iy0;
                q.pad_l = -ix0;
                maxpool_i8_c(&q, x, y + o);
                continue;
            }
            for (ch = 0; ch < c; ch += 16) {
                const int32_t cc = c - ch < 16 && c >= 16 ? c - 16 : ch; /* last chunk overlaps */
                __m128i m = _mm_loadu_si128((const __m128i *)(const void *)(x + (iy0 * p->in_w + ix0) * c + cc));
                for (ky = 0; ky < p->k_h; ++ky) {
                    const int8_t *xr = x + ((iy0 + ky * p->dil_h) * p->in_w + ix0) * c + cc;
                    for (kx = 0; kx < p->k_w; ++kx) {
                        m = SNNCC_MAX_I8(m, _mm_loadu_si128((const __m128i *)(const void *)(xr + kx * p->dil_w * c)));
                    }
                }
                _mm_storeu_si128((__m128i *)(void *)(y + o + cc), m);
            }
        }
    }
}
#undef SNNCC_MAX_I8
#endif

void snncc_maxpool_i8(const snncc_pool_t *p, const int8_t *x, int8_t *y)
{
#if defined(SNNCC_HAVE_SSE2_BLOCK)
    maxpool_i8_sse2(p, x, y);
#else
    SNNCC_POOL_BODY(int8_t, int8_t, SNNCC_COPY, SNNCC_MAX)
#endif
}

void snncc_maxpool_i32(const snncc_pool_t *p, const int32_t *x, int32_t *y)
{
    SNNCC_POOL_BODY(int32_t, int32_t, SNNCC_COPY, SNNCC_MAX)
}

void snncc_sumpool_i8(const snncc_pool_t *p, const int8_t *x, int32_t *y)
{
    SNNCC_POOL_BODY(int8_t, int32_t, SNNCC_COPY, SNNCC_SUM)
}

void snncc_sumpool_i32(const snncc_pool_t *p, const int32_t *x, int32_t *y)
{
    SNNCC_POOL_BODY(int32_t, int32_t, SNNCC_COPY, SNNCC_SUM)
}

#define SNNCC_NEURON_CHUNK 64

/* Channels cb.. of every row (portable; also the tail of the AVX2 rows). */
static void neuron_fast_c(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                          const int32_t *theta, const int32_t *v_init, const int32_t *thr, int8_t *z,
                          int32_t cb)
{
    const int32_t outer = p->outer, ch = p->channels, vmin = p->vmin, vmax = p->vmax;
    const int32_t lo = p->is_signed ? -p->levels : 0, steps = p->levels - lo;
    const int32_t mask = (int32_t) - ((int64_t)1 << p->shift); /* two's complement: floor to 2^k */
    int32_t a, c0, c, k;
    for (a = 0; a < outer; ++a) {
        for (c0 = cb; c0 < ch; c0 += SNNCC_NEURON_CHUNK) {
            const int32_t n = ch - c0 < SNNCC_NEURON_CHUNK ? ch - c0 : SNNCC_NEURON_CHUNK;
            const int32_t base = a * ch + c0;
            int32_t vv[SNNCC_NEURON_CHUNK], q[SNNCC_NEURON_CHUNK];
            for (c = 0; c < n; ++c) {
                int32_t t = (v != 0 ? v[base + c] : v_init[c0 + c]) + cur[base + c];
                t = t < vmin ? vmin : t;
                vv[c] = t > vmax ? vmax : t;
                q[c] = lo;
            }
            for (k = 0; k < steps; ++k) {
                const int32_t *restrict tk = thr + k * ch + c0;
                for (c = 0; c < n; ++c) {
                    q[c] += vv[c] >= tk[c];
                }
            }
            for (c = 0; c < n; ++c) {
                z[base + c] = (int8_t)q[c];
            }
            if (v != 0) {
                for (c = 0; c < n; ++c) {
                    v[base + c] = (vv[c] - q[c] * theta[c0 + c]) & mask;
                }
            }
        }
    }
}

/* Cores without SIMD (Cortex-M, -DSNNCC_NO_SIMD; SNNCC_SCALAR_NEURON in the header):
 * one element at a time, counting the thresholds k * theta it reaches with an early exit,
 * so a silent neuron costs one comparison.  No table: the schedule passes thr as NULL
 * (SNNCC_NEURON_THR), so --gc-sections drops it from flash. */
#if defined(SNNCC_SCALAR_NEURON)
static void neuron_fast_scalar(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                               const int32_t *theta, const int32_t *v_init, int8_t *z)
{
    const int32_t n = p->outer * p->channels, ch = p->channels, vmin = p->vmin, vmax = p->vmax;
    const int32_t lo = p->is_signed ? -p->levels : 0, steps = p->levels - lo;
    const int32_t mask = (int32_t) - ((int64_t)1 << p->shift); /* two's complement: floor to 2^k */
    int32_t i, c = 0;
    for (i = 0; i < n; ++i) {
        const int32_t th_c = theta[c];
        int32_t t = (v != 0 ? v[i] : v_init[c]) + cur[i], k = 0, th = (lo + 1) * th_c;
        t = t < vmin ? vmin : t;
        t = t > vmax ? vmax : t;
        while (t >= th) { /* th = (lo + 1 + k) * theta, k < steps: fits int32 (memory plan) */
            if (++k == steps) {
                break;
            }
            th += th_c;
        }
        z[i] = (int8_t)(lo + k);
        if (v != 0) {
            v[i] = (t - (lo + k) * th_c) & mask;
        }
        if (++c == ch) {
            c = 0;
        }
    }
}
#endif

/* SIMD neurons: a chunk of channels at a time (outer loop), so that its thresholds stay
 * in registers over the pixels (inner loop).  At most SNNCC_FAST_STEPS threshold steps
 * (the memory plan's limit for this kernel); more take the portable code. */
#define SNNCC_FAST_STEPS 32
#define SNNCC_PHASE_ROWS 64 /* per-phase rows of 16 lanes (4 KB of stack) */

#if defined(SNNCC_X86_AVX512)
/* 16 channels per register, masked at the end of a row. */
static __attribute__((target("avx512f"))) void neuron_fast_avx512(
    const snncc_neuron_t *p, const int32_t *cur, int32_t *v, const int32_t *theta,
    const int32_t *v_init, const int32_t *thr, int8_t *z)
{
    const int32_t outer = p->outer, ch = p->channels;
    const int32_t lo = p->is_signed ? -p->levels : 0, steps = p->levels - lo;
    const __m512i vmin = _mm512_set1_epi32(p->vmin), vmax = _mm512_set1_epi32(p->vmax);
    const __m512i one = _mm512_set1_epi32(1), vlo = _mm512_set1_epi32(lo), zero = _mm512_setzero_si512();
    const __m512i grid = _mm512_set1_epi32((int32_t) - ((int64_t)1 << p->shift));
    __m512i tk[SNNCC_FAST_STEPS];
    int32_t a, c0, k;
    const int32_t low = ch & -ch, np = ch / (low < 16 ? low : 16); /* phases: lcm(ch, 16) / 16 */
    if (ch < 16 && np * (steps + 2) <= SNNCC_PHASE_ROWS && outer * ch >= 32) {
        /* Fewer than 16 channels (LeNet's 6): the lanes run over the flat [outer][ch]
         * array, so a vector holds several pixels; its channel pattern repeats every np
         * vectors, with v_init, theta and thresholds laid out per phase on the stack. */
        int32_t tab[SNNCC_PHASE_ROWS * 16], r, l, base;
        const int32_t n = outer * ch, rs = (steps + 2) * 16;
        for (r = 0; r < np; ++r) {
            for (l = 0; l < 16; ++l) {
                const int32_t c = (16 * r + l) % ch;
                tab[r * rs + l] = v_init[c];
                tab[r * rs + 16 + l] = theta[c];
                for (k = 0; k < steps; ++k) {
                    tab[r * rs + 32 + 16 * k + l] = thr[k * ch + c];
                }
            }
        }
        for (base = 0, r = 0; base < n; base += 16, r = r + 1 == np ? 0 : r + 1) {
            const __mmask16 m = n - base >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - base)) - 1u);
            const int32_t *row = tab + r * rs;
            const __m512i v0 = v != 0 ? _mm512_maskz_loadu_epi32(m, v + base) : _mm512_loadu_si512(row);
            __m512i t = _mm512_add_epi32(v0, _mm512_maskz_loadu_epi32(m, cur + base)), q = vlo, q1 = zero;
            t = _mm512_min_epi32(_mm512_max_epi32(t, vmin), vmax);
            for (k = 0; k + 1 < steps; k += 2) {
                q = _mm512_mask_add_epi32(q, _mm512_cmpge_epi32_mask(t, _mm512_loadu_si512(row + 32 + 16 * k)), q, one);
                q1 = _mm512_mask_add_epi32(q1, _mm512_cmpge_epi32_mask(t, _mm512_loadu_si512(row + 48 + 16 * k)), q1,
                                           one);
            }
            if (k < steps) {
                q = _mm512_mask_add_epi32(q, _mm512_cmpge_epi32_mask(t, _mm512_loadu_si512(row + 32 + 16 * k)), q, one);
            }
            q = _mm512_add_epi32(q, q1);
            _mm512_mask_cvtepi32_storeu_epi8((void *)(z + base), m, q);
            if (v != 0) {
                t = _mm512_and_si512(_mm512_sub_epi32(t, _mm512_mullo_epi32(q, _mm512_loadu_si512(row + 16))), grid);
                _mm512_mask_storeu_epi32((void *)(v + base), m, t);
            }
        }
        return;
    }
    for (c0 = 0; c0 < ch; c0 += 16) {
        const __mmask16 m = ch - c0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (ch - c0)) - 1u);
        const __m512i vi = _mm512_maskz_loadu_epi32(m, v_init + c0);
        const __m512i th = _mm512_maskz_loadu_epi32(m, theta + c0);
        for (k = 0; k < steps; ++k) {
            tk[k] = _mm512_maskz_loadu_epi32(m, thr + k * ch + c0);
        }
        for (a = 0; a < outer; ++a) {
            const int32_t base = a * ch + c0;
            const __m512i v0 = v != 0 ? _mm512_maskz_loadu_epi32(m, v + base) : vi;
            __m512i t = _mm512_add_epi32(v0, _mm512_maskz_loadu_epi32(m, cur + base)), q = vlo, q1 = zero;
            t = _mm512_min_epi32(_mm512_max_epi32(t, vmin), vmax);
            for (k = 0; k + 1 < steps; k += 2) { /* two independent counts */
                q = _mm512_mask_add_epi32(q, _mm512_cmpge_epi32_mask(t, tk[k]), q, one);
                q1 = _mm512_mask_add_epi32(q1, _mm512_cmpge_epi32_mask(t, tk[k + 1]), q1, one);
            }
            if (k < steps) {
                q = _mm512_mask_add_epi32(q, _mm512_cmpge_epi32_mask(t, tk[k]), q, one);
            }
            q = _mm512_add_epi32(q, q1);
            _mm512_mask_cvtepi32_storeu_epi8((void *)(z + base), m, q);
            if (v != 0) {
                t = _mm512_and_si512(_mm512_sub_epi32(t, _mm512_mullo_epi32(q, th)), grid);
                _mm512_mask_storeu_epi32((void *)(v + base), m, t);
            }
        }
    }
}
#endif

#if defined(SNNCC_X86_AVX2)
/* 8 channels per register; a row's last channels (ch % 8) take the portable code. */
static __attribute__((target("avx2"))) void neuron_fast_avx2(
    const snncc_neuron_t *p, const int32_t *cur, int32_t *v, const int32_t *theta,
    const int32_t *v_init, const int32_t *thr, int8_t *z)
{
    const int32_t outer = p->outer, ch = p->channels, vec = ch / 8 * 8;
    const int32_t lo = p->is_signed ? -p->levels : 0, steps = p->levels - lo;
    const __m256i vmin = _mm256_set1_epi32(p->vmin), vmax = _mm256_set1_epi32(p->vmax);
    const __m256i top = _mm256_set1_epi32(lo + steps), zero = _mm256_setzero_si256();
    const __m256i grid = _mm256_set1_epi32((int32_t) - ((int64_t)1 << p->shift));
    __m256i tk[SNNCC_FAST_STEPS];
    int32_t a, c0, k;
    const int32_t low = ch & -ch, np = ch / (low < 8 ? low : 8); /* phases: lcm(ch, 8) / 8 */
    if (ch < 8 && np * (steps + 2) <= 2 * SNNCC_PHASE_ROWS && outer * ch >= 16) {
        /* Fewer than 8 channels: the lanes run over the flat array, parameters per phase
         * (as neuron_fast_avx512); the last partial vector takes the portable code. */
        int32_t tab[SNNCC_PHASE_ROWS * 16], r, l, base;
        const int32_t n = outer * ch, rs = (steps + 2) * 8;
        snncc_neuron_t q1p = *p;
        for (r = 0; r < np; ++r) {
            for (l = 0; l < 8; ++l) {
                const int32_t c = (8 * r + l) % ch;
                tab[r * rs + l] = v_init[c];
                tab[r * rs + 8 + l] = theta[c];
                for (k = 0; k < steps; ++k) {
                    tab[r * rs + 16 + 8 * k + l] = thr[k * ch + c];
                }
            }
        }
        for (base = 0, r = 0; base + 8 <= n; base += 8, r = r + 1 == np ? 0 : r + 1) {
            const int32_t *row = tab + r * rs;
            const __m256i v0 = v != 0 ? SNNCC_Y_LOAD(v + base) : SNNCC_Y_LOAD(row);
            __m256i t = _mm256_add_epi32(v0, SNNCC_Y_LOAD(cur + base)), q = top, q1 = zero, b;
            t = _mm256_min_epi32(_mm256_max_epi32(t, vmin), vmax);
            for (k = 0; k + 1 < steps; k += 2) {
                q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(SNNCC_Y_LOAD(row + 16 + 8 * k), t));
                q1 = _mm256_add_epi32(q1, _mm256_cmpgt_epi32(SNNCC_Y_LOAD(row + 24 + 8 * k), t));
            }
            if (k < steps) {
                q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(SNNCC_Y_LOAD(row + 16 + 8 * k), t));
            }
            q = _mm256_add_epi32(q, q1);
            b = _mm256_packs_epi32(q, q);
            b = _mm256_packs_epi16(b, b);
            _mm_storel_epi64((__m128i *)(void *)(z + base),
                             _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
            if (v != 0) {
                t = _mm256_and_si256(_mm256_sub_epi32(t, _mm256_mullo_epi32(q, SNNCC_Y_LOAD(row + 8))), grid);
                _mm256_storeu_si256((__m256i *)(void *)(v + base), t);
            }
        }
        a = base / ch; /* the rest: channels base % ch.. of pixel a, then whole pixels */
        if (base % ch != 0) {
            q1p.outer = 1;
            neuron_fast_c(&q1p, cur + a * ch, v != 0 ? v + a * ch : v, theta, v_init, thr, z + a * ch, base % ch);
            ++a;
        }
        if (a < outer) {
            q1p.outer = outer - a;
            neuron_fast_c(&q1p, cur + a * ch, v != 0 ? v + a * ch : v, theta, v_init, thr, z + a * ch, 0);
        }
        return;
    }
    for (c0 = 0; c0 < vec; c0 += 8) {
        const __m256i vi = SNNCC_Y_LOAD(v_init + c0), th = SNNCC_Y_LOAD(theta + c0);
        for (k = 0; k < steps; ++k) {
            tk[k] = SNNCC_Y_LOAD(thr + k * ch + c0);
        }
        for (a = 0; a < outer; ++a) {
            const int32_t base = a * ch + c0;
            const __m256i v0 = v != 0 ? SNNCC_Y_LOAD(v + base) : vi;
            __m256i t = _mm256_add_epi32(v0, SNNCC_Y_LOAD(cur + base)), q = top, q1 = zero, b;
            t = _mm256_min_epi32(_mm256_max_epi32(t, vmin), vmax);
            for (k = 0; k + 1 < steps; k += 2) { /* t >= thr: count down where thr > t */
                q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(tk[k], t));
                q1 = _mm256_add_epi32(q1, _mm256_cmpgt_epi32(tk[k + 1], t));
            }
            if (k < steps) {
                q = _mm256_add_epi32(q, _mm256_cmpgt_epi32(tk[k], t));
            }
            q = _mm256_add_epi32(q, q1);
            b = _mm256_packs_epi32(q, q);
            b = _mm256_packs_epi16(b, b); /* levels in bytes 0-3 of each half */
            _mm_storel_epi64((__m128i *)(void *)(z + base),
                             _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
            if (v != 0) {
                t = _mm256_and_si256(_mm256_sub_epi32(t, _mm256_mullo_epi32(q, th)), grid);
                _mm256_storeu_si256((__m256i *)(void *)(v + base), t);
            }
        }
    }
    if (vec < ch) {
        neuron_fast_c(p, cur, v, theta, v_init, thr, z, vec);
    }
}
#endif

void snncc_neuron_fast(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                       const int32_t *theta, const int32_t *v_init, const int32_t *thr, int8_t *z)
{
#if defined(SNNCC_X86_AVX512)
    if (x86_level() == 2 && p->levels * (p->is_signed ? 2 : 1) <= SNNCC_FAST_STEPS) {
        neuron_fast_avx512(p, cur, v, theta, v_init, thr, z);
        return;
    }
#endif
#if defined(SNNCC_X86_AVX2)
    if (x86_level() == 1 && p->levels * (p->is_signed ? 2 : 1) <= SNNCC_FAST_STEPS) {
        neuron_fast_avx2(p, cur, v, theta, v_init, thr, z);
        return;
    }
#endif
#if defined(SNNCC_SCALAR_NEURON)
    (void)thr;
    neuron_fast_scalar(p, cur, v, theta, v_init, z);
    return;
#endif
    neuron_fast_c(p, cur, v, theta, v_init, thr, z, 0);
}

void snncc_neuron_init(const snncc_neuron_t *p, int32_t *v, const int32_t *v_init)
{
    int32_t a, c, i;
    for (a = 0; a < p->outer; ++a) {
        for (c = 0; c < p->channels; ++c) {
            for (i = 0; i < p->inner; ++i) {
                v[(a * p->channels + c) * p->inner + i] = v_init[c];
            }
        }
    }
}

/*
 * v = sat_B(v + I); z = clamp(floor(v / theta), lo, N); v -= z * theta;
 * then v = floor(v / 2^k) * 2^k when a membrane shift k is set.
 * theta > 0.  For v >= 0 C's division is the floor; for v < 0 it is corrected.
 */
void snncc_neuron_step(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                       const int32_t *theta, const int32_t *v_init, int8_t *z)
{
    int32_t a, c, i;
    int32_t n = p->levels;
    int64_t grid = (int64_t)1 << p->shift;
    for (a = 0; a < p->outer; ++a) {
        for (c = 0; c < p->channels; ++c) {
            int32_t th = theta[c];
            int32_t base = (a * p->channels + c) * p->inner;
            for (i = 0; i < p->inner; ++i) {
                int64_t vv = (int64_t)(v != 0 ? v[base + i] : v_init[c]) + cur[base + i];
                int32_t v32, q;
                if (vv < p->vmin) {
                    vv = p->vmin;
                } else if (vv > p->vmax) {
                    vv = p->vmax;
                }
                v32 = (int32_t)vv;
                if (v32 >= 0) {
                    q = v32 / th;
                    if (q > n) {
                        q = n;
                    }
                } else if (!p->is_signed) {
                    q = 0;
                } else {
                    q = v32 / th;
                    if ((int64_t)q * th != v32) {
                        q -= 1; /* truncation -> floor for negative v */
                    }
                    if (q < -n) {
                        q = -n;
                    }
                }
                z[base + i] = (int8_t)q;
                if (v != 0) {
                    vv -= (int64_t)q * th;
                    if (p->shift > 0) {
                        int64_t r = vv % grid; /* floor to the 2^k grid */
                        if (r < 0) {
                            r += grid;
                        }
                        vv -= r;
                    }
                    v[base + i] = (int32_t)vv;
                }
            }
        }
    }
}

/* Transposes of [a][b] -> [b][a] elements; typed loops for the two element sizes. */
static void transpose_elems(const void *x, void *y, int32_t a, int32_t b, int32_t esize)
{
    int32_t i, j;
    if (esize == 1) {
        const int8_t *src = (const int8_t *)x;
        int8_t *dst = (int8_t *)y;
        for (i = 0; i < a; ++i) {
            for (j = 0; j < b; ++j) {
                dst[j * a + i] = src[i * b + j];
            }
        }
    } else {
        const int32_t *src = (const int32_t *)x;
        int32_t *dst = (int32_t *)y;
        for (i = 0; i < a; ++i) {
            for (j = 0; j < b; ++j) {
                dst[j * a + i] = src[i * b + j];
            }
        }
    }
}

void snncc_hwc_to_chw(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize)
{
    transpose_elems(x, y, h * w, c, esize);
}

void snncc_chw_to_hwc(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize)
{
    transpose_elems(x, y, c, h * w, esize);
}

void snncc_concat_part(void *dst, const void *src, int32_t outer, int32_t src_chunk,
                       int32_t dst_chunk, int32_t dst_offset, int32_t esize)
{
    int32_t a;
    for (a = 0; a < outer; ++a) {
        memcpy((uint8_t *)dst + (uint32_t)(a * dst_chunk + dst_offset) * (uint32_t)esize,
               (const uint8_t *)src + (uint32_t)(a * src_chunk) * (uint32_t)esize,
               (uint32_t)(src_chunk * esize));
    }
}

void snncc_pad_hwc(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t pad_t,
                   int32_t pad_l, int32_t pad_b, int32_t pad_r, int32_t esize)
{
    int32_t ow = w + pad_l + pad_r, oh = h + pad_t + pad_b, row;
    uint32_t row_bytes = (uint32_t)(w * c * esize);
    memset(y, 0, (uint32_t)(oh * ow * c * esize));
    for (row = 0; row < h; ++row) {
        memcpy((uint8_t *)y + (uint32_t)(((row + pad_t) * ow + pad_l) * c * esize),
               (const uint8_t *)x + (uint32_t)row * row_bytes, row_bytes);
    }
}

void snncc_im2col_i8(const snncc_conv_t *p, const int8_t *x, int8_t *y, int32_t kq)
{
    int32_t oy, ox, ky, kx, c, i;
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            int8_t *d = y + (oy * p->out_w + ox) * kq;
            i = 0;
            for (ky = 0; ky < p->k_h; ++ky) {
                const int32_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                for (kx = 0; kx < p->k_w; ++kx) {
                    const int32_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                    if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                        for (c = 0; c < p->in_c; ++c) {
                            d[i++] = 0;
                        }
                    } else {
                        const int8_t *s = x + (iy * p->in_w + ix) * p->in_c;
                        for (c = 0; c < p->in_c; ++c) {
                            d[i++] = s[c];
                        }
                    }
                }
            }
            for (; i < kq; ++i) {
                d[i] = 0;
            }
        }
    }
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(SNNCC_NO_SIMD) /* the x86-64 schedule's */
void snncc_pack_taps_i8(const int8_t *x, int8_t *y, int32_t h, int32_t w, int32_t c, int32_t pad_l,
                        int32_t dil_w)
{
    const int32_t g = 4 / c, wp = w + pad_l;
    int32_t iy, i, j, ch;
    for (iy = 0; iy < h; ++iy) {
        const int8_t *xr = x + iy * w * c;
        int8_t *yr = y + iy * wp * 4;
        i = 0;
        if (dil_w == 1 && pad_l == 0) { /* 8 bytes give the quads at 0, c, .. 4 (little-endian) */
            for (; (i + 4 / c) * c + 4 <= w * c; i += 4 / c + 1) {
                uint64_t v;
                int32_t k;
                memcpy(&v, xr + i * c, sizeof v);
                for (k = 0; k <= 4 / c; ++k) {
                    const uint32_t q = (uint32_t)(v >> (8 * c * k));
                    memcpy(yr + 4 * (i + k), &q, 4);
                }
            }
        }
        for (; i < wp; ++i) {
            const int32_t ix = i - pad_l;
            int8_t *d = yr + 4 * i;
            if (dil_w == 1 && ix >= 0 && ix + g <= w) { /* g * c == 4 */
                memcpy(d, xr + ix * c, 4);
                continue;
            }
            memset(d, 0, 4);
            for (j = 0; j < g; ++j) {
                const int32_t t = ix + j * dil_w;
                if (t >= 0 && t < w) {
                    for (ch = 0; ch < c; ++ch) {
                        d[j * c + ch] = xr[t * c + ch];
                    }
                }
            }
        }
    }
}
#endif

void snncc_pad_channels_i8(const int8_t *x, int8_t *y, int32_t pixels, int32_t c, int32_t cp)
{
    int32_t pix, ch;
    for (pix = 0; pix < pixels; ++pix) {
        const int8_t *src = x + pix * c;
        int8_t *dst = y + pix * cp;
        for (ch = 0; ch < c; ++ch) {
            dst[ch] = src[ch];
        }
        for (; ch < cp; ++ch) {
            dst[ch] = 0;
        }
    }
}

/* channel_shuffle: out channel j * groups + g reads in channel g * (C / groups) + j. */
void snncc_channel_shuffle(const void *x, void *y, int32_t outer, int32_t channels,
                           int32_t inner, int32_t groups, int32_t esize)
{
    int32_t per = channels / groups, a, g, j;
    uint32_t run = (uint32_t)(inner * esize);
    for (a = 0; a < outer; ++a) {
        for (g = 0; g < groups; ++g) {
            for (j = 0; j < per; ++j) {
                memcpy((uint8_t *)y + (uint32_t)((a * channels + j * groups + g)) * run,
                       (const uint8_t *)x + (uint32_t)((a * channels + g * per + j)) * run, run);
            }
        }
    }
}

#define SNNCC_ACCUM_BODY()                                                                 \
    int32_t pix, ch, hw = h * w;                                                           \
    for (pix = 0; pix < hw; ++pix) {                                                       \
        for (ch = 0; ch < c; ++ch) {                                                       \
            int32_t val = y[pix * c + ch];                                                 \
            if (first) {                                                                   \
                acc[ch * hw + pix] = val;                                                  \
            } else {                                                                       \
                acc[ch * hw + pix] += val;                                                 \
            }                                                                              \
        }                                                                                  \
    }

void snncc_accum_i32(int32_t *acc, const int32_t *y, int32_t h, int32_t w, int32_t c, int first)
{
    SNNCC_ACCUM_BODY()
}

void snncc_accum_i8(int32_t *acc, const int8_t *y, int32_t h, int32_t w, int32_t c, int first)
{
    SNNCC_ACCUM_BODY()
}

#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
/*
 * Packed weights on x86-64: unpacked per call on the stack into the int8 block layout
 * (and, for signed input, the offset bias row bias - 128 * sum(W), wrapping like the
 * kernels' int32 lanes), then the int8 SIMD kernels.  Returns 0 (nothing done) when the
 * CPU has neither level, in_c is not a multiple of 4, or the weights exceed the buffer.
 */
#define SNNCC_UNPACK_BYTES 32768
#define SNNCC_UNPACK_OUT 1024
static int packed_x86(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                      const int32_t *bias, int sparse)
{
    int8_t wt[SNNCC_UNPACK_BYTES];
    int32_t bb[2 * SNNCC_UNPACK_OUT];
    const int32_t o16 = (p->out_c + SNNCC_OBLOCK - 1) / SNNCC_OBLOCK * SNNCC_OBLOCK;
    const int32_t rows = p->k_h * p->k_w * (p->in_c / 4), bits = p->wbits, per = 16 / bits;
    const int32_t fmask = (1 << bits) - 1, half = 1 << (bits - 1), rowbytes = o16 * bits / 2;
    snncc_conv_t p8 = *p;
    int32_t r, o, i;
    if (x86_level() == 0 || p->in_c % 4 != 0 || rows * o16 * 4 > SNNCC_UNPACK_BYTES || o16 > SNNCC_UNPACK_OUT) {
        return 0;
    }
    for (o = 0; o < o16; ++o) {
        const int32_t k = o % per;
        uint32_t sum = 0;
        for (r = 0; r < rows; ++r) {
            const uint8_t *wb = w + r * rowbytes + (o / per) * 8;
            for (i = 0; i < 4; ++i) { /* field k of halfword i / 2 of word i % 2, the top one signed */
                const uint8_t *b = wb + 4 * (i % 2);
                const uint32_t wv = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
                const int32_t f = (int32_t)(wv >> (16 * (i / 2) + bits * k)) & fmask;
                const int8_t v = (int8_t)((k == per - 1 ? (f ^ half) : f) - half);
                wt[(r * o16 + o) * 4 + i] = v;
                sum += (uint32_t)(int32_t)v;
            }
        }
        bb[o] = bias[o];
        bb[o16 + o] = (int32_t)((uint32_t)bias[o] - 128u * sum);
    }
    p8.wbits = 8;
    snncc_conv_block_i8(&p8, x, y, wt, bb, sparse);
    return 1;
}
#endif

/* Packed 4- and 2-bit block convs (separate entry points: a build links only the widths
 * its model uses). */
void snncc_conv_block_w4(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                         const int32_t *bias, int sparse)
{
    (void)sparse; /* silent quads are always skipped */
#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
    if (packed_x86(p, x, y, w, bias, sparse)) {
        return;
    }
#endif
#if defined(SNNCC_ARM_DSP)
    conv_block_dsp_packed(p, x, y, w, bias, dsp_run_list4);
#else
    conv_block_packed_c(p, x, y, w, bias, packed_run4);
#endif
}

void snncc_conv_block_w2(const snncc_conv_t *p, const int8_t *x, int32_t *y, const uint8_t *w,
                         const int32_t *bias, int sparse)
{
    (void)sparse;
#if defined(SNNCC_X86_AVX512) || defined(SNNCC_X86_AVX2)
    if (packed_x86(p, x, y, w, bias, sparse)) {
        return;
    }
#endif
#if defined(SNNCC_ARM_DSP)
    conv_block_dsp_packed(p, x, y, w, bias, dsp_run_list2);
#else
    conv_block_packed_c(p, x, y, w, bias, packed_run2);
#endif
}
