/* JSON Web Keys → OpenSSL 3 public keys (OSSL_PARAM + EVP_PKEY_fromdata; the RSA_* calls are
 * deprecated and not used). */
#include "inklet/alloc.h"
#include "inklet/ids.h"
#include "inklet/idtoken.h"
#include "inklet/json.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>

#define MODULUS_MIN_BITS 2048
#define MODULUS_MAX_BYTES 1024 /* 8192 bits */
#define EXPONENT_MAX_BYTES 8
#define MAX_KEYS 32

static BIGNUM *b64_bignum(json_t *jwk, const char *name, size_t max_bytes)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    unsigned char buf[MODULUS_MAX_BYTES];
    size_t n = 0;
    if (!s || !*s || !ink_base64url_decode(s, strlen(s), buf, max_bytes, &n) || n == 0)
        return NULL;
    return BN_bin2bn(buf, (int)n, NULL);
}

static bool optional_equals(json_t *jwk, const char *name, const char *want)
{
    json_t *v = json_object_get(jwk, name);
    return !v || (json_is_string(v) && strcmp(json_string_value(v), want) == 0);
}

EVP_PKEY *ink_jwk_rsa_public(json_t *jwk, const char **why)
{
    *why = NULL;
    if (!json_is_object(jwk) || !optional_equals(jwk, "kty", "RSA") ||
        !json_object_get(jwk, "kty")) {
        *why = "not an RSA key";
        return NULL;
    }
    if (!optional_equals(jwk, "use", "sig") || !optional_equals(jwk, "alg", "RS256")) {
        *why = "not an RS256 signature key";
        return NULL;
    }
    BIGNUM *n = b64_bignum(jwk, "n", MODULUS_MAX_BYTES);
    BIGNUM *e = b64_bignum(jwk, "e", EXPONENT_MAX_BYTES);
    EVP_PKEY *key = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (!n || !e) {
        *why = "n or e is not base64url of a number in range";
        goto out;
    }
    if (BN_num_bits(n) < MODULUS_MIN_BITS || !BN_is_odd(e) || BN_is_one(e)) {
        *why = "the modulus is under 2048 bits or the exponent is not odd and > 1";
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !(params = OSSL_PARAM_BLD_to_param(bld))) {
        *why = "out of memory";
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        *why = "OpenSSL refused the key";
        key = NULL;
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return key;
}

struct ink_jwk_set {
    size_t count;
    struct {
        char kid[INK_IDTOKEN_KID_MAX + 1];
        EVP_PKEY *key;
    } keys[MAX_KEYS];
};

struct ink_jwk_set *ink_jwk_set_parse(const char *body, size_t len, const char **why)
{
    json_t *root = NULL;
    if (ink_json_parse_object(body, len, &root, why) != INK_OK)
        return NULL;
    json_t *keys = json_object_get(root, "keys");
    if (!json_is_array(keys)) {
        *why = "no keys array";
        json_decref(root);
        return NULL;
    }
    struct ink_jwk_set *set = ink_calloc(1, sizeof *set);
    size_t i;
    json_t *jwk;
    json_array_foreach(keys, i, jwk)
    {
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        const char *skip_why;
        if (set->count == MAX_KEYS || !kid || !*kid || strlen(kid) > INK_IDTOKEN_KID_MAX ||
            ink_jwk_set_find(set, kid))
            continue;
        EVP_PKEY *key = ink_jwk_rsa_public(jwk, &skip_why);
        if (!key)
            continue;
        memcpy(set->keys[set->count].kid, kid, strlen(kid) + 1);
        set->keys[set->count].key = key;
        set->count++;
    }
    json_decref(root);
    if (!set->count) {
        *why = "no usable RS256 key";
        free(set);
        return NULL;
    }
    return set;
}

void ink_jwk_set_free(struct ink_jwk_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->count; i++)
        EVP_PKEY_free(set->keys[i].key);
    free(set);
}

EVP_PKEY *ink_jwk_set_find(const struct ink_jwk_set *set, const char *kid)
{
    for (size_t i = 0; set && kid && i < set->count; i++)
        if (strcmp(set->keys[i].kid, kid) == 0)
            return set->keys[i].key;
    return NULL;
}

size_t ink_jwk_set_count(const struct ink_jwk_set *set)
{
    return set ? set->count : 0;
}
