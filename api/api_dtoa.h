/* api_dtoa.h - shortest round-trip text of a double (Dragonbox), C interface. */
#ifndef API_DTOA_H
#define API_DTOA_H

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the shortest decimal text that reads back as exactly v (finite,
 * not checked) into out (at least 32 bytes), in %g style: plain digits
 * for decimal exponents from -5 to 16 ("0.25", "1", "-3e-07" otherwise),
 * valid JSON. Returns the length (no NUL is counted; one is written). */
int api_dtoa(double v, char *out);

#ifdef __cplusplus
}
#endif

#endif
