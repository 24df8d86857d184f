/* libFuzzer driver: ink_mail_render (and ink_mail_render_template, the template parser) with
 * hostile variables and addresses; ink_mail_address_of and the SMTP URL checks on the way.
 *
 * Input: byte 0 picks the kind (7 = out of range), byte 1 holds flags, bytes 2-5 the ttl; the
 * rest is split at NUL bytes into username, link, provider, from, to, seed and a template
 * (missing fields are NULL). Flags: 1/2/4 replace from/to/seed by valid ones, 8 prefixes the
 * link with "https://portal.iminklet.com/reset-password?token=", 16 renders the template field
 * instead of the kind's own, 32 passes NULL vars — so the fuzzer reaches the deep paths without
 * having to guess a UUID first.
 *
 * Checked besides memory safety:
 * - refused ⇒ out is {NULL, 0}; INK_INTERNAL only with a fuzzed template;
 * - accepted ⇒ from, to and seed were usable (ink_mail_address_of, ink_mail_address_valid,
 *   the UUID shape); the message is 7-bit ASCII without NUL, CR and LF only as CRLF, no other
 *   control character; exactly the nine headers in order, header lines ≤ 998 and continuations
 *   start with a space; "To: <to>" and "Message-ID: <seed@domain of from>" exactly; the boundary
 *   occurs exactly three times after the headers; every body line is ≤ 76 and none starts with
 *   '.'; the quoted-printable parts decode (strictly) to UTF-8 with no control character other
 *   than CRLF, so no variable smuggled a byte past the cleaning;
 * - ink_mail_address_of: true ⇒ a valid address ≤ 254 bytes, false ⇒ "";
 * - ink_smtp_url_is_loopback(x) ⇒ ink_smtp_url_problem(x) == NULL (each field is tried). */
#include "inklet/mail.h"

#include "inklet/ids.h"
#include "inklet/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW ((time_t)1768473000)
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const char *const HEADERS[] = {
    "Date:",         "From:",           "To:",
    "Subject:",      "Message-ID:",     "MIME-Version:",
    "Content-Type:", "Auto-Submitted:", "X-Auto-Response-Suppress:"};

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decodes the quoted-printable lines s[0..n) (each ending CRLF) strictly and checks the text. */
static void check_qp(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
                i += 2;
                continue;
            }
            CHECK(i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0);
            out[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    for (size_t i = 0; i < o;) {
        unsigned char c = (unsigned char)out[i];
        if (c == '\r') {
            CHECK(i + 1 < o && out[i + 1] == '\n');
            i += 2;
            continue;
        }
        CHECK(c >= 0x20 && c != 0x7f);
        size_t len = ink_utf8_char_len((const unsigned char *)out + i, o - i);
        CHECK(len > 0);
        if (len == 2)
            CHECK(!(c == 0xc2 && (unsigned char)out[i + 1] < 0xa0)); /* no C1 control */
        i += len;
    }
    free(out);
}

/* One part after its delimiter line: its two headers, a blank line, then quoted-printable. */
static void check_part(const char *p, size_t n)
{
    const char *blank = memmem(p, n, "\r\n\r\n", 4);
    CHECK(blank);
    check_qp(blank + 4, n - (size_t)(blank + 4 - p));
}

static void check_message(const struct ink_mail_msg *m, const char *from, const char *to,
                          const char *seed)
{
    const char *d = m->data;
    CHECK(d && m->len && strlen(d) == m->len);
    for (size_t i = 0; i < m->len; i++) {
        unsigned char c = (unsigned char)d[i];
        CHECK(c < 0x80 && c != 0x7f);
        if (c == '\r')
            CHECK(i + 1 < m->len && d[i + 1] == '\n');
        else if (c == '\n')
            CHECK(i > 0 && d[i - 1] == '\r');
        else
            CHECK(c >= 0x20);
    }
    const char *hend = strstr(d, "\r\n\r\n");
    CHECK(hend);
    size_t nh = 0;
    for (const char *line = d; line < hend + 2;) {
        const char *eol = strstr(line, "\r\n");
        CHECK((size_t)(eol - line) <= 998);
        if (line[0] == ' ') {
            CHECK(nh > 0);
        } else {
            CHECK(nh < 9 && strncmp(line, HEADERS[nh], strlen(HEADERS[nh])) == 0);
            nh++;
        }
        line = eol + 2;
    }
    CHECK(nh == 9);

    char want[400];
    snprintf(want, sizeof want, "\r\nTo: %s\r\nSubject:", to);
    CHECK(strstr(d, want) && strstr(d, want) < hend);
    char addr[255];
    CHECK(ink_mail_address_of(from, addr));
    char lower[INK_UUID_STRLEN + 1];
    for (size_t i = 0; i <= INK_UUID_STRLEN; i++)
        lower[i] = (char)(seed[i] >= 'A' && seed[i] <= 'F' ? seed[i] - 'A' + 'a' : seed[i]);
    snprintf(want, sizeof want, "\r\nMessage-ID: <%s@%s>\r\n", lower, strchr(addr, '@') + 1);
    CHECK(strstr(d, want) && strstr(d, want) < hend);

    const char *b = strstr(d, "boundary=\"");
    CHECK(b && b < hend);
    b += 10;
    const char *bend = strchr(b, '"');
    CHECK(bend && bend - b < 70);
    char delim[80] = "--";
    memcpy(delim + 2, b, (size_t)(bend - b));
    size_t dl = 2 + (size_t)(bend - b);
    delim[dl] = '\0';

    const char *body = hend + 4;
    size_t blen = m->len - (size_t)(body - d);
    const char *at[3];
    int count = 0;
    for (const char *p = body; (p = memmem(p, blen - (size_t)(p - body), delim, dl)); p += dl) {
        CHECK(count < 3);
        CHECK(p == body || (p[-2] == '\r' && p[-1] == '\n'));
        at[count++] = p;
    }
    CHECK(count == 3 && at[0] == body);
    CHECK(strcmp(at[2] + dl, "--\r\n") == 0);
    for (const char *line = body; line < d + m->len;) {
        const char *eol = strstr(line, "\r\n");
        CHECK(eol && eol - line <= 76 && line[0] != '.');
        line = eol + 2;
    }
    check_part(at[0] + dl + 2, (size_t)(at[1] - at[0]) - dl - 2);
    check_part(at[1] + dl + 2, (size_t)(at[2] - at[1]) - dl - 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    unsigned kind = data[0] % (INK_MAIL_KINDS + 1), flags = data[1];
    unsigned ttl = (unsigned)data[2] | (unsigned)data[3] << 8 | (unsigned)data[4] << 16 |
                   (unsigned)data[5] << 24;
    size_t n = size - 6;
    char *copy = malloc(n + 1);
    memcpy(copy, data + 6, n);
    copy[n] = '\0';
    const char *f[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nf = 0, start = 0;
    for (size_t i = 0; i <= n && nf < 7; i++)
        if (i == n || copy[i] == '\0') {
            f[nf++] = copy + start;
            start = i + 1;
        }
    size_t tpl_len = f[6] ? n - (size_t)(f[6] - copy) : 0; /* the template may hold NULs */

    char link[4200];
    if ((flags & 8) && f[1]) {
        snprintf(link, sizeof link, "https://portal.iminklet.com/reset-password?token=%s", f[1]);
        f[1] = link;
    }
    const char *from = flags & 1 ? "Inklet <no-reply@iminklet.com>" : f[3];
    const char *to = flags & 2 ? "ada@example.com" : f[4];
    const char *seed = flags & 4 ? "0190b2a4-7c1e-7a3b-8f2d-5e6a7b8c9d0e" : f[5];
    struct ink_mail_vars vars = {f[0], f[1], ttl, f[2]};

    struct ink_mail_msg m = {(char *)"x", 1};
    enum ink_status st =
        flags & 16 ? ink_mail_render_template((enum ink_mail_kind)kind, f[6], tpl_len,
                                              flags & 32 ? NULL : &vars, from, to, seed, NOW, &m)
                   : ink_mail_render((enum ink_mail_kind)kind, flags & 32 ? NULL : &vars, from, to,
                                     seed, NOW, &m);
    if (st == INK_OK) {
        CHECK(kind < INK_MAIL_KINDS && ink_mail_address_valid(to) && ink_uuid_valid(seed));
        check_message(&m, from, to, seed);
        ink_mail_msg_free(&m);
        CHECK(!m.data && !m.len);
    } else {
        CHECK(st == INK_INVALID || (st == INK_INTERNAL && (flags & 16)));
        CHECK(!m.data && !m.len);
    }

    for (size_t i = 0; i < 6; i++) {
        char addr[255] = "junk";
        if (ink_mail_address_of(f[i], addr))
            CHECK(strlen(addr) <= 254 && ink_mail_address_valid(addr));
        else
            CHECK(addr[0] == '\0');
        if (ink_smtp_url_is_loopback(f[i]))
            CHECK(ink_smtp_url_problem(f[i]) == NULL);
    }
    free(copy);
    return 0;
}
