#include "inklet/formdata.h"

#include "inklet/alloc.h"
#include "inklet/ids.h"
#include "inklet/text.h"

#include <stdlib.h>
#include <string.h>

/* Decodes s[0..n) into a new string; NULL when a '%' is not followed by two hex digits, the
 * result holds a NUL or is not valid UTF-8, or it is longer than max. */
static char *decode(const char *s, size_t n, size_t max)
{
    char *out = ink_malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 2 < n ? ink_hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? ink_hex_digit(s[i + 2]) : -1;
            if (lo < 0) {
                free(out);
                return NULL;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || o >= max) {
            free(out);
            return NULL;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    for (size_t k = 0; k < o;) {
        size_t cl = ink_utf8_char_len((const unsigned char *)out + k, o - k);
        if (!cl) {
            free(out);
            return NULL;
        }
        k += cl;
    }
    return out;
}

void ink_formdata_free(struct ink_formdata *f)
{
    for (size_t i = 0; i < f->count; i++) {
        free(f->fields[i].name);
        free(f->fields[i].value);
    }
    f->count = 0;
}

const char *ink_formdata_get(const struct ink_formdata *f, const char *name)
{
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->fields[i].name, name) == 0)
            return f->fields[i].value;
    return NULL;
}

static bool fail(struct ink_formdata *out, const char **why, const char *what)
{
    ink_formdata_free(out);
    *why = what;
    return false;
}

bool ink_formdata_parse(const char *body, size_t len, struct ink_formdata *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    size_t i = 0;
    while (i < len) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end > i) { /* empty pairs ("a=1&&b=2") are skipped, as browsers do */
            const char *eq = memchr(body + i, '=', end - i);
            size_t name_len = eq ? (size_t)(eq - (body + i)) : end - i;
            if (out->count == INK_FORMDATA_MAX_FIELDS)
                return fail(out, why, "too many fields");
            char *name = decode(body + i, name_len, INK_FORMDATA_NAME_MAX);
            if (!name || !*name) {
                free(name);
                return fail(out, why, "a field name is empty, too long or badly encoded");
            }
            if (ink_formdata_get(out, name)) {
                free(name);
                return fail(out, why, "a field is repeated");
            }
            const char *v = eq ? eq + 1 : body + end;
            char *value = decode(v, (size_t)(body + end - v), INK_FORMDATA_VALUE_MAX);
            if (!value) {
                free(name);
                return fail(out, why, "a field value is too long or badly encoded");
            }
            out->fields[out->count].name = name;
            out->fields[out->count].value = value;
            out->count++;
        }
        i = end + 1;
    }
    return true;
}
