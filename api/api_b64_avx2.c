/* api_b64_avx2.c - base64 decoding 32 characters at a time with AVX2 (Muła and Lemire's method); built with -mavx2. */
#include <immintrin.h>

#include "api_b64_impl.h"

/* W. Muła and D. Lemire, "Faster Base64 Encoding and Decoding Using AVX2
 * Instructions", ACM TWEB 12(3), 2018. A byte's high and low nibbles
 * index two tables whose and is zero exactly for the 64 characters of the
 * alphabet; a third table gives the offset from the character to its
 * value by its high nibble ('/' apart); then two multiply-adds pack four
 * 6-bit values into 24 bits and a shuffle drops the gaps. */
void api_b64_decode_avx2(const char *s, size_t len, unsigned char *out, size_t cap, size_t *k,
                         size_t *o) {
    const __m256i lut_lo = _mm256_setr_epi8(
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b,
        0x1a, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b,
        0x1b, 0x1a);
    const __m256i lut_hi = _mm256_setr_epi8(
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10);
    const __m256i lut_roll = _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0,
                                              0, 0, 0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0,
                                              0, 0, 0, 0);
    const __m256i mask_2f = _mm256_set1_epi8(0x2f);
    const __m256i pack1 = _mm256_set1_epi32(0x01400140), pack2 = _mm256_set1_epi32(0x00011000);
    const __m256i shuf = _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
                                          2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1,
                                          -1);
    const __m256i perm = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, -1, -1);
    size_t i = *k, j = *o;
    while (i + 64 <= len && j + 32 <= cap) {
        __m256i str = _mm256_loadu_si256((const __m256i *)(s + i));
        __m256i hi_nib = _mm256_and_si256(_mm256_srli_epi32(str, 4), mask_2f);
        __m256i lo_nib = _mm256_and_si256(str, mask_2f);
        __m256i hi = _mm256_shuffle_epi8(lut_hi, hi_nib);
        __m256i lo = _mm256_shuffle_epi8(lut_lo, lo_nib);
        if (!_mm256_testz_si256(lo, hi)) break; /* not all base64: the portable decoder says */
        __m256i eq_2f = _mm256_cmpeq_epi8(str, mask_2f);
        __m256i roll = _mm256_shuffle_epi8(lut_roll, _mm256_add_epi8(eq_2f, hi_nib));
        str = _mm256_add_epi8(str, roll);
        __m256i merged = _mm256_maddubs_epi16(str, pack1);
        __m256i packed = _mm256_madd_epi16(merged, pack2);
        packed = _mm256_shuffle_epi8(packed, shuf);
        packed = _mm256_permutevar8x32_epi32(packed, perm);
        _mm256_storeu_si256((__m256i *)(out + j), packed);
        i += 32;
        j += 24;
    }
    *k = i;
    *o = j;
}

/* Encoding, the same paper's method: 24 bytes spread over two lanes (12
 * each, loaded as two overlapping 16-byte halves), each 3 bytes shuffled
 * into a 32-bit word, the four 6-bit fields moved into four bytes with
 * two multiplies, then mapped to characters by adding an offset looked up
 * from the field's range. */
void api_b64_encode_avx2(char *o, const unsigned char *d, size_t n, size_t *k, size_t *w) {
    const __m256i shuf = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, 1, 0,
                                          2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    const __m256i m0 = _mm256_set1_epi32(0x0fc0fc00), k0 = _mm256_set1_epi32(0x04000040);
    const __m256i m1 = _mm256_set1_epi32(0x003f03f0), k1 = _mm256_set1_epi32(0x01000010);
    const __m256i lut = _mm256_setr_epi8(65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16,
                                         0, 0, 65, 71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4,
                                         -19, -16, 0, 0);
    const __m256i n51 = _mm256_set1_epi8(51), n25 = _mm256_set1_epi8(25);
    size_t i = *k, j = *w;
    for (; i + 28 <= n; i += 24, j += 32) {
        __m256i in = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(d + i))),
            _mm_loadu_si128((const __m128i *)(d + i + 12)), 1);
        in = _mm256_shuffle_epi8(in, shuf);
        __m256i t1 = _mm256_mulhi_epu16(_mm256_and_si256(in, m0), k0);
        __m256i t3 = _mm256_mullo_epi16(_mm256_and_si256(in, m1), k1);
        __m256i v = _mm256_or_si256(t1, t3);
        __m256i idx = _mm256_sub_epi8(_mm256_subs_epu8(v, n51), _mm256_cmpgt_epi8(v, n25));
        v = _mm256_add_epi8(v, _mm256_shuffle_epi8(lut, idx));
        _mm256_storeu_si256((__m256i *)(o + j), v);
    }
    *k = i;
    *w = j;
}
