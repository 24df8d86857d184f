/* The JWKS cache: one set of keys per provider, replaced whole on each successful fetch. Keys
 * are handed out as new references, so replacing a set never pulls a key from under a caller. */
#include "inklet/jwks.h"

#include "inklet/alloc.h"
#include "inklet/http_client.h"
#include "inklet/idtoken.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JWKS_MAX_BYTES (256 * 1024)

struct ink_jwks {
    char *url;
    int64_t timeout_ms;
    ink_jwks_fetch_fn fetch;
    void *ctx;
    int64_t (*clock_ms)(void);
    pthread_mutex_t lock;
    pthread_cond_t fetched;
    struct ink_jwk_set *set; /* NULL until a fetch succeeded */
    int64_t expires_ms;      /* when the set's max-age runs out */
    int64_t last_attempt_ms;
    bool attempted, fetching;
    unsigned long fetches;
};

long ink_jwks_parse_max_age(const char *cc)
{
    long max_age = -1;
    for (const char *p = cc; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        if ((n == 8 && strncasecmp(p, "no-store", 8) == 0) ||
            (n == 8 && strncasecmp(p, "no-cache", 8) == 0))
            return -1;
        if (n > 8 && strncasecmp(p, "max-age=", 8) == 0) {
            long v = 0;
            size_t i = 8;
            for (; i < n && isdigit((unsigned char)p[i]); i++)
                if (v < 100000000) /* saturates: the caller caps it anyway */
                    v = v * 10 + (p[i] - '0');
            while (i < n && p[i] == ' ')
                i++;
            max_age = i == n && isdigit((unsigned char)p[8]) ? v : -1;
        }
        p += n;
    }
    return max_age;
}

static bool http_fetch(const char *url, int64_t timeout_ms, char **body, size_t *len, long *max_age,
                       void *ctx)
{
    (void)ctx;
    static const char *const capture[] = {"Cache-Control", NULL};
    static const char *const headers[] = {"Accept: application/json", NULL};
    struct ink_http_request rq = {.method = "GET",
                                  .url = url,
                                  .headers = headers,
                                  .timeout_ms = timeout_ms,
                                  .max_response = JWKS_MAX_BYTES,
                                  .capture = capture};
    struct ink_http_response r;
    ink_http_perform(&rq, &r);
    bool ok = r.curl_code == 0 && r.status == 200 && r.body.len > 0;
    if (ok) {
        *body = r.body.data; /* handed over */
        *len = r.body.len;
        r.body.data = NULL;
        *max_age = ink_jwks_parse_max_age(r.captured[0]);
    } else {
        ink_warn("oauth: fetching the keys at %s failed: %s (HTTP %ld)", url, ink_http_error(&r),
                 r.status);
    }
    ink_http_response_free(&r);
    return ok;
}

struct ink_jwks *ink_jwks_new_with(const char *url, int64_t timeout_ms, ink_jwks_fetch_fn fetch,
                                   void *ctx, int64_t (*clock_ms)(void))
{
    struct ink_jwks *j = ink_calloc(1, sizeof *j);
    j->url = ink_strdup(url);
    j->timeout_ms = timeout_ms;
    j->fetch = fetch;
    j->ctx = ctx;
    j->clock_ms = clock_ms;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->fetched, NULL);
    return j;
}

struct ink_jwks *ink_jwks_new(const char *url, int64_t timeout_ms)
{
    return ink_jwks_new_with(url, timeout_ms, http_fetch, NULL, ink_now_mono_ms);
}

void ink_jwks_free(struct ink_jwks *j)
{
    if (!j)
        return;
    ink_jwk_set_free(j->set);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->fetched);
    free(j->url);
    free(j);
}

unsigned long ink_jwks_fetches(struct ink_jwks *j)
{
    pthread_mutex_lock(&j->lock);
    unsigned long n = j->fetches;
    pthread_mutex_unlock(&j->lock);
    return n;
}

static EVP_PKEY *find_ref(struct ink_jwks *j, const char *kid)
{
    EVP_PKEY *k = ink_jwk_set_find(j->set, kid);
    if (k)
        EVP_PKEY_up_ref(k);
    return k;
}

/* Called with the lock held: whether the rules allow a fetch now. */
static bool may_fetch(struct ink_jwks *j, int64_t now, bool have_key)
{
    if (j->fetching)
        return false;
    if (!j->attempted)
        return true;
    int64_t since = now - j->last_attempt_ms;
    if (!j->set || now >= j->expires_ms) /* nothing yet, or stale: retry after failures */
        return since >= INK_JWKS_RETRY_MS;
    return !have_key && since >= INK_JWKS_REFETCH_MIN_MS; /* an unknown kid in a fresh set */
}

EVP_PKEY *ink_jwks_key(struct ink_jwks *j, const char *kid)
{
    pthread_mutex_lock(&j->lock);
    int64_t now = j->clock_ms();
    EVP_PKEY *key = find_ref(j, kid);
    bool fresh = j->set && now < j->expires_ms;
    if ((key && fresh) || !may_fetch(j, now, key != NULL)) {
        /* a fetch is under way: wait for it rather than fail */
        while (!key && j->fetching)
            pthread_cond_wait(&j->fetched, &j->lock);
        if (!key)
            key = find_ref(j, kid);
        pthread_mutex_unlock(&j->lock);
        return key;
    }
    j->fetching = true;
    j->attempted = true;
    j->last_attempt_ms = now;
    j->fetches++;
    pthread_mutex_unlock(&j->lock);

    char *body = NULL;
    size_t len = 0;
    long max_age = -1;
    struct ink_jwk_set *set = NULL;
    const char *why = NULL;
    if (j->fetch(j->url, j->timeout_ms, &body, &len, &max_age, j->ctx)) {
        set = ink_jwk_set_parse(body, len, &why);
        if (!set)
            ink_warn("oauth: the keys at %s are unusable (%s); keeping the ones cached", j->url,
                     why);
    }
    free(body);
    if (max_age < 0)
        max_age = INK_JWKS_MAX_AGE_DEFAULT;
    if (max_age < INK_JWKS_MAX_AGE_MIN)
        max_age = INK_JWKS_MAX_AGE_MIN;
    if (max_age > INK_JWKS_MAX_AGE_MAX)
        max_age = INK_JWKS_MAX_AGE_MAX;

    pthread_mutex_lock(&j->lock);
    if (set) {
        ink_jwk_set_free(j->set);
        j->set = set;
        j->expires_ms = j->clock_ms() + max_age * 1000;
    }
    j->fetching = false;
    pthread_cond_broadcast(&j->fetched);
    if (key)
        EVP_PKEY_free(key);
    key = find_ref(j, kid);
    pthread_mutex_unlock(&j->lock);
    return key;
}
