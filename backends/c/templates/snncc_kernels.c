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

/* The loop nest shared by every path: BW output channels per pass; each path defines
 * BLOCK_INIT, BLOCK_STEP (`quad` holds four input levels, `wr` their 4 x BW weights)
 * and BLOCK_STORE before expanding it. */
#define SNNCC_CONV_BLOCK_LOOP(BW)                                       \
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, c4 = (p->in_c + 3) / 4;  \
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;                    \
    const int32_t k_h = p->k_h, k_w = p->k_w, sh = p->stride_h, sw = p->stride_w;          \
    const int32_t pt = p->pad_t, pl = p->pad_l, dh = p->dil_h, dw = p->dil_w;              \
    const int32_t o16 = (out_c + SNNCC_OBLOCK - 1) / SNNCC_OBLOCK * SNNCC_OBLOCK;          \
    int32_t oy, ox, ob, ky, kx, cq;                                                        \
    for (oy = 0; oy < out_h; ++oy) {                                                       \
        for (ox = 0; ox < out_w; ++ox) {                                                   \
            int32_t *yp = y + (oy * out_w + ox) * out_c;                                   \
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
                        xin = x + (iy * in_w + ix) * in_c;                                 \
                        wk = w + ((ky * k_w + kx) * c4) * o16 * 4 + ob * 4;                \
                        for (cq = 0; cq < c4; ++cq) {                                      \
                            const int8_t *wr = wk + cq * o16 * 4;                          \
                            int32_t quad;                                                  \
                            if (4 * cq + 4 <= in_c) {                                      \
                                memcpy(&quad, xin + 4 * cq, sizeof quad);                  \
                            } else {                                                       \
                                quad = load_quad(xin, cq, in_c);                           \
                            }                                                              \
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

#if defined(__AVX512BW__) && !defined(SNNCC_NO_SIMD)
#include <immintrin.h>
#define SNNCC_HAVE_AVX512_BLOCK 1

static __m512i load_w64(const int8_t *wr)
{
    return _mm512_loadu_si512((const void *)wr);
}

/* Signed inputs: x as int16 quads (x0..x3 repeated) times sign-extended weights with
 * pmaddwd; lanes keep (x0w0 + x1w1, x2w2 + x3w3) per output, added pairwise at the end. */
static void conv_block_avx512_madd(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                                   const int32_t *bias, int sparse)
{
    __m512i a0 = _mm512_setzero_si512(), a1 = a0;
    int32_t tmp[32], j;
#define BLOCK_INIT                                                                         \
    a0 = _mm512_setzero_si512();                                                           \
    a1 = a0;
#define BLOCK_STEP                                                                         \
    {                                                                                      \
        const __m512i xv = _mm512_cvtepi8_epi16(_mm256_set1_epi32(quad));                  \
        const __m512i wv = load_w64(wr);                                                   \
        a0 = _mm512_add_epi32(a0, _mm512_madd_epi16(                                       \
                                      _mm512_cvtepi8_epi16(_mm512_castsi512_si256(wv)), xv)); \
        a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(                                       \
                                      _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(wv, 1)), xv)); \
    }
#define BLOCK_STORE                                                                        \
    _mm512_storeu_si512((void *)tmp, a0);                                                  \
    _mm512_storeu_si512((void *)(tmp + 16), a1);                                           \
    for (j = 0; j < SNNCC_OBLOCK && ob + j < out_c; ++j) {                                 \
        yp[ob + j] = bias[ob + j] + tmp[2 * j] + tmp[2 * j + 1];                           \
    }
    SNNCC_CONV_BLOCK_LOOP(SNNCC_OBLOCK)
#undef BLOCK_INIT
#undef BLOCK_STEP
#undef BLOCK_STORE
}

#if defined(__AVX512VNNI__)
#define SNNCC_HAVE_VNNI_BLOCK 1
/* Non-negative inputs (levels of unsigned neurons): vpdpbusd, 16 outputs x 4 input
 * channels per instruction, NB register blocks (16 * NB output channels) per pass.
 * Instantiated per NB and per sparse/dense so that the inner loop has no tests. */
#define BLOCK_INIT                                                                         \
    a0 = _mm512_loadu_si512((const void *)(bias + ob));                                    \
    a1 = nb > 1 ? _mm512_loadu_si512((const void *)(bias + ob + 16)) : a0;                 \
    a2 = nb > 2 ? _mm512_loadu_si512((const void *)(bias + ob + 32)) : a0;                 \
    a3 = nb > 3 ? _mm512_loadu_si512((const void *)(bias + ob + 48)) : a0;
#define BLOCK_STEP                                                                         \
    {                                                                                      \
        const __m512i xv = _mm512_set1_epi32(quad);                                        \
        a0 = _mm512_dpbusd_epi32(a0, xv, load_w64(wr));                                    \
        if (nb > 1) {                                                                      \
            a1 = _mm512_dpbusd_epi32(a1, xv, load_w64(wr + 64));                           \
        }                                                                                  \
        if (nb > 2) {                                                                      \
            a2 = _mm512_dpbusd_epi32(a2, xv, load_w64(wr + 128));                          \
            a3 = _mm512_dpbusd_epi32(a3, xv, load_w64(wr + 192));                          \
        }                                                                                  \
    }
#define BLOCK_STORE                                                                        \
    for (k = 0; k < nb; ++k) {                                                             \
        __m512i a = k == 0 ? a0 : k == 1 ? a1 : k == 2 ? a2 : a3;                          \
        int32_t left = out_c - (ob + 16 * k);                                              \
        __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);     \
        _mm512_mask_storeu_epi32((void *)(yp + ob + 16 * k), m, a);                        \
    }
#define SNNCC_VNNI_KERNEL(NAME, NB, SPARSE)                                                \
    static void NAME(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,  \
                     const int32_t *bias)                                                  \
    {                                                                                      \
        const int sparse = (SPARSE);                                                       \
        const int32_t nb = (NB);                                                           \
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;                    \
        int32_t k;                                                                         \
        SNNCC_CONV_BLOCK_LOOP((NB) * SNNCC_OBLOCK)                                         \
    }
SNNCC_VNNI_KERNEL(conv_vnni_1d, 1, 0)
SNNCC_VNNI_KERNEL(conv_vnni_2d, 2, 0)
SNNCC_VNNI_KERNEL(conv_vnni_4d, 4, 0)
SNNCC_VNNI_KERNEL(conv_vnni_1s, 1, 1)
SNNCC_VNNI_KERNEL(conv_vnni_2s, 2, 1)
SNNCC_VNNI_KERNEL(conv_vnni_4s, 4, 1)
#undef BLOCK_INIT
#undef BLOCK_STEP
#undef BLOCK_STORE

/* NB = 4, 2 or 1 blocks per pass, whichever divides the (padded) output channels. */
static void conv_block_vnni(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                            const int32_t *bias, int sparse)
{
    const int32_t blocks = (p->out_c + 15) / 16;
    if (blocks % 4 == 0) {
        (sparse ? conv_vnni_4s : conv_vnni_4d)(p, x, y, w, bias);
    } else if (blocks % 2 == 0) {
        (sparse ? conv_vnni_2s : conv_vnni_2d)(p, x, y, w, bias);
    } else {
        (sparse ? conv_vnni_1s : conv_vnni_1d)(p, x, y, w, bias);
    }
}
#endif
#endif

#if !defined(__AVX512BW__) && defined(__SSE2__) && !defined(SNNCC_NO_SIMD)
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

void snncc_conv_block_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const int8_t *w,
                         const int32_t *bias, int sparse)
{
#if defined(SNNCC_HAVE_VNNI_BLOCK)
    if (p->x_unsigned) {
        conv_block_vnni(p, x, y, w, bias, sparse);
        return;
    }
#endif
#if defined(SNNCC_HAVE_AVX512_BLOCK)
    conv_block_avx512_madd(p, x, y, w, bias, sparse);
    return;
#elif defined(SNNCC_HAVE_SSE2_BLOCK)
    conv_block_sse2(p, x, y, w, bias, sparse);
    return;
#endif
    conv_block_c(p, x, y, w, bias, sparse);
}

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

void snncc_dwconv_i8(const snncc_conv_t *p, const int8_t *x, int32_t *y, const void *w,
                     const int32_t *bias, int8_t *scratch)
{
    SNNCC_DWCONV_BODY()
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

void snncc_affine_i8(const int8_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                     int32_t outer, int32_t channels, int32_t inner)
{
    SNNCC_AFFINE_BODY()
}

void snncc_affine_i32(const int32_t *x, int32_t *y, const int32_t *scale, const int32_t *shift,
                      int32_t outer, int32_t channels, int32_t inner)
{
    SNNCC_AFFINE_BODY()
}

void snncc_add_i32(int32_t *y, const int32_t *a, const int32_t *b, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        y[i] = a[i] + b[i];
    }
}

void snncc_addto_i32(int32_t *y, const int32_t *a, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        y[i] += a[i];
    }
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

void snncc_maxpool_i8(const snncc_pool_t *p, const int8_t *x, int8_t *y)
{
    SNNCC_POOL_BODY(int8_t, int8_t, SNNCC_COPY, SNNCC_MAX)
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

void snncc_neuron_fast(const snncc_neuron_t *p, const int32_t *cur, int32_t *v,
                       const int32_t *theta, const int32_t *v_init, const int32_t *thr, int8_t *z)
{
    const int32_t outer = p->outer, ch = p->channels, vmin = p->vmin, vmax = p->vmax;
    const int32_t lo = p->is_signed ? -p->levels : 0, steps = p->levels - lo;
    const int32_t mask = (int32_t) - ((int64_t)1 << p->shift); /* two's complement: floor to 2^k */
    int32_t a, c0, c, k;
    for (a = 0; a < outer; ++a) {
        for (c0 = 0; c0 < ch; c0 += SNNCC_NEURON_CHUNK) {
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

void snncc_hwc_to_chw(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize)
{
    const uint8_t *src = (const uint8_t *)x;
    uint8_t *dst = (uint8_t *)y;
    int32_t pix, ch, hw = h * w;
    for (pix = 0; pix < hw; ++pix) {
        for (ch = 0; ch < c; ++ch) {
            memcpy(dst + ((uint32_t)(ch * hw + pix)) * (uint32_t)esize,
                   src + ((uint32_t)(pix * c + ch)) * (uint32_t)esize, (uint32_t)esize);
        }
    }
}

void snncc_chw_to_hwc(const void *x, void *y, int32_t h, int32_t w, int32_t c, int32_t esize)
{
    const uint8_t *src = (const uint8_t *)x;
    uint8_t *dst = (uint8_t *)y;
    int32_t pix, ch, hw = h * w;
    for (ch = 0; ch < c; ++ch) {
        for (pix = 0; pix < hw; ++pix) {
            memcpy(dst + ((uint32_t)(pix * c + ch)) * (uint32_t)esize,
                   src + ((uint32_t)(ch * hw + pix)) * (uint32_t)esize, (uint32_t)esize);
        }
    }
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
