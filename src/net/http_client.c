/* libcurl easy handles sharing one cache, with the settings every upstream call needs. */
#include "inklet/http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#define CONNECT_TIMEOUT_MAX_MS 4000

static CURLSH *share;
static pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

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

void ink_http_client_init(void)
{
    if (share)
        return;
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
}

void ink_http_client_shutdown(void)
{
    if (!share)
        return;
    curl_share_cleanup(share);
    share = NULL;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&share_locks[i]);
}

struct exchange {
    const struct ink_http_request *rq;
    struct ink_http_response *out;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct exchange *x = arg;
    return ink_buf_append(&x->out->body, data, size * n) ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct exchange *x = arg;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    if (!colon || !x->rq->capture)
        return len;
    size_t klen = (size_t)(colon - data);
    const char *v = colon + 1;
    size_t vlen = len - klen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    for (int i = 0; i < INK_HTTP_CAPTURE_MAX && x->rq->capture[i]; i++) {
        const char *name = x->rq->capture[i];
        if (strlen(name) == klen && strncasecmp(data, name, klen) == 0 &&
            vlen < INK_HTTP_CAPTURE_LEN) {
            memcpy(x->out->captured[i], v, vlen);
            x->out->captured[i][vlen] = '\0';
        }
    }
    return len;
}

void ink_http_perform(const struct ink_http_request *rq, struct ink_http_response *out)
{
    memset(out, 0, sizeof *out);
    ink_buf_init(&out->body, rq->max_response);
    if (rq->timeout_ms <= 0) {
        out->curl_code = CURLE_OPERATION_TIMEDOUT;
        out->timed_out = true;
        return;
    }
    CURL *h = curl_easy_init();
    if (!h) {
        out->curl_code = CURLE_OUT_OF_MEMORY;
        return;
    }
    struct curl_slist *headers = NULL;
    for (size_t i = 0; rq->headers && rq->headers[i]; i++)
        headers = curl_slist_append(headers, rq->headers[i]);
    headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
    struct exchange x = {rq, out};
    long timeout = (long)rq->timeout_ms;
    curl_easy_setopt(h, CURLOPT_URL, rq->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout < CONNECT_TIMEOUT_MAX_MS ? timeout : (long)CONNECT_TIMEOUT_MAX_MS);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "inkletd/" INKLET_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    if (share)
        curl_easy_setopt(h, CURLOPT_SHARE, share);
    if (strcmp(rq->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(rq->body ? rq->body_len : 0));
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    CURLcode rc = curl_easy_perform(h);
    out->curl_code = (int)rc;
    out->timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
}

void ink_http_response_free(struct ink_http_response *r)
{
    ink_buf_free(&r->body);
}

const char *ink_http_error(const struct ink_http_response *r)
{
    return r->curl_code ? curl_easy_strerror((CURLcode)r->curl_code) : "no error";
}
