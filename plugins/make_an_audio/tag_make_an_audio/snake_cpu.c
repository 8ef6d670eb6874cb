/* BigVGAN's anti-aliased snake (2x upsample, 12 taps -> snake -> 2x downsample, 12 taps) for the CPU, one pass per row.

   The same polyphase arithmetic as vocoder.PolyphaseSnake, but each row (one channel of one clip) is read once and
   written once: its replicate-padded copy, the two upsampled phases and the output all stay in the core's cache,
   where the PyTorch form makes about 30 passes over memory. The sine is computed here (`sin_squared`) so that the
   loops vectorise without calling libm; only its square is used, so the sign that its range reduction flips does
   not matter. It is within a few float roundings of torch's sin (tested up to thousands of periods out).
   Built by snake_cpu.py with the machine's C compiler; plain C99, no Python or torch headers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE 512

/* sin(y)^2 in float: y less the nearest multiple k of pi (two fused multiply-adds with pi split in two floats,
   exact enough for |k| < 2^22), then the odd Taylor polynomial to degree 13, under 1e-9 from sin on [-pi/2, pi/2] */
static inline float sin_squared(float y) {
    const float inv_pi = 0.318309886f, pi_hi = 3.14159274f, pi_lo = -8.74227766e-8f; /* pi_hi + pi_lo = pi */
    const float round_bias = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    const float k = (y * inv_pi + round_bias) - round_bias;
    const float r = fmaf(-k, pi_lo, fmaf(-k, pi_hi, y));
    const float r2 = r * r;
    const float s = r * (1.0f + r2 * (-1.0f / 6 + r2 * (1.0f / 120 + r2 * (-1.0f / 5040 + r2 * (1.0f / 362880
                    + r2 * (-1.0f / 39916800 + r2 * (1.0f / 6227020800.0f)))))));
    return s * s;
}

/* z[i] += inv_beta * sin(alpha * z[i])^2 for i < n */
static void snake(float *restrict z, long n, float alpha, float inv_beta) {
    for (long i = 0; i < n; i++) {
        z[i] = z[i] + inv_beta * sin_squared(z[i] * alpha);
    }
}

/* out[q] = sum_i taps[i] * source[q + i] for q < n */
static void fir(const float *restrict source, const float *restrict taps, float *restrict out, long n) {
    const float t0 = taps[0], t1 = taps[1], t2 = taps[2], t3 = taps[3], t4 = taps[4], t5 = taps[5];
    for (long q = 0; q < n; q++) {
        out[q] = t0 * source[q] + t1 * source[q + 1] + t2 * source[q + 2] + t3 * source[q + 3] + t4 * source[q + 4]
                 + t5 * source[q + 5];
    }
}

/* out[m] = sum_j even_taps[j] * even[m + j] + odd_taps[j] * odd[m + j] for m < n */
static void fir2(const float *restrict even, const float *restrict even_taps, const float *restrict odd,
                 const float *restrict odd_taps, float *restrict out, long n) {
    const float e0 = even_taps[0], e1 = even_taps[1], e2 = even_taps[2], e3 = even_taps[3], e4 = even_taps[4],
                e5 = even_taps[5];
    const float o0 = odd_taps[0], o1 = odd_taps[1], o2 = odd_taps[2], o3 = odd_taps[3], o4 = odd_taps[4],
                o5 = odd_taps[5];
    for (long m = 0; m < n; m++) {
        out[m] = e0 * even[m] + e1 * even[m + 1] + e2 * even[m + 2] + e3 * even[m + 3] + e4 * even[m + 4]
                 + e5 * even[m + 5] + o0 * odd[m] + o1 * odd[m + 1] + o2 * odd[m + 2] + o3 * odd[m + 3]
                 + o4 * odd[m + 4] + o5 * odd[m + 5];
    }
}

/* Rows [first, last) of x (rows x length, row r has channel r % channels) into out.
   taps: up_even, up_odd, down_even, down_odd (6 each, as PolyphaseSnake holds them).
   Each row is done in tiles of TILE outputs whose inputs and phases fit in the L1 cache (a whole row's do not:
   the earlier whole-row version was bound by L2 bandwidth). A tile needs 5 phase samples beyond its outputs and
   10 input samples beyond those, recomputed by the next tile. Returns 0, or 1 when scratch could not be allocated. */
int tag_snake_rows(const float *x, float *out, long channels, long length, long first, long last,
                   const float *taps, const float *alpha, const float *inv_beta) {
    const float *up_even = taps, *up_odd = taps + 6, *down_even = taps + 12, *down_odd = taps + 18;
    float *xp = malloc(sizeof(float) * (TILE + 10 + 2 * (TILE + 5)));
    if (xp == NULL) return 1;
    float *even = xp + TILE + 10, *odd = even + TILE + 5;
    for (long r = first; r < last; r++) {
        const float *row = x + r * length;
        const long c = r % channels;
        for (long start = 0; start < length; start += TILE) {
            const long n = length - start < TILE ? length - start : TILE;
            /* xp[k] = row[start - 5 + k], the row replicate-padded by 5 */
            const long lo = start < 5 ? 5 - start : 0, hi = length + 5 - start < n + 10 ? length + 5 - start : n + 10;
            for (long k = 0; k < lo; k++) xp[k] = row[0];
            memcpy(xp + lo, row + start - 5 + lo, sizeof(float) * (size_t)(hi - lo));
            for (long k = hi; k < n + 10; k++) xp[k] = row[length - 1];
            /* phase sample start + e: the upsampled signal's sample 2(start + e - 2) (even), 2(start + e - 3) + 1 (odd);
               outside those the downsampler's replicate padding, set below */
            fir(xp, up_even, even, n + 5);
            fir(xp, up_odd, odd, n + 5);
            if (start == 0) { /* the downsampler's left padding repeats the first upsampled sample, even[2] */
                even[0] = even[1] = odd[0] = odd[1] = odd[2] = even[2];
            }
            /* its right padding the last, odd[length + 2]: even from length + 2 on, odd after it */
            const long last_sample = length + 2 - start;
            for (long e = last_sample; e < n + 5; e++) {
                even[e] = odd[last_sample];
                if (e > last_sample) odd[e] = odd[last_sample];
            }
            snake(even, n + 5, alpha[c], inv_beta[c]);
            snake(odd, n + 5, alpha[c], inv_beta[c]);
            fir2(even, down_even, odd, down_odd, out + r * length + start, n);
        }
    }
    free(xp);
    return 0;
}
