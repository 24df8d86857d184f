/* libFuzzer driver: ink_config_parse_rate ("requests/seconds").
 * Accepted input must be exactly digits '/' digits with both parts in range, and the parsed
 * values must print back to a string that parses to the same values. Rejected input must leave
 * the output untouched. */
#include "inklet/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    struct ink_rate r = {12345, 54321};
    if (ink_config_parse_rate(s, &r)) {
        size_t digits1 = strspn(s, "0123456789");
        if (digits1 == 0 || s[digits1] != '/')
            __builtin_trap();
        size_t digits2 = strspn(s + digits1 + 1, "0123456789");
        if (digits2 == 0 || s[digits1 + 1 + digits2] != '\0')
            __builtin_trap();
        if (r.requests < 1 || r.seconds < 1 || r.seconds > 86400u * 365u)
            __builtin_trap();
        char back[32];
        snprintf(back, sizeof back, "%u/%u", r.requests, r.seconds);
        struct ink_rate again;
        if (!ink_config_parse_rate(back, &again) || again.requests != r.requests ||
            again.seconds != r.seconds)
            __builtin_trap();
    } else if (r.requests != 12345 || r.seconds != 54321) {
        __builtin_trap();
    }
    free(s);
    return 0;
}
