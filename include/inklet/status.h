/** One result enum for every layer; mapped to HTTP in exactly one place (http/response.c). */
#ifndef INKLET_STATUS_H
#define INKLET_STATUS_H

enum ink_status {
    INK_OK = 0,
    INK_INVALID,      /* 400: bad or missing input */
    INK_UNAUTHORIZED, /* 401 */
    INK_FORBIDDEN,    /* 403 */
    INK_NOT_FOUND,    /* 404 */
    INK_METHOD,       /* 405 */
    INK_CONFLICT,     /* 409 */
    INK_GONE,         /* 410 */
    INK_TOO_LARGE,    /* 413 */
    INK_UNSUPPORTED,  /* 415 */
    INK_RATE_LIMITED, /* 429 */
    INK_INTERNAL,     /* 500 */
    INK_UPSTREAM,     /* 502 */
    INK_UNAVAILABLE,  /* 503 */
    INK_STATUS_COUNT
};

/** Why a service call failed, in the contract's words (static strings; code NULL: the result's
 *  default code and message). */
struct ink_err {
    const char *code;
    const char *message;
};

/** HTTP status code for a result. */
unsigned ink_status_http(enum ink_status st);
/** Default stable snake_case error code for a result ("invalid_request", ...). */
const char *ink_status_code(enum ink_status st);
/** Default human sentence for a result. */
const char *ink_status_message(enum ink_status st);

#endif
