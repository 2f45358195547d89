/* api_lift.h - long base64 strings kept out of jansson's lexer (internal). */
#ifndef API_LIFT_H
#define API_LIFT_H

#include <stddef.h>

/* jansson lexes a string one byte at a time through a callback, checking
 * UTF-8 and copying each byte into a growing buffer: for a base64 tensor
 * of a megabyte that is four fifths of a request's time. Before the body
 * goes to jansson, api_lift_scan finds the values of "data" keys that are
 * long strings of base64 characters only (A-Z a-z 0-9 + / =, so no
 * escapes and nothing jansson would refuse or change) and builds a copy
 * of the body in which each such value is replaced by a short tag,
 * "~gs:<nonce>:<index>" (the nonce is random per request, and '~' is not
 * base64, so no tensor a client sends can pass for a tag). jansson parses
 * the copy; the tensor reader maps a tag back to the bytes in the
 * original body with api_lift_get. jansson sees the same document but for
 * those strings' contents: a body it accepts or refuses, it accepts or
 * refuses as before. Only the line and column of a refusal move, so the
 * caller parses the original body again to report one. */
typedef struct {
    const char *p;
    size_t n;
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

/* The original bytes of the string jansson returned as (s, *n): a lifted
 * one's span, or s itself. l may be NULL. */
const char *api_lift_get(const api_lift *l, const char *s, size_t *n);

void api_lift_free(api_lift *l);

#endif
