/* Handing one message to an SMTP server through libcurl (contract §2.2).
 *
 * The transport rules are decided here and nowhere else: smtps:// is implicit TLS; smtp:// to a
 * host that is not loopback must upgrade with STARTTLS (CURLUSESSL_ALL: no STARTTLS offered ->
 * failure, never plain text); smtp:// to loopback (a local relay) stays plain even when STARTTLS
 * is offered. Peer and host name are always verified. Credentials go through CURLOPT_USERNAME /
 * CURLOPT_PASSWORD only, never the URL, which ink_smtp_url_problem() keeps free of user info. */
#include "inklet/mail.h"

#include "inklet/strbuf.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define URL_MAX 512
#define DEFAULT_TOTAL_MS 30000u
#define CONNECT_MAX_MS 10000u

/* ---- URL rules ---- */

struct smtp_url {
    bool tls;       /* smtps:// */
    bool bracketed; /* [IPv6] */
    char host[254]; /* without brackets */
};

static bool ldh(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* A host name of LDH labels, or a dotted quad when it is only digits and dots. */
static const char *host_problem(const char *h, size_t n)
{
    if (n == 0)
        return "no host";
    if (n > 253)
        return "the host name is too long";
    bool numeric = true;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? h[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
                return "not a valid host name";
            label = 0;
        } else if (ldh(c)) {
            numeric = numeric && c >= '0' && c <= '9';
            label++;
        } else {
            return "not a valid host name";
        }
    }
    if (numeric) {
        char copy[16];
        struct in_addr a;
        if (n >= sizeof copy)
            return "not a valid IPv4 address";
        memcpy(copy, h, n);
        copy[n] = '\0';
        if (inet_pton(AF_INET, copy, &a) != 1)
            return "not a valid IPv4 address";
    }
    return NULL;
}

static const char *port_problem(const char *p, size_t n)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return "the port must be 1-65535";
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return "the port must be 1-65535";
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535 ? NULL : "the port must be 1-65535";
}

static const char *parse_url(const char *url, struct smtp_url *u)
{
    memset(u, 0, sizeof *u);
    if (!url || !*url)
        return "empty";
    size_t n = strnlen(url, URL_MAX + 1);
    if (n > URL_MAX)
        return "too long";
    const char *p;
    if (strncasecmp(url, "smtps://", 8) == 0) {
        u->tls = true;
        p = url + 8;
    } else if (strncasecmp(url, "smtp://", 7) == 0) {
        p = url + 7;
    } else {
        return "the scheme must be smtp:// or smtps://";
    }
    for (const char *c = p; *c; c++) {
        unsigned char b = (unsigned char)*c;
        if (b <= 0x20 || b >= 0x7f)
            return "spaces, control and non-ASCII characters are not allowed";
        if (b == '@')
            return "user info is not allowed (use SMTP_USER and SMTP_PASSWORD)";
        if (b == '/')
            return "a path is not allowed";
        if (b == '?')
            return "a query is not allowed";
        if (b == '#')
            return "a fragment is not allowed";
    }
    const char *end = url + n, *port = NULL;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        size_t hl = close ? (size_t)(close - p - 1) : 0;
        struct in6_addr a6;
        if (!close || hl == 0 || hl >= 46)
            return "not a valid [IPv6] host";
        memcpy(u->host, p + 1, hl);
        u->host[hl] = '\0';
        if (inet_pton(AF_INET6, u->host, &a6) != 1)
            return "not a valid [IPv6] host";
        u->bracketed = true;
        if (close + 1 < end && close[1] != ':')
            return "not a valid [IPv6] host";
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        size_t hl = (size_t)((colon ? colon : end) - p);
        const char *why = host_problem(p, hl);
        if (why)
            return why;
        memcpy(u->host, p, hl);
        u->host[hl] = '\0';
        port = colon ? colon + 1 : NULL;
    }
    return port ? port_problem(port, (size_t)(end - port)) : NULL;
}

const char *ink_smtp_url_problem(const char *url)
{
    struct smtp_url u;
    return parse_url(url, &u);
}

static bool host_is_loopback(const struct smtp_url *u)
{
    if (u->bracketed) {
        struct in6_addr a6;
        return inet_pton(AF_INET6, u->host, &a6) == 1 &&
               memcmp(&a6, &in6addr_loopback, sizeof a6) == 0;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, u->host, &a) == 1)
        return (ntohl(a.s_addr) >> 24) == 127;
    return strcasecmp(u->host, "localhost") == 0;
}

bool ink_smtp_url_is_loopback(const char *url)
{
    struct smtp_url u;
    return parse_url(url, &u) == NULL && host_is_loopback(&u);
}

/* ---- sending ---- */

struct upload {
    const char *p;
    size_t left;
};

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload *up = arg;
    size_t k = size * n < up->left ? size * n : up->left;
    memcpy(buf, up->p, k);
    up->p += k;
    up->left -= k;
    return k;
}

/* Which command the last reply answered, seen through curl's protocol trace: a 5xx is only
 * final for the message when it answers MAIL FROM, RCPT TO or the data (a 5xx greeting or a
 * refused AUTH is the server's or our configuration's problem, and may pass). */
enum stage { STAGE_SESSION, STAGE_MAIL, STAGE_RCPT, STAGE_DATA };

static const char *const STAGE_NAMES[] = {"", "MAIL FROM", "RCPT TO", "DATA"};

static int on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
    (void)h;
    enum stage *stage = arg;
    if (type != CURLINFO_HEADER_OUT || size < 4)
        return 0;
    /* only the verb is looked at: the line may be an AUTH exchange carrying the password */
    if (strncasecmp(data, "QUIT", 4) == 0 || strncasecmp(data, "RSET", 4) == 0)
        return 0; /* the goodbye after a failure must not hide the stage that failed */
    if (strncasecmp(data, "MAIL", 4) == 0)
        *stage = STAGE_MAIL;
    else if (strncasecmp(data, "RCPT", 4) == 0)
        *stage = STAGE_RCPT;
    else if (strncasecmp(data, "DATA", 4) == 0)
        *stage = STAGE_DATA;
    else
        *stage = STAGE_SESSION;
    return 0;
}

static void set_why(char why[INK_SMTP_WHY_MAX], const char *what, const char *detail)
{
    struct ink_sb sb;
    ink_sb_init(&sb, why, INK_SMTP_WHY_MAX);
    ink_sb_puts(&sb, what);
    ink_sb_puts(&sb, detail);
}

/* curl's error text (or its generic one) as printable ASCII, with the code, reply and stage. */
static void describe(char why[INK_SMTP_WHY_MAX], CURLcode rc, const char *errbuf, long reply,
                     enum stage stage)
{
    char text[CURL_ERROR_SIZE];
    snprintf(text, sizeof text, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    for (char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    size_t n = strlen(text);
    while (n && (text[n - 1] == '?' || text[n - 1] == ' '))
        text[--n] = '\0';
    struct ink_sb sb;
    ink_sb_init(&sb, why, INK_SMTP_WHY_MAX);
    /* the parenthesis first, so a long text is what gets cut */
    char tail[80];
    if (reply && stage != STAGE_SESSION)
        snprintf(tail, sizeof tail, " (curl %d; reply %ld to %s)", (int)rc, reply,
                 STAGE_NAMES[stage]);
    else if (reply)
        snprintf(tail, sizeof tail, " (curl %d; last reply %ld)", (int)rc, reply);
    else
        snprintf(tail, sizeof tail, " (curl %d)", (int)rc);
    size_t keep = INK_SMTP_WHY_MAX - 1 - strlen(tail);
    ink_sb_putn(&sb, text, n < keep ? n : keep);
    ink_sb_puts(&sb, tail);
}

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)

enum ink_smtp_result ink_smtp_send(const struct ink_smtp *s, const char *envelope_from,
                                   const char *to, const struct ink_mail_msg *m,
                                   char why[INK_SMTP_WHY_MAX])
{
    struct smtp_url u;
    why[0] = '\0';
    const char *bad = parse_url(s->url, &u);
    if (bad) {
        set_why(why, "unusable SMTP_URL: ", bad);
        return INK_SMTP_TRANSIENT; /* configuration: the mail can go once it is fixed */
    }
    if (!s->user != !s->password) {
        set_why(why, "SMTP_USER and SMTP_PASSWORD must be set together", "");
        return INK_SMTP_TRANSIENT;
    }
    if (!ink_mail_address_valid(envelope_from)) {
        set_why(why, "unusable envelope sender (MAIL_FROM)", "");
        return INK_SMTP_TRANSIENT;
    }
    if (!ink_mail_address_valid(to)) {
        set_why(why, "unusable recipient address", "");
        return INK_SMTP_PERMANENT;
    }
    if (!m || !m->data || m->len == 0) {
        set_why(why, "no message", "");
        return INK_SMTP_PERMANENT;
    }
    unsigned total = s->total_timeout_ms ? s->total_timeout_ms : DEFAULT_TOTAL_MS;
    unsigned connect = s->connect_timeout_ms ? s->connect_timeout_ms : CONNECT_MAX_MS;
    if (connect > total)
        connect = total;

    CURL *h = curl_easy_init();
    if (!h) {
        set_why(why, "curl_easy_init failed", "");
        return INK_SMTP_TRANSIENT;
    }
    struct curl_slist *rcpt = curl_slist_append(NULL, to);
    struct upload up = {m->data, m->len};
    enum stage stage = STAGE_SESSION;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode rc = rcpt ? CURLE_OK : CURLE_OUT_OF_MEMORY;
    SET(CURLOPT_URL, s->url);
    SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, ""); /* mail goes straight to SMTP_URL, whatever *_proxy says */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect);
    SET(CURLOPT_TIMEOUT_MS, (long)total);
    SET(CURLOPT_USE_SSL, (long)(!u.tls && host_is_loopback(&u) ? CURLUSESSL_NONE : CURLUSESSL_ALL));
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (s->ca_file)
        SET(CURLOPT_CAINFO, s->ca_file);
    if (s->user) {
        SET(CURLOPT_USERNAME, s->user);
        SET(CURLOPT_PASSWORD, s->password);
    }
    SET(CURLOPT_MAIL_FROM, envelope_from);
    SET(CURLOPT_MAIL_RCPT, rcpt);
    SET(CURLOPT_UPLOAD, 1L);
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, &up);
    SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)m->len);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_DEBUGFUNCTION, on_debug);
    SET(CURLOPT_DEBUGDATA, &stage);
    SET(CURLOPT_VERBOSE, 1L); /* feeds on_debug only; nothing is printed */
    if (rc == CURLE_OK)
        rc = curl_easy_perform(h);

    enum ink_smtp_result res = INK_SMTP_SENT;
    if (rc != CURLE_OK) {
        long reply = 0;
        if (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply) != CURLE_OK)
            reply = 0;
        res = reply >= 500 && reply <= 599 && stage != STAGE_SESSION ? INK_SMTP_PERMANENT
                                                                     : INK_SMTP_TRANSIENT;
        describe(why, rc, errbuf, reply, stage);
    }
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(h);
    return res;
}
