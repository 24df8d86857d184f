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

uint32_t ink_utf8_decode(const unsigned char *s, size_t len)
{
    if (len == 1)
        return s[0];
    uint32_t cp = s[0] & (0xff >> (len + 1));
    for (size_t i = 1; i < len; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

/* What a person reading the text must not get: C0 and C1 controls, DEL, the bidi controls (an
 * override can make "gpj.exe" read as "exe.jpg") and the line and paragraph separators. */
static bool unshowable(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
           cp == 0x200f || cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

size_t ink_utf8_clean(const char *in, char *out, size_t cap, enum ink_utf8_mode mode)
{
    static const char REPLACEMENT[] = "\xef\xbf\xbd", ELLIPSIS[] = "\xe2\x80\xa6";
    const size_t mark = mode == INK_UTF8_DISPLAY ? sizeof ELLIPSIS - 1 : 0;
    if (cap <= mark) {
        if (cap)
            out[0] = '\0';
        return 0;
    }
    const size_t max_text = cap - 1 - mark; /* a cut value still has room for its mark */
    const unsigned char *s = (const unsigned char *)(in ? in : "");
    size_t n = strlen((const char *)s), o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = ink_utf8_char_len(s + i, n - i);
        const char *piece = (const char *)s + i;
        size_t plen = len;
        if (len == 0) {
            piece = REPLACEMENT;
            plen = 3;
            len = 1;
        } else if (mode == INK_UTF8_DISPLAY && unshowable(ink_utf8_decode(s + i, len))) {
            i += len;
            continue;
        } else if (mode == INK_UTF8_STORE && len == 1 && (s[i] < 0x20 || s[i] == 0x7f)) {
            piece = REPLACEMENT;
            plen = 3;
        }
        if (o + plen > max_text) {
            memcpy(out + o, ELLIPSIS, mark);
            o += mark;
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += len;
    }
    out[o] = '\0';
    return o;
}

size_t ink_utf8_sanitize(const char *in, char *out, size_t cap)
{
    return ink_utf8_clean(in, out, cap, INK_UTF8_STORE);
}
