/** A bounded string builder over a caller's fixed buffer (curl's dynbuf idea, without the heap).
 *
 *  Every append is clamped to the space left, the text is always NUL-terminated, and
 *  `truncated` records that something did not fit: nothing written through it can overflow,
 *  however long the input. The escaping appenders never write half an escape sequence or half a
 *  UTF-8 character, so a truncated JSON string body is still well-formed. */
#ifndef INKLET_STRBUF_H
#define INKLET_STRBUF_H
#include <stdbool.h>
#include <stddef.h>

struct ink_sb {
    char *buf;
    size_t cap; /* bytes available including the NUL */
    size_t len;
    bool truncated;
};

/** Starts an empty string in buf[cap] (cap >= 1). */
void ink_sb_init(struct ink_sb *sb, char *buf, size_t cap);
/** Appends n bytes, or as many as fit. */
void ink_sb_putn(struct ink_sb *sb, const char *s, size_t n);
void ink_sb_puts(struct ink_sb *sb, const char *s);
/** printf-style append; output that does not fit is cut (and `truncated` set). */
void ink_sb_printf(struct ink_sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** How ink_sb_escaped() renders text taken from outside. */
enum ink_sb_escape {
    INK_ESC_JSON, /* the body of a JSON string: \" \\ \n \t \u00XX; invalid UTF-8 → \ufffd */
    INK_ESC_TEXT, /* a text log field: bytes < 0x20, DEL, backslash and invalid UTF-8 → \xNN, so
                     a value can never start a new line or fake another field's escape */
};

/** Appends `s` (NULL gives nothing) escaped, using at most `max_out` bytes of the buffer. A
 *  value whose escaped form does not fit is cut at a character boundary and ends in "..." (within
 *  the same `max_out`), so a reader sees it was cut and the caller's closing text still fits when
 *  it kept that room out of `max_out`. */
void ink_sb_escaped(struct ink_sb *sb, enum ink_sb_escape how, const char *s, size_t max_out);
/** Bytes still free (not counting the NUL). */
size_t ink_sb_room(const struct ink_sb *sb);

#endif
