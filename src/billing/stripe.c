/* The Stripe HTTP client: libcurl easy handles sharing one connection/TLS-session cache, a time
 * budget per operation, bounded retries, and Stripe's error object turned into a log line. */
#include "inklet/stripe.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/buf.h"
#include "inklet/deadline.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Stripe's objects are small; a list page of 100 subscriptions is well under this. */
#define RESPONSE_LIMIT (4 * 1024 * 1024)
#define MAX_ATTEMPTS 3
#define BACKOFF_FIRST_MS 250
/* connecting gets at most this much of the budget, so a black-holed address leaves time to
 * retry on another connection */
#define CONNECT_TIMEOUT_MAX_MS 4000

static atomic_ullong calls_ok, calls_failed;
static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
static char *auth_header;

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
    (void)h, (void)access, (void)u;
    pthread_mutex_lock(&share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *u)
{
    (void)h, (void)u;
    pthread_mutex_unlock(&share_locks[data]);
}

bool ink_stripe_configured(void)
{
    return ink_app.cfg.stripe_secret_key && *ink_app.cfg.stripe_secret_key;
}

bool ink_stripe_init(void)
{
    if (!ink_stripe_configured())
        return false;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&share_locks[i], NULL);
    share = curl_share_init();
    if (share) {
        curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    }
    size_t n = strlen(ink_app.cfg.stripe_secret_key) + 32;
    auth_header = ink_malloc(n);
    snprintf(auth_header, n, "Authorization: Bearer %s", ink_app.cfg.stripe_secret_key);
    return true;
}

void ink_stripe_shutdown(void)
{
    if (share) {
        curl_share_cleanup(share);
        share = NULL;
        for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_destroy(&share_locks[i]);
    }
    if (auth_header) {
        /* the key does not linger in freed memory */
        memset(auth_header, 0, strlen(auth_header));
        free(auth_header);
        auth_header = NULL;
    }
}

int64_t ink_stripe_budget(void)
{
    return ink_now_mono_ms() + (int64_t)ink_app.cfg.stripe_timeout * 1000;
}

/* ---- one attempt -------------------------------------------------------------------------- */

struct attempt {
    struct ink_buf body;
    long status;
    CURLcode code;
    int should_retry; /* Stripe-Should-Retry: -1 absent, 0 false, 1 true */
    char request_id[64];
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct attempt *a = arg;
    return ink_buf_append(&a->body, data, size * n) ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct attempt *a = arg;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    if (!colon)
        return len;
    size_t klen = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (klen == 19 && strncasecmp(data, "Stripe-Should-Retry", klen) == 0)
        a->should_retry = vlen == 4 && strncasecmp(v, "true", 4) == 0 ? 1 : 0;
    else if (klen == 10 && strncasecmp(data, "Request-Id", klen) == 0 &&
             vlen < sizeof a->request_id) {
        /* kept only when it looks like Stripe's (req_ + alphanumerics): it goes into a log */
        bool sane = true;
        for (size_t i = 0; i < vlen && sane; i++)
            sane = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                   (v[i] >= '0' && v[i] <= '9') || v[i] == '_';
        if (sane) {
            memcpy(a->request_id, v, vlen);
            a->request_id[vlen] = '\0';
        }
    }
    return len;
}

static void perform(const char *method, const char *url, const struct ink_form *form,
                    const char *idempotency_key, int64_t remaining_ms, struct attempt *a)
{
    CURL *h = curl_easy_init();
    if (!h) {
        a->code = CURLE_OUT_OF_MEMORY;
        return;
    }
    struct curl_slist *headers = curl_slist_append(NULL, auth_header);
    headers = curl_slist_append(headers, "Stripe-Version: " INK_STRIPE_API_VERSION);
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
    char idem[160];
    if (idempotency_key) {
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", idempotency_key);
        headers = curl_slist_append(headers, idem);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)remaining_ms);
    curl_easy_setopt(
        h, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(remaining_ms < CONNECT_TIMEOUT_MAX_MS ? remaining_ms : CONNECT_TIMEOUT_MAX_MS));
    curl_easy_setopt(h, CURLOPT_USERAGENT, "inkletd/" INKLET_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, a);
    if (share)
        curl_easy_setopt(h, CURLOPT_SHARE, share);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, form ? form->data : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(form ? form->len : 0));
    } else if (strcmp(method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    a->code = curl_easy_perform(h);
    if (a->code == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
}

/* Stripe's advice: retry connection errors, 409 (an in-flight request with the same key, lock
 * timeouts), 429 and 5xx — unless Stripe-Should-Retry says otherwise. A timeout is not retried:
 * it used up the budget. */
static bool retryable(const struct attempt *a)
{
    if (a->code == CURLE_OPERATION_TIMEDOUT)
        return false;
    if (a->code != CURLE_OK)
        return a->code != CURLE_WRITE_ERROR; /* an oversized answer will not shrink */
    if (a->should_retry >= 0)
        return a->should_retry == 1;
    return a->status == 409 || a->status == 429 || a->status >= 500;
}

/* Logs what Stripe said (type, code, message; never the request) — for the operator only. */
static void log_failure(const char *method, const char *path, const struct attempt *a, int attempts)
{
    if (a->code != CURLE_OK) {
        ink_warn("stripe: %s %s failed after %d attempt(s): %s", method, path, attempts,
                 curl_easy_strerror(a->code));
        return;
    }
    json_t *root = NULL;
    const char *why = NULL, *type = NULL, *code = NULL, *message = NULL;
    if (a->body.len && ink_json_parse_object(a->body.data, a->body.len, &root, &why) == INK_OK) {
        json_t *err = json_object_get(root, "error");
        type = json_string_value(json_object_get(err, "type"));
        code = json_string_value(json_object_get(err, "code"));
        message = json_string_value(json_object_get(err, "message"));
    }
    ink_warn("stripe: %s %s answered %ld after %d attempt(s): type=%s code=%s message=%.300s "
             "request=%s",
             method, path, a->status, attempts, type ? type : "-", code ? code : "-",
             message ? message : "-", a->request_id[0] ? a->request_id : "-");
    json_decref(root);
}

enum ink_status ink_stripe_call(const char *method, const char *path, const struct ink_form *form,
                                const char *idempotency_key, int64_t deadline, json_t **out)
{
    *out = NULL;
    if (!auth_header)
        return INK_UNAVAILABLE;
    bool is_get = strcmp(method, "GET") == 0;
    size_t n = strlen(ink_app.cfg.stripe_api_base) + strlen(path) + (form ? form->len : 0) + 2;
    char *url = ink_malloc(n);
    snprintf(url, n, "%s%s%s%s", ink_app.cfg.stripe_api_base, path,
             is_get && form && form->len ? "?" : "", is_get && form ? form->data : "");
    /* retrying a POST is only safe with an idempotency key */
    bool may_retry = strcmp(method, "POST") != 0 || idempotency_key;
    int64_t paused = ink_deadline_pause();
    struct attempt a;
    int attempts = 0;
    int64_t backoff = BACKOFF_FIRST_MS;
    for (;;) {
        memset(&a, 0, sizeof a);
        a.should_retry = -1;
        ink_buf_init(&a.body, RESPONSE_LIMIT);
        int64_t remaining = deadline - ink_now_mono_ms();
        if (remaining <= 0) {
            a.code = CURLE_OPERATION_TIMEDOUT;
            break;
        }
        perform(method, url, is_get ? NULL : form, idempotency_key, remaining, &a);
        attempts++;
        if (a.code == CURLE_OK && a.status >= 200 && a.status < 300)
            break;
        if (!may_retry || attempts >= MAX_ATTEMPTS || !retryable(&a) ||
            ink_now_mono_ms() + backoff + 100 >= deadline)
            break;
        ink_buf_free(&a.body);
        usleep((useconds_t)backoff * 1000);
        backoff *= 2;
    }
    ink_deadline_resume(paused);
    free(url);
    enum ink_status st = INK_UPSTREAM;
    if (a.code == CURLE_OK && a.status >= 200 && a.status < 300) {
        const char *why = NULL;
        if (ink_json_parse_object(a.body.data ? a.body.data : "", a.body.len, out, &why) == INK_OK)
            st = INK_OK;
        else
            ink_warn("stripe: %s %s answered %ld with a body that is not a JSON object (%s)",
                     method, path, a.status, why);
    } else if (a.code == CURLE_OK && a.status == 404) {
        st = INK_NOT_FOUND;
    } else {
        log_failure(method, path, &a, attempts);
    }
    ink_buf_free(&a.body);
    atomic_fetch_add_explicit(st == INK_OK || st == INK_NOT_FOUND ? &calls_ok : &calls_failed, 1,
                              memory_order_relaxed);
    return st;
}

void ink_stripe_stats(unsigned long long *ok, unsigned long long *failed)
{
    *ok = atomic_load(&calls_ok);
    *failed = atomic_load(&calls_failed);
}
