#include "inklet/text.h"

#include <ctype.h>
#include <string.h>

char *ink_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool cont(unsigned char c)
{
    return (c & 0xc0) == 0x80;
}

size_t ink_utf8_char_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2 || c > 0xf4)
        return 0; /* continuation byte, overlong lead (C0/C1) or beyond U+10FFFF */
    size_t len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    /* the second byte's range depends on the lead (RFC 3629 §4) */
    unsigned char lo = 0x80, hi = 0xbf;
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* > U+10FFFF */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (!cont(s[i]))
            return 0;
    return len;
}

size_t ink_utf8_sanitize(const char *in, char *out, size_t cap)
{
    static const char REPLACEMENT[] = "\xef\xbf\xbd";
    size_t o = 0;
    if (cap == 0)
        return 0;
    const unsigned char *s = (const unsigned char *)(in ? in : "");
    size_t n = strlen((const char *)s);
    for (size_t i = 0; i < n;) {
        size_t len = ink_utf8_char_len(s + i, n - i);
        const char *piece = (const char *)s + i;
        size_t plen = len;
        if (len == 0 || (len == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
            piece = REPLACEMENT;
            plen = 3;
            len = 1;
        }
        if (o + plen > cap - 1)
            break;
        memcpy(out + o, piece, plen);
        o += plen;
        i += len;
    }
    out[o] = '\0';
    return o;
}
