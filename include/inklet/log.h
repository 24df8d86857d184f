/** Leveled logging to stderr as JSON lines (default) or text. Never pass secrets here. */
#ifndef INKLET_LOG_H
#define INKLET_LOG_H
#include <stdbool.h>

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

/** One access-log line per request. user_id may be NULL. */
void ink_log_request(const char *request_id, const char *method, const char *route, unsigned status,
                     double duration_ms, const char *user_id, const char *client_ip);

#endif
