#include "inklet/strbuf.h"

#include "inklet/text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CUT_MARK "..."

void ink_sb_init(struct ink_sb *sb, char *buf, size_t cap)
{
    sb->buf = buf;
    sb->cap = cap;
    sb->len = 0;
    sb->truncated = false;
    buf[0] = '\0';
}

static size_t room(const struct ink_sb *sb)
{
    return sb->cap - 1 - sb->len;
}

size_t ink_sb_room(const struct ink_sb *sb)
{
    return room(sb);
}

void ink_sb_putn(struct ink_sb *sb, const char *s, size_t n)
{
    if (n > room(sb)) {
        n = room(sb);
        sb->truncated = true;
    }
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void ink_sb_puts(struct ink_sb *sb, const char *s)
{
    ink_sb_putn(sb, s, strlen(s));
}

void ink_sb_printf(struct ink_sb *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->buf + sb->len, room(sb) + 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->buf[sb->len] = '\0';
        sb->truncated = true;
        return;
    }
    if ((size_t)n > room(sb)) {
        /* vsnprintf's return value is what it would have written: never add that */
        sb->len = sb->cap - 1;
        sb->truncated = true;
    } else {
        sb->len += (size_t)n;
    }
}

/* The escaped form of one character (or one invalid byte) at s; returns its input length. */
static size_t escape_one(enum ink_sb_escape how, const unsigned char *s, size_t n, char out[16],
                         size_t *out_len)
{
    size_t len = ink_utf8_char_len(s, n);
    unsigned char c = s[0];
    if (how == INK_ESC_JSON) {
        if (len == 0) {
            memcpy(out, "\\ufffd", 6);
            *out_len = 6;
            return 1;
        }
        if (c == '"' || c == '\\') {
            out[0] = '\\';
            out[1] = (char)c;
            *out_len = 2;
        } else if (c == '\n') {
            memcpy(out, "\\n", 2);
            *out_len = 2;
        } else if (c == '\t') {
            memcpy(out, "\\t", 2);
            *out_len = 2;
        } else if (c < 0x20 || c == 0x7f) {
            *out_len = (size_t)snprintf(out, 16, "\\u%04x", c);
        } else {
            memcpy(out, s, len);
            *out_len = len;
        }
        return len;
    }
    if (len == 0 || c < 0x20 || c == 0x7f || c == '\\') {
        *out_len = (size_t)snprintf(out, 16, "\\x%02x", c);
        return 1;
    }
    memcpy(out, s, len);
    *out_len = len;
    return len;
}

/* True when the escaped form of p[0..n) takes at most `limit` bytes. */
static bool escaped_fits(enum ink_sb_escape how, const unsigned char *p, size_t n, size_t limit)
{
    size_t total = 0;
    for (size_t i = 0; i < n;) {
        char piece[16];
        size_t plen;
        i += escape_one(how, p + i, n - i, piece, &plen);
        total += plen;
        if (total > limit)
            return false;
    }
    return true;
}

void ink_sb_escaped(struct ink_sb *sb, enum ink_sb_escape how, const char *s, size_t max_out)
{
    if (!s)
        return;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    size_t left = room(sb) < max_out ? room(sb) : max_out;
    if (escaped_fits(how, p, n, left)) {
        for (size_t i = 0; i < n;) {
            char piece[16];
            size_t plen;
            i += escape_one(how, p + i, n - i, piece, &plen);
            ink_sb_putn(sb, piece, plen);
        }
        return;
    }
    /* cut: whole characters while they and the mark still fit, then the mark */
    size_t mark = strlen(CUT_MARK), written = 0;
    for (size_t i = 0; i < n;) {
        char piece[16];
        size_t plen;
        size_t used = escape_one(how, p + i, n - i, piece, &plen);
        if (written + plen + mark > left)
            break;
        ink_sb_putn(sb, piece, plen);
        written += plen;
        i += used;
    }
    ink_sb_putn(sb, CUT_MARK, left - written < mark ? left - written : mark);
    sb->truncated = true;
}
