/* The syntax of mail addresses, From values and SMTP URLs (inklet/mailaddr.h): pure string rules,
 * no I/O, shared by the configuration (checked at start) and the mail module (checked again when
 * a message is composed and sent). */
#include "inklet/mailaddr.h"

#include "inklet/text.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define FROM_MAX 512
#define URL_MAX 512

/* ---- addresses ---- */

bool ink_mail_is_atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* A dot-atom local part (RFC 5322 §3.2.3): atext runs joined by single dots. */
static bool local_part_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '.' ? s[i + 1] == '.' : !ink_mail_is_atext((unsigned char)s[i]))
            return false;
    return true;
}

/* A host name: LDH labels of 1-63 bytes, no hyphen at either end, joined by dots. No address
 * literals: nothing sends mail to [1.2.3.4]. */
static bool domain_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* The bare address s[0..n): ASCII, no spaces or controls, exactly one '@', at most 254 bytes. */
static bool address_ok(const char *s, size_t n)
{
    if (n < 3 || n > 254)
        return false;
    const char *at = memchr(s, '@', n);
    if (!at || memchr(at + 1, '@', n - (size_t)(at - s) - 1))
        return false;
    size_t local = (size_t)(at - s);
    return local_part_ok(s, local) && domain_ok(at + 1, n - local - 1);
}

bool ink_mail_address_valid(const char *addr)
{
    return addr && address_ok(addr, strlen(addr));
}

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = ink_utf8_char_len((const unsigned char *)s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* The display name before "<addr>": a quoted string (backslash escapes) or plain text without
 * quotes, backslashes or angle brackets. Stored decoded; must be UTF-8. */
static bool parse_display_name(const char *s, size_t n, struct ink_mail_from *p)
{
    size_t o = 0;
    if (n && s[0] == '"') {
        if (n < 2 || s[n - 1] != '"')
            return false;
        for (size_t i = 1; i < n - 1; i++) {
            char c = s[i];
            if (c == '"')
                return false;
            if (c == '\\' && ++i >= n - 1)
                return false;
            if (o >= INK_MAIL_FROM_NAME_MAX)
                return false;
            p->name[o++] = s[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (strchr("\"\\<>", s[i]) || o >= INK_MAIL_FROM_NAME_MAX)
                return false;
            p->name[o++] = s[i];
        }
    }
    p->name[o] = '\0';
    p->name_len = o;
    return utf8_ok(p->name, o);
}

/* Splits MAIL_FROM into display name and address. Controls anywhere (CR, LF, tab, NUL cannot
 * be in a C string) make it unusable. */
bool ink_mail_from_parse(const char *from, struct ink_mail_from *p)
{
    memset(p, 0, sizeof *p);
    if (!from)
        return false;
    size_t n = strnlen(from, FROM_MAX + 1);
    if (n == 0 || n > FROM_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)from[i] < 0x20 || from[i] == 0x7f)
            return false;
    const char *addr = from;
    size_t alen = n;
    if (from[n - 1] == '>') {
        /* the address cannot hold '<', so the last one opens it (a quoted name may have one) */
        const char *lt = memrchr(from, '<', n);
        if (!lt)
            return false;
        addr = lt + 1;
        alen = n - (size_t)(addr - from) - 1;
        size_t nlen = (size_t)(lt - from);
        while (nlen && from[nlen - 1] == ' ')
            nlen--;
        if (!parse_display_name(from, nlen, p))
            return false;
    }
    if (!address_ok(addr, alen))
        return false;
    memcpy(p->addr, addr, alen);
    p->addr[alen] = '\0';
    return true;
}

bool ink_mail_address_of(const char *from, char out[INK_MAIL_ADDRESS_MAX + 1])
{
    struct ink_mail_from p;
    out[0] = '\0';
    if (!ink_mail_from_parse(from, &p))
        return false;
    memcpy(out, p.addr, strlen(p.addr) + 1);
    return true;
}

/* ---- SMTP URLs ---- */

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

const char *ink_smtp_url_parse(const char *url, struct ink_smtp_url *u)
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
    struct ink_smtp_url u;
    return ink_smtp_url_parse(url, &u);
}

bool ink_smtp_url_host_is_loopback(const struct ink_smtp_url *u)
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
    struct ink_smtp_url u;
    return ink_smtp_url_parse(url, &u) == NULL && ink_smtp_url_host_is_loopback(&u);
}
