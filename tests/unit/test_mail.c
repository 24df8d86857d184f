/* mail: every kind rendered and read back strictly (CRLF only, the exact header set, the MIME
 * structure, quoted-printable decoding that gives back the template file with the variables);
 * hostile variables and addresses; Message-ID stability; RFC 2047 encoding; the SMTP URL rules;
 * and ink_smtp_send against a scripted SMTP peer on loopback (no other network). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/mail.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NOW ((time_t)1768473000) /* Thu, 15 Jan 2026 10:30:00 UTC */
#define NOW_TEXT "Thu, 15 Jan 2026 10:30:00 +0000"
#define SEED "0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0e"
#define FROM "Inklet <no-reply@iminklet.com>"
#define TO "ada@example.com"
#define LINK                                                                                       \
    "https://portal.iminklet.com/"                                                                 \
    "reset-password?token=Q2hhbmdlIG1lIHBsZWFzZSB0aGlzIGlzIGEgdG9r&x=1"

static const char *const HEADER_ORDER[] = {
    "Date",         "From",           "To",
    "Subject",      "Message-ID",     "MIME-Version",
    "Content-Type", "Auto-Submitted", "X-Auto-Response-Suppress"};
#define NHEADERS (sizeof HEADER_ORDER / sizeof HEADER_ORDER[0])

/* ------------------------------------------------------------------ small string helpers */

struct str {
    char *s;
    size_t n;
};

static void str_add(struct str *b, const char *p, size_t n)
{
    b->s = realloc(b->s, b->n + n + 1);
    assert_non_null(b->s);
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void str_adds(struct str *b, const char *p)
{
    str_add(b, p, strlen(p));
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct str b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        str_add(&b, chunk, n);
    fclose(f);
    assert_non_null(b.s);
    return b.s;
}

static int b64_value(char c)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(A, c) : NULL;
    return p ? (int)(p - A) : -1;
}

/* Strict standard base64 with padding. */
static void b64_decode(const char *s, size_t n, struct str *out)
{
    assert_int_equal(n % 4, 0);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            v[k] = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
            assert_true(v[k] >= 0);
        }
        unsigned char b[3] = {(unsigned char)(v[0] << 2 | v[1] >> 4),
                              (unsigned char)(v[1] << 4 | v[2] >> 2),
                              (unsigned char)(v[2] << 6 | v[3])};
        size_t keep = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        if (keep < 3)
            assert_true(i + 4 == n);
        str_add(out, (const char *)b, keep);
    }
}

/* Decodes a header value made only of RFC 2047 B encoded words (UTF-8), separated by spaces,
 * optionally followed by one plain token (returned in *rest). */
static char *decode_words(const char *v, const char **rest)
{
    struct str out = {0};
    str_adds(&out, "");
    *rest = NULL;
    while (*v) {
        while (*v == ' ')
            v++;
        if (strncmp(v, "=?UTF-8?B?", 10) != 0) {
            *rest = v;
            break;
        }
        const char *end = strstr(v + 10, "?=");
        assert_non_null(end);
        size_t wl = (size_t)(end + 2 - v);
        assert_true(wl <= 75); /* RFC 2047 §2 */
        b64_decode(v + 10, (size_t)(end - v - 10), &out);
        v = end + 2;
        assert_true(*v == ' ' || *v == '\0');
    }
    return out.s;
}

/* ------------------------------------------------------------------ the strict reader */

struct mail {
    char *name[NHEADERS + 4];
    char *value[NHEADERS + 4]; /* unfolded, leading white space dropped */
    size_t nh;
    char boundary[128];
    char *text, *html; /* decoded quoted-printable, CRLF line ends */
};

static void mail_free(struct mail *m)
{
    for (size_t i = 0; i < m->nh; i++) {
        free(m->name[i]);
        free(m->value[i]);
    }
    free(m->text);
    free(m->html);
    memset(m, 0, sizeof *m);
}

static const char *header(const struct mail *m, const char *name)
{
    for (size_t i = 0; i < m->nh; i++)
        if (strcmp(m->name[i], name) == 0)
            return m->value[i];
    fail_msg("no %s header", name);
    return NULL;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Quoted-printable content (without the CRLF that belongs to the next delimiter): lines of at
 * most 76, no trailing white space, no line starting with '.', "=XX" upper-case hex or "=" at
 * the end for a soft break and no other '='. */
static char *qp_decode(const char *s, size_t n)
{
    struct str out = {0};
    str_adds(&out, "");
    size_t pos = 0;
    for (;;) {
        const char *eol = memmem(s + pos, n - pos, "\r\n", 2);
        size_t len = eol ? (size_t)(eol - s - pos) : n - pos;
        const char *line = s + pos;
        assert_true(len <= 76);
        if (len) {
            assert_true(line[len - 1] != ' ' && line[len - 1] != '\t');
            assert_true(line[0] != '.');
        }
        bool soft = false;
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)line[i];
            assert_true((c >= 33 && c <= 126) || c == ' ');
            if (c != '=') {
                str_add(&out, (const char *)&c, 1);
                continue;
            }
            if (i + 1 == len) {
                soft = true;
                break;
            }
            assert_true(i + 2 < len);
            int hi = hexval(line[i + 1]), lo = hexval(line[i + 2]);
            assert_true(hi >= 0 && lo >= 0);
            char b = (char)(hi << 4 | lo);
            str_add(&out, &b, 1);
            i += 2;
        }
        if (!eol) {
            assert_false(soft);
            break;
        }
        if (!soft)
            str_adds(&out, "\r\n");
        pos += len + 2;
    }
    return out.s;
}

/* One MIME part between delimiters: the exact two part headers, then quoted-printable. */
static char *read_part(const char *p, size_t n, const char *type)
{
    char want[200];
    snprintf(
        want, sizeof want,
        "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        type);
    size_t wl = strlen(want);
    assert_true(n >= wl);
    assert_memory_equal(p, want, wl);
    return qp_decode(p + wl, n - wl);
}

/* Reads a rendered message strictly (any deviation fails the test). Header lines are at most
 * `line_max` characters (78, unless a test makes a longer one unavoidable). */
static void parse_mail(const struct ink_mail_msg *msg, struct mail *m, size_t line_max)
{
    memset(m, 0, sizeof *m);
    const char *d = msg->data;
    assert_non_null(d);
    assert_int_equal(strlen(d), msg->len);
    for (size_t i = 0; i < msg->len; i++) {
        unsigned char c = (unsigned char)d[i];
        assert_true(c < 0x80);
        if (c == '\r')
            assert_true(i + 1 < msg->len && d[i + 1] == '\n');
        if (c == '\n')
            assert_true(i > 0 && d[i - 1] == '\r');
        if (c < 0x20)
            assert_true(c == '\r' || c == '\n');
    }
    const char *hend = strstr(d, "\r\n\r\n");
    assert_non_null(hend);
    for (const char *line = d; line < hend + 2;) {
        const char *eol = strstr(line, "\r\n");
        size_t len = (size_t)(eol - line);
        assert_true(len > 0 && len <= line_max && len <= 998);
        if (line[0] == ' ' || line[0] == '\t') {
            assert_true(m->nh > 0);
            size_t old = strlen(m->value[m->nh - 1]);
            m->value[m->nh - 1] = realloc(m->value[m->nh - 1], old + len + 1);
            memcpy(m->value[m->nh - 1] + old, line, len);
            m->value[m->nh - 1][old + len] = '\0';
        } else {
            const char *colon = memchr(line, ':', len);
            assert_non_null(colon);
            assert_true(colon > line);
            for (const char *c = line; c < colon; c++)
                assert_true(*c > 32 && *c < 127);
            assert_true(m->nh < NHEADERS + 4);
            m->name[m->nh] = strndup(line, (size_t)(colon - line));
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            m->value[m->nh] = strndup(v, (size_t)(eol - v));
            m->nh++;
        }
        line = eol + 2;
    }
    assert_int_equal(m->nh, NHEADERS);
    for (size_t i = 0; i < NHEADERS; i++)
        assert_string_equal(m->name[i], HEADER_ORDER[i]);

    const char *ct = header(m, "Content-Type");
    const char *pre = "multipart/alternative; boundary=\"";
    assert_true(strncmp(ct, pre, strlen(pre)) == 0);
    const char *b = ct + strlen(pre);
    size_t bl = strlen(b);
    assert_true(bl >= 2 && bl - 1 <= 70 && b[bl - 1] == '"');
    memcpy(m->boundary, b, bl - 1);
    m->boundary[bl - 1] = '\0';
    for (const char *c = m->boundary; *c; c++)
        assert_non_null(
            strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'()+_,-./"
                   ":=?",
                   *c));

    /* body: --B CRLF part1 CRLF --B CRLF part2 CRLF --B-- CRLF, and the boundary nowhere else */
    const char *body = hend + 4;
    size_t blen = msg->len - (size_t)(body - d);
    char delim[140];
    snprintf(delim, sizeof delim, "--%s", m->boundary);
    size_t dl = strlen(delim);
    int count = 0;
    for (const char *p = body; (p = memmem(p, blen - (size_t)(p - body), delim, dl)); p += dl)
        count++;
    assert_int_equal(count, 3);
    assert_memory_equal(body, delim, dl);
    assert_memory_equal(body + dl, "\r\n", 2);
    const char *p1 = body + dl + 2;
    char mid[150];
    snprintf(mid, sizeof mid, "\r\n%s\r\n", delim);
    const char *e1 = strstr(p1, mid);
    assert_non_null(e1);
    const char *p2 = e1 + strlen(mid);
    char close[150];
    snprintf(close, sizeof close, "\r\n%s--\r\n", delim);
    const char *e2 = strstr(p2, close);
    assert_non_null(e2);
    assert_true(e2 + strlen(close) == d + msg->len);
    m->text = read_part(p1, (size_t)(e1 - p1), "text/plain");
    m->html = read_part(p2, (size_t)(e2 - p2), "text/html");
}

/* ------------------------------------------------------------------ expectations from the file */

struct expect {
    const char *username, *link, *ttl, *provider; /* as they must appear, before HTML escaping */
};

static void html_escape_into(struct str *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            str_adds(b, "&amp;");
            break;
        case '<':
            str_adds(b, "&lt;");
            break;
        case '>':
            str_adds(b, "&gt;");
            break;
        case '"':
            str_adds(b, "&quot;");
            break;
        case '\'':
            str_adds(b, "&#39;");
            break;
        default:
            str_add(b, s, 1);
        }
    }
}

static char *template_text(const char *kind)
{
    char path[512];
    snprintf(path, sizeof path, "%s/src/mail/templates/%s.txt", INKLET_SOURCE_DIR, kind);
    return read_file(path);
}

static char *template_subject(const char *kind)
{
    char *t = template_text(kind);
    char *s = strstr(t, "\nSubject: ");
    assert_non_null(s);
    s += 10;
    char *out = strndup(s, strcspn(s, "\n"));
    free(t);
    return out;
}

/* The part of the template file with every placeholder replaced, trailing newlines dropped and
 * LF turned into CRLF: what decoding the rendered part must give. */
static char *expected_part(const char *kind, bool html, const struct expect *e)
{
    char *t = template_text(kind);
    char *start = strstr(t, html ? "\n--- html\n" : "\n--- text\n");
    assert_non_null(start);
    start += 10;
    char *end = html ? start + strlen(start) : strstr(start, "\n--- html\n");
    assert_non_null(end);
    while (end > start && end[-1] == '\n')
        end--;
    struct str out = {0};
    str_adds(&out, "");
    for (char *p = start; p < end;) {
        if (strncmp(p, "{{", 2) == 0) {
            char *close = strstr(p, "}}");
            assert_non_null(close);
            size_t n = (size_t)(close - p - 2);
            const char *v = NULL;
            if (n == 8 && strncmp(p + 2, "username", 8) == 0)
                v = e->username;
            else if (n == 4 && strncmp(p + 2, "link", 4) == 0)
                v = e->link;
            else if (n == 3 && strncmp(p + 2, "ttl", 3) == 0)
                v = e->ttl;
            else if (n == 8 && strncmp(p + 2, "provider", 8) == 0)
                v = e->provider;
            if (!v)
                fail_msg("%s.txt: unknown or unset placeholder %.*s", kind, (int)n + 4, p);
            if (html)
                html_escape_into(&out, v);
            else
                str_adds(&out, v);
            p = close + 2;
        } else if (*p == '\n') {
            str_adds(&out, "\r\n");
            p++;
        } else {
            str_add(&out, p, 1);
            p++;
        }
    }
    free(t);
    return out.s;
}

static const struct ink_mail_vars STD_VARS = {"ada", LINK, 1800, "Google"};
static const struct expect STD_EXPECT = {"ada", LINK, "30 minutes", "Google"};

/* Renders `kind` with `vars`, parses it strictly and checks both parts against the template. */
static void render_and_check(enum ink_mail_kind kind, const struct ink_mail_vars *vars,
                             const struct expect *e, struct mail *m)
{
    struct ink_mail_msg msg;
    assert_int_equal(ink_mail_render(kind, vars, FROM, TO, SEED, NOW, &msg), INK_OK);
    parse_mail(&msg, m, 78);
    const char *name = ink_mail_kind_name(kind);
    char *text = expected_part(name, false, e), *html = expected_part(name, true, e);
    assert_string_equal(m->text, text);
    assert_string_equal(m->html, html);
    free(text);
    free(html);
    ink_mail_msg_free(&msg);
    assert_null(msg.data);
}

/* ------------------------------------------------------------------ rendering */

static void every_kind_renders_and_reads_back_strictly(void **state)
{
    (void)state;
    for (unsigned k = 0; k < INK_MAIL_KINDS; k++) {
        struct mail m;
        render_and_check((enum ink_mail_kind)k, &STD_VARS, &STD_EXPECT, &m);
        const char *name = ink_mail_kind_name((enum ink_mail_kind)k);
        char *subject = template_subject(name);
        assert_string_equal(header(&m, "Date"), NOW_TEXT);
        assert_string_equal(header(&m, "From"), FROM);
        assert_string_equal(header(&m, "To"), TO);
        assert_string_equal(header(&m, "Subject"), subject);
        assert_string_equal(header(&m, "Message-ID"), "<" SEED "@iminklet.com>");
        assert_string_equal(header(&m, "MIME-Version"), "1.0");
        assert_string_equal(header(&m, "Auto-Submitted"), "auto-generated");
        assert_string_equal(header(&m, "X-Auto-Response-Suppress"), "All");
        assert_true(strncmp(m.boundary, "=_", 2) == 0);
        /* the signature, and the link as a button and as text in the HTML */
        assert_non_null(strstr(m.text, "\r\n\xe2\x80\x94 Inklet"));
        if (strstr(m.text, LINK)) {
            const char *esc = "https://portal.iminklet.com/reset-password?token="
                              "Q2hhbmdlIG1lIHBsZWFzZSB0aGlzIGlzIGEgdG9r&amp;x=1";
            char href[256];
            snprintf(href, sizeof href, "href=\"%s\"", esc);
            const char *button = strstr(m.html, href);
            assert_non_null(button);
            assert_non_null(strstr(button + strlen(href), esc));
        }
        free(subject);
        mail_free(&m);
    }
}

static void the_link_mails_say_when_the_link_expires_and_that_ignoring_is_safe(void **state)
{
    (void)state;
    enum ink_mail_kind kinds[] = {INK_MAIL_PASSWORD_RESET, INK_MAIL_VERIFY_EMAIL};
    for (size_t i = 0; i < 2; i++) {
        struct mail m;
        render_and_check(kinds[i], &STD_VARS, &STD_EXPECT, &m);
        assert_non_null(strstr(m.text, LINK "\r\n"));
        assert_non_null(strstr(m.text, "expires in 30 minutes."));
        assert_non_null(strstr(m.text, "ignore this mail"));
        mail_free(&m);
    }
    struct mail m;
    render_and_check(INK_MAIL_RESET_OAUTH_ONLY, &STD_VARS, &STD_EXPECT, &m);
    assert_non_null(strstr(m.text, "signs in with Google and has no password"));
    assert_null(strstr(m.text, "https://"));
    mail_free(&m);
}

static void ttl_is_rendered_in_words(void **state)
{
    (void)state;
    static const struct {
        unsigned s;
        const char *text;
    } cases[] = {{1800, "30 minutes"}, {3600, "1 hour"},     {86400, "24 hours"},
                 {7200, "2 hours"},    {60, "1 minute"},     {90, "1 minute"},
                 {5400, "90 minutes"}, {45, "45 seconds"},   {1, "1 second"},
                 {3601, "60 minutes"}, {172800, "48 hours"}, {119, "1 minute"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ink_mail_vars v = STD_VARS;
        v.ttl_seconds = cases[i].s;
        struct expect e = STD_EXPECT;
        e.ttl = cases[i].text;
        struct mail m;
        render_and_check(INK_MAIL_PASSWORD_RESET, &v, &e, &m);
        mail_free(&m);
    }
}

static void kind_names_are_stable(void **state)
{
    (void)state;
    static const char *const names[] = {
        "verify_email",       "password_reset",  "reset_oauth_only", "password_changed",
        "password_was_reset", "provider_linked", "account_deleted",  "email_changed"};
    assert_int_equal(INK_MAIL_KINDS, 8);
    for (unsigned k = 0; k < INK_MAIL_KINDS; k++) {
        assert_string_equal(ink_mail_kind_name((enum ink_mail_kind)k), names[k]);
        enum ink_mail_kind out = INK_MAIL_KINDS;
        assert_true(ink_mail_kind_from_name(names[k], &out));
        assert_int_equal(out, k);
    }
    enum ink_mail_kind out = INK_MAIL_ACCOUNT_DELETED;
    assert_false(ink_mail_kind_from_name("Password_reset", &out));
    assert_false(ink_mail_kind_from_name("password_reset ", &out));
    assert_false(ink_mail_kind_from_name("", &out));
    assert_false(ink_mail_kind_from_name(NULL, &out));
    assert_int_equal(out, INK_MAIL_ACCOUNT_DELETED);
    assert_null(ink_mail_kind_name(INK_MAIL_KINDS));
    assert_null(ink_mail_kind_name((enum ink_mail_kind) - 1));
}

/* ------------------------------------------------------------------ hostile variables */

static void a_username_with_crlf_cannot_add_a_header(void **state)
{
    (void)state;
    static const char *const hostile[] = {"a\r\nBcc: evil@x", "a\nBcc: evil@x", "a\rBcc: evil@x"};
    for (size_t i = 0; i < 3; i++) {
        struct ink_mail_vars v = STD_VARS;
        v.username = hostile[i];
        struct expect e = STD_EXPECT;
        e.username = "aBcc: evil@x";
        for (unsigned k = 0; k < INK_MAIL_KINDS; k++) {
            struct mail m;
            render_and_check((enum ink_mail_kind)k, &v, &e, &m); /* exactly the 9 headers */
            mail_free(&m);
        }
        struct ink_mail_msg msg;
        assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &v, FROM, TO, SEED, NOW, &msg),
                         INK_OK);
        assert_null(strstr(msg.data, "\nBcc"));
        ink_mail_msg_free(&msg);
    }
}

static void a_username_cannot_break_the_mime_structure(void **state)
{
    (void)state;
    static const char *const hostile[] = {"\r\n\r\n--boundary", "\r\n--=_inklet_\r\n\r\n",
                                          "--=_inklet_0123456789abcdef0123456789abcdef--",
                                          "=?UTF-8?B?QmNjOiBldmlsQHg=?=", ".\r\n.\r\nQUIT"};
    static const char *const cleaned[] = {"--boundary", "--=_inklet_",
                                          "--=_inklet_0123456789abcdef0123456789abcdef--",
                                          "=?UTF-8?B?QmNjOiBldmlsQHg=?=", "..QUIT"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        struct ink_mail_vars v = STD_VARS;
        v.username = hostile[i];
        v.provider = hostile[i];
        struct expect e = STD_EXPECT;
        e.username = e.provider = cleaned[i];
        for (unsigned k = 0; k < INK_MAIL_KINDS; k++) {
            struct mail m;
            render_and_check((enum ink_mail_kind)k, &v, &e, &m); /* 3 delimiters, no more */
            mail_free(&m);
        }
    }
}

static void invalid_utf8_is_replaced_and_invisible_controls_dropped(void **state)
{
    (void)state;
    struct ink_mail_vars v = STD_VARS;
    /* FF, a lone continuation, a truncated é, an overlong '/', NEL (C1), RLO and LRI */
    v.username = "\xff"
                 "ok\x80"
                 "x\xc3"
                 "y\xc0\xaf"
                 "z\xc2\x85"
                 "n\xe2\x80\xae"
                 "r\xe2\x81\xa6"
                 "l\t\x7f\x1b[31m";
    v.provider = "G\xc3\xb6ogle \xf0\x9f\x98\x80"; /* valid UTF-8 stays */
    struct expect e = STD_EXPECT;
    e.username = "\xef\xbf\xbd"
                 "ok\xef\xbf\xbd"
                 "x\xef\xbf\xbd"
                 "y\xef\xbf\xbd\xef\xbf\xbd"
                 "znrl[31m";
    e.provider = "G\xc3\xb6ogle \xf0\x9f\x98\x80";
    struct mail m;
    render_and_check(INK_MAIL_PROVIDER_LINKED, &v, &e, &m);
    mail_free(&m);
}

static void long_variables_are_cut_at_a_character_and_marked(void **state)
{
    (void)state;
    char big[10 * 1024 + 1];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char cut[INK_MAIL_VAR_MAX + 4];
    memset(cut, 'a', INK_MAIL_VAR_MAX);
    memcpy(cut + INK_MAIL_VAR_MAX, "\xe2\x80\xa6", 4);
    struct ink_mail_vars v = STD_VARS;
    v.username = big;
    v.provider = big;
    struct expect e = STD_EXPECT;
    e.username = e.provider = cut;
    struct mail m;
    render_and_check(INK_MAIL_RESET_OAUTH_ONLY, &v, &e, &m);
    mail_free(&m);

    /* a multi-byte character that would straddle the cut is left out whole */
    char euro[10 * 1024];
    size_t o = 0;
    euro[o++] = 'x'; /* 1 + 3k: the 67th € would end at byte 202 */
    while (o + 3 < sizeof euro) {
        memcpy(euro + o, "\xe2\x82\xac", 3);
        o += 3;
    }
    euro[o] = '\0';
    char ecut[INK_MAIL_VAR_MAX + 4];
    size_t c = 0;
    ecut[c++] = 'x';
    for (int i = 0; i < 66; i++, c += 3)
        memcpy(ecut + c, "\xe2\x82\xac", 3);
    memcpy(ecut + c, "\xe2\x80\xa6", 4);
    v.username = euro;
    e.username = ecut;
    v.provider = "Apple";
    e.provider = "Apple";
    render_and_check(INK_MAIL_PROVIDER_LINKED, &v, &e, &m);
    mail_free(&m);

    /* exactly INK_MAIL_VAR_MAX bytes is not cut */
    cut[INK_MAIL_VAR_MAX] = '\0';
    v.username = cut;
    e.username = cut;
    render_and_check(INK_MAIL_ACCOUNT_DELETED, &v, &e, &m);
    mail_free(&m);
}

static void html_is_escaped_in_the_html_part_only(void **state)
{
    (void)state;
    struct ink_mail_vars v = STD_VARS;
    v.username = "<script>alert('x')</script>&\"";
    struct expect e = STD_EXPECT;
    e.username = v.username;
    struct mail m;
    render_and_check(INK_MAIL_PASSWORD_RESET, &v, &e, &m);
    assert_null(strstr(m.html, "<script"));
    assert_non_null(strstr(m.html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
    assert_non_null(strstr(m.text, "Hi <script>alert('x')</script>&\","));
    mail_free(&m);
}

static void vars_a_kind_needs_must_be_usable(void **state)
{
    (void)state;
    struct ink_mail_msg msg = {(char *)"x", 1};
    struct ink_mail_vars v = STD_VARS;
    static const char *const bad_links[] = {NULL,
                                            "",
                                            "javascript:alert(1)",
                                            "portal.iminklet.com/reset-password?token=x",
                                            "https://",
                                            "https://a b",
                                            "https://a\r\nBcc: x@y",
                                            "https://\xc3\xa9.com",
                                            "ftp://x"};
    for (size_t i = 0; i < sizeof bad_links / sizeof bad_links[0]; i++) {
        v.link = bad_links[i];
        assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &v, FROM, TO, SEED, NOW, &msg),
                         INK_INVALID);
        assert_null(msg.data);
        assert_int_equal(msg.len, 0);
        /* a kind without a link does not care */
        assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &v, FROM, TO, SEED, NOW, &msg),
                         INK_OK);
        ink_mail_msg_free(&msg);
    }
    char longlink[INK_MAIL_LINK_MAX + 2];
    memset(longlink, 'a', sizeof longlink - 1);
    memcpy(longlink, "https://", 8);
    longlink[INK_MAIL_LINK_MAX] = '\0';
    v.link = longlink;
    assert_int_equal(ink_mail_render(INK_MAIL_VERIFY_EMAIL, &v, FROM, TO, SEED, NOW, &msg), INK_OK);
    ink_mail_msg_free(&msg);
    longlink[INK_MAIL_LINK_MAX] = 'a';
    longlink[INK_MAIL_LINK_MAX + 1] = '\0';
    assert_int_equal(ink_mail_render(INK_MAIL_VERIFY_EMAIL, &v, FROM, TO, SEED, NOW, &msg),
                     INK_INVALID);

    v = STD_VARS;
    v.ttl_seconds = 0;
    assert_int_equal(ink_mail_render(INK_MAIL_VERIFY_EMAIL, &v, FROM, TO, SEED, NOW, &msg),
                     INK_INVALID);
    v = STD_VARS;
    static const char *const bad_providers[] = {NULL, "", "\r\n", "\xe2\x80\xae"};
    for (size_t i = 0; i < 4; i++) {
        v.provider = bad_providers[i];
        assert_int_equal(ink_mail_render(INK_MAIL_RESET_OAUTH_ONLY, &v, FROM, TO, SEED, NOW, &msg),
                         INK_INVALID);
        assert_int_equal(ink_mail_render(INK_MAIL_PROVIDER_LINKED, &v, FROM, TO, SEED, NOW, &msg),
                         INK_INVALID);
    }
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, NULL, FROM, TO, SEED, NOW, &msg),
                     INK_INVALID);
    /* a notice needs nothing but renders an absent username as empty */
    assert_int_equal(ink_mail_render(INK_MAIL_ACCOUNT_DELETED, NULL, FROM, TO, SEED, NOW, &msg),
                     INK_OK);
    ink_mail_msg_free(&msg);
    assert_int_equal(ink_mail_render(INK_MAIL_KINDS, &STD_VARS, FROM, TO, SEED, NOW, &msg),
                     INK_INVALID);
    assert_int_equal(
        ink_mail_render((enum ink_mail_kind) - 1, &STD_VARS, FROM, TO, SEED, NOW, &msg),
        INK_INVALID);
    assert_null(msg.data);
}

/* ------------------------------------------------------------------ addresses */

/* A C string cannot carry a NUL inside it, so "NUL in an address" is the case of the caller's
 * buffer being cut short; the fuzz driver splits its input at NULs for the same reason. */
static void hostile_recipients_are_refused(void **state)
{
    (void)state;
    char at255[256], at254[256];
    /* 64 + 1 + 63.63.61 = 254 */
    snprintf(at254, sizeof at254, "%.64s@%.63s.%.63s.%.61s",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    assert_int_equal(strlen(at254), 254);
    snprintf(at255, sizeof at255, "%.64s@%.63s.%.63s.%.62s",
             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
             "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
             "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
             "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd");
    assert_int_equal(strlen(at255), 255);
    static const char *const bad[] = {"a\r\nb@x.com",
                                      "a@x.com\r\nBcc: e@x.com",
                                      "a@x.com\n",
                                      "\ra@x.com",
                                      "a\tb@x.com",
                                      "a\x7f@x.com",
                                      "a\x01@x.com",
                                      "a b@x.com",
                                      " a@x.com",
                                      "a@x.com ",
                                      "a@@x.com",
                                      "a@b@x.com",
                                      "ax.com",
                                      "@x.com",
                                      "a@",
                                      "",
                                      "\xc3\xbc@x.com",
                                      "a@ex\xc3\xa4mple.com",
                                      "<a@x.com>",
                                      "Ada <a@x.com>",
                                      "a..b@x.com",
                                      ".a@x.com",
                                      "a.@x.com",
                                      "a@x..com",
                                      "a@-x.com",
                                      "a@x-.com",
                                      "a@x.com.",
                                      "a@[1.2.3.4]",
                                      "\"a b\"@x.com",
                                      "a,b@x.com",
                                      "a(b)@x.com",
                                      "a@x_y.com"};
    struct ink_mail_msg msg = {(char *)"x", 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(ink_mail_address_valid(bad[i]));
        assert_int_equal(
            ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, FROM, bad[i], SEED, NOW, &msg),
            INK_INVALID);
        assert_null(msg.data);
        assert_int_equal(msg.len, 0);
    }
    assert_false(ink_mail_address_valid(at255));
    assert_false(ink_mail_address_valid(NULL));
    assert_int_equal(
        ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, FROM, NULL, SEED, NOW, &msg),
        INK_INVALID);
    static const char *const good[] = {"a@x", "A.B-c+tag@sub.Example.COM", "o'neil@x.ie",
                                       "x!#$%&*/=?^_`{|}~@y.z", "1@2.3"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(ink_mail_address_valid(good[i]));
        assert_int_equal(
            ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, FROM, good[i], SEED, NOW, &msg),
            INK_OK);
        struct mail m;
        parse_mail(&msg, &m, 78);
        assert_string_equal(header(&m, "To"), good[i]);
        mail_free(&m);
        ink_mail_msg_free(&msg);
    }
    assert_true(ink_mail_address_valid(at254));
    assert_int_equal(
        ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, FROM, at254, SEED, NOW, &msg),
        INK_OK);
    struct mail m;
    parse_mail(&msg, &m, 998); /* an address longer than a line cannot be folded */
    assert_string_equal(header(&m, "To"), at254);
    mail_free(&m);
    ink_mail_msg_free(&msg);
}

static void hostile_from_values_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {FROM "\r\nBcc: x@y.z",
                                      "Inklet\r\n <no-reply@iminklet.com>",
                                      "Inklet\t<no-reply@iminklet.com>",
                                      "Inklet <no reply@iminklet.com>",
                                      "Inklet <a@b@iminklet.com>",
                                      "Inklet <>",
                                      "Inklet no-reply@iminklet.com>",
                                      "Inklet <no-reply@iminklet.com",
                                      "Inklet <no-reply@iminklet.com> ",
                                      "\"Inklet <no-reply@iminklet.com>",
                                      "Ink\"let <no-reply@iminklet.com>",
                                      "Ink\\let <no-reply@iminklet.com>",
                                      "Ink<let <no-reply@iminklet.com>",
                                      "\"Inklet\\\" <no-reply@iminklet.com>",
                                      "\xff Inklet <no-reply@iminklet.com>",
                                      "Inklet <n\xc3\xb6-reply@iminklet.com>",
                                      "Inklet <<no-reply@iminklet.com>>",
                                      "no-reply@iminklet.com (Inklet)",
                                      "",
                                      NULL};
    struct ink_mail_msg msg = {(char *)"x", 1};
    char addr[255] = "junk";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(ink_mail_address_of(bad[i], addr));
        assert_string_equal(addr, "");
        assert_int_equal(
            ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, bad[i], TO, SEED, NOW, &msg),
            INK_INVALID);
        assert_null(msg.data);
    }
    char longname[600];
    memset(longname, 'a', sizeof longname);
    snprintf(longname + 201, sizeof longname - 201, " <no-reply@iminklet.com>");
    assert_false(ink_mail_address_of(longname, addr)); /* a 201-byte display name */
}

static void from_values_give_their_address_and_a_well_formed_header(void **state)
{
    (void)state;
    static const struct {
        const char *from, *addr, *header;
    } cases[] = {
        {"Inklet <no-reply@iminklet.com>", "no-reply@iminklet.com",
         "Inklet <no-reply@iminklet.com>"},
        {"no-reply@iminklet.com", "no-reply@iminklet.com", "no-reply@iminklet.com"},
        {"<no-reply@iminklet.com>", "no-reply@iminklet.com", "no-reply@iminklet.com"},
        {"Inklet<a@b.co>", "a@b.co", "Inklet <a@b.co>"},
        {"The Inklet Team <a@b.co>", "a@b.co", "The Inklet Team <a@b.co>"},
        {"Inklet, Inc. <a@b.co>", "a@b.co", "\"Inklet, Inc.\" <a@b.co>"},
        {"\"Inklet, Inc.\" <a@b.co>", "a@b.co", "\"Inklet, Inc.\" <a@b.co>"},
        {"\"The \\\"Inklet\\\" team\" <a@b.co>", "a@b.co", "\"The \\\"Inklet\\\" team\" <a@b.co>"},
        {"\"a <b>\" <a@b.co>", "a@b.co", "\"a <b>\" <a@b.co>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char addr[255];
        assert_true(ink_mail_address_of(cases[i].from, addr));
        assert_string_equal(addr, cases[i].addr);
        struct ink_mail_msg msg;
        assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, cases[i].from, TO,
                                         SEED, NOW, &msg),
                         INK_OK);
        struct mail m;
        parse_mail(&msg, &m, 78);
        assert_string_equal(header(&m, "From"), cases[i].header);
        char mid[128];
        snprintf(mid, sizeof mid, "<%s@%s>", SEED, strchr(cases[i].addr, '@') + 1);
        assert_string_equal(header(&m, "Message-ID"), mid);
        mail_free(&m);
        ink_mail_msg_free(&msg);
    }
}

static void a_non_ascii_display_name_is_encoded_and_folded(void **state)
{
    (void)state;
    static const char *const names[] = {
        "\xc3\x8fnklet T\xc3\xa9"
        "am",
        /* 40 × "é" = 80 bytes: more than one encoded word, so a fold */
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
        "Inklet =?UTF-8?B?QmNj?=", /* looks encoded: must arrive as typed */
        "\xe2\x9c\x89\xef\xb8\x8f Inklet \xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80"
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char from[400];
        snprintf(from, sizeof from, "%s <no-reply@iminklet.com>", names[i]);
        struct ink_mail_msg msg;
        assert_int_equal(
            ink_mail_render(INK_MAIL_PASSWORD_CHANGED, &STD_VARS, from, TO, SEED, NOW, &msg),
            INK_OK);
        struct mail m;
        parse_mail(&msg, &m, 78); /* all ASCII, every header line ≤ 78 */
        const char *rest;
        char *name = decode_words(header(&m, "From"), &rest);
        assert_string_equal(name, names[i]);
        assert_string_equal(rest, "<no-reply@iminklet.com>");
        if (strlen(names[i]) > 42)
            assert_non_null(strstr(msg.data, "?=\r\n =?UTF-8?B?"));
        free(name);
        mail_free(&m);
        ink_mail_msg_free(&msg);
    }
}

/* ------------------------------------------------------------------ Message-ID, boundary */

static void message_id_is_stable_for_a_seed(void **state)
{
    (void)state;
    struct ink_mail_msg a, b, c, d;
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, SEED, NOW, &a),
                     INK_OK);
    assert_int_equal(
        ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, SEED, NOW + 3600, &b),
        INK_OK);
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO,
                                     "0190B2A4-7C1E-7A3B-8F2D-5E6A7B8C9D0E", NOW, &c),
                     INK_OK);
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO,
                                     "0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0f", NOW, &d),
                     INK_OK);
    struct mail ma, mb, mc, md;
    parse_mail(&a, &ma, 78);
    parse_mail(&b, &mb, 78);
    parse_mail(&c, &mc, 78);
    parse_mail(&d, &md, 78);
    assert_string_equal(header(&ma, "Message-ID"), "<" SEED "@iminklet.com>");
    assert_string_equal(header(&mb, "Message-ID"), header(&ma, "Message-ID"));
    assert_string_equal(header(&mc, "Message-ID"), header(&ma, "Message-ID"));
    assert_string_equal(header(&md, "Message-ID"),
                        "<0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0f@iminklet.com>");
    assert_string_equal(header(&mb, "Date"), "Thu, 15 Jan 2026 11:30:00 +0000");
    /* the boundary is random per message */
    assert_string_not_equal(ma.boundary, mb.boundary);
    assert_string_not_equal(ma.boundary, mc.boundary);
    mail_free(&ma);
    mail_free(&mb);
    mail_free(&mc);
    mail_free(&md);
    ink_mail_msg_free(&a);
    ink_mail_msg_free(&b);
    ink_mail_msg_free(&c);
    ink_mail_msg_free(&d);

    static const char *const bad_seeds[] = {NULL,
                                            "",
                                            "not-a-uuid",
                                            "0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0e\r\nBcc: x@y",
                                            "0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0",
                                            "<a@b>"};
    for (size_t i = 0; i < sizeof bad_seeds / sizeof bad_seeds[0]; i++)
        assert_int_equal(
            ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, bad_seeds[i], NOW, &a),
            INK_INVALID);
    /* a Date outside 1970-9999 */
    assert_int_equal(
        ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, SEED, (time_t)-86400, &a),
        INK_INVALID);
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, SEED, 0, &a),
                     INK_OK);
    ink_mail_msg_free(&a);
    ink_mail_msg_free(&a); /* twice is harmless */
}

/* ------------------------------------------------------------------ template rules */

#define T_HEAD "# comment\nSubject: Hello there\n"

static enum ink_status render_tpl(enum ink_mail_kind kind, const char *tpl,
                                  struct ink_mail_msg *msg)
{
    return ink_mail_render_template(kind, tpl, strlen(tpl), &STD_VARS, FROM, TO, SEED, NOW, msg);
}

static void malformed_templates_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        T_HEAD "--- text\nHi {{user}}\n--- html\n<p>{{username}}</p>\n", /* unknown */
        T_HEAD
        "--- text\nHi {{username}} {{link}}\n--- html\n<p>{{username}}</p>\n", /* other kind */
        T_HEAD "--- text\nHi\n--- html\n<p>{{username}}</p>\n",                /* unused in text */
        T_HEAD "--- text\nHi {{username}}\n--- html\n<p>hi</p>\n",             /* unused in html */
        T_HEAD "--- text\nHi {{username}\n--- html\n<p>{{username}}</p>\n",    /* unclosed */
        T_HEAD "--- text\nHi {{ username }}\n--- html\n<p>{{username}}</p>\n",
        "Subject: Hi {{username}}\n--- text\n{{username}}\n--- html\n{{username}}\n",
        "Subject: \n--- text\n{{username}}\n--- html\n{{username}}\n",
        "Subject:  Hi\n--- text\n{{username}}\n--- html\n{{username}}\n",
        "Subject: Hi  there\n--- text\n{{username}}\n--- html\n{{username}}\n",
        "Subject: Hi\r\n--- text\n{{username}}\n--- html\n{{username}}\n",
        "Subject: Hi\n--- text\n{{username}}\r\n--- html\n{{username}}\n",
        "Subject: Hi\n--- text\n\t{{username}}\n--- html\n{{username}}\n",
        "Subject: Hi\n--- text\n{{username}}\n",
        "Subject: Hi\n--- html\n{{username}}\n--- text\n{{username}}\n",
        "Subject: Hi\n--- text\n\n\n--- html\n{{username}}\n",
        "Subject: Hi\n--- text\n{{username}}\n--- html\n\n",
        "Subject: Hi\n--- text\n{{username}}\n--- html\n{{username}}\n--- text\nmore\n",
        "Subject: Hi\n--- text\n{{username}}\n--- htm\n{{username}}\n",
        "Subject: Hi\n--- text\n{{username}} \xff\n--- html\n{{username}}\n",
        "Subject: Hi\n--- text\n{{username}} \xc2\x85\n--- html\n{{username}}\n", /* C1 NEL */
        "Subject: Hi\n--- text\n{{username}} \x7f\n--- html\n{{username}}\n",
        "Hi\n--- text\n{{username}}\n--- html\n{{username}}\n",
        "",
    };
    struct ink_mail_msg msg = {(char *)"x", 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (render_tpl(INK_MAIL_PASSWORD_CHANGED, bad[i], &msg) != INK_INTERNAL)
            fail_msg("template %zu accepted", i);
        assert_null(msg.data);
    }
    char subject[256];
    snprintf(subject, sizeof subject,
             "Subject: %0151d\n--- text\n{{username}}\n--- html\n{{username}}\n", 0);
    assert_int_equal(render_tpl(INK_MAIL_PASSWORD_CHANGED, subject, &msg), INK_INTERNAL);
    subject[9 + 150] = '\n'; /* a 150-byte subject is fine */
    memmove(subject + 9 + 150, subject + 9 + 151, strlen(subject + 9 + 151) + 1);
    assert_int_equal(render_tpl(INK_MAIL_PASSWORD_CHANGED, subject, &msg), INK_OK);
    ink_mail_msg_free(&msg);
    assert_int_equal(ink_mail_render_template(INK_MAIL_PASSWORD_CHANGED, NULL, 0, &STD_VARS, FROM,
                                              TO, SEED, NOW, &msg),
                     INK_INTERNAL);
    /* the bad input of the caller is reported before the template's */
    assert_int_equal(ink_mail_render_template(INK_MAIL_PASSWORD_CHANGED, "x", 1, &STD_VARS, FROM,
                                              "bad", SEED, NOW, &msg),
                     INK_INVALID);
}

static void a_non_ascii_subject_is_encoded_and_folded(void **state)
{
    (void)state;
    static const char *const subjects[] = {
        "Votre mot de passe Inklet a \xc3\xa9t\xc3\xa9 modifi\xc3\xa9",
        "\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89\xe3\x81\x8c\xe5\xa4\x89"
        "\xe6\x9b\xb4\xe3\x81\x95\xe3\x82\x8c\xe3\x81\xbe\xe3\x81\x97\xe3\x81\x9f\xe3\x80\x82"
        "\xe3\x81\x8a\xe5\xbf\x83\xe5\xbd\x93\xe3\x81\x9f\xe3\x82\x8a\xe3\x81\x8c\xe3\x81\xaa",
        "Hello =?ISO-8859-1?Q?a?= there",
    };
    for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
        char tpl[512];
        snprintf(tpl, sizeof tpl,
                 "Subject: %s\n--- text\nHi {{username}}\n--- html\n<p>Hi "
                 "{{username}}</p>\n",
                 subjects[i]);
        struct ink_mail_msg msg;
        assert_int_equal(render_tpl(INK_MAIL_PASSWORD_CHANGED, tpl, &msg), INK_OK);
        struct mail m;
        parse_mail(&msg, &m, 78);
        const char *rest;
        char *subject = decode_words(header(&m, "Subject"), &rest);
        assert_null(rest);
        assert_string_equal(subject, subjects[i]);
        assert_string_equal(m.text, "Hi ada");
        assert_string_equal(m.html, "<p>Hi ada</p>");
        free(subject);
        mail_free(&m);
        ink_mail_msg_free(&msg);
    }
    /* a long ASCII subject folds at spaces and unfolds to itself */
    const char *longsub = "This is a rather long subject line that has to be folded somewhere "
                          "because it is longer than seventy-eight characters";
    char tpl[512];
    snprintf(tpl, sizeof tpl, "Subject: %s\n--- text\n{{username}}\n--- html\n{{username}}\n",
             longsub);
    struct ink_mail_msg msg;
    assert_int_equal(render_tpl(INK_MAIL_PASSWORD_CHANGED, tpl, &msg), INK_OK);
    struct mail m;
    parse_mail(&msg, &m, 78);
    assert_string_equal(header(&m, "Subject"), longsub);
    assert_non_null(strstr(msg.data, "\r\n because"));
    mail_free(&m);
    ink_mail_msg_free(&msg);
}

static void quoted_printable_keeps_lines_short_and_text_exact(void **state)
{
    (void)state;
    /* a 300-byte line with '=' signs, trailing spaces, leading dots, multi-byte characters */
    struct str body = {0};
    str_adds(&body, ".starts with a dot\n");
    for (int i = 0; i < 30; i++)
        str_adds(&body, "a=b \xc3\xa9 ");
    str_adds(&body, "\ntrailing space \n\n..\n.\n=\nend");
    struct str tpl = {0};
    str_adds(&tpl, "Subject: QP\n--- text\n{{username}}");
    str_adds(&tpl, body.s);
    str_adds(&tpl, "\n--- html\n{{username}}");
    str_adds(&tpl, body.s);
    str_adds(&tpl, "\n\n\n");
    struct ink_mail_msg msg;
    assert_int_equal(render_tpl(INK_MAIL_PASSWORD_CHANGED, tpl.s, &msg), INK_OK);
    struct mail m;
    parse_mail(&msg, &m, 78); /* qp_decode checks ≤ 76, no trailing space, no leading dot */
    struct str want = {0};
    str_adds(&want, "ada");
    for (const char *p = body.s; *p; p++)
        str_adds(&want, *p == '\n' ? "\r\n" : (char[]){*p, 0});
    assert_string_equal(m.text, want.s);
    assert_string_equal(m.html, want.s);
    mail_free(&m);
    ink_mail_msg_free(&msg);
    free(body.s);
    free(tpl.s);
    free(want.s);
}

/* ------------------------------------------------------------------ SMTP URLs */

static void smtp_urls_are_checked(void **state)
{
    (void)state;
    static const char *const good[] = {"smtp://localhost",
                                       "smtp://127.0.0.1:25",
                                       "smtps://smtp.example.com:465",
                                       "SMTP://mail.example.com:587",
                                       "smtp://[::1]:2525",
                                       "smtp://[2001:db8::1]",
                                       "smtp://mail-1.example.com:65535",
                                       "smtp://a:1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (ink_smtp_url_problem(good[i]))
            fail_msg("%s refused: %s", good[i], ink_smtp_url_problem(good[i]));
    static const char *const bad[] = {NULL,
                                      "",
                                      "http://mail.example.com",
                                      "smtp:/mail.example.com",
                                      "mail.example.com:25",
                                      "smtp://",
                                      "smtp://user:pw@mail.example.com",
                                      "smtp://localhost@evil.example.com",
                                      "smtp://mail.example.com/path",
                                      "smtp://mail.example.com/",
                                      "smtp://mail.example.com?x=1",
                                      "smtp://mail.example.com#f",
                                      "smtp://mail example.com",
                                      "smtp://mail.example.com ",
                                      "smtp://mail.example.com\r\n",
                                      "smtp://mail.example.com:0",
                                      "smtp://mail.example.com:65536",
                                      "smtp://mail.example.com:",
                                      "smtp://mail.example.com:25x",
                                      "smtp://mail.example.com:123456",
                                      "smtp://mail.example.com:25:26",
                                      "smtp://:25",
                                      "smtp://[::1",
                                      "smtp://[::1]x",
                                      "smtp://[]",
                                      "smtp://[zz::1]",
                                      "smtp://[fe80::1%eth0]",
                                      "smtp://::1",
                                      "smtp://999.1.1.1",
                                      "smtp://1.2.3",
                                      "smtp://-mail.example.com",
                                      "smtp://mail-.example.com",
                                      "smtp://mail..example.com",
                                      "smtp://mail_x.example.com",
                                      "smtp://ex\xc3\xa4mple.com",
                                      "smtp://%6cocalhost"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!ink_smtp_url_problem(bad[i]))
            fail_msg("%s accepted", bad[i] ? bad[i] : "(null)");
        assert_false(ink_smtp_url_is_loopback(bad[i]));
    }
    char longurl[600] = "smtp://";
    memset(longurl + 7, 'a', 520);
    assert_non_null(ink_smtp_url_problem(longurl));
    assert_non_null(strstr(ink_smtp_url_problem("smtp://u:p@h"), "SMTP_USER"));
}

static void loopback_hosts_are_recognised_conservatively(void **state)
{
    (void)state;
    static const char *const loop[] = {"smtp://localhost",        "smtp://LocalHost:25",
                                       "smtp://127.0.0.1",        "smtp://127.255.0.9:2525",
                                       "smtp://[::1]:25",         "smtps://localhost:465",
                                       "smtp://[0:0:0:0:0:0:0:1]"};
    for (size_t i = 0; i < sizeof loop / sizeof loop[0]; i++)
        if (!ink_smtp_url_is_loopback(loop[i]))
            fail_msg("%s is loopback", loop[i]);
    static const char *const not_loop[] = {"smtp://128.0.0.1",
                                           "smtp://126.255.255.255",
                                           "smtp://localhost.example.com",
                                           "smtp://127.0.0.1.nip.io",
                                           "smtp://localhost.",
                                           "smtp://127.1",
                                           "smtp://0.0.0.0",
                                           "smtp://[::]",
                                           "smtp://[::2]",
                                           "smtp://[::ffff:127.0.0.1]",
                                           "smtp://mail.example.com",
                                           "smtp://[::1]@evil.example.com"};
    for (size_t i = 0; i < sizeof not_loop / sizeof not_loop[0]; i++)
        if (ink_smtp_url_is_loopback(not_loop[i]))
            fail_msg("%s taken for loopback", not_loop[i]);
}

/* ------------------------------------------------------------------ a scripted SMTP peer */

#define PASSWORD "s3cret-pw"
#define PASSWORD_B64 "AG1haWxlcgBzM2NyZXQtcHc=" /* "\0mailer\0s3cret-pw" */
#define STALL "STALL"

struct peer {
    /* the reply to each step; NULL closes the connection there, STALL stops answering */
    const char *greeting, *ehlo, *starttls, *auth, *mail, *rcpt, *data, *end;
    int lfd;
    unsigned short port;
    char host[64];
    pthread_t th;
    char log[8192]; /* every command line received, each followed by "\n" */
    size_t log_len;
    char body[64 * 1024]; /* the message as received, dot-stuffing undone */
    size_t body_len;
    bool body_done;
};

struct conn {
    int fd;
    char buf[4096];
    size_t len;
};

static bool conn_line(struct conn *c, char *out, size_t cap)
{
    for (;;) {
        char *eol = memmem(c->buf, c->len, "\r\n", 2);
        if (eol) {
            size_t n = (size_t)(eol - c->buf);
            if (n >= cap)
                return false;
            memcpy(out, c->buf, n);
            out[n] = '\0';
            memmove(c->buf, eol + 2, c->len - n - 2);
            c->len -= n + 2;
            return true;
        }
        if (c->len == sizeof c->buf)
            return false;
        struct pollfd pf = {c->fd, POLLIN, 0};
        if (poll(&pf, 1, 5000) != 1)
            return false;
        ssize_t got = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (got <= 0)
            return false;
        c->len += (size_t)got;
    }
}

static bool say(struct conn *c, const char *reply)
{
    if (!reply)
        return false;
    if (strcmp(reply, STALL) == 0) {
        char sink[512];
        struct pollfd pf = {c->fd, POLLIN, 0};
        while (poll(&pf, 1, 10000) == 1 && recv(c->fd, sink, sizeof sink, 0) > 0)
            ;
        return false;
    }
    char line[1024];
    int n = snprintf(line, sizeof line, "%s\r\n", reply);
    return send(c->fd, line, (size_t)n, MSG_NOSIGNAL) == n;
}

static void peer_log(struct peer *p, const char *line)
{
    size_t n = strlen(line);
    if (p->log_len + n + 2 <= sizeof p->log) {
        memcpy(p->log + p->log_len, line, n);
        p->log[p->log_len + n] = '\n';
        p->log_len += n + 1;
        p->log[p->log_len] = '\0';
    }
}

static bool starts(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static void peer_data(struct peer *p, struct conn *c)
{
    char line[2048];
    while (conn_line(c, line, sizeof line)) {
        if (strcmp(line, ".") == 0) {
            p->body_done = true;
            return;
        }
        const char *l = line[0] == '.' ? line + 1 : line;
        size_t n = strlen(l);
        if (p->body_len + n + 2 < sizeof p->body) {
            memcpy(p->body + p->body_len, l, n);
            memcpy(p->body + p->body_len + n, "\r\n", 2);
            p->body_len += n + 2;
        }
    }
}

static void *peer_run(void *arg)
{
    struct peer *p = arg;
    struct pollfd pf = {p->lfd, POLLIN, 0};
    if (poll(&pf, 1, 5000) != 1)
        return NULL;
    struct conn c = {0};
    c.fd = accept(p->lfd, NULL, NULL);
    if (c.fd < 0)
        return NULL;
    char line[2048];
    if (!say(&c, p->greeting))
        goto done;
    while (conn_line(&c, line, sizeof line)) {
        peer_log(p, line);
        const char *r;
        if (starts(line, "EHLO")) {
            r = p->ehlo;
        } else if (starts(line, "HELO")) {
            r = "250 fake";
        } else if (starts(line, "STARTTLS")) {
            say(&c, p->starttls);
            break; /* no TLS here: what matters is that nothing else was sent before */
        } else if (starts(line, "AUTH")) {
            if (strcasecmp(line, "AUTH PLAIN") == 0) {
                if (!say(&c, "334 ") || !conn_line(&c, line, sizeof line))
                    break;
                peer_log(p, line);
            }
            r = p->auth;
        } else if (starts(line, "MAIL")) {
            r = p->mail;
        } else if (starts(line, "RCPT")) {
            r = p->rcpt;
        } else if (starts(line, "DATA")) {
            if (!say(&c, p->data))
                break;
            if (!p->data || p->data[0] != '3')
                continue;
            peer_data(p, &c);
            r = p->end;
        } else if (starts(line, "QUIT")) {
            say(&c, "221 bye");
            break;
        } else {
            r = "500 unknown command";
        }
        if (!say(&c, r))
            break;
    }
done:
    close(c.fd);
    return NULL;
}

static void peer_defaults(struct peer *p)
{
    memset(p, 0, sizeof *p);
    p->greeting = "220 fake ESMTP";
    p->ehlo = "250-fake\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME";
    p->starttls = "220 go ahead";
    p->auth = "235 ok";
    p->mail = "250 ok";
    p->rcpt = "250 ok";
    p->data = "354 go on";
    p->end = "250 queued";
    snprintf(p->host, sizeof p->host, "127.0.0.1");
}

static void peer_start(struct peer *p)
{
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(p->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, p->host, &sa.sin_addr), 1);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p->lfd, 4), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
    p->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&p->th, NULL, peer_run, p), 0);
}

static void peer_stop(struct peer *p)
{
    pthread_join(p->th, NULL);
    close(p->lfd);
}

static struct ink_mail_msg rendered(void)
{
    struct ink_mail_msg msg;
    assert_int_equal(ink_mail_render(INK_MAIL_PASSWORD_RESET, &STD_VARS, FROM, TO, SEED, NOW, &msg),
                     INK_OK);
    return msg;
}

static enum ink_smtp_result send_to_peer(struct peer *p, bool auth, unsigned total_ms,
                                         char why[INK_SMTP_WHY_MAX])
{
    char url[128];
    peer_start(p);
    snprintf(url, sizeof url, "smtp://%s:%u", p->host, p->port);
    struct ink_smtp s = {.url = url,
                         .user = auth ? "mailer" : NULL,
                         .password = auth ? PASSWORD : NULL,
                         .connect_timeout_ms = 2000,
                         .total_timeout_ms = total_ms};
    struct ink_mail_msg msg = rendered();
    enum ink_smtp_result r = ink_smtp_send(&s, "no-reply@iminklet.com", TO, &msg, why);
    peer_stop(p);
    ink_mail_msg_free(&msg);
    return r;
}

static void a_message_is_sent_as_rendered_without_starttls_on_loopback(void **state)
{
    (void)state;
    struct peer p;
    peer_defaults(&p);
    char why[INK_SMTP_WHY_MAX] = "junk";
    assert_int_equal(send_to_peer(&p, true, 5000, why), INK_SMTP_SENT);
    assert_string_equal(why, "");
    /* offered STARTTLS is not used on loopback; PLAIN auth; one sender, one recipient */
    assert_null(strstr(p.log, "STARTTLS"));
    char *ehlo_end = strchr(p.log, '\n');
    assert_non_null(ehlo_end);
    assert_true(starts(p.log, "EHLO "));
    const char *want_rest = "AUTH PLAIN\n" PASSWORD_B64 "\n"
                            "MAIL FROM:<no-reply@iminklet.com>\n"
                            "RCPT TO:<" TO ">\n"
                            "DATA\n"
                            "QUIT\n";
    const char *alt_rest = "AUTH PLAIN " PASSWORD_B64 "\n"
                           "MAIL FROM:<no-reply@iminklet.com>\n"
                           "RCPT TO:<" TO ">\n"
                           "DATA\n"
                           "QUIT\n";
    if (strcmp(ehlo_end + 1, want_rest) != 0 && strcmp(ehlo_end + 1, alt_rest) != 0)
        fail_msg("unexpected dialogue:\n%s", p.log);
    struct ink_mail_msg msg = rendered();
    assert_true(p.body_done);
    /* the same bytes, the Date and boundary aside: compare after the boundary is swapped */
    struct mail got, want;
    struct ink_mail_msg gm = {p.body, p.body_len};
    p.body[p.body_len] = '\0';
    parse_mail(&gm, &got, 78);
    parse_mail(&msg, &want, 78);
    for (size_t i = 0; i < NHEADERS; i++)
        if (strcmp(HEADER_ORDER[i], "Content-Type") != 0)
            assert_string_equal(got.value[i], want.value[i]);
    assert_string_equal(got.text, want.text);
    assert_string_equal(got.html, want.html);
    mail_free(&got);
    mail_free(&want);
    ink_mail_msg_free(&msg);
}

static void the_exact_bytes_arrive(void **state)
{
    (void)state;
    struct peer p;
    peer_defaults(&p);
    struct ink_mail_msg msg = rendered();
    char url[128], why[INK_SMTP_WHY_MAX];
    peer_start(&p);
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", p.port);
    struct ink_smtp s = {.url = url, .connect_timeout_ms = 2000, .total_timeout_ms = 5000};
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", TO, &msg, why), INK_SMTP_SENT);
    peer_stop(&p);
    assert_true(p.body_done);
    assert_int_equal(p.body_len, msg.len);
    assert_memory_equal(p.body, msg.data, msg.len);
    assert_null(strstr(p.log, "AUTH")); /* no credentials, no AUTH */
    ink_mail_msg_free(&msg);
}

static void smtp_replies_map_to_the_three_outcomes(void **state)
{
    (void)state;
    static const struct {
        size_t field; /* offsetof(struct peer, ...) */
        const char *reply;
        enum ink_smtp_result want;
        const char *why_has;
    } cases[] = {
        {offsetof(struct peer, rcpt), "550 5.1.1 no such user", INK_SMTP_PERMANENT,
         "reply 550 to RCPT TO"},
        {offsetof(struct peer, rcpt), "451 4.7.1 try later", INK_SMTP_TRANSIENT, "451"},
        {offsetof(struct peer, mail), "553 5.7.1 sender refused", INK_SMTP_PERMANENT,
         "reply 553 to MAIL FROM"},
        {offsetof(struct peer, mail), "421 4.3.2 shutting down", INK_SMTP_TRANSIENT, "421"},
        {offsetof(struct peer, data), "554 5.5.1 no valid recipients", INK_SMTP_PERMANENT,
         "reply 554 to DATA"},
        {offsetof(struct peer, end), "554 5.7.1 message rejected as spam", INK_SMTP_PERMANENT,
         "reply 554 to DATA"},
        {offsetof(struct peer, end), "452 4.3.1 insufficient storage", INK_SMTP_TRANSIENT, "452"},
        {offsetof(struct peer, greeting), "554 5.7.1 no service for you", INK_SMTP_TRANSIENT,
         "554"},
        {offsetof(struct peer, auth), "535 5.7.8 bad credentials", INK_SMTP_TRANSIENT, "535"},
        {offsetof(struct peer, rcpt), NULL, INK_SMTP_TRANSIENT, "curl"},
        {offsetof(struct peer, end), NULL, INK_SMTP_TRANSIENT, "curl"},
        {offsetof(struct peer, greeting), NULL, INK_SMTP_TRANSIENT, "curl"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct peer p;
        peer_defaults(&p);
        *(const char **)((char *)&p + cases[i].field) = cases[i].reply;
        char why[INK_SMTP_WHY_MAX];
        enum ink_smtp_result r = send_to_peer(&p, true, 5000, why);
        if (r != cases[i].want || !strstr(why, cases[i].why_has))
            fail_msg("case %zu (%s): result %d, why \"%s\"", i,
                     cases[i].reply ? cases[i].reply : "drop", r, why);
        assert_true(strlen(why) < INK_SMTP_WHY_MAX);
        assert_null(strstr(why, PASSWORD));
        assert_null(strstr(why, PASSWORD_B64));
        for (const char *c = why; *c; c++)
            assert_true(*c >= 0x20 && *c < 0x7f);
    }
}

static void a_stalled_server_times_out_as_transient(void **state)
{
    (void)state;
    struct peer p;
    peer_defaults(&p);
    p.rcpt = STALL;
    char why[INK_SMTP_WHY_MAX];
    assert_int_equal(send_to_peer(&p, false, 800, why), INK_SMTP_TRANSIENT);
    assert_non_null(strstr(why, "(curl 28"));
}

static void a_refused_connection_is_transient_within_the_connect_timeout(void **state)
{
    (void)state;
    /* a port that was just free: bind, read it, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char url[64], why[INK_SMTP_WHY_MAX];
    snprintf(url, sizeof url, "smtp://127.0.0.1:%u", ntohs(sa.sin_port));
    struct ink_smtp s = {.url = url, .connect_timeout_ms = 3000, .total_timeout_ms = 10000};
    struct ink_mail_msg msg = rendered();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", TO, &msg, why), INK_SMTP_TRANSIENT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 3000);
    assert_non_null(strstr(why, "(curl 7)"));

    /* what is wrong before any connection: the configuration waits, a bad recipient does not */
    s.user = "mailer";
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", TO, &msg, why), INK_SMTP_TRANSIENT);
    assert_non_null(strstr(why, "SMTP_USER"));
    s.user = NULL;
    s.url = "smtp://user:" PASSWORD "@localhost";
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", TO, &msg, why), INK_SMTP_TRANSIENT);
    assert_non_null(strstr(why, "SMTP_URL"));
    assert_null(strstr(why, PASSWORD));
    s.url = url;
    assert_int_equal(ink_smtp_send(&s, "Inklet <no-reply@iminklet.com>", TO, &msg, why),
                     INK_SMTP_TRANSIENT);
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", "a\r\nRCPT TO:<x@y.z>", &msg, why),
                     INK_SMTP_PERMANENT);
    assert_int_equal(ink_smtp_send(&s, "no-reply@iminklet.com", TO, NULL, why), INK_SMTP_PERMANENT);
    ink_mail_msg_free(&msg);
}

/* smtp:// to a host that is not loopback: STARTTLS is required, so nothing of the mail goes out
 * in plain text — whether the server offers STARTTLS (and then cannot do TLS) or not. Needs a
 * local address that is not loopback; skipped without one. */
static void a_non_loopback_host_gets_nothing_before_starttls(void **state)
{
    (void)state;
    struct ifaddrs *ifs, *i;
    char host[64] = "";
    assert_int_equal(getifaddrs(&ifs), 0);
    for (i = ifs; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
            struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
            if ((ntohl(a.s_addr) >> 24) != 127) {
                inet_ntop(AF_INET, &a, host, sizeof host);
                break;
            }
        }
    freeifaddrs(ifs);
    if (!host[0])
        skip();
    for (int offered = 0; offered < 2; offered++) {
        struct peer p;
        peer_defaults(&p);
        snprintf(p.host, sizeof p.host, "%s", host);
        if (!offered)
            p.ehlo = "250-fake\r\n250 AUTH PLAIN";
        char why[INK_SMTP_WHY_MAX];
        assert_int_equal(send_to_peer(&p, true, 5000, why), INK_SMTP_TRANSIENT);
        assert_null(strstr(p.log, "AUTH"));
        assert_null(strstr(p.log, "MAIL"));
        if (!(offered ? strstr(p.log, "STARTTLS") != NULL : strstr(why, "(curl 64;") != NULL))
            fail_msg("offered %d: why \"%s\", dialogue:\n%s", offered, why, p.log);
    }
}

static int setup(void **state)
{
    (void)state;
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind_renders_and_reads_back_strictly),
        cmocka_unit_test(the_link_mails_say_when_the_link_expires_and_that_ignoring_is_safe),
        cmocka_unit_test(ttl_is_rendered_in_words),
        cmocka_unit_test(kind_names_are_stable),
        cmocka_unit_test(a_username_with_crlf_cannot_add_a_header),
        cmocka_unit_test(a_username_cannot_break_the_mime_structure),
        cmocka_unit_test(invalid_utf8_is_replaced_and_invisible_controls_dropped),
        cmocka_unit_test(long_variables_are_cut_at_a_character_and_marked),
        cmocka_unit_test(html_is_escaped_in_the_html_part_only),
        cmocka_unit_test(vars_a_kind_needs_must_be_usable),
        cmocka_unit_test(hostile_recipients_are_refused),
        cmocka_unit_test(hostile_from_values_are_refused),
        cmocka_unit_test(from_values_give_their_address_and_a_well_formed_header),
        cmocka_unit_test(a_non_ascii_display_name_is_encoded_and_folded),
        cmocka_unit_test(message_id_is_stable_for_a_seed),
        cmocka_unit_test(malformed_templates_are_refused),
        cmocka_unit_test(a_non_ascii_subject_is_encoded_and_folded),
        cmocka_unit_test(quoted_printable_keeps_lines_short_and_text_exact),
        cmocka_unit_test(smtp_urls_are_checked),
        cmocka_unit_test(loopback_hosts_are_recognised_conservatively),
        cmocka_unit_test(a_message_is_sent_as_rendered_without_starttls_on_loopback),
        cmocka_unit_test(the_exact_bytes_arrive),
        cmocka_unit_test(smtp_replies_map_to_the_three_outcomes),
        cmocka_unit_test(a_stalled_server_times_out_as_transient),
        cmocka_unit_test(a_refused_connection_is_transient_within_the_connect_timeout),
        cmocka_unit_test(a_non_loopback_host_gets_nothing_before_starttls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
