/* The ES256 client secret of Sign in with Apple. */
#include "inklet/apple.h"

#include "inklet/alloc.h"
#include "inklet/ids.h"

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

EVP_PKEY *ink_apple_load_key(const char *path, const char **why)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        *why = "cannot open the key file";
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!key) {
        *why = "not a PEM private key";
        return NULL;
    }
    char group[32] = "";
    size_t glen = 0;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                       &glen) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        *why = "not an EC P-256 key (Apple's .p8 keys are)";
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}

static char *b64(const unsigned char *in, size_t n)
{
    char *out = ink_malloc(4 * (n / 3 + 1) + 1);
    ink_base64url_encode(in, n, out);
    return out;
}

static char *b64_json(json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    char *out = text ? b64((const unsigned char *)text, strlen(text)) : NULL;
    free(text);
    return out;
}

/* An ECDSA P-256 signature over data as JWS wants it: r and s, 32 bytes each, big-endian. */
static bool sign_es256(EVP_PKEY *key, const char *data, size_t len, unsigned char out[64])
{
    unsigned char der[128];
    size_t der_len = sizeof der;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestSign(md, der, &der_len, (const unsigned char *)data, len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        return false;
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        return false;
    const BIGNUM *r = ECDSA_SIG_get0_r(sig), *s = ECDSA_SIG_get0_s(sig);
    ok = BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok;
}

char *ink_apple_client_secret(EVP_PKEY *key, const char *key_id, const char *team_id,
                              const char *client_id, long long now, unsigned ttl)
{
    if (ttl > INK_APPLE_SECRET_MAX_TTL)
        ttl = INK_APPLE_SECRET_MAX_TTL;
    json_t *header = json_pack("{s:s,s:s}", "alg", "ES256", "kid", key_id);
    json_t *claims =
        json_pack("{s:s,s:I,s:I,s:s,s:s}", "iss", team_id, "iat", (json_int_t)now, "exp",
                  (json_int_t)(now + ttl), "aud", INK_APPLE_AUDIENCE, "sub", client_id);
    char *h = header ? b64_json(header) : NULL, *c = claims ? b64_json(claims) : NULL;
    json_decref(header);
    json_decref(claims);
    char *out = NULL;
    if (h && c) {
        size_t n = strlen(h) + strlen(c) + 2;
        char *input = ink_malloc(n);
        snprintf(input, n, "%s.%s", h, c);
        unsigned char sig[64];
        if (sign_es256(key, input, strlen(input), sig)) {
            char *s = b64(sig, sizeof sig);
            size_t total = n + strlen(s) + 1;
            out = ink_malloc(total);
            snprintf(out, total, "%s.%s", input, s);
            free(s);
        }
        free(input);
    }
    free(h);
    free(c);
    return out;
}
