/** Growable byte buffer with a hard cap. */
#ifndef INKLET_BUF_H
#define INKLET_BUF_H
#include <stdbool.h>
#include <stddef.h>

struct ink_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t limit; /* appends beyond this fail */
};

void ink_buf_init(struct ink_buf *b, size_t limit);
/** Appends n bytes; returns false (buffer unchanged) if the limit would be exceeded. */
bool ink_buf_append(struct ink_buf *b, const void *p, size_t n);
void ink_buf_free(struct ink_buf *b);

#endif
