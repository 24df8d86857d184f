/** Small string helpers: trimming for configuration values, and UTF-8 handling for text that
 *  comes from outside (headers, device messages) before it is stored or logged. */
#ifndef INKLET_TEXT_H
#define INKLET_TEXT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Trims ASCII white space at both ends of `s` in place; returns the first kept character. */
char *ink_trim(char *s);

/** Length (1–4) of the well-formed UTF-8 character (RFC 3629: no overlongs, no surrogates, at
 *  most U+10FFFF) that starts at s[0], reading at most `n` bytes; 0 when the bytes there are not
 *  one (n == 0 included). */
size_t ink_utf8_char_len(const unsigned char *s, size_t n);

/** The code point of the well-formed character s[0..len) (len from ink_utf8_char_len). */
uint32_t ink_utf8_decode(const unsigned char *s, size_t len);

/** What ink_utf8_clean makes of text from outside. In both, a byte that does not start a
 *  well-formed character becomes U+FFFD and the result is cut at a character boundary. */
enum ink_utf8_mode {
    INK_UTF8_STORE,   /* for storage: C0 controls and DEL become U+FFFD; a cut is silent */
    INK_UTF8_DISPLAY, /* for a person to read (mail): C0/C1 controls, DEL, bidi controls and
                         U+2028/2029 are removed; a cut value ends in "…" */
};
/** Copies `in` (NULL gives "") into out[cap] cleaned by `mode`; the text, its mark when cut, and
 *  the NUL fit in `cap` bytes. Returns the length written. */
size_t ink_utf8_clean(const char *in, char *out, size_t cap, enum ink_utf8_mode mode);

/** ink_utf8_clean(in, out, cap, INK_UTF8_STORE): copies `in` to `out` as clean UTF-8 for
 *  storage: each byte that does not start a well-formed character, and each C0 control
 *  character or DEL, becomes U+FFFD; the result is cut at a
 *  character boundary so that it fits in `cap` bytes with its NUL (at most cap - 1 bytes of
 *  text). `in` may be NULL (gives ""). Returns the length written. */
size_t ink_utf8_sanitize(const char *in, char *out, size_t cap);

#endif
