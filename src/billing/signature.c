/* Stripe-Signature verification, as Stripe's own libraries do it
 * (https://docs.stripe.com/webhooks#verify-manually), on the raw bytes before any parsing. */
#include "inklet/ids.h"
#include "inklet/stripe.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#define SHA256_HEX 64
/* A header longer than this is not Stripe's (a handful of signatures at most). */
#define HEADER_MAX 4096

static bool parse_timestamp(const char *s, size_t n, long long *out)
{
    if (n == 0 || n > 12)
        return false;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* The expected v1 for "<t>.<body>", as lower-case hex. */
static bool expected_signature(const char *t, size_t tlen, const char *body, size_t len,
                               const char *secret, char out[SHA256_HEX + 1])
{
    unsigned char mac[32];
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    bool ok = ctx && EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) &&
              EVP_MAC_update(ctx, (const unsigned char *)t, tlen) &&
              EVP_MAC_update(ctx, (const unsigned char *)".", 1) &&
              EVP_MAC_update(ctx, (const unsigned char *)body, len) &&
              EVP_MAC_final(ctx, mac, &outl, sizeof mac) && outl == sizeof mac;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    if (ok)
        ink_hex_encode(mac, sizeof mac, out);
    return ok;
}

enum ink_stripe_sig ink_stripe_verify_signature(const char *header, const char *body, size_t len,
                                                const char *secret, time_t now, unsigned tolerance)
{
    if (!header || !secret || !*secret || strlen(header) > HEADER_MAX)
        return INK_SIG_MISSING;
    const char *t = NULL;
    size_t tlen = 0;
    bool have_t = false, have_v1 = false;
    /* first pass: the timestamp (the first t= wins) and whether a v1 exists. Fields are split
     * on ',' and '=' exactly as Stripe's libraries do: no spaces are trimmed. */
    for (const char *p = header; *p;) {
        size_t n = strcspn(p, ",");
        if (n >= 2 && p[0] == 't' && p[1] == '=' && !have_t) {
            have_t = true;
            t = p + 2;
            tlen = n - 2;
        } else if (n >= 3 && strncmp(p, "v1=", 3) == 0) {
            have_v1 = true;
        }
        p += n + (p[n] == ',');
    }
    if (!have_t || !have_v1)
        return INK_SIG_MISSING;
    long long ts;
    if (!parse_timestamp(t, tlen, &ts))
        return INK_SIG_MALFORMED;
    char want[SHA256_HEX + 1];
    if (!expected_signature(t, tlen, body ? body : "", body ? len : 0, secret, want))
        return INK_SIG_MISMATCH;
    bool match = false;
    for (const char *p = header; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 3 + SHA256_HEX && strncmp(p, "v1=", 3) == 0) {
            /* no early exit: every candidate costs the same */
            match |= CRYPTO_memcmp(p + 3, want, SHA256_HEX) == 0;
        }
        p += n + (p[n] == ',');
    }
    if (!match)
        return INK_SIG_MISMATCH;
    long long age = (long long)now - ts;
    if (age > (long long)tolerance || age < -(long long)tolerance)
        return INK_SIG_STALE;
    return INK_SIG_OK;
}
