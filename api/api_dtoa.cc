// api_dtoa.cc - shortest round-trip double to text through Dragonbox (Jeon 2020), the one C++ file.
#include "api_dtoa.h"

#include <dragonbox/dragonbox.h>

#include <cmath>
#include <cstdint>
#include <cstring>

// Dragonbox gives the shortest decimal significand s and exponent e with
// s * 10^e reading back as v (ties to even, trailing zeros removed); this
// file only places the decimal point, which cannot change the value.
extern "C" int api_dtoa(double v, char *out) {
    char *o = out;
    if (v == 0.0) {
        if (std::signbit(v)) *o++ = '-';
        *o++ = '0';
        *o = '\0';
        return (int)(o - out);
    }
    auto d = jkj::dragonbox::to_decimal(v);
    if (d.is_negative) *o++ = '-';
    // The significand's digits, two at a time from the right; the value is
    // 0.d1d2...dn x 10^point.
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    char buf[24];
    char *end = buf + sizeof buf, *dg = end;
    std::uint64_t s = d.significand;
    while (s >= 100) {
        dg -= 2;
        std::memcpy(dg, pairs + 2 * (s % 100), 2);
        s /= 100;
    }
    if (s >= 10) {
        dg -= 2;
        std::memcpy(dg, pairs + 2 * s, 2);
    } else {
        *--dg = (char)('0' + s);
    }
    int n = (int)(end - dg);
    int point = n + d.exponent;
    if (point > -5 && point <= 17) {
        if (point <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int k = 0; k < -point; k++) *o++ = '0';
            std::memcpy(o, dg, (size_t)n);
            o += n;
        } else if (n > point) {
            std::memcpy(o, dg, (size_t)point);
            o += point;
            *o++ = '.';
            std::memcpy(o, dg + point, (size_t)(n - point));
            o += n - point;
        } else {
            std::memcpy(o, dg, (size_t)n);
            o += n;
            for (int k = n; k < point; k++) *o++ = '0';
        }
    } else {
        *o++ = dg[0];
        if (n > 1) {
            *o++ = '.';
            std::memcpy(o, dg + 1, (size_t)(n - 1));
            o += n - 1;
        }
        int e = point - 1;
        *o++ = 'e';
        if (e < 0) {
            *o++ = '-';
            e = -e;
        }
        char eb[8];
        int m = 0;
        do eb[m++] = (char)('0' + e % 10); while (e /= 10);
        while (m) *o++ = eb[--m];
    }
    *o = '\0';
    return (int)(o - out);
}
