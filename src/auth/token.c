#include "inklet/token.h"

#include "inklet/alloc.h"

#include <jansson.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool string_claim_is(json_t *claims, const char *name, const char *want)
{
    json_t *v = json_object_get(claims, name);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static bool uuid_claim(json_t *claims, const char *name, char out[INK_UUID_STRLEN + 1])
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_string(v) || !ink_uuid_valid(json_string_value(v)))
        return false;
    memcpy(out, json_string_value(v), INK_UUID_STRLEN + 1);
    return true;
}

/* The header segment every token we issue has: libjwt's {"alg":"HS256","typ":"JWT"}. Anything
 * else was not issued here, so the header is compared, never parsed: no `alg` to confuse. */
static const char ISSUED_HEADER[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.";
#define HEADER_LEN (sizeof ISSUED_HEADER - 1)
#define SIG_LEN 43 /* base64url of 32 bytes */

/* ---- HMAC-SHA256 with the key set once per thread ---------------------------------------- */

/* Verification runs for every authenticated request, on the request lane's threads. An
 * EVP_MAC_CTX keyed once and re-initialised per use costs a third of a one-shot HMAC(), which
 * fetches the digest and expands the key every time. Each thread keeps the contexts of the (at
 * most two: JWT_SECRET, JWT_PREVIOUS_SECRET) secrets it saw, matched by the key's bytes. */
#define MAC_KEY_MAX 256
#define MAC_SLOTS 2

struct mac_slot {
    EVP_MAC_CTX *ctx;
    size_t len;
    unsigned char key[MAC_KEY_MAX];
};

static pthread_key_t mac_tls;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static EVP_MAC *mac_alg;

static void mac_slots_free(void *p)
{
    struct mac_slot *slots = p;
    for (int i = 0; i < MAC_SLOTS; i++)
        EVP_MAC_CTX_free(slots[i].ctx);
    OPENSSL_cleanse(slots, MAC_SLOTS * sizeof *slots);
    free(slots);
}

static void mac_init_once(void)
{
    mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (pthread_key_create(&mac_tls, mac_slots_free) != 0)
        mac_alg = NULL; /* every verification then takes the one-shot path */
}

static EVP_MAC_CTX *keyed_ctx(const unsigned char *key, size_t len)
{
    if (len > MAC_KEY_MAX)
        return NULL;
    pthread_once(&mac_once, mac_init_once);
    if (!mac_alg)
        return NULL;
    struct mac_slot *slots = pthread_getspecific(mac_tls);
    if (!slots) {
        slots = ink_calloc(MAC_SLOTS, sizeof *slots);
        if (pthread_setspecific(mac_tls, slots) != 0) {
            free(slots);
            return NULL;
        }
    }
    int free_slot = -1;
    for (int i = 0; i < MAC_SLOTS; i++) {
        if (slots[i].ctx && slots[i].len == len && CRYPTO_memcmp(slots[i].key, key, len) == 0)
            return EVP_MAC_init(slots[i].ctx, NULL, 0, NULL) ? slots[i].ctx : NULL;
        if (!slots[i].ctx && free_slot < 0)
            free_slot = i;
    }
    struct mac_slot *s = &slots[free_slot >= 0 ? free_slot : 0]; /* all taken: a third secret */
    EVP_MAC_CTX_free(s->ctx);
    s->ctx = EVP_MAC_CTX_new(mac_alg);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    if (!s->ctx || !EVP_MAC_init(s->ctx, key, len, params)) {
        EVP_MAC_CTX_free(s->ctx);
        s->ctx = NULL;
        return NULL;
    }
    memcpy(s->key, key, len);
    s->len = len;
    return s->ctx;
}

static bool hmac_sha256(const unsigned char *key, size_t key_len, const char *data, size_t len,
                        unsigned char mac[32])
{
    EVP_MAC_CTX *ctx = keyed_ctx(key, key_len);
    if (ctx) {
        size_t out = 0;
        return EVP_MAC_update(ctx, (const unsigned char *)data, len) &&
               EVP_MAC_final(ctx, mac, &out, 32) && out == 32;
    }
    unsigned out = 0;
    return HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, len, mac, &out) &&
           out == 32;
}

/* ---- issuing ----------------------------------------------------------------------------- */

/* Written by hand, not with libjwt: login and every refresh issue one, and libjwt built two
 * jansson objects, serialised them and keyed a fresh HMAC each time. The result is the same
 * standard HS256 JWT (the unit test decodes it with libjwt); the header is ISSUED_HEADER, the
 * one the verifier compares. The ids are UUIDs (checked), so no claim needs escaping. */
char *ink_token_issue(const unsigned char *secret, size_t secret_len, const char *user_id,
                      const char *session_id, long long now, unsigned ttl)
{
    if (!secret || secret_len == 0 || secret_len > INT_MAX || !user_id || !session_id ||
        !ink_uuid_valid(user_id) || !ink_uuid_valid(session_id))
        return NULL;
    char claims[256];
    int n = snprintf(claims, sizeof claims,
                     "{\"sub\":\"%s\",\"sid\":\"%s\",\"iat\":%lld,\"exp\":%lld,"
                     "\"iss\":\"" INK_TOKEN_ISSUER "\",\"aud\":\"" INK_TOKEN_AUDIENCE
                     "\",\"typ\":\"access\"}",
                     user_id, session_id, now, now + (long long)ttl);
    if (n < 0 || (size_t)n >= sizeof claims)
        return NULL;
    /* header. + base64url(claims) + . + base64url(32-byte MAC) + NUL */
    size_t cap = HEADER_LEN + 4 * (((size_t)n + 2) / 3) + 1 + SIG_LEN + 1 + 1;
    char *tok = ink_malloc(cap);
    memcpy(tok, ISSUED_HEADER, HEADER_LEN);
    size_t len = HEADER_LEN + ink_base64url_encode((const unsigned char *)claims, (size_t)n,
                                                   tok + HEADER_LEN);
    unsigned char mac[32];
    if (!hmac_sha256(secret, secret_len, tok, len, mac)) {
        free(tok);
        return NULL;
    }
    tok[len++] = '.';
    ink_base64url_encode(mac, sizeof mac, tok + len);
    return tok;
}

/* ---- verification ------------------------------------------------------------------------ */

enum ink_status ink_token_verify(const unsigned char *secret, size_t secret_len, const char *token,
                                 long long now, struct ink_token_claims *out)
{
    /* never verify against a missing or empty key: anyone could compute that MAC */
    if (!token || !secret || secret_len == 0 || secret_len > INT_MAX)
        return INK_UNAUTHORIZED;
    size_t len = strnlen(token, INK_TOKEN_MAX_LEN + 1);
    if (len > INK_TOKEN_MAX_LEN || len < HEADER_LEN + 2 + SIG_LEN ||
        memcmp(token, ISSUED_HEADER, HEADER_LEN) != 0)
        return INK_UNAUTHORIZED;
    /* header.payload.signature: the payload is base64url up to the only other dot */
    const char *payload = token + HEADER_LEN, *dot = memchr(payload, '.', len - HEADER_LEN);
    if (!dot || (size_t)(token + len - (dot + 1)) != SIG_LEN || dot == payload)
        return INK_UNAUTHORIZED;
    unsigned char sig[33], mac[32];
    size_t sig_len = 0;
    if (!ink_base64url_decode(dot + 1, SIG_LEN, sig, sizeof sig, &sig_len) || sig_len != 32)
        return INK_UNAUTHORIZED;
    if (!hmac_sha256(secret, secret_len, token, (size_t)(dot - token), mac) ||
        CRYPTO_memcmp(mac, sig, 32) != 0)
        return INK_UNAUTHORIZED;
    /* signed by us: now the claims (ink_base64url_decode also refuses '.' inside the payload) */
    unsigned char text[INK_TOKEN_MAX_LEN];
    size_t text_len = 0;
    if (!ink_base64url_decode(payload, (size_t)(dot - payload), text, sizeof text, &text_len))
        return INK_UNAUTHORIZED;
    enum ink_status st = INK_UNAUTHORIZED;
    json_t *claims = json_loadb((const char *)text, text_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims))
        goto out;
    json_t *exp = json_object_get(claims, "exp"), *iat = json_object_get(claims, "iat");
    if (!json_is_integer(exp) || !json_is_integer(iat))
        goto out;
    out->exp = json_integer_value(exp);
    out->iat = json_integer_value(iat);
    if (out->exp <= now || out->iat > now + INK_TOKEN_LEEWAY || out->iat > out->exp)
        goto out;
    if (!string_claim_is(claims, "typ", "access") ||
        !string_claim_is(claims, "iss", INK_TOKEN_ISSUER) ||
        !string_claim_is(claims, "aud", INK_TOKEN_AUDIENCE))
        goto out;
    if (!uuid_claim(claims, "sub", out->sub) || !uuid_claim(claims, "sid", out->sid))
        goto out;
    st = INK_OK;
out:
    json_decref(claims);
    return st;
}

void ink_refresh_token_new(char out[44])
{
    unsigned char raw[32];
    ink_random_bytes(raw, sizeof raw);
    ink_base64url_encode(raw, sizeof raw, out);
}

void ink_refresh_token_hash(const char *token, unsigned char out[32])
{
    SHA256((const unsigned char *)token, strlen(token), out);
}

bool ink_refresh_token_wellformed(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 43 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n == 43;
}
