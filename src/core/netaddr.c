#include "inklet/netaddr.h"

#include "inklet/alloc.h"
#include "inklet/text.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ink_ip_parse(const char *text, unsigned char out[16])
{
    struct in_addr v4;
    if (inet_pton(AF_INET, text, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, text, out) == 1;
}

static bool is_v4_mapped(const unsigned char a[16])
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, prefix, 12) == 0;
}

static bool parse_cidr(char *tok, struct ink_cidr *c)
{
    char *slash = strchr(tok, '/');
    if (slash)
        *slash = '\0';
    if (!ink_ip_parse(tok, c->addr))
        return false;
    bool v4 = strchr(tok, ':') == NULL;
    unsigned maxp = v4 ? 32 : 128;
    unsigned p = maxp;
    if (slash) {
        const char *s = slash + 1;
        if (!*s || strlen(s) > 3)
            return false;
        for (const char *q = s; *q; q++)
            if (!isdigit((unsigned char)*q))
                return false;
        p = (unsigned)strtoul(s, NULL, 10);
        if (p > maxp)
            return false;
    }
    c->prefix = v4 ? p + 96 : p;
    return true;
}

bool ink_cidr_list_parse(struct ink_cidr_list *list, const char *text)
{
    list->items = NULL;
    list->count = 0;
    char *copy = ink_strdup(text), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = ink_trim(tok);
        if (!*tok)
            continue;
        struct ink_cidr c;
        if (!parse_cidr(tok, &c)) {
            ok = false;
            break;
        }
        list->items = ink_realloc(list->items, (list->count + 1) * sizeof *list->items);
        list->items[list->count++] = c;
    }
    free(copy);
    if (!ok)
        ink_cidr_list_free(list);
    return ok;
}

void ink_cidr_list_free(struct ink_cidr_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

static bool cidr_match(const struct ink_cidr *c, const unsigned char a[16])
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, a, full) != 0)
        return false;
    if (rest) {
        unsigned char mask = (unsigned char)(0xff << (8 - rest));
        if ((c->addr[full] & mask) != (a[full] & mask))
            return false;
    }
    return true;
}

bool ink_cidr_list_contains(const struct ink_cidr_list *list, const unsigned char addr[16])
{
    for (size_t i = 0; i < list->count; i++)
        if (cidr_match(&list->items[i], addr))
            return true;
    return false;
}

static void format_ip(const unsigned char a[16], char *out, size_t outlen)
{
    if (is_v4_mapped(a))
        inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)outlen);
}

void ink_client_ip(const struct ink_cidr_list *trusted, const char *peer, const char *xff,
                   char *out, size_t outlen)
{
    unsigned char addr[16];
    if (!ink_ip_parse(peer, addr)) {
        snprintf(out, outlen, "%s", peer);
        return;
    }
    format_ip(addr, out, outlen);
    if (!xff || !trusted->count || !ink_cidr_list_contains(trusted, addr))
        return;
    /* Walk X-Forwarded-For from the right in place: the right end is what our own proxies
     * appended, so nothing may be cut off there (a copy into a fixed buffer would let a long
     * client-supplied prefix push the real entries out). */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && isspace((unsigned char)*a))
            a++;
        while (b > a && isspace((unsigned char)b[-1]))
            b--;
        char tok[INET6_ADDRSTRLEN + 1];
        unsigned char hop[16];
        size_t n = (size_t)(b - a);
        if (n == 0 || n >= sizeof tok)
            return; /* garbage in the chain: keep the last trusted hop we reached */
        memcpy(tok, a, n);
        tok[n] = '\0';
        if (!ink_ip_parse(tok, hop))
            return;
        format_ip(hop, out, outlen);
        if (!ink_cidr_list_contains(trusted, hop))
            return;
        end = start > xff ? start - 1 : xff;
    }
}

void ink_ip_rate_key(const char *client_ip, char *out, size_t outlen)
{
    unsigned char a[16];
    if (!ink_ip_parse(client_ip, a)) {
        snprintf(out, outlen, "%s", client_ip);
        return;
    }
    if (is_v4_mapped(a)) {
        format_ip(a, out, outlen);
        return;
    }
    memset(a + 8, 0, 8);
    char text[INET6_ADDRSTRLEN];
    format_ip(a, text, sizeof text);
    snprintf(out, outlen, "%s/64", text);
}
