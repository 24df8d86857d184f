/* libFuzzer driver: our own parsers of request-line and header bytes (libmicrohttpd parses the
 * wire format; these decide what the parts mean). The first byte picks the parser, the rest is
 * its input:
 *   0: "METHOD\nPATH" through ink_route_match over the real route table (src/http/routes.c, the
 *      handlers stubbed): compared with a segment-wise reference of the contract — the first
 *      route in table order whose pattern matches (a {name} is one non-empty segment) and whose
 *      method is METHOD (HEAD also takes GET routes) is chosen, with its parameters exactly the
 *      path's segments, unused slots NULL; else 405 with Allow listing each method of the
 *      matching routes once, in table order; else 404 with an empty Allow;
 *   1: "CORS_ORIGINS value\nOrigin header" through ink_app_init_derived + ink_app_origin_allowed:
 *      allowed ⇔ the origin equals one of the comma-separated, trimmed, non-empty entries;
 *   2: a Cache-Control value through ink_jwks_parse_max_age (the JWKS response's header):
 *      compared with a reference of the rule — the last "max-age=DIGITS" directive (trailing
 *      spaces allowed, value saturating at 999999999) unless a directive is exactly no-store or
 *      no-cache; -1 otherwise. */
#include "inklet/app.h"
#include "inklet/http.h"
#include "inklet/jwks.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ALLOW_LEN 96 /* struct conn_ctx's allow[] in src/http/server.c */
#define MAX_SEGS 64

/* ---- routes ------------------------------------------------------------------------------ */

/* Splits s (modified) at '/' into at most MAX_SEGS segments; -1 when there are more. */
static int split(char *s, char **segs)
{
    int n = 0;
    for (char *p = s;; p++) {
        if (n == MAX_SEGS)
            return -1;
        segs[n++] = p;
        p = strchr(p, '/');
        if (!p)
            return n;
        *p = '\0';
    }
}

/* The reference matcher: params (into path_copy) on a match. */
static bool ref_match(const char *pattern, const char *path, char *path_copy, const char **params)
{
    char pat[128], *ps[MAX_SEGS], *ss[MAX_SEGS];
    if (strlen(pattern) >= sizeof pat)
        abort();
    strcpy(pat, pattern);
    strcpy(path_copy, path);
    int np = split(pat, ps), ns = split(path_copy, ss);
    if (np < 0 || ns < 0 || np != ns)
        return false;
    size_t k = 0;
    for (int i = 0; i < np; i++) {
        size_t l = strlen(ps[i]);
        if (l >= 2 && ps[i][0] == '{' && ps[i][l - 1] == '}') {
            if (!*ss[i])
                return false;
            params[k++] = ss[i];
        } else if (strcmp(ps[i], ss[i]) != 0) {
            return false;
        }
    }
    for (; k < INK_MAX_PATH_PARAMS; k++)
        params[k] = NULL;
    return true;
}

static void check_route(const char *method, const char *path)
{
    size_t len = strlen(path);
    char *scratch = malloc(len + 1), *copy = malloc(len + 1);
    const struct ink_route *route = NULL;
    const char *params[INK_MAX_PATH_PARAMS];
    char allow[ALLOW_LEN];
    enum ink_status st = ink_route_match(ink_routes, ink_routes_count, method, path, scratch,
                                         &route, params, allow, sizeof allow);
    /* the reference */
    const struct ink_route *want = NULL;
    const char *want_params[INK_MAX_PATH_PARAMS];
    char want_allow[ALLOW_LEN] = "";
    bool path_matched = false;
    for (size_t i = 0; i < ink_routes_count && !want; i++) {
        const char *tmp[INK_MAX_PATH_PARAMS];
        if (!ref_match(ink_routes[i].pattern, path, copy, tmp))
            continue;
        const char *m = ink_routes[i].method;
        if (strcmp(m, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(m, "GET") == 0)) {
            want = &ink_routes[i];
            memcpy(want_params, tmp, sizeof tmp);
            break;
        }
        path_matched = true;
        /* is m listed already? */
        bool dup = false;
        for (size_t j = 0; j < i; j++) {
            const char *q[INK_MAX_PATH_PARAMS];
            char *c2 = malloc(len + 1);
            if (strcmp(ink_routes[j].method, m) == 0 &&
                ref_match(ink_routes[j].pattern, path, c2, q))
                dup = true;
            free(c2);
        }
        if (!dup) {
            size_t al = strlen(want_allow);
            if (al + strlen(m) + 3 >= sizeof want_allow)
                abort(); /* the table's methods no longer fit Allow: widen ALLOW_LEN */
            snprintf(want_allow + al, sizeof want_allow - al, "%s%s", al ? ", " : "", m);
        }
    }
    if (want) {
        if (st != INK_OK || route != want)
            abort();
        for (size_t k = 0; k < INK_MAX_PATH_PARAMS; k++) {
            if (!want_params[k] != !params[k])
                abort();
            if (params[k] && strcmp(params[k], want_params[k]) != 0)
                abort();
            /* parameters point into the caller's scratch copy */
            if (params[k] && (params[k] < scratch || params[k] > scratch + len))
                abort();
        }
    } else if (path_matched) {
        if (st != INK_METHOD || strcmp(allow, want_allow) != 0)
            abort();
    } else if (st != INK_NOT_FOUND || allow[0] != '\0') {
        abort();
    }
    free(scratch);
    free(copy);
}

/* ---- CORS -------------------------------------------------------------------------------- */

static bool ref_origin_allowed(const char *list, const char *origin)
{
    char *copy = strdup(list);
    bool allowed = false;
    for (char *tok = copy; tok && !allowed;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        while (isspace((unsigned char)*tok))
            tok++;
        size_t n = strlen(tok);
        while (n && isspace((unsigned char)tok[n - 1]))
            tok[--n] = '\0';
        allowed = n > 0 && strcmp(tok, origin) == 0;
        tok = comma ? comma + 1 : NULL;
    }
    free(copy);
    return allowed;
}

static void check_cors(const char *list, const char *origin)
{
    memset(&ink_app, 0, sizeof ink_app);
    ink_app.cfg.cors_origins = strdup(list);
    ink_app_init_derived();
    if (ink_app_origin_allowed(origin) != ref_origin_allowed(list, origin))
        abort();
    if (ink_app_origin_allowed(NULL))
        abort();
    ink_app_free();
}

/* ---- Cache-Control ----------------------------------------------------------------------- */

static long ref_max_age(const char *cc)
{
    long max_age = -1;
    for (const char *p = cc; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        if (n == 8 && (strncasecmp(p, "no-store", 8) == 0 || strncasecmp(p, "no-cache", 8) == 0))
            return -1;
        if (n > 8 && strncasecmp(p, "max-age=", 8) == 0) {
            size_t d = 8;
            while (d < n && isdigit((unsigned char)p[d]))
                d++;
            size_t sp = d;
            while (sp < n && p[sp] == ' ')
                sp++;
            if (d > 8 && sp == n) {
                long v = 0;
                for (size_t i = 8; i < d; i++)
                    v = v < 100000000 ? v * 10 + (p[i] - '0') : v;
                max_age = v;
            } else {
                max_age = -1;
            }
        }
        p += n;
    }
    return max_age;
}

static void check_cache_control(const char *cc)
{
    long got = ink_jwks_parse_max_age(cc);
    if (got < -1 || got > 999999999 || got != ref_max_age(cc))
        abort();
    if (ink_jwks_parse_max_age(NULL) != -1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* header values and paths are C strings: a NUL ends the input */
    char *in = malloc(size);
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    char *nl = strchr(in, '\n');
    switch (data[0] % 3) {
    case 0:
        if (nl) {
            *nl = '\0';
            check_route(in, nl + 1);
        }
        break;
    case 1:
        if (nl) {
            *nl = '\0';
            check_cors(in, nl + 1);
        }
        break;
    default:
        check_cache_control(in);
        break;
    }
    free(in);
    return 0;
}
