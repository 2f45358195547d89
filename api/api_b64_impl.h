/* api_b64_impl.h - the vector and portable base64 coders behind api_b64.h (internal; the tests compare the decoders). */
#ifndef API_B64_IMPL_H
#define API_B64_IMPL_H

#include <stddef.h>

/* Decodes s from character k on into out from byte o on (k a multiple
 * of 4, o = k / 4 * 3), with api_b64_decode's results. */
long api_b64_decode_portable(const char *s, size_t len, unsigned char *out, size_t cap,
                             size_t k, size_t o);

/* Decodes whole blocks of 32 characters into 24 bytes from *k, *o on, while
 * they are all base64 (no '='), leave 32 more characters after them (so
 * that padding stays for the portable decoder) and their 32-byte stores
 * fit in cap; advances *k and *o past them. Needs AVX2. */
void api_b64_decode_avx2(const char *s, size_t len, unsigned char *out, size_t cap, size_t *k,
                         size_t *o);

/* Encodes whole blocks of 24 bytes from d + *k into 32 characters at o +
 * *w while 28 bytes remain to be read; advances *k and *w. Needs AVX2. */
void api_b64_encode_avx2(char *o, const unsigned char *d, size_t n, size_t *k, size_t *w);

#endif
