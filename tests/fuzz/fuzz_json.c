/* libFuzzer driver: ink_json_parse_object on untrusted request bodies.
 * Invariants checked beyond memory safety: an accepted body is an object, every key reads back
 * through the typed accessor without crashing, and its compact dump parses again to an equal
 * object. */
#include "inklet/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = NULL;
    const char *why = NULL;
    if (ink_json_parse_object((const char *)data, size, &obj, &why) != INK_OK) {
        if (obj || !why)
            __builtin_trap();
        return 0;
    }
    if (!json_is_object(obj) || memchr(data, '\0', size))
        __builtin_trap();
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        const char *s = NULL;
        bool is_null = false;
        enum ink_status st = ink_json_opt_string_or_null(obj, key, &s, &is_null);
        if (json_is_string(value) && (st != INK_OK || s != json_string_value(value)))
            __builtin_trap();
        if (json_is_null(value) && (st != INK_OK || s || !is_null))
            __builtin_trap();
        if (!json_is_string(value) && !json_is_null(value) && st != INK_INVALID)
            __builtin_trap();
    }
    size_t len = 0;
    char *text = ink_json_dump(obj, &len);
    json_t *again = NULL;
    if (ink_json_parse_object(text, len, &again, &why) != INK_OK || !json_equal(obj, again))
        __builtin_trap();
    json_decref(again);
    free(text);
    json_decref(obj);
    return 0;
}
