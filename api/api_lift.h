/* api_lift.h - long base64 strings kept out of jansson's lexer (internal). */
#ifndef API_LIFT_H
#define API_LIFT_H

#include <stddef.h>

/* jansson lexes a string one byte at a time through a callback, checking
 * UTF-8 and copying each byte into a growing buffer: for a base64 tensor
 * of a megabyte that is four fifths of a request's time. Before the body
 * goes to jansson, api_lift_scan finds the values of "data" keys that are
 * long strings of valid base64 (A-Z a-z 0-9 + / and final padding, so no
 * escapes and nothing jansson would refuse or change), decodes them, and
 * builds a copy of the body in which each such value is replaced by a
 * short tag, "~gs:<nonce>:<index>" (the nonce is random per request, and
 * '~' is not base64, so no tensor a client sends can pass for a tag).
 * jansson parses the copy; the tensor reader finds a tag's decoded bytes
 * with api_lift_find. jansson sees the same document but for
 * those strings' contents: a body it accepts or refuses, it accepts or
 * refuses as before. Only the line and column of a refusal move, so the
 * caller parses the original body again to report one. */
typedef struct {
    const char *p;        /* the string in the body */
    size_t n;
    unsigned char *bytes; /* what it decodes to (malloc'd, owned by the api_lift) */
    size_t nbytes;
} api_span;

typedef struct api_lift_s {
    char *body;        /* the copy jansson parses, malloc'd; NULL: nothing lifted */
    size_t len;
    char tag[32];      /* "~gs:<16 hex digits>:" */
    size_t tag_len;
    api_span *spans;   /* the lifted strings, in body order */
    size_t n, cap;
} api_lift;

/* Strings shorter than this are left to jansson. */
#define API_LIFT_MIN 1024

/* Scans body; returns 1 with l->body set when something was lifted, 0
 * when nothing was (l->body NULL: parse the body itself), -1 when out of
 * memory (likewise). l is always safe to api_lift_free afterwards. */
int api_lift_scan(api_lift *l, const char *body, size_t len);

/* The lifted string that jansson returned as the tag (s, n), or NULL when
 * (s, n) is not one of this request's tags. l may be NULL. */
const api_span *api_lift_find(const api_lift *l, const char *s, size_t n);

void api_lift_free(api_lift *l);

#endif
