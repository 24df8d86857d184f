/* libFuzzer driver: ink_token_verify with a fixed secret.
 * The first input byte picks a mode:
 *   even: the rest is the raw token text (parser robustness, forged signatures);
 *   odd:  the rest is "header\npayload" JSON text that the driver signs correctly with HS256,
 *         so the fuzzer reaches the claim checks behind the signature.
 * Whenever a token is accepted, the claims it yields must satisfy the contract (UUID sub/sid,
 * exp > now, iat <= now + leeway, iat <= exp). */
#include "inklet/token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char SECRET[] = "fuzz-secret-0123456789abcdef0123456789";
#define NOW 1768473000LL

static char *b64url(const unsigned char *in, size_t n)
{
    char *out = malloc(n / 3 * 4 + 5);
    ink_base64url_encode(in, n, out);
    return out;
}

static char *sign(const char *header, size_t hlen, const char *payload, size_t plen)
{
    char *h = b64url((const unsigned char *)header, hlen);
    char *p = b64url((const unsigned char *)payload, plen);
    size_t sl = strlen(h) + 1 + strlen(p);
    char *tok = malloc(sl + 64);
    memcpy(tok, h, strlen(h));
    tok[strlen(h)] = '.';
    memcpy(tok + strlen(h) + 1, p, strlen(p) + 1);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    HMAC(EVP_sha256(), SECRET, (int)(sizeof SECRET - 1), (const unsigned char *)tok, sl, mac,
         &maclen);
    tok[sl] = '.';
    ink_base64url_encode(mac, maclen, tok + sl + 1);
    free(h);
    free(p);
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *tok;
    if (data[0] & 1) {
        const char *rest = (const char *)data + 1;
        size_t n = size - 1;
        const char *nl = memchr(rest, '\n', n);
        if (!nl)
            return 0;
        tok = sign(rest, (size_t)(nl - rest), nl + 1, n - (size_t)(nl - rest) - 1);
    } else {
        tok = malloc(size);
        memcpy(tok, data + 1, size - 1);
        tok[size - 1] = '\0';
    }
    struct ink_token_claims c;
    memset(&c, 0, sizeof c);
    if (ink_token_verify(SECRET, sizeof SECRET - 1, tok, NOW, &c) == INK_OK) {
        if (!ink_uuid_valid(c.sub) || !ink_uuid_valid(c.sid) || c.exp <= NOW ||
            c.iat > NOW + INK_TOKEN_LEEWAY || c.iat > c.exp || strlen(tok) > INK_TOKEN_MAX_LEN)
            __builtin_trap();
    }
    free(tok);
    return 0;
}
