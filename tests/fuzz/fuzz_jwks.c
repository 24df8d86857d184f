/* libFuzzer driver: a provider's JWKS document (ink_jwk_set_parse: what the JWKS cache keeps of
 * every fetched body; the fetch itself, src/oauth/jwks.c, is network and not fuzzed here). The
 * input is the response body. Checked besides memory safety:
 *   - rejected ⇒ a reason; accepted ⇒ the body is a JSON object with a "keys" array and the set
 *     holds 1 to 32 keys;
 *   - the kids the set answers for are exactly count distinct strings of the array's entries,
 *     each 1 to INK_IDTOKEN_KID_MAX bytes;
 *   - every key found is an RSA public key of 2048 to 8192 bits with an odd exponent > 1 of at
 *     most 64 bits, and some entry with that kid has kty "RSA", no other use than "sig", no
 *     other alg than "RS256", and n and e that decode (base64url, decoded here independently)
 *     to exactly the key's modulus and exponent. */
#include "inklet/idtoken.h"
#include "inklet/json.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEYS 32

static int b64url_digit(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Unpadded canonical base64url of a big-endian number; NULL when it is not that. */
static BIGNUM *b64url_bn(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n % 4 == 1)
        return NULL;
    unsigned char *out = malloc(n);
    size_t o = 0;
    unsigned acc = 0, bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_digit(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6 | (unsigned)v) & 0xffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    BIGNUM *bn = acc == 0 ? BN_bin2bn(out, (int)o, NULL) : NULL;
    free(out);
    return bn;
}

static bool absent_or(json_t *jwk, const char *name, const char *want)
{
    json_t *v = json_object_get(jwk, name);
    return !v || (json_is_string(v) && strcmp(json_string_value(v), want) == 0);
}

/* Does this entry describe exactly key (n, e)? */
static bool entry_is(json_t *jwk, const BIGNUM *n, const BIGNUM *e)
{
    if (!json_is_string(json_object_get(jwk, "kty")) || !absent_or(jwk, "kty", "RSA") ||
        !absent_or(jwk, "use", "sig") || !absent_or(jwk, "alg", "RS256"))
        return false;
    BIGNUM *jn = b64url_bn(json_string_value(json_object_get(jwk, "n")));
    BIGNUM *je = b64url_bn(json_string_value(json_object_get(jwk, "e")));
    bool same = jn && je && BN_cmp(jn, n) == 0 && BN_cmp(je, e) == 0;
    BN_free(jn);
    BN_free(je);
    return same;
}

static void check_key(json_t *keys, const char *kid, EVP_PKEY *key)
{
    BIGNUM *n = NULL, *e = NULL;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA ||
        !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e))
        abort();
    if (BN_num_bits(n) < 2048 || BN_num_bits(n) > 8192 || !BN_is_odd(e) || BN_is_one(e) ||
        BN_num_bits(e) > 64)
        abort();
    bool described = false;
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *k = json_string_value(json_object_get(jwk, "kid"));
        if (k && strcmp(k, kid) == 0 && entry_is(jwk, n, e))
            described = true;
    }
    if (!described)
        abort(); /* a key no entry with that kid describes */
    BN_free(n);
    BN_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    struct ink_jwk_set *set = ink_jwk_set_parse((const char *)data, size, &why);
    if (!set) {
        if (!why)
            abort();
        return 0;
    }
    size_t count = ink_jwk_set_count(set);
    if (count < 1 || count > MAX_KEYS)
        abort();
    json_t *root = NULL;
    if (ink_json_parse_object((const char *)data, size, &root, &why) != INK_OK)
        abort(); /* a set from a body that is no JSON object */
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys))
        abort();
    /* the distinct kids of the entries that the set answers for */
    const char *found[MAX_KEYS];
    size_t nfound = 0, i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        EVP_PKEY *key = kid ? ink_jwk_set_find(set, kid) : NULL;
        if (!key)
            continue;
        bool seen = false;
        for (size_t k = 0; k < nfound; k++)
            if (strcmp(found[k], kid) == 0)
                seen = true;
        if (seen)
            continue;
        if (nfound == MAX_KEYS || strlen(kid) < 1 || strlen(kid) > INK_IDTOKEN_KID_MAX)
            abort();
        found[nfound++] = kid;
        check_key(keys, kid, key);
    }
    if (nfound != count)
        abort(); /* the set holds a key under a kid no entry has, or counts wrongly */
    if (ink_jwk_set_find(set, "") || ink_jwk_set_find(set, NULL))
        abort();
    json_decref(root);
    ink_jwk_set_free(set);
    return 0;
}
