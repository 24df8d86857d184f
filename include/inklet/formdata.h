/** Parsing application/x-www-form-urlencoded bodies (Apple's form_post callback), by hand and
 *  strictly: libmicrohttpd's post processor is not used (its history includes CVE-2023-27371).
 *  '+' is a space; every '%' must be followed by two hex digits; a decoded NUL, invalid UTF-8, a
 *  repeated name (parameter pollution), an empty name, more than INK_FORMDATA_MAX_FIELDS fields
 *  or a name/value over its limit make the whole body invalid. */
#ifndef INKLET_FORMDATA_H
#define INKLET_FORMDATA_H
#include <stdbool.h>
#include <stddef.h>

#define INK_FORMDATA_MAX_FIELDS 16
#define INK_FORMDATA_NAME_MAX 64
#define INK_FORMDATA_VALUE_MAX (16 * 1024)

struct ink_formdata {
    size_t count;
    struct {
        char *name, *value; /* decoded, NUL-terminated, owned */
    } fields[INK_FORMDATA_MAX_FIELDS];
};

/** Parses body[0..len). False (and *why, static) on anything above; *out is then empty. */
bool ink_formdata_parse(const char *body, size_t len, struct ink_formdata *out, const char **why);
/** The value of `name`, or NULL. */
const char *ink_formdata_get(const struct ink_formdata *f, const char *name);
void ink_formdata_free(struct ink_formdata *f);

#endif
