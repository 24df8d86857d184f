/* Building application/x-www-form-urlencoded bodies and query strings. */
#include "inklet/alloc.h"
#include "inklet/formdata.h"

#include <stdlib.h>
#include <string.h>

void ink_form_init(struct ink_form *f)
{
    f->cap = 256;
    f->data = ink_malloc(f->cap);
    f->data[0] = '\0';
    f->len = 0;
}

void ink_form_free(struct ink_form *f)
{
    free(f->data);
    f->data = NULL;
    f->len = f->cap = 0;
}

static void reserve(struct ink_form *f, size_t more)
{
    if (f->len + more + 1 <= f->cap)
        return;
    while (f->len + more + 1 > f->cap)
        f->cap *= 2;
    f->data = ink_realloc(f->data, f->cap);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static void put_encoded(struct ink_form *f, const char *s, bool is_key)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    reserve(f, 3 * n);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p) || (is_key && (*p == '[' || *p == ']'))) {
            f->data[f->len++] = (char)*p;
        } else {
            f->data[f->len++] = '%';
            f->data[f->len++] = hex[*p >> 4];
            f->data[f->len++] = hex[*p & 15];
        }
    }
    f->data[f->len] = '\0';
}

void ink_form_add(struct ink_form *f, const char *key, const char *value)
{
    reserve(f, 2);
    if (f->len)
        f->data[f->len++] = '&';
    put_encoded(f, key, true);
    f->data[f->len++] = '=';
    f->data[f->len] = '\0';
    put_encoded(f, value ? value : "", false);
}
