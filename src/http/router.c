#include "inklet/http.h"

#include <stdio.h>
#include <string.h>

/* Matches one pattern against a path copy, splitting segments in place only on success. */
static bool match_pattern(const char *pattern, const char *path, char *scratch, const char **params)
{
    size_t np = 0;
    const char *p = pattern, *s = path;
    char *out = scratch;
    memcpy(out, path, strlen(path) + 1); /* scratch holds strlen(path)+1 bytes by contract */
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t seg = strcspn(s, "/");
            if (!close || seg == 0 || np >= INK_MAX_PATH_PARAMS)
                return false;
            params[np++] = out + (s - path);
            p = close + 1;
            s += seg;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    if (*p || *s)
        return false;
    /* terminate each parameter at its segment end */
    for (size_t i = 0; i < np; i++) {
        char *end = (char *)params[i] + strcspn(params[i], "/");
        *end = '\0';
    }
    for (size_t i = np; i < INK_MAX_PATH_PARAMS; i++)
        params[i] = NULL;
    return true;
}

enum ink_status ink_route_match(const struct ink_route *table, size_t count, const char *method,
                                const char *path, char *scratch, const struct ink_route **route,
                                const char **params, char *allow, size_t allow_len)
{
    size_t alen = 0;
    bool path_matched = false;
    if (allow_len)
        allow[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        const char *tmp[INK_MAX_PATH_PARAMS];
        if (!match_pattern(table[i].pattern, path, scratch, tmp))
            continue;
        /* HEAD is GET without a body (MHD drops the body), as load balancers expect */
        if (strcmp(table[i].method, method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(table[i].method, "GET") == 0)) {
            *route = &table[i];
            memcpy(params, tmp, sizeof tmp);
            return INK_OK;
        }
        path_matched = true;
        /* list each method once */
        char needle[16];
        snprintf(needle, sizeof needle, "%s", table[i].method);
        bool dup = false;
        for (const char *a = allow; a && *a;) {
            size_t l = strcspn(a, ",");
            if (l == strlen(needle) && strncmp(a, needle, l) == 0)
                dup = true;
            a += l;
            while (*a == ',' || *a == ' ')
                a++;
        }
        if (!dup && alen + strlen(needle) + 3 < allow_len)
            alen +=
                (size_t)snprintf(allow + alen, allow_len - alen, "%s%s", alen ? ", " : "", needle);
    }
    return path_matched ? INK_METHOD : INK_NOT_FOUND;
}
