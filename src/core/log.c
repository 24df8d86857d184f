#include "inklet/log.h"

#include "inklet/strbuf.h"
#include "inklet/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define MSG_MAX 1024
#define LINE_MAX 2048

enum ink_log_level ink_log_min_level = INK_LOG_INFO;
static bool log_json = true;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void ink_log_setup(enum ink_log_level level, bool json)
{
    ink_log_min_level = level;
    log_json = json;
}

/* RFC 3339 UTC with milliseconds (for ordering lines within a second). */
static void timestamp(char out[32])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char t[21];
    ink_time_rfc3339(tv.tv_sec, t);
    t[19] = '\0';
    snprintf(out, 32, "%s.%03ldZ", t, (long)(tv.tv_usec / 1000) % 1000);
}

/* One write(2) per line keeps lines from different threads whole. */
static void emit(struct ink_sb *sb)
{
    /* the builders keep one byte back for this newline */
    sb->buf[sb->len++] = '\n';
    ssize_t r = write(STDERR_FILENO, sb->buf, sb->len);
    (void)r;
}

void ink_log_write(enum ink_log_level level, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char line[LINE_MAX], ts[32];
    timestamp(ts);
    struct ink_sb sb;
    ink_sb_init(&sb, line, sizeof line - 1); /* - 1: the newline */
    if (log_json) {
        ink_sb_printf(&sb, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, LEVEL_NAMES[level]);
        size_t room = ink_sb_room(&sb);
        ink_sb_escaped(&sb, INK_ESC_JSON, msg, room > 2 ? room - 2 : 0);
        ink_sb_puts(&sb, "\"}");
    } else {
        ink_sb_printf(&sb, "%s %-5s ", ts, LEVEL_NAMES[level]);
        ink_sb_escaped(&sb, INK_ESC_TEXT, msg, ink_sb_room(&sb));
    }
    emit(&sb);
}

/* A JSON member "name":"escaped value" (or null). */
static void json_member(struct ink_sb *sb, const char *name, const char *value, size_t max)
{
    ink_sb_printf(sb, ",\"%s\":", name);
    if (!value) {
        ink_sb_puts(sb, "null");
        return;
    }
    ink_sb_puts(sb, "\"");
    ink_sb_escaped(sb, INK_ESC_JSON, value, max);
    ink_sb_puts(sb, "\"");
}

/* A text field: the escaped value, or "-" when absent or empty. */
static void text_field(struct ink_sb *sb, const char *prefix, const char *value, size_t max)
{
    ink_sb_puts(sb, prefix);
    if (!value || !*value)
        ink_sb_puts(sb, "-");
    else
        ink_sb_escaped(sb, INK_ESC_TEXT, value, max);
}

/* A duration that always prints short (it is ours, but a clock jump must not make it long). */
static double duration(const struct ink_request_log *f)
{
    double d = f->duration_ms;
    return d >= 0 && d < 1e9 ? d : 0;
}

size_t ink_log_format_request(const struct ink_request_log *f, bool json, const char *ts, char *out,
                              size_t cap)
{
    struct ink_sb sb;
    ink_sb_init(&sb, out, cap);
    if (json) {
        ink_sb_printf(&sb, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\"", ts);
        json_member(&sb, "requestId", f->request_id, INK_LOG_FIELD_MAX);
        json_member(&sb, "method", f->method, INK_LOG_METHOD_MAX);
        json_member(&sb, "route", f->route, INK_LOG_FIELD_MAX);
        ink_sb_printf(&sb, ",\"status\":%u,\"durationMs\":%.3f", f->status, duration(f));
        json_member(&sb, "ip", f->client_ip, INK_LOG_FIELD_MAX);
        if (f->user_id && *f->user_id)
            json_member(&sb, "userId", f->user_id, INK_LOG_FIELD_MAX);
        ink_sb_puts(&sb, "}");
    } else {
        ink_sb_printf(&sb, "%s info ", ts);
        text_field(&sb, " ", f->method, INK_LOG_METHOD_MAX);
        text_field(&sb, " ", f->route, INK_LOG_FIELD_MAX);
        ink_sb_printf(&sb, " %u %.3fms", f->status, duration(f));
        text_field(&sb, " ip=", f->client_ip, INK_LOG_FIELD_MAX);
        text_field(&sb, " user=", f->user_id, INK_LOG_FIELD_MAX);
        text_field(&sb, " req=", f->request_id, INK_LOG_FIELD_MAX);
    }
    return sb.len;
}

void ink_log_request(const struct ink_request_log *f)
{
    if (INK_LOG_INFO < ink_log_min_level)
        return;
    char line[INK_LOG_REQUEST_LINE_MAX + 1], ts[32];
    timestamp(ts);
    struct ink_sb sb;
    ink_sb_init(&sb, line, sizeof line - 1);
    sb.len = ink_log_format_request(f, log_json, ts, line, sizeof line - 1);
    emit(&sb);
}
