/* Request lifecycle (libmicrohttpd calls the access handler several times per request):
 *   1st call     allocate the context, route, read headers; never queue a response here, or MHD
 *                turns off keep-alive for the connection (the one exception: a Content-Length
 *                over the cap is refused at once, the connection closes anyway);
 *   data calls   append to a capped body buffer; past the cap discard the rest, 413 at the end;
 *   final call   (upload size 0) parse the body, rate-limit, then either run the handler here
 *                (INK_ROUTE_INLINE routes, which never wait on anything) or suspend the
 *                connection and hand authentication + handler to a worker lane: the request
 *                lane, the hashing lane for INK_ROUTE_SLOW, or the upstream lane for
 *                INK_ROUTE_UPSTREAM (Stripe calls). After the worker resumes the
 *                connection MHD calls once more and the stored result is sent.
 * The HTTP threads therefore never wait on the database: /health answers in microseconds even
 * while PostgreSQL hangs, and each worker's waits end at the request's deadline (the moment it
 * was ready + DB_TIMEOUT; inklet/deadline.h), queueing for a worker included.
 * finish() is the one place a result becomes an HTTP status, headers and body. */
#include "inklet/server.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/auth.h"
#include "inklet/batched.h"
#include "inklet/buf.h"
#include "inklet/deadline.h"
#include "inklet/http.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/metrics.h"
#include "inklet/ratelimit.h"
#include "inklet/timeutil.h"
#include "inklet/workq.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

enum ctx_state { ST_READING, ST_TOO_LARGE, ST_WORKING, ST_WORK_DONE, ST_RESPONDED };

#define MAX_QUERY_ARGS 8
#define JSON_TYPE "application/json; charset=utf-8"
/* the hashing lane's queue; the request lane holds one job per connection at most */
#define HASH_QUEUE_CAPACITY 256
/* hashing workers yield the CPU to the HTTP threads and the request lane under load */
#define HASH_NICE 10
/* Calls to Stripe (and, later, Google and Apple) mostly wait on the network: a thread each, so
 * a provider that takes STRIPE_TIMEOUT to answer holds at most these, never a hashing worker or a
 * database worker. Past the queue the answer is 503. */
#define UPSTREAM_WORKERS 16
#define UPSTREAM_QUEUE_CAPACITY 256

struct conn_ctx {
    struct ink_req req;
    struct MHD_Connection *conn;
    struct ink_buf body;
    enum ctx_state state;
    enum ink_status match; /* routing result */
    enum ink_status result;
    int64_t start_us;
    int64_t ready_ms; /* when the request was complete and handed on */
    unsigned http_status;
    unsigned nargs;
    const char *args[MAX_QUERY_ARGS][2]; /* query arguments (MHD's memory, valid until done) */
    char *scratch;                       /* path copy the path parameters point into */
    char allow[96];
    const char *origin;
    const char *content_type;
    bool close;               /* answer with Connection: close */
    const char *header_fault; /* why the header block is malformed (static text), or NULL */
};

static struct MHD_Daemon *daemon_handle;
static atomic_uint inflight;
static struct ink_workq *lane_requests, *lane_hashing, *lane_upstream;

/* ---- handler helpers ---------------------------------------------------------------------- */

enum ink_status ink_reply(struct ink_req *req, unsigned status, json_t *body)
{
    if (req->resp)
        json_decref(req->resp);
    req->status = status;
    req->resp = body;
    return INK_OK;
}

enum ink_status ink_reply_text(struct ink_req *req, unsigned status, const char *content_type,
                               char *text)
{
    free(req->resp_text);
    req->status = status;
    req->resp_text = text;
    req->resp_type = content_type;
    return INK_OK;
}

enum ink_status ink_reply_json_text(struct ink_req *req, unsigned status, char *text)
{
    return ink_reply_text(req, status, JSON_TYPE, text);
}

enum ink_status ink_reply_static(struct ink_req *req, unsigned status, const char *content_type,
                                 const char *text, size_t len)
{
    req->status = status;
    req->resp_static = text;
    req->resp_static_len = len;
    req->resp_type = content_type;
    return INK_OK;
}

enum ink_status ink_reply_redirect(struct ink_req *req, char *location)
{
    free(req->location);
    req->status = 302;
    req->location = location;
    return INK_OK;
}

enum ink_status ink_reply_message(struct ink_req *req, unsigned status, const char *message)
{
    return ink_reply(req, status, json_pack("{s:s}", "message", message));
}

enum ink_status ink_fail(struct ink_req *req, enum ink_status st, const char *code,
                         const char *message)
{
    req->err_code = code;
    req->err_message = message;
    return st;
}

enum ink_status ink_fail_err(struct ink_req *req, enum ink_status st, const struct ink_err *err)
{
    return err && err->code ? ink_fail(req, st, err->code, err->message) : st;
}

enum ink_status ink_fail_field(struct ink_req *req, const char *field)
{
    snprintf(req->msg_buf, sizeof req->msg_buf,
             "The field \"%s\" is required and must be a string.", field);
    return ink_fail(req, INK_INVALID, "invalid_request", req->msg_buf);
}

const char *ink_req_query(struct ink_req *req, const char *name)
{
    struct conn_ctx *ctx = req->priv;
    for (unsigned i = 0; i < ctx->nargs; i++)
        if (strcmp(ctx->args[i][0], name) == 0)
            return ctx->args[i][1];
    return NULL;
}

/* Copied on the HTTP thread: a worker must not call into MHD for a suspended connection. The
 * first occurrence of a name wins, as MHD_lookup_connection_value would have it. */
static enum MHD_Result keep_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    struct conn_ctx *ctx = cls;
    if (ctx->nargs == MAX_QUERY_ARGS)
        return MHD_NO;
    ctx->args[ctx->nargs][0] = key;
    ctx->args[ctx->nargs][1] = value ? value : "";
    ctx->nargs++;
    return MHD_YES;
}

/* ---- request ids -------------------------------------------------------------------------- */

static bool request_id_sane(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return n > 0;
}

static void make_request_id(char out[65])
{
    /* a per-thread random prefix and counter: unique without a syscall per request */
    static _Thread_local unsigned char prefix[8];
    static _Thread_local unsigned long long counter;
    if (!counter)
        ink_random_bytes(prefix, sizeof prefix);
    char hex[17];
    ink_hex_encode(prefix, sizeof prefix, hex);
    snprintf(out, 65, "%s-%llu", hex, ++counter);
}

/* ---- responses ---------------------------------------------------------------------------- */

static bool add_header(struct MHD_Response *r, const char *name, const char *value)
{
    if (MHD_add_response_header(r, name, value) == MHD_NO) {
        ink_warn("could not add response header %s", name);
        return false;
    }
    return true;
}

static void add_cors(struct conn_ctx *ctx, struct MHD_Response *r)
{
    add_header(r, "Vary", "Origin");
    if (!ink_app_origin_allowed(ctx->origin))
        return;
    add_header(r, "Access-Control-Allow-Origin", ctx->origin);
    add_header(r, "Access-Control-Expose-Headers", "Retry-After, X-Request-Id");
}

/* Queues the response for a finished request. Returns MHD's verdict. */
static enum MHD_Result finish(struct conn_ctx *ctx, enum ink_status st)
{
    struct ink_req *req = &ctx->req;
    unsigned code;
    json_t *body;
    if (st == INK_OK) {
        code = req->status ? req->status : 200;
        body = req->resp;
        req->resp = NULL;
    } else {
        code = ink_status_http(st);
        body = json_pack("{s:s,s:s}", "message",
                         req->err_message ? req->err_message : ink_status_message(st), "code",
                         req->err_code ? req->err_code : ink_status_code(st));
        if (st == INK_UNAVAILABLE && !req->retry_after)
            req->retry_after = 2;
    }
    size_t len = 0;
    const char *type = JSON_TYPE;
    char *text = body ? ink_json_dump(body, &len) : NULL;
    json_decref(body);
    if (!text && st == INK_OK && req->resp_text) {
        text = req->resp_text;
        req->resp_text = NULL;
        len = strlen(text);
        type = req->resp_type;
    }
    const char *persistent = "";
    if (!text && st == INK_OK && req->resp_static) {
        persistent = req->resp_static;
        len = req->resp_static_len;
        type = req->resp_type;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, text ? text : (char *)persistent,
                                        text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    if (text || *persistent)
        add_header(r, "Content-Type", type);
    add_header(r, "X-Request-Id", req->request_id);
    add_header(r, "Cache-Control", "no-store");
    add_cors(ctx, r);
    if (req->retry_after && (code == 429 || code == 503)) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", req->retry_after);
        add_header(r, "Retry-After", ra);
    }
    if (st == INK_OK && req->location) {
        add_header(r, "Location", req->location);
        add_header(r, "Referrer-Policy", "no-referrer");
    }
    if (code == 405) {
        char allow[sizeof ctx->allow + 16];
        snprintf(allow, sizeof allow, "%s, OPTIONS", ctx->allow); /* preflight is always served */
        add_header(r, "Allow", allow);
    }
    if (ctx->close || atomic_load(&ink_app.draining))
        add_header(r, "Connection", "close");
    ctx->http_status = code;
    ctx->state = ST_RESPONDED;
    enum MHD_Result ret = MHD_queue_response(ctx->conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result preflight(struct conn_ctx *ctx)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    add_header(r, "X-Request-Id", ctx->req.request_id);
    add_cors(ctx, r);
    if (ink_app_origin_allowed(ctx->origin)) {
        add_header(r, "Access-Control-Allow-Methods", ctx->allow);
        add_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        add_header(r, "Access-Control-Max-Age", "600");
    }
    ctx->http_status = 204;
    ctx->state = ST_RESPONDED;
    enum MHD_Result ret = MHD_queue_response(ctx->conn, 204, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static enum ink_status authenticate(struct ink_req *req)
{
    if (!(req->route->flags & INK_ROUTE_AUTH))
        return INK_OK;
    enum ink_status st = ink_auth_authenticate(req->authorization, &req->auth);
    if (st == INK_UNAUTHORIZED)
        return ink_fail(req, st, "invalid_token", "Missing, invalid or expired access token.");
    return st;
}

static int64_t work_deadline(const struct conn_ctx *ctx)
{
    return ctx->ready_ms + (int64_t)ink_app.cfg.db_timeout * 1000;
}

/* Hands the outcome back to the connection's HTTP thread, which answers (finish). */
static void work_done(struct conn_ctx *ctx, enum ink_status st)
{
    ctx->result = st;
    ctx->state = ST_WORK_DONE;
    MHD_resume_connection(ctx->conn);
}

/* A worker lane's job: everything that may wait on the database, under the request deadline. */
static void run_on_worker(void *arg)
{
    struct conn_ctx *ctx = arg;
    struct ink_req *req = &ctx->req;
    ink_deadline_set(work_deadline(ctx));
    enum ink_status st = authenticate(req);
    if (st == INK_OK)
        st = req->route->handler(req);
    ink_deadline_set(0);
    work_done(ctx, st);
}

/* A batched route's job (inklet/batched.h): this request and those of its kind (`job`: reads
 * or writes) queued right behind it, their statements in one round trip under the earliest of
 * their deadlines. Alone, it is any job. */
static void run_batch(void *arg, void (*job)(void *))
{
    void *jobs[INK_DB_BATCH_MAX] = {arg};
    unsigned n = 1 + ink_workq_take(lane_requests, job, jobs + 1, INK_DB_BATCH_MAX - 1);
    if (n == 1) {
        run_on_worker(arg);
        return;
    }
    struct conn_ctx *ready[INK_DB_BATCH_MAX];
    struct ink_req *reqs[INK_DB_BATCH_MAX];
    enum ink_status out[INK_DB_BATCH_MAX];
    unsigned nready = 0;
    int64_t deadline = INT64_MAX;
    for (unsigned i = 0; i < n; i++) {
        struct conn_ctx *ctx = jobs[i];
        ink_deadline_set(work_deadline(ctx));
        enum ink_status st = authenticate(&ctx->req);
        if (st != INK_OK) {
            work_done(ctx, st);
            continue;
        }
        if (work_deadline(ctx) < deadline)
            deadline = work_deadline(ctx);
        ready[nready] = ctx;
        reqs[nready++] = &ctx->req;
    }
    if (nready) {
        ink_deadline_set(deadline);
        ink_batched_run_many(reqs, out, nready);
    }
    ink_deadline_set(0);
    for (unsigned i = 0; i < nready; i++)
        work_done(ready[i], out[i]);
}

static void run_reads_on_worker(void *arg)
{
    run_batch(arg, run_reads_on_worker);
}

static void run_writes_on_worker(void *arg)
{
    run_batch(arg, run_writes_on_worker);
}

static bool is_json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 &&
           (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Everything between routing and the handler that never waits: body, rate limit. */
static enum ink_status prepare(struct conn_ctx *ctx)
{
    struct ink_req *req = &ctx->req;
    const struct ink_route *route = req->route;
    req->body = ctx->body.data;
    req->body_len = ctx->body.len;
    if ((route->flags & (INK_ROUTE_JSON | INK_ROUTE_JSON_REQ)) && req->body_len > 0) {
        if (!is_json_content_type(ctx->content_type))
            return ink_fail(req, INK_UNSUPPORTED, "unsupported_media_type",
                            "The request body must be JSON (Content-Type: application/json).");
        const char *why = NULL;
        if (ink_json_parse_object(req->body, req->body_len, &req->json, &why) != INK_OK)
            return ink_fail(req, INK_INVALID, "invalid_json", why);
    }
    if ((route->flags & INK_ROUTE_JSON_REQ) && !req->json)
        return ink_fail(req, INK_INVALID, "invalid_json", "A JSON object body is required.");
    if (route->rate != INK_RATE_NONE) {
        char key[64];
        ink_ip_rate_key(req->client_ip, key, sizeof key);
        unsigned wait = ink_ratelimit_take(route->rate, key);
        if (wait) {
            req->retry_after = wait;
            return ink_fail(req, INK_RATE_LIMITED, "rate_limited",
                            "Too many requests; retry later.");
        }
    }
    return INK_OK;
}

static enum MHD_Result dispatch(struct conn_ctx *ctx)
{
    struct ink_req *req = &ctx->req;
    if (strcmp(req->method, "OPTIONS") == 0 && ctx->match != INK_NOT_FOUND)
        return preflight(ctx);
    if (ctx->match == INK_NOT_FOUND)
        return finish(ctx, ink_fail(req, INK_NOT_FOUND, "not_found", "No such route."));
    if (ctx->match == INK_METHOD)
        return finish(ctx, INK_METHOD);
    enum ink_status st = prepare(ctx);
    if (st != INK_OK)
        return finish(ctx, st);
    if (req->route->flags & INK_ROUTE_INLINE)
        return finish(ctx, req->route->handler(req));
    struct ink_workq *lane = req->route->flags & INK_ROUTE_SLOW       ? lane_hashing
                             : req->route->flags & INK_ROUTE_UPSTREAM ? lane_upstream
                                                                      : lane_requests;
    const struct ink_batched *batched = lane == lane_requests ? req->route->batched : NULL;
    void (*job)(void *) = !batched          ? run_on_worker
                          : batched->writes ? run_writes_on_worker
                                            : run_reads_on_worker;
    ctx->ready_ms = ink_now_mono_ms();
    ctx->state = ST_WORKING;
    MHD_suspend_connection(ctx->conn);
    if (!ink_workq_submit(lane, job, ctx)) {
        ctx->state = ST_WORK_DONE;
        req->retry_after = 1;
        ctx->result =
            ink_fail(req, INK_UNAVAILABLE, "overloaded", "The server is busy; retry shortly.");
        MHD_resume_connection(ctx->conn);
    }
    return MHD_YES;
}

/* ---- the header block ---------------------------------------------------------------------- */

/* RFC 9110 §5.6.2 tchar */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

/* One pass over the header block: its faults, and the X-Forwarded-For lines joined in order
 * with ", " (proxies append their own line; only the first would be seen by
 * MHD_lookup_connection_value, and RFC 9110 §5.3 makes them one list). */
struct header_scan {
    unsigned hosts;
    unsigned content_lengths;
    const char *content_length;
    const char *fault;
    bool want_xff;      /* only behind a trusted proxy */
    struct ink_buf xff; /* limit 0 once refused */
};

/* The cap is above MHD's whole header space; if it were ever reached the header is dropped
 * entirely (the client is then the proxy), never cut, since cutting would lose the
 * proxy-appended end. */
#define XFF_LIMIT (128 * 1024)

static void join_forwarded_for(struct ink_buf *b, const char *value)
{
    if (!value || b->limit == 0)
        return;
    if ((b->len && !ink_buf_append(b, ", ", 2)) || !ink_buf_append(b, value, strlen(value))) {
        ink_buf_free(b);
        b->limit = 0; /* refuse the rest too */
    }
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct header_scan *h = cls;
    if (!is_token(key)) {
        h->fault = "A header name is not a valid token.";
        return MHD_NO;
    }
    if (strcasecmp(key, "Host") == 0)
        h->hosts++;
    if (strcasecmp(key, "Content-Length") == 0) {
        if (h->content_lengths++ && strcmp(h->content_length, value ? value : "") != 0) {
            h->fault = "Conflicting Content-Length headers.";
            return MHD_NO;
        }
        h->content_length = value ? value : "";
    }
    if (h->want_xff && strcasecmp(key, "X-Forwarded-For") == 0)
        join_forwarded_for(&h->xff, value);
    return MHD_YES;
}

/* What libmicrohttpd 0.9.75 lets through although RFC 9110/9112 make it a 400: a header name
 * that is not a token (spaces, quotes, controls, bytes >= 0x80 — also how a space before the
 * colon or a folded first line arrive), a missing or repeated Host in HTTP/1.1, and
 * Content-Length lines that disagree (a request-smuggling vector behind a proxy that picks the
 * other one). NULL when the block is fine. */
static const char *scan_headers(struct MHD_Connection *conn, const char *version,
                                struct header_scan *h)
{
    MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, h);
    if (h->fault)
        return h->fault;
    bool http11 = version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
    if (h->hosts > 1 || (http11 && h->hosts == 0))
        return "An HTTP/1.1 request needs exactly one Host header.";
    return NULL;
}

/* MHD's percent-decoding (for the path and the query), except that %00 stays as it is: a decoded
 * NUL would end the C string early ("/health%00x" would be served as /health, an id would be
 * read up to the NUL). */
static size_t unescape_keeping_nul(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi = r[0] == '%' ? ink_hex_digit(r[1]) : -1, lo = hi >= 0 ? ink_hex_digit(r[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static struct conn_ctx *new_ctx(struct MHD_Connection *conn, const char *url, const char *method,
                                const char *version)
{
    struct conn_ctx *ctx = ink_calloc(1, sizeof *ctx);
    struct ink_req *req = &ctx->req;
    ctx->conn = conn;
    ctx->start_us = ink_now_mono_us();
    req->priv = ctx;
    req->method = method;
    req->path = url;

    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_sane(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        make_request_id(req->request_id);

    req->authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    req->user_agent = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent");
    ctx->origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    ctx->content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    req->content_type = ctx->content_type;

    char *peer = req->peer_ip;
    snprintf(peer, sizeof req->peer_ip, "unknown");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, peer,
                      sizeof req->peer_ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, peer,
                      sizeof req->peer_ip);
    }
    struct header_scan h = {.want_xff = ink_app.trusted_proxies.count > 0};
    ink_buf_init(&h.xff, XFF_LIMIT);
    ctx->header_fault = scan_headers(conn, version, &h);
    ink_client_ip(&ink_app.trusted_proxies, peer, h.xff.data, req->client_ip,
                  sizeof req->client_ip);
    ink_buf_free(&h.xff);

    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, keep_query_arg, ctx);

    ctx->scratch = ink_malloc(strlen(url) + 1);
    ctx->match = ink_route_match(ink_routes, ink_routes_count, method, url, ctx->scratch,
                                 &req->route, req->params, ctx->allow, sizeof ctx->allow);

    size_t limit = req->route && (req->route->flags & INK_ROUTE_RAW_1MB) ? INK_BODY_LIMIT_WEBHOOK
                                                                         : INK_BODY_LIMIT_JSON;
    ink_buf_init(&ctx->body, limit);
    if (req->route && (req->route->flags & INK_ROUTE_RAW_1MB))
        req->signature = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Stripe-Signature");
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (*end == '\0' && n > limit)
            ctx->state = ST_TOO_LARGE;
    }
    atomic_fetch_add(&inflight, 1);
    return ctx;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    struct conn_ctx *ctx = *con_cls;
    if (!ctx) {
        *con_cls = ctx = new_ctx(conn, url, method, version);
        /* MHD 0.9.75 accepts a response only now or once the whole body is read: refuse a
         * malformed header block and an announced oversized body at once (the connection
         * closes; an ambiguous body is never read) */
        if (ctx->header_fault) {
            ctx->close = true;
            return finish(ctx,
                          ink_fail(&ctx->req, INK_INVALID, "malformed_request", ctx->header_fault));
        }
        if (ctx->state == ST_TOO_LARGE)
            return finish(ctx, ink_fail(&ctx->req, INK_TOO_LARGE, "payload_too_large",
                                        "The request body is too large."));
        return MHD_YES;
    }
    switch (ctx->state) {
    case ST_RESPONDED:
        *upload_data_size = 0;
        return MHD_YES;
    case ST_WORK_DONE:
        return finish(ctx, ctx->result);
    case ST_WORKING:
        return MHD_YES;
    case ST_TOO_LARGE:
        /* found while reading (no Content-Length): discard the rest, answer at the end */
        if (*upload_data_size > 0) {
            *upload_data_size = 0;
            return MHD_YES;
        }
        return finish(ctx, ink_fail(&ctx->req, INK_TOO_LARGE, "payload_too_large",
                                    "The request body is too large."));
    case ST_READING:
        break;
    }
    if (*upload_data_size > 0) {
        if (!ink_buf_append(&ctx->body, upload_data, *upload_data_size)) {
            ctx->state = ST_TOO_LARGE;
            ink_buf_free(&ctx->body);
            *upload_data_size = 0;
            return MHD_YES;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return dispatch(ctx);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct conn_ctx *ctx = *con_cls;
    if (!ctx)
        return;
    double ms = (double)(ink_now_mono_us() - ctx->start_us) / 1000.0;
    const char *route = ctx->req.route ? ctx->req.route->pattern : "(unmatched)";
    ink_metrics_observe_request(ctx->req.route, ctx->http_status, ms);
    ink_log_request(&(struct ink_request_log){ctx->req.request_id, ctx->req.method, route,
                                              ctx->http_status, ms, ctx->req.auth.user_id,
                                              ctx->req.client_ip});
    json_decref(ctx->req.json);
    json_decref(ctx->req.resp);
    free(ctx->req.resp_text);
    free(ctx->req.location);
    free(ctx->scratch);
    ink_buf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
    atomic_fetch_sub(&inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    ink_debug("microhttpd: %s", msg);
}

/* LISTEN_ADDR and PORT as a socket address (and its length, when len is not NULL); false when
 * LISTEN_ADDR is no IP address. */
static bool listen_address(struct sockaddr_storage *ss, socklen_t *len)
{
    const struct ink_config *cfg = &ink_app.cfg;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, cfg->listen_addr, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)cfg->port);
        if (len)
            *len = sizeof *v4;
    } else if (inet_pton(AF_INET6, cfg->listen_addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)cfg->port);
        if (len)
            *len = sizeof *v6;
    } else {
        return false;
    }
    return true;
}

bool ink_server_start(void)
{
    const struct ink_config *cfg = &ink_app.cfg;
    struct sockaddr_storage ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (!listen_address(&ss, NULL)) {
        ink_error("LISTEN_ADDR %s is not an IP address", cfg->listen_addr);
        return false;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    lane_requests = ink_workq_start(cfg->db_pool_size, cfg->http_max_conns, 0);
    /* twice the hashing slots: while one thread hashes, another does its login's round trips
     * (look-up, session), so a slot never waits on the database; the argon2 memory belongs to
     * the slots, not to these threads (src/auth/password.c) */
    lane_hashing = ink_workq_start(2 * cfg->hash_concurrency, HASH_QUEUE_CAPACITY, HASH_NICE);
    lane_upstream = ink_workq_start(UPSTREAM_WORKERS, UPSTREAM_QUEUE_CAPACITY, 0);
    if (!lane_requests || !lane_hashing || !lane_upstream) {
        ink_error("cannot start worker threads");
        return false;
    }
    daemon_handle = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->http_conn_timeout, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_conns, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_conns_per_ip, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_keeping_nul, NULL, MHD_OPTION_END);
    if (!daemon_handle) {
        ink_error("cannot listen on %s:%u", cfg->listen_addr, cfg->port);
        return false;
    }
    return true;
}

void ink_server_drain(unsigned grace_seconds)
{
    if (!daemon_handle)
        return;
    /* /health now answers 503 and every response closes its connection, so the load balancer
     * moves away; requests that still arrive are served. The listener stays open on purpose:
     * MHD_quiesce_daemon() races the epoll worker threads of a thread pool in libmicrohttpd
     * 0.9.75 (both remove the listen fd from the epoll set and the loser panics on ENOENT). */
    atomic_store(&ink_app.draining, true);
    int64_t deadline = ink_now_mono_ms() + (int64_t)grace_seconds * 1000;
    while (atomic_load(&inflight) > 0 && ink_now_mono_ms() < deadline)
        usleep(10000);
    if (atomic_load(&inflight) > 0)
        ink_warn("stopping with %u requests still in flight", atomic_load(&inflight));
}

void ink_server_stop(void)
{
    /* the lanes first: a worker resumes its suspended connection when it finishes, which needs
     * a live daemon; queued jobs still finish (each within its deadline) */
    ink_workq_stop(lane_requests);
    ink_workq_stop(lane_hashing);
    ink_workq_stop(lane_upstream);
    lane_requests = lane_hashing = lane_upstream = NULL;
    if (!daemon_handle)
        return;
    MHD_stop_daemon(daemon_handle);
    daemon_handle = NULL;
}

void ink_server_queue_stats(unsigned *requests, unsigned *hashing, unsigned *upstream)
{
    *upstream = lane_upstream ? ink_workq_pending(lane_upstream) : 0;
    *requests = lane_requests ? ink_workq_pending(lane_requests) : 0;
    *hashing = lane_hashing ? ink_workq_pending(lane_hashing) : 0;
}

/* ---- the watchdog's probe ------------------------------------------------------------------ */

/* Waits for `events` on fd until the monotonic deadline; false on timeout or error. */
static bool wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - ink_now_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return (p.revents & (events | POLLHUP | POLLERR)) != 0;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

bool ink_server_probe(unsigned timeout_ms)
{
    int64_t deadline = ink_now_mono_ms() + timeout_ms;
    struct sockaddr_storage ss;
    socklen_t len;
    if (!listen_address(&ss, &len))
        return false;
    /* a wildcard listener is probed on loopback, a specific address on itself */
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (ss.ss_family == AF_INET && v4->sin_addr.s_addr == htonl(INADDR_ANY))
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
        v6->sin6_addr = in6addr_loopback;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool ok = false;
    static const char req[] = "GET /health HTTP/1.1\r\nHost: localhost\r\n"
                              "User-Agent: inkletd-watchdog\r\nConnection: close\r\n\r\n";
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS)
        goto out;
    if (!wait_fd(fd, POLLOUT, deadline))
        goto out;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
        goto out;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1))
        goto out; /* a fresh socket's buffer takes 100 bytes at once */
    char line[16];
    size_t got = 0;
    while (got < 12) { /* "HTTP/1.1 200" */
        if (!wait_fd(fd, POLLIN, deadline))
            goto out;
        ssize_t n = recv(fd, line + got, 12 - got, 0);
        if (n <= 0 && !(n < 0 && (errno == EAGAIN || errno == EINTR)))
            goto out;
        if (n > 0)
            got += (size_t)n;
    }
    ok = memcmp(line, "HTTP/1.", 7) == 0 && line[8] == ' ' && line[9] >= '1' && line[9] <= '5';
out:
    close(fd);
    return ok;
}
