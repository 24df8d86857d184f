#include "inklet/buf.h"

#include "inklet/alloc.h"

#include <stdlib.h>
#include <string.h>

void ink_buf_init(struct ink_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit;
}

bool ink_buf_append(struct ink_buf *b, const void *p, size_t n)
{
    if (n > b->limit - b->len)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->limit + 1)
            cap = b->limit + 1;
        b->data = ink_realloc(b->data, cap);
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return true;
}

void ink_buf_free(struct ink_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
