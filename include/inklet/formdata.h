/** application/x-www-form-urlencoded: building bodies and query strings (Stripe, the OAuth
 *  providers), and parsing bodies (Apple's form_post callback), by hand and strictly:
 * libmicrohttpd's post processor is not used (its history includes CVE-2023-27371).
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

/* ---- building ----------------------------------------------------------------------------- */

/** An application/x-www-form-urlencoded body (or query string) built pair by pair. Keys and
 *  values are percent-encoded except for RFC 3986 unreserved characters, and brackets in keys
 *  (Stripe's "metadata[userId]" syntax, which Stripe reads either way and which keeps logs
 *  readable). */
struct ink_form {
    char *data; /* NUL-terminated; "" when empty */
    size_t len, cap;
};

void ink_form_init(struct ink_form *f);
void ink_form_add(struct ink_form *f, const char *key, const char *value);
void ink_form_free(struct ink_form *f);

#endif
