#include "itest_mail.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POLL_MS 50
#define MAX_PRINTED 16000 /* of the session log, when a wait fails */
#define MAX_ARGS 23       /* extra arguments: itest_fake_start passes on 25, two are --cert-dir */
#define TOKEN_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* ---- the process ----------------------------------------------------------------------------- */

static bool copy_str(char *out, size_t n, const json_t *v)
{
    const char *s = json_string_value(v);
    return s && snprintf(out, n, "%s", s) < (int)n;
}

static bool port_of(const json_t *v, unsigned *out)
{
    json_int_t p = json_integer_value(v);
    if (!json_is_integer(v) || p <= 0 || p > 65535)
        return false;
    *out = (unsigned)p;
    return true;
}

/* Reads /_fake/info into `s` without cmocka assertions: this runs in group set-ups. */
static bool read_info(struct itest_smtp *s)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_fake/info", s->ctl.port);
    struct itest_resp r;
    itest_request(NULL, "GET", url, NULL, NULL, 0, &r);
    const json_t *smtps = json_object_get(r.json, "smtpsPort");
    bool ok = r.status == 200 && port_of(json_object_get(r.json, "smtpPort"), &s->smtp_port) &&
              (json_is_null(smtps) || port_of(smtps, &s->smtps_port)) &&
              copy_str(s->ca_file, sizeof s->ca_file, json_object_get(r.json, "caFile")) &&
              copy_str(s->listen, sizeof s->listen, json_object_get(r.json, "listen"));
    if (!ok)
        fprintf(stderr, "smtp sink: unexpected /_fake/info answer %ld: %s\n", r.status,
                r.body ? r.body : "");
    itest_resp_free(&r);
    return ok;
}

char itest_smtp_timeout_kv[32] = "SMTP_TIMEOUT=3";

bool itest_smtp_start(struct itest_smtp *s, const char *const extra_args[])
{
    /* 3 s, or what valgrind needs for a TLS handshake: 15 s (a stalled relay costs the tests
     * that wait out the timeout this much, so not the full scale factor of 20) */
    unsigned timeout = itest_scaled(3000) / 1000;
    snprintf(itest_smtp_timeout_kv, sizeof itest_smtp_timeout_kv, "SMTP_TIMEOUT=%u",
             timeout > 15 ? 15 : timeout);
    /* A distinct name per sink: the harness names the port file and the log after it, and a
     * test may run a second sink (another --listen or --user) beside the group's. */
    static unsigned started;
    memset(s, 0, sizeof *s);
    s->ctl.pid = -1;
    const char *script = getenv("INKLET_ITEST_SMTP_SINK");
    if (!script || !*script) {
        fprintf(stderr, "INKLET_ITEST_SMTP_SINK is not set (scripts/test.sh sets it to "
                        "tests/fakes/smtp_sink.py)\n");
        return false;
    }
    char name[32];
    snprintf(name, sizeof name, "smtp-sink-%u", ++started);
    /* The CA goes into this run's temp dir unless the caller chose a place: a sink killed with
     * the runner (a failed test) cannot remove a temp dir of its own. */
    bool own_cert_dir = false;
    size_t n_extra = 0;
    for (; extra_args && extra_args[n_extra]; n_extra++)
        own_cert_dir |= strcmp(extra_args[n_extra], "--cert-dir") == 0;
    if (n_extra > MAX_ARGS) {
        fprintf(stderr, "itest_smtp_start: more than %d arguments\n", MAX_ARGS);
        return false;
    }
    char cert_dir[192];
    snprintf(cert_dir, sizeof cert_dir, "%s/%s-certs", itest.tmpdir, name);
    const char *args[MAX_ARGS + 3] = {"--cert-dir", cert_dir};
    size_t n = own_cert_dir ? 0 : 2;
    for (size_t i = 0; i < n_extra; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;
    if (!itest_fake_start(&s->ctl, name, script, args))
        return false;
    if (read_info(s))
        return true;
    itest_fake_dump_log(&s->ctl, "answered /_fake/info badly");
    itest_fake_stop(&s->ctl);
    return false;
}

int itest_smtp_stop(struct itest_smtp *s)
{
    return itest_fake_stop(&s->ctl);
}

void itest_smtp_url(const struct itest_smtp *s, bool tls, char *out, size_t n)
{
    if (tls && s->smtps_port == 0)
        fail_msg("the smtp sink was started without --smtps-port");
    bool v6 = strchr(s->listen, ':') != NULL;
    int len = snprintf(out, n, "%s://%s%s%s:%u", tls ? "smtps" : "smtp", v6 ? "[" : "", s->listen,
                       v6 ? "]" : "", tls ? s->smtps_port : s->smtp_port);
    assert_true(len > 0 && (size_t)len < n);
}

/* ---- messages ------------------------------------------------------------------------------- */

json_t *itest_smtp_messages(const struct itest_smtp *s)
{
    json_t *answer = itest_fake_call(&s->ctl, "GET", "/_fake/messages", NULL);
    json_t *messages = json_object_get(answer, "messages");
    assert_true(json_is_array(messages));
    json_incref(messages);
    json_decref(answer);
    return messages;
}

void itest_smtp_clear(const struct itest_smtp *s)
{
    json_decref(itest_fake_call(&s->ctl, "DELETE", "/_fake/messages", NULL));
}

static bool has_rcpt(const json_t *msg, const char *rcpt)
{
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(msg, "rcptTo"), i, v)
    {
        if (json_is_string(v) && strcasecmp(json_string_value(v), rcpt) == 0)
            return true;
    }
    return false;
}

/* The messages for `rcpt`, or all of them when it is NULL (new reference). */
static json_t *messages_to(const struct itest_smtp *s, const char *rcpt)
{
    json_t *all = itest_smtp_messages(s);
    if (!rcpt)
        return all;
    json_t *some = json_array();
    size_t i;
    json_t *msg;
    json_array_foreach(all, i, msg)
    {
        if (has_rcpt(msg, rcpt))
            json_array_append(some, msg);
    }
    json_decref(all);
    return some;
}

/* A failed wait shows what the sink saw: a refused, dropped or never-made connection is told
 * apart only by the session log. */
static void print_sessions(const struct itest_smtp *s)
{
    json_t *answer = itest_fake_call(&s->ctl, "GET", "/_fake/sessions", NULL);
    char *text = answer ? json_dumps(answer, JSON_INDENT(1)) : NULL;
    size_t len = text ? strlen(text) : 0;
    fprintf(stderr, "----- smtp sink sessions%s -----\n%s\n----- end of sessions -----\n",
            len > MAX_PRINTED ? " (the last part)" : "",
            text ? text + (len > MAX_PRINTED ? len - MAX_PRINTED : 0) : "(none)");
    free(text);
    json_decref(answer);
}

static json_t *wait_for(const struct itest_smtp *s, const char *rcpt, size_t n, unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + itest_scaled(timeout_ms);
    for (;;) {
        json_t *got = messages_to(s, rcpt);
        size_t have = json_array_size(got);
        if (have >= n)
            return got;
        json_decref(got);
        if (itest_now_ms() >= deadline) {
            print_sessions(s);
            fail_msg("smtp sink: %zu of %zu message(s)%s%s after %u ms (scaled)", have, n,
                     rcpt ? " to " : "", rcpt ? rcpt : "", timeout_ms);
        }
        itest_sleep_ms(POLL_MS);
    }
}

json_t *itest_smtp_wait(const struct itest_smtp *s, size_t n, unsigned timeout_ms)
{
    return wait_for(s, NULL, n, timeout_ms);
}

json_t *itest_smtp_wait_to(const struct itest_smtp *s, const char *rcpt, size_t n,
                           unsigned timeout_ms)
{
    return wait_for(s, rcpt, n, timeout_ms);
}

void itest_smtp_mode(const struct itest_smtp *s, const char *mode, const char *stage, int count)
{
    json_t *body = json_pack("{s:s}", "mode", mode);
    assert_non_null(body);
    if (stage)
        json_object_set_new(body, "stage", json_string(stage));
    if (count > 0)
        json_object_set_new(body, "count", json_integer(count));
    json_t *answer = itest_fake_call(&s->ctl, "POST", "/_fake/mode", body);
    json_decref(body);
    assert_string_equal(itest_str(answer, "mode"), mode);
    json_decref(answer);
}

/* ---- links ---------------------------------------------------------------------------------- */

/* True when `link` occurs in `hay` and is not merely the start of a longer token there. */
static bool has_link(const char *hay, const char *link)
{
    size_t len = strlen(link);
    for (const char *at = strstr(hay, link); at; at = strstr(at + 1, link)) {
        if (at[len] == '\0' || !strchr(TOKEN_CHARS, at[len]))
            return true;
    }
    return false;
}

/* `link` with every '&' written "&amp;", as an HTML attribute carries it (malloc'd). */
static char *amp_escaped(const char *link)
{
    size_t amps = 0;
    for (const char *p = link; *p; p++)
        amps += *p == '&';
    char *out = malloc(strlen(link) + 4 * amps + 1);
    assert_non_null(out);
    char *w = out;
    for (const char *p = link; *p; p++) {
        if (*p == '&') {
            memcpy(w, "&amp;", 5);
            w += 5;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return out;
}

char *itest_mail_token(const json_t *msg, const char *path)
{
    const char *text = json_string_value(json_object_get(msg, "text"));
    const char *html = json_string_value(json_object_get(msg, "html"));
    if (!text || !html)
        fail_msg("the mail has no %s part", !text ? "text/plain" : "text/html");
    char needle[128];
    assert_true((size_t)snprintf(needle, sizeof needle, "%s?token=", path) < sizeof needle);
    const char *hit = strstr(text, needle);
    if (!hit)
        fail_msg("no %s?token= link in the text part:\n%s", path, text);
    const char *token = hit + strlen(needle);
    size_t token_len = strspn(token, TOKEN_CHARS);
    if (token_len == 0)
        fail_msg("an empty token in the text part:\n%s", text);
    /* The link starts where the word does: the text part may put it in <...> or after a colon
     * and a space, never split. */
    const char *start = hit;
    while (start > text && !strchr(" \t\r\n<>\"'()[]", start[-1]))
        start--;
    char *link = strndup(start, (size_t)(token + token_len - start));
    assert_non_null(link);
    bool absolute = strncmp(link, "https://", 8) == 0 || strncmp(link, "http://", 7) == 0;
    char *escaped = amp_escaped(link);
    bool in_html = has_link(html, link) || has_link(html, escaped);
    if (!absolute || !in_html)
        fprintf(stderr, "the text part's link: %s\nthe HTML part:\n%s\n", link, html);
    free(escaped);
    free(link); /* before a failure: cmocka's longjmp would leak it */
    if (!absolute)
        fail_msg("the link in the text part is not absolute");
    if (!in_html)
        fail_msg("the text part's link is not in the HTML part");
    char *out = strndup(token, token_len);
    assert_non_null(out);
    return out;
}
