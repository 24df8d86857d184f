/* The Stripe API client over the shared HTTP client (src/net/http_client.c): a time budget per
 * operation, bounded retries, and Stripe's error object turned into a log line. */
#include "inklet/stripe.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/buf.h"
#include "inklet/deadline.h"
#include "inklet/histogram.h"
#include "inklet/http_client.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <curl/curl.h>
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

static atomic_ullong calls_ok, calls_failed;
static struct ink_histogram latency = INK_HISTOGRAM(INK_HIST_REQUEST_BOUNDS);
static char *auth_header;

bool ink_stripe_configured(void)
{
    return ink_app.cfg.stripe_secret_key && *ink_app.cfg.stripe_secret_key;
}

bool ink_stripe_init(void)
{
    if (!ink_stripe_configured())
        return false;
    size_t n = strlen(ink_app.cfg.stripe_secret_key) + 32;
    auth_header = ink_malloc(n);
    snprintf(auth_header, n, "Authorization: Bearer %s", ink_app.cfg.stripe_secret_key);
    return true;
}

void ink_stripe_shutdown(void)
{
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

/* the response headers kept: their index in ink_http_response.captured */
enum { H_SHOULD_RETRY, H_REQUEST_ID };
static const char *const CAPTURE[] = {"Stripe-Should-Retry", "Request-Id", NULL};

static void perform(const char *method, const char *url, const struct ink_form *form,
                    const char *idempotency_key, int64_t remaining_ms, struct ink_http_response *a)
{
    char idem[160];
    const char *headers[] = {auth_header, "Stripe-Version: " INK_STRIPE_API_VERSION,
                             "Accept: application/json", NULL, NULL};
    if (idempotency_key) {
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", idempotency_key);
        headers[3] = idem;
    }
    bool post = strcmp(method, "POST") == 0;
    struct ink_http_request rq = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = post && form ? form->data : NULL,
        .body_len = post && form ? form->len : 0,
        .timeout_ms = remaining_ms,
        .max_response = RESPONSE_LIMIT,
        .capture = CAPTURE,
    };
    ink_http_perform(&rq, a);
}

/* Stripe's advice: retry connection errors, 409 (an in-flight request with the same key, lock
 * timeouts), 429 and 5xx — unless Stripe-Should-Retry says otherwise. A timeout is not retried:
 * it used up the budget. */
static bool retryable(const struct ink_http_response *a)
{
    if (a->timed_out)
        return false;
    if (a->curl_code != CURLE_OK)
        return a->curl_code != CURLE_WRITE_ERROR; /* an oversized answer will not shrink */
    const char *should = a->captured[H_SHOULD_RETRY];
    if (*should)
        return strcasecmp(should, "true") == 0;
    return a->status == 409 || a->status == 429 || a->status >= 500;
}

/* Stripe's Request-Id, kept for the log only when it looks like one (req_ + alphanumerics). */
static const char *request_id(const struct ink_http_response *a)
{
    const char *id = a->captured[H_REQUEST_ID];
    if (!*id || strlen(id) > 64)
        return "-";
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return "-";
    return id;
}

/* Logs what Stripe said (type, code, message; never the request) — for the operator only. */
static void log_failure(const char *method, const char *path, const struct ink_http_response *a,
                        int attempts)
{
    if (a->curl_code != CURLE_OK) {
        ink_warn("stripe: %s %s failed after %d attempt(s): %s", method, path, attempts,
                 ink_http_error(a));
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
             message ? message : "-", request_id(a));
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
    int64_t started_us = ink_now_mono_us();
    struct ink_http_response a;
    int attempts = 0;
    int64_t backoff = BACKOFF_FIRST_MS;
    for (;;) {
        perform(method, url, is_get ? NULL : form, idempotency_key, deadline - ink_now_mono_ms(),
                &a);
        attempts++;
        if (a.curl_code == CURLE_OK && a.status >= 200 && a.status < 300)
            break;
        if (!may_retry || attempts >= MAX_ATTEMPTS || !retryable(&a) ||
            ink_now_mono_ms() + backoff + 100 >= deadline)
            break;
        ink_http_response_free(&a);
        usleep((useconds_t)backoff * 1000);
        backoff *= 2;
    }
    ink_deadline_resume(paused);
    free(url);
    enum ink_status st = INK_UPSTREAM;
    if (a.curl_code == CURLE_OK && a.status >= 200 && a.status < 300) {
        const char *why = NULL;
        if (ink_json_parse_object(a.body.data ? a.body.data : "", a.body.len, out, &why) == INK_OK)
            st = INK_OK;
        else
            ink_warn("stripe: %s %s answered %ld with a body that is not a JSON object (%s)",
                     method, path, a.status, why);
    } else if (a.curl_code == CURLE_OK && a.status == 404) {
        st = INK_NOT_FOUND;
    } else {
        log_failure(method, path, &a, attempts);
    }
    ink_http_response_free(&a);
    ink_histogram_observe(&latency, (double)(ink_now_mono_us() - started_us) / 1e6);
    atomic_fetch_add_explicit(st == INK_OK || st == INK_NOT_FOUND ? &calls_ok : &calls_failed, 1,
                              memory_order_relaxed);
    return st;
}

void ink_stripe_stats(unsigned long long *ok, unsigned long long *failed,
                      const struct ink_histogram **latency_out)
{
    *latency_out = &latency;
    *ok = atomic_load(&calls_ok);
    *failed = atomic_load(&calls_failed);
}
