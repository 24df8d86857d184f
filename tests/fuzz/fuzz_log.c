/* libFuzzer driver: ink_log_format_request, the access-log line builder that once overflowed its
 * stack buffer on a 1 KiB HTTP method. The input is split at NUL bytes into the request id,
 * method, route, user id and client IP (missing fields are NULL); the first byte, when present,
 * also picks the status.
 *
 * Checked besides memory safety: the JSON line is exactly one JSON object (jansson parses it with
 * duplicate keys rejected), has no newline and was not cut; the text line holds no control
 * character or DEL. */
#include "inklet/log.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *fields[5] = {NULL, NULL, NULL, NULL, NULL};
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= size && nf < 5; i++)
        if (i == size || copy[i] == '\0') {
            fields[nf++] = copy + start;
            start = i + 1;
        }
    struct ink_request_log f = {
        fields[0],          fields[1], fields[2], size ? 100u + data[0] * 2u : 0u,
        (double)size / 7.0, fields[3], fields[4]};
    char line[INK_LOG_REQUEST_LINE_MAX];
    size_t n = ink_log_format_request(&f, true, "2026-12-01T10:30:00.123Z", line, sizeof line);
    if (n != strlen(line) || n >= sizeof line - 1 || memchr(line, '\n', n))
        abort();
    json_error_t err;
    json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &err);
    if (!json_is_object(obj))
        abort();
    json_decref(obj);
    n = ink_log_format_request(&f, false, "2026-12-01T10:30:00.123Z", line, sizeof line);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            abort();
    free(copy);
    return 0;
}
