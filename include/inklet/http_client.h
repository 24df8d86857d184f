/** Outgoing HTTP over libcurl for every upstream (Stripe, Google, Apple): one place that sets
 *  the timeouts, the protocols, no redirects, a response cap, and a connection/TLS-session/DNS
 *  cache shared by all threads. Callers keep their own retry policy. */
#ifndef INKLET_HTTP_CLIENT_H
#define INKLET_HTTP_CLIENT_H
#include "inklet/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INK_HTTP_CAPTURE_MAX 4
#define INK_HTTP_CAPTURE_LEN 256

struct ink_http_request {
    const char *method; /* "GET", "POST", "DELETE" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /* POST body (may be NULL) */
    size_t body_len;
    int64_t timeout_ms;  /* the whole exchange; connecting gets at most 4 s of it */
    size_t max_response; /* bytes of body kept; a longer answer fails */
    /* names of response headers to keep (NULL-terminated, at most INK_HTTP_CAPTURE_MAX) */
    const char *const *capture;
};

struct ink_http_response {
    long status;    /* 0 when no HTTP answer came */
    int curl_code;  /* CURLcode: 0 on success */
    bool timed_out; /* the timeout ended it */
    struct ink_buf body;
    /* values of the captured headers, in the order asked; "" when absent (the last one wins;
     * values longer than INK_HTTP_CAPTURE_LEN - 1 are dropped) */
    char captured[INK_HTTP_CAPTURE_MAX][INK_HTTP_CAPTURE_LEN];
};

/** After curl_global_init, before threads use the client. */
void ink_http_client_init(void);
void ink_http_client_shutdown(void);
/** Performs one exchange; always fills *out (free with ink_http_response_free). */
void ink_http_perform(const struct ink_http_request *rq, struct ink_http_response *out);
void ink_http_response_free(struct ink_http_response *r);
/** A short reason for a failed exchange (curl's text), for logs. */
const char *ink_http_error(const struct ink_http_response *r);

#endif
