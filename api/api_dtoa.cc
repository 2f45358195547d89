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
    char digits[24];
    int n = 0;
    for (std::uint64_t s = d.significand; s; s /= 10) digits[n++] = (char)('0' + s % 10);
    // digits[] is reversed; the value is 0.d1d2...dn x 10^point.
    int point = n + d.exponent;
    if (point > -5 && point <= 17) {
        if (point <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int k = 0; k < -point; k++) *o++ = '0';
            for (int k = n - 1; k >= 0; k--) *o++ = digits[k];
        } else {
            for (int k = 0; k < point; k++) *o++ = k < n ? digits[n - 1 - k] : '0';
            if (n > point) {
                *o++ = '.';
                for (int k = point; k < n; k++) *o++ = digits[n - 1 - k];
            }
        }
    } else {
        *o++ = digits[n - 1];
        if (n > 1) {
            *o++ = '.';
            for (int k = n - 2; k >= 0; k--) *o++ = digits[k];
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
