/* Provider ID tokens: compact JWS parsed by hand, RS256 verified with OpenSSL, claims checked. */
#include "inklet/alloc.h"
#include "inklet/ids.h"
#include "inklet/idtoken.h"
#include "inklet/json.h"

#include <openssl/crypto.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_MAX 8192
#define SIG_MAX 1024 /* an 8192-bit RSA signature */

/* Decodes one base64url segment holding a JSON object. */
static json_t *json_segment(const char *s, size_t n)
{
    unsigned char *buf = ink_malloc(SEGMENT_MAX);
    size_t len = 0;
    json_t *obj = NULL;
    const char *why;
    if (n > 0 && ink_base64url_decode(s, n, buf, SEGMENT_MAX, &len) &&
        ink_json_parse_object((const char *)buf, len, &obj, &why) != INK_OK)
        obj = NULL;
    free(buf);
    return obj;
}

void ink_idtoken_free(struct ink_idtoken *t)
{
    json_decref(t->claims);
    free(t->sig);
    free(t->text);
    memset(t, 0, sizeof *t);
}

enum ink_idtoken_result ink_idtoken_parse(const char *token, struct ink_idtoken *out)
{
    memset(out, 0, sizeof *out);
    size_t len = token ? strnlen(token, INK_IDTOKEN_MAX_LEN + 1) : 0;
    if (len == 0 || len > INK_IDTOKEN_MAX_LEN)
        return INK_IDT_MALFORMED;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return INK_IDT_MALFORMED;
    json_t *header = json_segment(token, (size_t)(dot1 - token));
    if (!header)
        return INK_IDT_MALFORMED;
    /* the algorithm decides before anything else: no key is ever looked up for another one */
    const char *alg = json_string_value(json_object_get(header, "alg"));
    const char *kid = json_string_value(json_object_get(header, "kid"));
    enum ink_idtoken_result r = INK_IDT_OK;
    if (!alg || strcmp(alg, "RS256") != 0)
        r = INK_IDT_ALG;
    else if (json_object_get(header, "crit")) /* no extension is understood here */
        r = INK_IDT_MALFORMED;
    else if (!kid || !*kid || strlen(kid) > INK_IDTOKEN_KID_MAX)
        r = INK_IDT_NO_KEY;
    if (r == INK_IDT_OK)
        memcpy(out->kid, kid, strlen(kid) + 1);
    json_decref(header);
    if (r != INK_IDT_OK)
        return r;
    out->claims = json_segment(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    out->sig = ink_malloc(SIG_MAX);
    size_t sig_chars = len - (size_t)(dot2 + 1 - token);
    if (!out->claims ||
        !ink_base64url_decode(dot2 + 1, sig_chars, out->sig, SIG_MAX, &out->sig_len) ||
        out->sig_len == 0) {
        ink_idtoken_free(out);
        return INK_IDT_MALFORMED;
    }
    out->signed_len = (size_t)(dot2 - token);
    out->text = ink_strdup(token);
    return INK_IDT_OK;
}

static bool signature_ok(const struct ink_idtoken *t, EVP_PKEY *key)
{
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA || EVP_PKEY_get_bits(key) < 2048)
        return false;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = md && EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1 &&
              EVP_DigestVerify(md, t->sig, t->sig_len, (const unsigned char *)t->text,
                               t->signed_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static bool in_list(const char *value, const char *comma_list)
{
    size_t n = strlen(value);
    for (const char *p = comma_list; p && *p;) {
        while (*p == ' ')
            p++;
        size_t m = strcspn(p, ",");
        size_t k = m;
        while (k && p[k - 1] == ' ')
            k--;
        if (k == n && k && memcmp(p, value, n) == 0)
            return true;
        p += m + (p[m] == ',');
    }
    return false;
}

static bool audience_ok(json_t *claims, const char *audiences)
{
    json_t *aud = json_object_get(claims, "aud");
    if (json_is_string(aud))
        return in_list(json_string_value(aud), audiences);
    if (!json_is_array(aud) || json_array_size(aud) == 0)
        return false;
    bool found = false;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (!json_is_string(v))
            return false;
        found |= in_list(json_string_value(v), audiences);
    }
    /* several audiences: the party it was issued to must be ours (OIDC Core §3.1.3.7) */
    const char *azp = json_string_value(json_object_get(claims, "azp"));
    return found && (json_array_size(aud) == 1 || (azp && in_list(azp, audiences)));
}

bool ink_idtoken_nonce_matches(const char *claimed, const char *expected)
{
    if (!claimed || !expected || !*expected)
        return false;
    size_t n = strlen(claimed);
    bool raw = n == strlen(expected) && CRYPTO_memcmp(claimed, expected, n) == 0;
    unsigned char md[32];
    unsigned mdlen = 0;
    char hex[65];
    EVP_Digest(expected, strlen(expected), md, &mdlen, EVP_sha256(), NULL);
    ink_hex_encode(md, sizeof md, hex);
    bool hashed = n == 64 && CRYPTO_memcmp(claimed, hex, 64) == 0;
    return raw || hashed;
}

static bool integer_claim(json_t *claims, const char *name, long long *out)
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_integer(v))
        return false;
    *out = (long long)json_integer_value(v);
    return true;
}

static enum ink_idtoken_result claims_fail(const char **why, const char *what)
{
    *why = what;
    return INK_IDT_CLAIMS;
}

enum ink_idtoken_result ink_idtoken_check(const struct ink_idtoken *t, EVP_PKEY *key,
                                          const struct ink_idtoken_rules *rules,
                                          struct ink_identity *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    if (!key) {
        *why = "no key for this kid";
        return INK_IDT_NO_KEY;
    }
    if (!signature_ok(t, key)) {
        *why = "the signature does not verify";
        return INK_IDT_SIGNATURE;
    }
    json_t *c = t->claims;
    const char *iss = json_string_value(json_object_get(c, "iss"));
    bool iss_ok = false;
    for (size_t i = 0; iss && i < rules->issuer_count; i++)
        iss_ok |= strcmp(iss, rules->issuers[i]) == 0;
    if (!iss_ok)
        return claims_fail(why, "iss is not the provider's");
    if (!audience_ok(c, rules->audiences))
        return claims_fail(why, "aud is not one of our client ids");
    long long exp, iat;
    if (!integer_claim(c, "exp", &exp) || exp <= rules->now - INK_IDTOKEN_LEEWAY)
        return claims_fail(why, "expired, or exp is not an integer");
    if (!integer_claim(c, "iat", &iat) || iat > rules->now + INK_IDTOKEN_LEEWAY || iat > exp)
        return claims_fail(why, "iat is in the future, or not an integer");
    if (rules->nonce &&
        !ink_idtoken_nonce_matches(json_string_value(json_object_get(c, "nonce")), rules->nonce))
        return claims_fail(why, "nonce does not match");
    const char *sub = json_string_value(json_object_get(c, "sub"));
    if (!sub || !*sub || strlen(sub) >= sizeof out->sub)
        return claims_fail(why, "sub is missing or too long");
    const char *email = json_string_value(json_object_get(c, "email"));
    if (email && strlen(email) >= sizeof out->email)
        return claims_fail(why, "email is too long");
    memcpy(out->sub, sub, strlen(sub) + 1);
    if (email)
        memcpy(out->email, email, strlen(email) + 1);
    json_t *ev = json_object_get(c, "email_verified");
    /* Apple sends the string "true" */
    out->email_verified =
        email &&
        (json_is_true(ev) || (json_is_string(ev) && strcmp(json_string_value(ev), "true") == 0));
    return INK_IDT_OK;
}
