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

#define DEFAULT_TOTAL_MS 30000u
#define CONNECT_MAX_MS 10000u

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
    struct ink_smtp_url u;
    why[0] = '\0';
    const char *bad = ink_smtp_url_parse(s->url, &u);
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
    SET(CURLOPT_USE_SSL,
        (long)(!u.tls && ink_smtp_url_host_is_loopback(&u) ? CURLUSESSL_NONE : CURLUSESSL_ALL));
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
