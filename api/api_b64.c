/* api_b64.c - standard base64 for tensors: a portable decoder and encoder, and the dispatch to the AVX2 ones. */
#include "api_b64.h"

#include <stdint.h>
#include <string.h>

#include "api_b64_impl.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* One more than the value of each base64 byte, 0 for every other byte. */
static const unsigned char B64VAL1[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
    ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
    ['/'] = 64,
};

long api_b64_decode_portable(const char *s, size_t len, unsigned char *out, size_t cap,
                             size_t k, size_t o) {
    const unsigned char *u = (const unsigned char *)s;
    while (len > k && u[len - 1] == '=') len--;
    /* Whole groups of four while they fit; 0 - 1 wraps around to a value
     * with high bits set, so one test checks all four. */
    size_t groups = (len - k) / 4, room = (cap - o) / 3;
    if (groups > room) groups = room;
    for (size_t end = k + groups * 4; k < end; k += 4) {
        unsigned a = B64VAL1[u[k]] - 1u, b = B64VAL1[u[k + 1]] - 1u, c = B64VAL1[u[k + 2]] - 1u,
                 d = B64VAL1[u[k + 3]] - 1u;
        if ((a | b | c | d) & ~63u) return -1;
        unsigned v = a << 18 | b << 12 | c << 6 | d;
        out[o] = (unsigned char)(v >> 16);
        out[o + 1] = (unsigned char)(v >> 8);
        out[o + 2] = (unsigned char)v;
        o += 3;
    }
    unsigned acc = 0;
    int bits = 0;
    for (; k < len; k++) {
        unsigned v = B64VAL1[u[k]] - 1u;
        if (v & ~63u) return -1;
        acc = (acc << 6) | v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return (long)cap + 1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

long api_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap) {
    size_t k = 0, o = 0;
    /* The AVX2 decoder takes whole blocks while they are valid and fit;
     * the portable one goes on from where it stopped, so errors are found
     * (and reported) in the same order either way. */
    if (len >= 64 && __builtin_cpu_supports("avx2")) api_b64_decode_avx2(s, len, out, cap, &k, &o);
    return api_b64_decode_portable(s, len, out, cap, k, o);
}

/* Encodes d[k..n) (k a multiple of 3) to o, padded. */
static void encode_from(char *o, const unsigned char *d, size_t n, size_t k) {
    for (; k + 3 <= n; k += 3) {
        unsigned v = (unsigned)d[k] << 16 | (unsigned)d[k + 1] << 8 | d[k + 2];
        o[0] = B64[v >> 18];
        o[1] = B64[(v >> 12) & 63];
        o[2] = B64[(v >> 6) & 63];
        o[3] = B64[v & 63];
        o += 4;
    }
    if (k < n) {
        unsigned v = (unsigned)d[k] << 16 | (k + 1 < n ? (unsigned)d[k + 1] << 8 : 0);
        o[0] = B64[v >> 18];
        o[1] = B64[(v >> 12) & 63];
        o[2] = k + 1 < n ? B64[(v >> 6) & 63] : '=';
        o[3] = '=';
    }
}

void api_b64_encode(char *o, const unsigned char *d, size_t n) {
    size_t k = 0, w = 0;
    if (n >= 28 && __builtin_cpu_supports("avx2")) api_b64_encode_avx2(o, d, n, &k, &w);
    encode_from(o + w, d, n, k);
}
