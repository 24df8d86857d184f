#include "inklet/log.h"

#include "inklet/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

enum ink_log_level ink_log_min_level = INK_LOG_INFO;
static bool log_json = true;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void ink_log_setup(enum ink_log_level level, bool json)
{
    ink_log_min_level = level;
    log_json = json;
}

/* Appends s to out as the body of a JSON string; control characters are escaped. */
static size_t json_escape(char *out, size_t cap, size_t o, const char *s)
{
    for (; *s && o + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

static size_t timestamp(char *out, size_t cap)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char t[21];
    ink_time_rfc3339(tv.tv_sec, t);
    /* keep second precision in the field but add milliseconds for ordering */
    t[19] = '\0';
    return (size_t)snprintf(out, cap, "%s.%03ldZ", t, (long)(tv.tv_usec / 1000));
}

/* One write(2) per line keeps lines from different threads whole. */
static void emit(char *line, size_t len, size_t cap)
{
    if (len >= cap - 1)
        len = cap - 2;
    line[len++] = '\n';
    ssize_t r = write(STDERR_FILENO, line, len);
    (void)r;
}

void ink_log_write(enum ink_log_level level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char line[2048], ts[40];
    timestamp(ts, sizeof ts);
    size_t o;
    if (log_json) {
        o = (size_t)snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                             LEVEL_NAMES[level]);
        o = json_escape(line, sizeof line - 3, o, msg);
        line[o++] = '"';
        line[o++] = '}';
    } else {
        o = (size_t)snprintf(line, sizeof line, "%s %-5s %s", ts, LEVEL_NAMES[level], msg);
        if (o >= sizeof line)
            o = sizeof line - 1;
    }
    emit(line, o, sizeof line);
}

void ink_log_request(const char *request_id, const char *method, const char *route, unsigned status,
                     double duration_ms, const char *user_id, const char *client_ip)
{
    if (INK_LOG_INFO < ink_log_min_level)
        return;
    char line[1024], ts[40];
    timestamp(ts, sizeof ts);
    size_t o;
    if (log_json) {
        o = (size_t)snprintf(line, sizeof line,
                             "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\","
                             "\"requestId\":\"",
                             ts);
        o = json_escape(line, sizeof line - 200, o, request_id);
        o += (size_t)snprintf(line + o, sizeof line - o, "\",\"method\":\"%s\",\"route\":\"",
                              method);
        o = json_escape(line, sizeof line - 200, o, route);
        o += (size_t)snprintf(line + o, sizeof line - o,
                              "\",\"status\":%u,\"durationMs\":%.3f,\"ip\":\"%s\"", status,
                              duration_ms, client_ip);
        if (user_id && *user_id)
            o += (size_t)snprintf(line + o, sizeof line - o, ",\"userId\":\"%s\"", user_id);
        if (o < sizeof line - 1)
            line[o++] = '}';
    } else {
        o = (size_t)snprintf(line, sizeof line, "%s info  %s %s %u %.3fms ip=%s user=%s req=%s", ts,
                             method, route, status, duration_ms, client_ip,
                             user_id && *user_id ? user_id : "-", request_id);
        if (o >= sizeof line)
            o = sizeof line - 1;
    }
    emit(line, o, sizeof line);
}
