/** Leveled logging to stderr as JSON lines (default) or text. Never pass secrets here.
 *
 *  Every line is built with a bounded writer (inklet/strbuf.h) and written with one write(2), so
 *  lines from different threads stay whole. Text copied from outside (request fields, device
 *  names, the formatted message itself) is escaped and capped: a JSON line is always one valid
 *  JSON object, a text line is always one line. */
#ifndef INKLET_LOG_H
#define INKLET_LOG_H
#include <stdbool.h>
#include <stddef.h>

enum ink_log_level { INK_LOG_DEBUG, INK_LOG_INFO, INK_LOG_WARN, INK_LOG_ERROR };

void ink_log_setup(enum ink_log_level level, bool json);
extern enum ink_log_level ink_log_min_level;

void ink_log_write(enum ink_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Skips formatting entirely below the configured level. */
#define ink_log(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) >= ink_log_min_level)                                                          \
            ink_log_write((level), __VA_ARGS__);                                                   \
    } while (0)
#define ink_debug(...) ink_log(INK_LOG_DEBUG, __VA_ARGS__)
#define ink_info(...) ink_log(INK_LOG_INFO, __VA_ARGS__)
#define ink_warn(...) ink_log(INK_LOG_WARN, __VA_ARGS__)
#define ink_error(...) ink_log(INK_LOG_ERROR, __VA_ARGS__)

/** The fields of one access-log line. Any string may be NULL; all are treated as hostile. */
struct ink_request_log {
    const char *request_id;
    const char *method;
    const char *route;
    unsigned status;
    double duration_ms;
    const char *user_id;
    const char *client_ip;
};

/** Bytes each request field may take in a line once escaped; longer values are cut and end in
 *  "...". The sum of these bounds keeps a request line under INK_LOG_REQUEST_LINE_MAX whatever the
 *  fields hold, so a line is never cut and always parses (tests/unit/test_log.c checks it). */
#define INK_LOG_METHOD_MAX 32
#define INK_LOG_FIELD_MAX 128
#define INK_LOG_REQUEST_LINE_MAX 1024

/** One access-log line per request (info level). */
void ink_log_request(const struct ink_request_log *f);
/** Builds the access-log line for `f` (without the newline) into out[cap] and returns its
 *  length; exposed for tests and the fuzz driver. `ts` is the timestamp text to use. */
size_t ink_log_format_request(const struct ink_request_log *f, bool json, const char *ts, char *out,
                              size_t cap);

#endif
