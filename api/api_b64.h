/* api_b64.h - standard base64 (RFC 4648 §4) for tensors: decoding and encoding (internal). */
#ifndef API_B64_H
#define API_B64_H

#include <stddef.h>

/* Decodes s[0..len) (padding optional, no blanks) into out, which has room
 * for cap bytes. Returns the number of bytes decoded; -1 if s holds a byte
 * that is not base64 ('=' only at the end); cap + 1 if the output would
 * not fit (whichever comes first, reading s from the start). With AVX2
 * (checked at run time) 32 characters go at a time. */
long api_b64_decode(const char *s, size_t len, unsigned char *out, size_t cap);

/* Writes the (n + 2) / 3 * 4 characters of d[0..n), padded, to o. */
void api_b64_encode(char *o, const unsigned char *d, size_t n);

#endif
