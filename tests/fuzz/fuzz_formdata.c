/* libFuzzer driver: ink_formdata_parse on hostile form bodies (Apple's form_post callback).
 * Accepted ⇒ at most 16 fields, names unique, non-empty and within 64 bytes, values within 16 KiB,
 * and no decoded NUL (strlen agrees with what was decoded). */
#include "inklet/formdata.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ink_formdata f;
    const char *why;
    if (ink_formdata_parse((const char *)data, size, &f, &why)) {
        if (f.count > INK_FORMDATA_MAX_FIELDS)
            __builtin_trap();
        for (size_t i = 0; i < f.count; i++) {
            size_t n = strlen(f.fields[i].name);
            if (n == 0 || n > INK_FORMDATA_NAME_MAX ||
                strlen(f.fields[i].value) > INK_FORMDATA_VALUE_MAX)
                __builtin_trap();
            for (size_t k = 0; k < i; k++)
                if (strcmp(f.fields[i].name, f.fields[k].name) == 0)
                    __builtin_trap();
        }
        ink_formdata_free(&f);
    } else if (f.count != 0) {
        __builtin_trap();
    }
    return 0;
}
