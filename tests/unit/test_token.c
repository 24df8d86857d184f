/* token: HS256 access tokens with the algorithm pinned and every claim checked (contract §2),
 * and opaque refresh tokens. Bad tokens are built by hand (OpenSSL HMAC) so that each differs
 * from a token the verifier accepts in exactly one respect, or with libjwt where that is the
 * point (libjwt itself trusts the token's `alg`). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/token.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char SECRET[] = "0123456789abcdef0123456789abcdef-test-secret";
#define SECRET_LEN (sizeof SECRET - 1)
static const unsigned char OTHER_SECRET[] = "fedcba9876543210fedcba9876543210-other-key";
#define OTHER_SECRET_LEN (sizeof OTHER_SECRET - 1)

#define SUB "0190f3a2-7b1c-7d2e-8f00-123456789abc"
#define SID "0190f3a2-7b1c-7d2e-9f00-cba987654321"
#define NOW 1768473000LL
#define TTL 900
#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- helpers ---------------------------------------------------------------------------- */

static char *b64url(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    assert_non_null(out);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i) {
        uint32_t v = (uint32_t)in[i] << 16 | (n - i == 2 ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        if (n - i == 2)
            *o++ = tbl[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

/* header.payload.signature from raw JSON texts; md NULL gives an empty signature. */
static char *craft(const char *header, const char *payload, const EVP_MD *md,
                   const unsigned char *key, size_t keylen)
{
    char *h = b64url((const unsigned char *)header, strlen(header));
    char *p = b64url((const unsigned char *)payload, strlen(payload));
    size_t signing_len = strlen(h) + 1 + strlen(p);
    char *out = malloc(signing_len + 100);
    assert_non_null(out);
    snprintf(out, signing_len + 1, "%s.%s", h, p);
    char *sig = NULL;
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned maclen = 0;
        assert_non_null(
            HMAC(md, key, (int)keylen, (const unsigned char *)out, signing_len, mac, &maclen));
        sig = b64url(mac, maclen);
    }
    snprintf(out + signing_len, 100, ".%s", sig ? sig : "");
    free(sig);
    free(h);
    free(p);
    return out;
}

static json_t *good_claims(void)
{
    json_t *c = json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "sub", SUB, "sid", SID, "iat",
                          (json_int_t)NOW, "exp", (json_int_t)(NOW + TTL), "iss", INK_TOKEN_ISSUER,
                          "aud", INK_TOKEN_AUDIENCE, "typ", "access");
    assert_non_null(c);
    return c;
}

/* An HS256 token over `claims` (reference stolen), signed with SECRET. */
static char *sign_claims(json_t *claims)
{
    char *payload = json_dumps(claims, JSON_COMPACT);
    assert_non_null(payload);
    json_decref(claims);
    char *tok = craft(HS256_HEADER, payload, EVP_sha256(), SECRET, SECRET_LEN);
    free(payload);
    return tok;
}

static enum ink_status verify_at(const char *tok, long long now)
{
    struct ink_token_claims c;
    memset(&c, 0, sizeof c);
    return ink_token_verify(SECRET, SECRET_LEN, tok, now, &c);
}

static enum ink_status verify(const char *tok)
{
    return verify_at(tok, NOW);
}

static void expect_claims_rejected(json_t *claims)
{
    char *tok = sign_claims(claims);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
}

static void expect_payload_rejected(const char *payload)
{
    char *tok = craft(HS256_HEADER, payload, EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
}

/* libjwt-built token with the standard claims, for the given algorithm and key. */
static char *libjwt_token(jwt_alg_t alg, const unsigned char *key, size_t keylen)
{
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", SUB), 0);
    assert_int_equal(jwt_add_grant(jwt, "sid", SID), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "iat", (long)NOW), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "exp", (long)(NOW + TTL)), 0);
    assert_int_equal(jwt_add_grant(jwt, "iss", INK_TOKEN_ISSUER), 0);
    assert_int_equal(jwt_add_grant(jwt, "aud", INK_TOKEN_AUDIENCE), 0);
    assert_int_equal(jwt_add_grant(jwt, "typ", "access"), 0);
    assert_int_equal(jwt_set_alg(jwt, alg, key, (int)keylen), 0);
    char *tok = jwt_encode_str(jwt);
    assert_non_null(tok);
    jwt_free(jwt);
    return tok;
}

/* ---- accepted tokens -------------------------------------------------------------------- */

static void issued_token_verifies_and_yields_its_claims(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    assert_non_null(tok);
    struct ink_token_claims c;
    memset(&c, 0, sizeof c);
    assert_int_equal(ink_token_verify(SECRET, SECRET_LEN, tok, NOW, &c), INK_OK);
    assert_string_equal(c.sub, SUB);
    assert_string_equal(c.sid, SID);
    assert_int_equal(c.iat, NOW);
    assert_int_equal(c.exp, NOW + TTL);
    free(tok);
}

static void issued_token_is_hs256_with_documented_claims(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    assert_non_null(tok);
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_decode(&jwt, tok, SECRET, (int)SECRET_LEN), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS256);
    assert_string_equal(jwt_get_grant(jwt, "typ"), "access");
    assert_string_equal(jwt_get_grant(jwt, "iss"), INK_TOKEN_ISSUER);
    assert_string_equal(jwt_get_grant(jwt, "aud"), INK_TOKEN_AUDIENCE);
    assert_string_equal(jwt_get_grant(jwt, "sub"), SUB);
    assert_string_equal(jwt_get_grant(jwt, "sid"), SID);
    assert_int_equal(jwt_get_grant_int(jwt, "iat"), NOW);
    assert_int_equal(jwt_get_grant_int(jwt, "exp"), NOW + TTL);
    jwt_free(jwt);
    free(tok);
}

static void issued_token_is_valid_until_just_before_exp(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    assert_int_equal(verify_at(tok, NOW + TTL - 1), INK_OK);
    assert_int_equal(verify_at(tok, NOW + TTL), INK_UNAUTHORIZED);
    assert_int_equal(verify_at(tok, NOW + TTL + 3600), INK_UNAUTHORIZED);
    free(tok);
}

static void hand_crafted_hs256_token_with_all_claims_is_accepted(void **state)
{
    (void)state;
    /* proves the crafting helpers below are right, so their rejections mean something */
    char *tok = sign_claims(good_claims());
    struct ink_token_claims c;
    assert_int_equal(ink_token_verify(SECRET, SECRET_LEN, tok, NOW, &c), INK_OK);
    assert_string_equal(c.sub, SUB);
    free(tok);
    char *lj = libjwt_token(JWT_ALG_HS256, SECRET, SECRET_LEN);
    assert_int_equal(verify(lj), INK_OK);
    free(lj);
}

static void iat_slightly_ahead_within_leeway_is_accepted(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW + INK_TOKEN_LEEWAY));
    char *tok = sign_claims(c);
    assert_int_equal(verify(tok), INK_OK);
    free(tok);
}

static void unknown_extra_claims_are_ignored(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "role", json_string("admin"));
    char *tok = sign_claims(c);
    assert_int_equal(verify(tok), INK_OK);
    free(tok);
}

/* ---- algorithm and signature ------------------------------------------------------------ */

static void alg_none_token_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    static const char *const headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}", "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"NONE\",\"typ\":\"JWT\"}", "{\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        char *tok = craft(headers[i], payload, NULL, NULL, 0);
        assert_int_equal(tok[strlen(tok) - 1], '.'); /* empty signature */
        if (verify(tok) != INK_UNAUTHORIZED)
            fail_msg("accepted unsigned token with header %s", headers[i]);
        free(tok);
        /* the same header with a valid HS256 MAC appended */
        tok = craft(headers[i], payload, EVP_sha256(), SECRET, SECRET_LEN);
        if (verify(tok) != INK_UNAUTHORIZED)
            fail_msg("accepted token with header %s", headers[i]);
        free(tok);
    }
    free(payload);
}

static void hs512_token_signed_with_the_right_secret_is_rejected(void **state)
{
    (void)state;
    char *tok = libjwt_token(JWT_ALG_HS512, SECRET, SECRET_LEN);
    /* libjwt alone would accept it: that is exactly the hole being closed */
    jwt_t *jwt = NULL;
    assert_int_equal(jwt_decode(&jwt, tok, SECRET, (int)SECRET_LEN), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS512);
    jwt_free(jwt);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
}

static void hs384_token_signed_with_the_right_secret_is_rejected(void **state)
{
    (void)state;
    char *tok = libjwt_token(JWT_ALG_HS384, SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    /* also hand-made, header claiming HS384 */
    json_t *c = good_claims();
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    tok = craft("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", payload, EVP_sha384(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    free(payload);
}

static void header_alg_mismatching_the_mac_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    /* header says HS256 but the MAC is HS512 */
    char *tok = craft(HS256_HEADER, payload, EVP_sha512(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    /* asymmetric algorithm names with an HMAC over the secret */
    tok = craft("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload, EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    tok = craft("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", payload, EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    free(payload);
}

/* Only the header we issue is accepted; an equivalent JSON header (reordered, spaced, with a
 * key id, or typ left out) correctly signed was not made here. */
static void header_other_than_the_issued_one_is_rejected(void **state)
{
    (void)state;
    static const char *const headers[] = {
        "{\"typ\":\"JWT\",\"alg\":\"HS256\"}", "{\"alg\": \"HS256\", \"typ\": \"JWT\"}",
        "{\"alg\":\"HS256\"}", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"1\"}",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\",\"typ\":\"JWT\"}"};
    json_t *c = good_claims();
    char *payload = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        char *tok = craft(headers[i], payload, EVP_sha256(), SECRET, SECRET_LEN);
        assert_int_equal(verify(tok), INK_UNAUTHORIZED);
        free(tok);
    }
    /* the control: the issued header with the same payload and key */
    char *tok = craft(HS256_HEADER, payload, EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_OK);
    free(tok);
    free(payload);
}

/* Each thread keys its HMAC once per secret: alternating between two secrets (JWT_SECRET and
 * JWT_PREVIOUS_SECRET) and a third one must never verify a token under the wrong key. */
static void alternating_secrets_each_verify_only_their_own_tokens(void **state)
{
    (void)state;
    static const unsigned char THIRD[] = "a-third-secret-a-third-secret-0123456789";
    const unsigned char *keys[] = {SECRET, OTHER_SECRET, THIRD};
    size_t lens[] = {SECRET_LEN, OTHER_SECRET_LEN, sizeof THIRD - 1};
    char *toks[3];
    for (int k = 0; k < 3; k++)
        toks[k] = ink_token_issue(keys[k], lens[k], SUB, SID, NOW, TTL);
    for (int round = 0; round < 4; round++)
        for (int k = 0; k < 3; k++)
            for (int t = 0; t < 3; t++) {
                struct ink_token_claims cl;
                assert_int_equal(ink_token_verify(keys[k], lens[k], toks[t], NOW, &cl),
                                 k == t ? INK_OK : INK_UNAUTHORIZED);
            }
    for (int k = 0; k < 3; k++)
        free(toks[k]);
}

static char other_b64_char(char c)
{
    return c == 'A' ? 'B' : 'A';
}

static void tampered_payload_is_rejected(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    char *dot1 = strchr(tok, '.'), *dot2 = strchr(dot1 + 1, '.');
    size_t mid = (size_t)(dot2 - dot1) / 2;
    dot1[mid] = other_b64_char(dot1[mid]);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
}

static void payload_swapped_under_a_valid_signature_is_rejected(void **state)
{
    (void)state;
    char *good = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    /* an attacker's payload naming another user, keeping the original header and MAC */
    json_t *c = good_claims();
    json_object_set_new(c, "sub", json_string("0190f3a2-7b1c-7d2e-8f00-000000000001"));
    char *forged = sign_claims(c);
    char *fdot1 = strchr(forged, '.'), *fdot2 = strchr(fdot1 + 1, '.');
    char *gdot2 = strrchr(good, '.');
    char buf[2048];
    snprintf(buf, sizeof buf, "%.*s%s", (int)(fdot2 - forged), forged, gdot2);
    assert_int_equal(verify(buf), INK_UNAUTHORIZED);
    free(forged);
    free(good);
}

static void tampered_signature_is_rejected(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    char *sig = strrchr(tok, '.') + 1;
    sig[5] = other_b64_char(sig[5]);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    *strrchr(tok, '.') = '\0'; /* signature cut off entirely */
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
    tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    strrchr(tok, '.')[1] = '\0'; /* empty signature */
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    free(tok);
}

static void wrong_secret_is_rejected(void **state)
{
    (void)state;
    char *tok = ink_token_issue(OTHER_SECRET, OTHER_SECRET_LEN, SUB, SID, NOW, TTL);
    assert_non_null(tok);
    assert_int_equal(verify(tok), INK_UNAUTHORIZED);
    /* and a secret that is a prefix of the real one */
    assert_int_equal(ink_token_verify(OTHER_SECRET, 32, tok, NOW, &(struct ink_token_claims){0}),
                     INK_UNAUTHORIZED);
    free(tok);
}

static void missing_or_empty_secret_never_verifies(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    struct ink_token_claims c;
    assert_int_equal(ink_token_verify(NULL, 0, tok, NOW, &c), INK_UNAUTHORIZED);
    assert_int_equal(ink_token_verify(SECRET, 0, tok, NOW, &c), INK_UNAUTHORIZED);
    free(tok);
    /* an unsigned token with no key either: libjwt would accept this pair */
    json_t *cl = good_claims();
    char *payload = json_dumps(cl, JSON_COMPACT);
    json_decref(cl);
    tok = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload, NULL, NULL, 0);
    assert_int_equal(ink_token_verify(NULL, 0, tok, NOW, &c), INK_UNAUTHORIZED);
    free(tok);
    free(payload);
}

/* ---- time claims ------------------------------------------------------------------------ */

static void expired_token_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW - TTL));
    json_object_set_new(c, "exp", json_integer(NOW)); /* exp == now */
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW - 2 * TTL));
    json_object_set_new(c, "exp", json_integer(NOW - TTL));
    expect_claims_rejected(c);
}

static void missing_exp_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_del(c, "exp");
    expect_claims_rejected(c);
}

static void non_integer_exp_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "exp", json_string("9999999999"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "exp", json_real(1e10));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "exp", json_null());
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "exp", json_true());
    expect_claims_rejected(c);
    /* the exponent spelling, written by hand */
    char payload[512];
    snprintf(payload, sizeof payload,
             "{\"sub\":\"%s\",\"sid\":\"%s\",\"iat\":%lld,\"exp\":1e10,\"iss\":\"%s\","
             "\"aud\":\"%s\",\"typ\":\"access\"}",
             SUB, SID, NOW, INK_TOKEN_ISSUER, INK_TOKEN_AUDIENCE);
    expect_payload_rejected(payload);
    /* sanity: the same text with an integer exp is accepted */
    snprintf(payload, sizeof payload,
             "{\"sub\":\"%s\",\"sid\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"iss\":\"%s\","
             "\"aud\":\"%s\",\"typ\":\"access\"}",
             SUB, SID, NOW, NOW + TTL, INK_TOKEN_ISSUER, INK_TOKEN_AUDIENCE);
    char *tok = craft(HS256_HEADER, payload, EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(verify(tok), INK_OK);
    free(tok);
}

static void missing_or_non_integer_iat_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_del(c, "iat");
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "iat", json_real((double)NOW));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "iat", json_string("1768473000"));
    expect_claims_rejected(c);
}

static void iat_far_in_the_future_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW + 3600));
    json_object_set_new(c, "exp", json_integer(NOW + 3600 + TTL));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW + INK_TOKEN_LEEWAY + 1));
    json_object_set_new(c, "exp", json_integer(NOW + INK_TOKEN_LEEWAY + 1 + TTL));
    expect_claims_rejected(c);
}

static void iat_after_exp_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iat", json_integer(NOW + 10));
    json_object_set_new(c, "exp", json_integer(NOW + 5));
    expect_claims_rejected(c);
}

/* ---- string claims ---------------------------------------------------------------------- */

static void wrong_or_missing_issuer_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("https://evil.example"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "iss", json_string(INK_TOKEN_ISSUER "/"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_del(c, "iss");
    expect_claims_rejected(c);
}

static void wrong_missing_or_array_audience_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "aud", json_string("someone-else"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s]", INK_TOKEN_AUDIENCE));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", INK_TOKEN_AUDIENCE, "other"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_del(c, "aud");
    expect_claims_rejected(c);
}

static void non_access_typ_is_rejected(void **state)
{
    (void)state;
    json_t *c = good_claims();
    json_object_set_new(c, "typ", json_string("refresh"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_set_new(c, "typ", json_string("Access"));
    expect_claims_rejected(c);
    c = good_claims();
    json_object_del(c, "typ");
    expect_claims_rejected(c);
}

static void sub_and_sid_must_be_uuids(void **state)
{
    (void)state;
    static const char *const fields[] = {"sub", "sid"};
    for (size_t i = 0; i < 2; i++) {
        json_t *c = good_claims();
        json_object_set_new(c, fields[i], json_string("admin"));
        expect_claims_rejected(c);
        c = good_claims();
        json_object_set_new(c, fields[i], json_string(""));
        expect_claims_rejected(c);
        c = good_claims();
        json_object_set_new(c, fields[i], json_string(SUB "0"));
        expect_claims_rejected(c);
        c = good_claims();
        json_object_set_new(c, fields[i], json_string("' OR 1=1 --"));
        expect_claims_rejected(c);
        c = good_claims();
        json_object_set_new(c, fields[i], json_integer(42));
        expect_claims_rejected(c);
        c = good_claims();
        json_object_del(c, fields[i]);
        expect_claims_rejected(c);
    }
}

/* ---- shape and size --------------------------------------------------------------------- */

static char *padded_token(size_t pad)
{
    json_t *c = good_claims();
    char *fill = malloc(pad + 1);
    assert_non_null(fill);
    memset(fill, 'x', pad);
    fill[pad] = '\0';
    json_object_set_new(c, "pad", json_string(fill));
    free(fill);
    return sign_claims(c);
}

static void token_longer_than_max_len_is_rejected(void **state)
{
    (void)state;
    /* find the longest valid token not above the limit and the shortest one above it */
    char *at_most = NULL, *above = NULL;
    for (size_t pad = 2600; pad < 3300 && !above; pad++) {
        char *tok = padded_token(pad);
        if (strlen(tok) <= INK_TOKEN_MAX_LEN) {
            free(at_most);
            at_most = tok;
        } else {
            above = tok;
        }
    }
    assert_non_null(at_most);
    assert_non_null(above);
    assert_true(strlen(at_most) > INK_TOKEN_MAX_LEN - 4);
    assert_true(strlen(above) < INK_TOKEN_MAX_LEN + 4);
    assert_int_equal(verify(at_most), INK_OK);
    assert_int_equal(verify(above), INK_UNAUTHORIZED);
    free(at_most);
    free(above);
    char *huge = padded_token(100000);
    assert_int_equal(verify(huge), INK_UNAUTHORIZED);
    free(huge);
}

static void garbage_and_empty_strings_are_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b",
        "Bearer x.y.z",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.eyJ9.",
        "!!!.@@@.###",
        "null",
        "\xff\xfe.\xfd.\xfc",
        "e30.e30.e30",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (verify(bad[i]) != INK_UNAUTHORIZED)
            fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(verify(NULL), INK_UNAUTHORIZED);
}

static void extra_segments_around_a_valid_token_are_rejected(void **state)
{
    (void)state;
    char *tok = ink_token_issue(SECRET, SECRET_LEN, SUB, SID, NOW, TTL);
    char buf[2048];
    snprintf(buf, sizeof buf, "%s.", tok);
    assert_int_equal(verify(buf), INK_UNAUTHORIZED);
    snprintf(buf, sizeof buf, "%s.extra", tok);
    assert_int_equal(verify(buf), INK_UNAUTHORIZED);
    snprintf(buf, sizeof buf, "x.%s", tok);
    assert_int_equal(verify(buf), INK_UNAUTHORIZED);
    free(tok);
}

static void non_object_payload_is_rejected(void **state)
{
    (void)state;
    expect_payload_rejected("[]");
    expect_payload_rejected("\"access\"");
    expect_payload_rejected("42");
    expect_payload_rejected("{");
}

/* ---- refresh tokens --------------------------------------------------------------------- */

static void refresh_token_is_43_base64url_chars(void **state)
{
    (void)state;
    for (int i = 0; i < 100; i++) {
        char t[44];
        memset(t, '!', sizeof t);
        ink_refresh_token_new(t);
        assert_int_equal(strlen(t), 43);
        for (size_t j = 0; j < 43; j++)
            assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_",
                                   t[j]));
        assert_true(ink_refresh_token_wellformed(t));
    }
}

static void refresh_tokens_differ(void **state)
{
    (void)state;
    char a[44], b[44];
    ink_refresh_token_new(a);
    ink_refresh_token_new(b);
    assert_string_not_equal(a, b);
}

static void refresh_wellformed_rejects_wrong_length_and_alphabet(void **state)
{
    (void)state;
    char t[44], buf[64];
    ink_refresh_token_new(t);
    assert_true(ink_refresh_token_wellformed(t));
    memcpy(buf, t, 42);
    buf[42] = '\0';
    assert_false(ink_refresh_token_wellformed(buf)); /* 42 */
    memcpy(buf, t, 43);
    buf[43] = 'A';
    buf[44] = '\0';
    assert_false(ink_refresh_token_wellformed(buf)); /* 44 */
    static const char bad_chars[] = "+/= .!\n\x80";
    for (size_t i = 0; i < sizeof bad_chars - 1; i++) {
        memcpy(buf, t, 44);
        buf[20] = bad_chars[i];
        assert_false(ink_refresh_token_wellformed(buf));
    }
    assert_false(ink_refresh_token_wellformed(""));
}

static void refresh_hash_is_sha256_of_the_string(void **state)
{
    (void)state;
    char t[44];
    ink_refresh_token_new(t);
    unsigned char got[32], want[32];
    ink_refresh_token_hash(t, got);
    SHA256((const unsigned char *)t, strlen(t), want);
    assert_memory_equal(got, want, 32);
    /* FIPS 180-2 test vector */
    static const unsigned char abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                          0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                          0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                          0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    ink_refresh_token_hash("abc", got);
    assert_memory_equal(got, abc, 32);
    /* different tokens, different hashes */
    char u[44];
    ink_refresh_token_new(u);
    unsigned char other[32];
    ink_refresh_token_hash(u, other);
    ink_refresh_token_hash(t, got);
    assert_memory_not_equal(got, other, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(issued_token_verifies_and_yields_its_claims),
        cmocka_unit_test(issued_token_is_hs256_with_documented_claims),
        cmocka_unit_test(issued_token_is_valid_until_just_before_exp),
        cmocka_unit_test(hand_crafted_hs256_token_with_all_claims_is_accepted),
        cmocka_unit_test(iat_slightly_ahead_within_leeway_is_accepted),
        cmocka_unit_test(unknown_extra_claims_are_ignored),
        cmocka_unit_test(alg_none_token_is_rejected),
        cmocka_unit_test(hs512_token_signed_with_the_right_secret_is_rejected),
        cmocka_unit_test(hs384_token_signed_with_the_right_secret_is_rejected),
        cmocka_unit_test(header_alg_mismatching_the_mac_is_rejected),
        cmocka_unit_test(header_other_than_the_issued_one_is_rejected),
        cmocka_unit_test(alternating_secrets_each_verify_only_their_own_tokens),
        cmocka_unit_test(tampered_payload_is_rejected),
        cmocka_unit_test(payload_swapped_under_a_valid_signature_is_rejected),
        cmocka_unit_test(tampered_signature_is_rejected),
        cmocka_unit_test(wrong_secret_is_rejected),
        cmocka_unit_test(missing_or_empty_secret_never_verifies),
        cmocka_unit_test(expired_token_is_rejected),
        cmocka_unit_test(missing_exp_is_rejected),
        cmocka_unit_test(non_integer_exp_is_rejected),
        cmocka_unit_test(missing_or_non_integer_iat_is_rejected),
        cmocka_unit_test(iat_far_in_the_future_is_rejected),
        cmocka_unit_test(iat_after_exp_is_rejected),
        cmocka_unit_test(wrong_or_missing_issuer_is_rejected),
        cmocka_unit_test(wrong_missing_or_array_audience_is_rejected),
        cmocka_unit_test(non_access_typ_is_rejected),
        cmocka_unit_test(sub_and_sid_must_be_uuids),
        cmocka_unit_test(token_longer_than_max_len_is_rejected),
        cmocka_unit_test(garbage_and_empty_strings_are_rejected),
        cmocka_unit_test(extra_segments_around_a_valid_token_are_rejected),
        cmocka_unit_test(non_object_payload_is_rejected),
        cmocka_unit_test(refresh_token_is_43_base64url_chars),
        cmocka_unit_test(refresh_tokens_differ),
        cmocka_unit_test(refresh_wellformed_rejects_wrong_length_and_alphabet),
        cmocka_unit_test(refresh_hash_is_sha256_of_the_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
