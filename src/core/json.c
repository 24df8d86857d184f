#include "inklet/json.h"

#include "inklet/alloc.h"
#include "inklet/timeutil.h"

#include <stdlib.h>
#include <string.h>

enum ink_status ink_json_parse_object(const char *buf, size_t len, json_t **out, const char **why)
{
    *out = NULL;
    if (len == 0) {
        *why = "request body is empty";
        return INK_INVALID;
    }
    if (memchr(buf, '\0', len)) {
        *why = "request body contains a NUL byte";
        return INK_INVALID;
    }
    json_error_t err;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        *why = "request body is not valid JSON";
        return INK_INVALID;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *why = "request body must be a JSON object";
        return INK_INVALID;
    }
    *out = root;
    return INK_OK;
}

enum ink_status ink_json_opt_string_or_null(json_t *obj, const char *key, const char **out,
                                            bool *is_null)
{
    *out = NULL;
    if (is_null)
        *is_null = false;
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v)
        return INK_OK;
    if (json_is_null(v)) {
        if (is_null)
            *is_null = true;
        return INK_OK;
    }
    if (!json_is_string(v))
        return INK_INVALID;
    *out = json_string_value(v);
    return INK_OK;
}

enum ink_status ink_json_opt_string(json_t *obj, const char *key, const char **out)
{
    return ink_json_opt_string_or_null(obj, key, out, NULL);
}

char *ink_json_dump(const json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s)
        abort(); /* only fails on out-of-memory */
    *len = strlen(s);
    return s;
}

json_t *ink_json_time(long long epoch)
{
    if (epoch <= 0)
        return json_null();
    char t[21];
    ink_time_rfc3339((time_t)epoch, t);
    return json_string(t);
}

json_t *ink_json_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}
