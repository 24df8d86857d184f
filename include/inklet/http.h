/** The HTTP layer's public face: the request a handler sees, the route table entry, and the
 *  helpers handlers use to answer. Handlers are thin: validate input, call a service, reply. */
#ifndef INKLET_HTTP_H
#define INKLET_HTTP_H
#include "inklet/auth.h"
#include "inklet/ids.h"
#include "inklet/status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define INK_MAX_PATH_PARAMS 4
#define INK_BODY_LIMIT_JSON (64 * 1024)
#define INK_BODY_LIMIT_WEBHOOK (1024 * 1024)

struct ink_req;
struct ink_batched;
typedef enum ink_status (*ink_handler_fn)(struct ink_req *req);

enum ink_route_flags {
    INK_ROUTE_AUTH = 1 << 0,     /* Bearer access token required; req->auth is filled */
    INK_ROUTE_JSON = 1 << 1,     /* body, when present, must be a JSON object (req->json) */
    INK_ROUTE_JSON_REQ = 1 << 2, /* a JSON object body is required */
    INK_ROUTE_SLOW = 1 << 3,     /* runs on the hashing lane (password hashing) */
    INK_ROUTE_RAW_1MB = 1 << 4,  /* raw body up to 1 MiB, not parsed (Stripe webhook) */
    INK_ROUTE_INLINE = 1 << 5,   /* runs on the HTTP thread: must never wait on anything (no
                                    database, no upstream, no AUTH); every other route runs on a
                                    worker lane */
    INK_ROUTE_UPSTREAM = 1 << 6, /* runs on the upstream lane: waits on Stripe/Google/Apple,
                                    which must never hold up hashing or database work */
};

enum ink_rate_class {
    INK_RATE_NONE,
    INK_RATE_LOGIN,
    INK_RATE_REGISTER,
    INK_RATE_REFRESH,
    INK_RATE_BIND,
    INK_RATE_MAIL,
    INK_RATE_CLASS_COUNT
};

struct ink_route {
    const char *method;
    const char *pattern; /* "/auth/sessions/{id}": {name} matches one non-empty segment */
    ink_handler_fn handler;
    unsigned flags;
    enum ink_rate_class rate;
    /* set for a route answered by one statement (inklet/batched.h): under load the request
     * lane runs several such requests' statements in one database round trip; the handler is
     * the same statement run alone */
    const struct ink_batched *batched;
};

struct ink_req {
    /* input, valid for the whole request */
    const char *method;
    const char *path;
    const struct ink_route *route;
    const char *params[INK_MAX_PATH_PARAMS]; /* path parameters in pattern order */
    const char *body;                        /* raw body, NUL-terminated; NULL when empty */
    size_t body_len;
    json_t *json; /* parsed body on JSON routes; NULL when there was no body */
    const char *user_agent;
    const char *authorization;
    const char *signature;    /* Stripe-Signature, on INK_ROUTE_RAW_1MB routes */
    const char *content_type; /* the Content-Type header, or NULL */
    char client_ip[48];       /* after the trusted-proxy rule */
    char peer_ip[48];         /* the socket peer */
    char request_id[65];
    struct ink_auth auth; /* filled on INK_ROUTE_AUTH routes */

    /* output, set through the helpers below */
    unsigned status;
    json_t *resp;
    char *resp_text; /* non-JSON body (owned), with resp_type */
    const char *resp_type;
    const char *resp_static; /* or a body that outlives the request (not owned), resp_static_len */
    size_t resp_static_len;
    char *location; /* redirect target (owned), with status 302 */
    const char *err_code;
    const char *err_message;
    unsigned retry_after; /* seconds; sent as Retry-After when non-zero */
    char msg_buf[192];    /* backing store for formatted error messages */

    void *priv; /* the server's connection context */
};

/** Answers with `status` and `body` (takes ownership; NULL for no body). Returns INK_OK. */
enum ink_status ink_reply(struct ink_req *req, unsigned status, json_t *body);
/** A constant body (never freed, never copied): a static string or a document built at start. */
enum ink_status ink_reply_static(struct ink_req *req, unsigned status, const char *content_type,
                                 const char *text, size_t len);
/** Answers with a non-JSON body; takes ownership of the malloc'd `text`. Returns INK_OK. */
enum ink_status ink_reply_text(struct ink_req *req, unsigned status, const char *content_type,
                               char *text);
/** Answers with JSON already written as text (takes ownership of the malloc'd `text`), for
 *  hot routes that skip building a jansson tree. Returns INK_OK. */
enum ink_status ink_reply_json_text(struct ink_req *req, unsigned status, char *text);
/** Answers 302 to `location` (takes ownership of the malloc'd string), with no body and
 *  `Referrer-Policy: no-referrer`, so tokens in it never leak to the next page's requests.
 *  Returns INK_OK. */
enum ink_status ink_reply_redirect(struct ink_req *req, char *location);
/** Answers with `{"message": message}` and `status`. Returns INK_OK. */
enum ink_status ink_reply_message(struct ink_req *req, unsigned status, const char *message);
/** Records an error with a specific code and message (static strings) and returns `st`; the
 *  server turns it into the `{"message","code"}` body. */
enum ink_status ink_fail(struct ink_req *req, enum ink_status st, const char *code,
                         const char *message);
/** Records a service's `err` (when it has a code) and returns `st`; without one, `st` keeps its
 *  default code and message. */
enum ink_status ink_fail_err(struct ink_req *req, enum ink_status st, const struct ink_err *err);
/** 400 `invalid_request` naming the missing or mistyped field. Returns INK_INVALID. */
enum ink_status ink_fail_field(struct ink_req *req, const char *field);
/** A query-string argument (the first of that name; at most 8 are kept). */
const char *ink_req_query(struct ink_req *req, const char *name);

/** Matches method+path against the table. On INK_OK *route is set and params filled (pointing
 *  into `scratch`, a copy of path the caller owns, of at least strlen(path)+1 bytes). Returns
 *  INK_NOT_FOUND when no pattern matches the path, INK_METHOD when the path matches with other
 *  methods; then `allow` receives "GET, POST" etc. */
enum ink_status ink_route_match(const struct ink_route *table, size_t count, const char *method,
                                const char *path, char *scratch, const struct ink_route **route,
                                const char **params, char *allow, size_t allow_len);

/** The route table (src/http/routes.c). */
extern const struct ink_route ink_routes[];
extern const size_t ink_routes_count;

#endif
