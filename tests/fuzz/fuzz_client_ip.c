/* libFuzzer driver: ink_client_ip. The input is split at the first two '\n' into a trusted-proxy
 * list, the socket peer and the X-Forwarded-For header (absent if there is no second '\n'); an
 * unparsable list falls back to a fixed one.
 *
 * Always checked: the result is a NUL-terminated string that fits the 48-byte field of
 * struct ink_req, and is a valid address whenever the peer is.
 * With -DCLIENT_IP_ORACLE the result is also compared with a straightforward reference of the
 * contract rule (peer unless trusted, else the right-most untrusted X-Forwarded-For entry,
 * stopping at a malformed entry) evaluated over the whole header. Adding
 * -DCLIENT_IP_ORACLE_MAX_XFF=1023 limits that comparison to headers of at most that many bytes
 * (the implementation currently reads only the first 1023 bytes; see tests/fuzz/README.md). */
#include "inklet/netaddr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLIENT_IP_ORACLE
static void canonical(const unsigned char a[16], char *out, size_t outlen)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0)
        inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)outlen);
}

static void reference(const struct ink_cidr_list *trusted, const char *peer, const char *xff,
                      char *out, size_t outlen)
{
    unsigned char a[16];
    if (!ink_ip_parse(peer, a)) {
        snprintf(out, outlen, "%s", peer);
        return;
    }
    canonical(a, out, outlen);
    if (!xff || !ink_cidr_list_contains(trusted, a))
        return;
    size_t end = strlen(xff);
    for (;;) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        size_t b = start, e = end;
        while (b < e && isspace((unsigned char)xff[b]))
            b++;
        while (e > b && isspace((unsigned char)xff[e - 1]))
            e--;
        char tok[128];
        if (e - b >= sizeof tok)
            return;
        memcpy(tok, xff + b, e - b);
        tok[e - b] = '\0';
        unsigned char hop[16];
        if (!ink_ip_parse(tok, hop))
            return;
        canonical(hop, out, outlen);
        if (!ink_cidr_list_contains(trusted, hop) || start == 0)
            return;
        end = start - 1;
    }
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *list_text = buf, *peer = NULL, *xff = NULL;
    char default_peer[] = "10.0.0.1";
    peer = default_peer;
    char *nl = strchr(buf, '\n');
    if (nl) {
        *nl = '\0';
        peer = nl + 1;
        char *nl2 = strchr(peer, '\n');
        if (nl2) {
            *nl2 = '\0';
            xff = nl2 + 1;
        }
    }
    struct ink_cidr_list trusted;
    if (!ink_cidr_list_parse(&trusted, list_text))
        ink_cidr_list_parse(&trusted, "10.0.0.0/8, 192.168.0.0/16, fd00::/8, ::1");

    char out[48];
    memset(out, 'Z', sizeof out);
    ink_client_ip(&trusted, peer, xff, out, sizeof out);
    if (!memchr(out, '\0', sizeof out))
        __builtin_trap();
    unsigned char a[16];
    if (ink_ip_parse(peer, a) && !ink_ip_parse(out, a))
        __builtin_trap();
#ifdef CLIENT_IP_ORACLE
#ifdef CLIENT_IP_ORACLE_MAX_XFF
    if (xff && strlen(xff) > CLIENT_IP_ORACLE_MAX_XFF)
        goto out;
#endif
    char want[48];
    reference(&trusted, peer, xff, want, sizeof want);
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "client ip %s, expected %s (xff %zu bytes)\n", out, want,
                xff ? strlen(xff) : 0);
        __builtin_trap();
    }
#endif
    goto out; /* keeps the label used in every configuration */
out:
    ink_cidr_list_free(&trusted);
    free(buf);
    return 0;
}
