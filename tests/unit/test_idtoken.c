/* Provider ID tokens: JWK → public key (OpenSSL 3 EVP_PKEY_fromdata), RS256 verification, every
 * claim check, nonce comparison, and the refusals that come before any key lookup. Keys are
 * generated here; tokens are signed here with EVP_DigestSign, independently of the code under
 * test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/ids.h"
#include "inklet/idtoken.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1800000000LL
#define ISS "https://accounts.google.com"
#define AUD "inklet-web.apps.googleusercontent.com"

static EVP_PKEY *key_a, *key_b, *key_small;
static const char *const ISSUERS[] = {ISS, "accounts.google.com"};

static int setup(void **state)
{
    (void)state;
    key_a = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    key_b = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    key_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    return key_a && key_b && key_small ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key_a);
    EVP_PKEY_free(key_b);
    EVP_PKEY_free(key_small);
    return 0;
}

static char *b64(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * (n / 3 + 1) + 1);
    ink_base64url_encode(in, n, out);
    return out;
}

static char *b64_str(const char *s)
{
    return b64((const unsigned char *)s, strlen(s));
}

static char *bn_b64(EVP_PKEY *key, const char *name)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, name, &bn), 1);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64(buf, (size_t)n);
}

/* The JWK of a key, as a provider publishes it. */
static json_t *jwk_of(EVP_PKEY *key, const char *kid)
{
    char *n = bn_b64(key, OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(key, OSSL_PKEY_PARAM_RSA_E);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "kty", "RSA", "use", "sig", "alg", "RS256",
                          "kid", kid, "n", n, "e", e);
    free(n);
    free(e);
    return j;
}

/* header.payload.signature; alg "RS256" signs with `key`, "HS256" with `hmac_key`, "none" not. */
static char *make_token(const char *alg, const char *kid, json_t *claims, EVP_PKEY *key,
                        const char *hmac_key)
{
    json_t *h = json_pack("{s:s,s:s}", "alg", alg, "typ", "JWT");
    if (kid)
        json_object_set_new(h, "kid", json_string(kid));
    char *hs = json_dumps(h, JSON_COMPACT), *cs = json_dumps(claims, JSON_COMPACT);
    char *h64 = b64_str(hs), *c64 = b64_str(cs);
    size_t n = strlen(h64) + strlen(c64) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h64, c64);
    unsigned char sig[1024];
    size_t sig_len = 0;
    if (strcmp(alg, "RS256") == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        sig_len = sizeof sig;
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sig_len, (unsigned char *)input, strlen(input)),
                         1);
        EVP_MD_CTX_free(md);
    } else if (strcmp(alg, "HS256") == 0) {
        unsigned len = 0;
        HMAC(EVP_sha256(), hmac_key, (int)strlen(hmac_key), (unsigned char *)input, strlen(input),
             sig, &len);
        sig_len = len;
    }
    char *s64 = b64(sig, sig_len);
    size_t total = strlen(input) + strlen(s64) + 2;
    char *tok = malloc(total);
    snprintf(tok, total, "%s.%s", input, s64);
    free(hs), free(cs), free(h64), free(c64), free(input), free(s64);
    json_decref(h);
    return tok;
}

static json_t *good_claims(void)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:s}", "iss", ISS, "aud", AUD, "azp", AUD,
                     "sub", "110169484474386276334", "email", "ada@example.com", "email_verified",
                     1, "iat", (json_int_t)(NOW - 10), "exp", (json_int_t)(NOW + 3600), "nonce",
                     "n-0S6_WzA2Mj");
}

/* good_claims() signed with `key` as kid k1. */
static char *signed_good(EVP_PKEY *key)
{
    json_t *c = good_claims();
    char *tok = make_token("RS256", "k1", c, key, NULL);
    json_decref(c);
    return tok;
}

static const struct ink_idtoken_rules RULES = {ISSUERS, 2, "other-client," AUD, "n-0S6_WzA2Mj",
                                               NOW};

/* Parses and checks `tok` against key_a with `rules`. */
static enum ink_idtoken_result verify_with(const char *tok, EVP_PKEY *key,
                                           const struct ink_idtoken_rules *rules,
                                           struct ink_identity *id)
{
    struct ink_idtoken t;
    enum ink_idtoken_result r = ink_idtoken_parse(tok, &t);
    if (r != INK_IDT_OK)
        return r;
    const char *why;
    r = ink_idtoken_check(&t, key, rules, id, &why);
    ink_idtoken_free(&t);
    return r;
}

/* Signs `claims` (taken) with key_a and verifies with RULES. */
static enum ink_idtoken_result verify_claims(json_t *claims, struct ink_identity *id)
{
    char *tok = make_token("RS256", "k1", claims, key_a, NULL);
    json_decref(claims);
    enum ink_idtoken_result r = verify_with(tok, key_a, &RULES, id);
    free(tok);
    return r;
}

/* ---- keys --------------------------------------------------------------------------------- */

static void jwk_converts_to_a_key_that_verifies_a_token(void **state)
{
    (void)state;
    json_t *jwk = jwk_of(key_a, "k1");
    const char *why;
    EVP_PKEY *pub = ink_jwk_rsa_public(jwk, &why);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_get_bits(pub), 2048);
    assert_int_equal(EVP_PKEY_eq(pub, key_a), 1); /* the same public key */
    char *tok = signed_good(key_a);
    struct ink_identity id;
    assert_int_equal(verify_with(tok, pub, &RULES, &id), INK_IDT_OK);
    assert_string_equal(id.sub, "110169484474386276334");
    assert_string_equal(id.email, "ada@example.com");
    assert_true(id.email_verified);
    free(tok);
    EVP_PKEY_free(pub);
    json_decref(jwk);
}

static void jwk_that_is_not_an_rs256_signature_key_is_refused(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"kty", "EC"}, {"use", "enc"}, {"alg", "RS512"}, {"alg", "HS256"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *jwk = jwk_of(key_a, "k1");
        json_object_set_new(jwk, bad[i][0], json_string(bad[i][1]));
        const char *why;
        EVP_PKEY *k = ink_jwk_rsa_public(jwk, &why);
        if (k)
            fail_msg("%s=%s accepted", bad[i][0], bad[i][1]);
        assert_non_null(why);
        json_decref(jwk);
    }
    json_t *no_kty = jwk_of(key_a, "k1");
    json_object_del(no_kty, "kty");
    const char *why;
    assert_null(ink_jwk_rsa_public(no_kty, &why));
    json_decref(no_kty);
    json_t *str = json_string("x");
    assert_null(ink_jwk_rsa_public(str, &why));
    json_decref(str);
}

static void jwk_with_bad_numbers_is_refused(void **state)
{
    (void)state;
    const char *why;
    /* a 1024-bit modulus is too weak */
    json_t *small = jwk_of(key_small, "k1");
    assert_null(ink_jwk_rsa_public(small, &why));
    json_decref(small);
    struct {
        const char *field, *value;
    } bad[] = {
        {"e", "AAE"},            /* e = 1 */
        {"e", "AAI"},            /* even */
        {"e", ""},               /* empty */
        {"e", "AQAB="},          /* padding is not base64url in a JWK */
        {"e", "AQAC"},           /* even (65538) */
        {"e", "AQAB AQAB"},      /* whitespace */
        {"e", "AQAAAAAAAAAAAQ"}, /* 10 bytes */
        {"n", "AQAB"},           /* tiny modulus */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *jwk = jwk_of(key_a, "k1");
        json_object_set_new(jwk, bad[i].field, json_string(bad[i].value));
        EVP_PKEY *k = ink_jwk_rsa_public(jwk, &why);
        if (k)
            fail_msg("%s=\"%s\" accepted", bad[i].field, bad[i].value);
        json_decref(jwk);
    }
    json_t *num = jwk_of(key_a, "k1");
    json_object_set_new(num, "e", json_integer(65537)); /* must be a string */
    assert_null(ink_jwk_rsa_public(num, &why));
    json_decref(num);
}

static void jwk_set_keeps_usable_keys_by_kid(void **state)
{
    (void)state;
    json_t *keys = json_array();
    json_array_append_new(keys, jwk_of(key_a, "a"));
    json_array_append_new(keys, jwk_of(key_b, "b"));
    json_t *ec = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "kid", "ec", "crv", "P-256", "x",
                           "AA", "y", "AA");
    json_array_append_new(keys, ec);
    json_t *nokid = jwk_of(key_b, "x");
    json_object_del(nokid, "kid");
    json_array_append_new(keys, nokid);
    json_array_append_new(keys, jwk_of(key_b, "a")); /* a duplicate kid: the first one wins */
    json_t *doc = json_pack("{s:o}", "keys", keys);
    char *text = json_dumps(doc, JSON_COMPACT);
    const char *why = NULL;
    struct ink_jwk_set *set = ink_jwk_set_parse(text, strlen(text), &why);
    assert_non_null(set);
    assert_int_equal(ink_jwk_set_count(set), 2);
    assert_int_equal(EVP_PKEY_eq(ink_jwk_set_find(set, "a"), key_a), 1);
    assert_int_equal(EVP_PKEY_eq(ink_jwk_set_find(set, "b"), key_b), 1);
    assert_null(ink_jwk_set_find(set, "ec"));
    assert_null(ink_jwk_set_find(set, "nope"));
    ink_jwk_set_free(set);
    free(text);
    json_decref(doc);
    static const char *const bad[] = {"",
                                      "[]",
                                      "{\"keys\":{}}",
                                      "{\"keys\":[]}",
                                      "{\"keys\":[{\"kty\":\"EC\",\"kid\":\"e\"}]}",
                                      "{\"keys\":[1,"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ink_jwk_set *s = ink_jwk_set_parse(bad[i], strlen(bad[i]), &why);
        if (s)
            fail_msg("JWKS \"%s\" accepted", bad[i]);
    }
}

/* ---- algorithm and shape, before any key -------------------------------------------------- */

static void other_algorithms_are_refused_before_any_key(void **state)
{
    (void)state;
    json_t *c = good_claims();
    char *none = make_token("none", "k1", c, NULL, NULL);
    char *hs = make_token("HS256", "k1", c, NULL, "secret");
    struct ink_idtoken t;
    assert_int_equal(ink_idtoken_parse(none, &t), INK_IDT_ALG);
    assert_int_equal(ink_idtoken_parse(hs, &t), INK_IDT_ALG);
    static const char *const algs[] = {"RS512", "PS256", "ES256", "rs256", "HS512"};
    for (size_t i = 0; i < sizeof algs / sizeof *algs; i++) {
        char *tok = make_token(algs[i], "k1", c, NULL, NULL);
        assert_int_equal(ink_idtoken_parse(tok, &t), INK_IDT_ALG);
        free(tok);
    }
    free(none);
    free(hs);
    json_decref(c);
}

static void hs256_signed_with_the_providers_public_key_is_refused(void **state)
{
    (void)state;
    /* algorithm confusion: the public key's PEM used as an HMAC secret */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, key_a), 1);
    char *pem = NULL;
    long n = BIO_get_mem_data(bio, &pem);
    char *secret = strndup(pem, (size_t)n);
    BIO_free(bio);
    json_t *c = good_claims();
    char *tok = make_token("HS256", "k1", c, NULL, secret);
    struct ink_idtoken t;
    assert_int_equal(ink_idtoken_parse(tok, &t), INK_IDT_ALG);
    free(tok);
    free(secret);
    json_decref(c);
}

static void malformed_tokens_are_refused(void **state)
{
    (void)state;
    json_t *c = good_claims();
    char *good = make_token("RS256", "k1", c, key_a, NULL);
    json_decref(c);
    char buf[8192];
    struct ink_idtoken t;
    assert_int_equal(ink_idtoken_parse("", &t), INK_IDT_MALFORMED);
    assert_int_equal(ink_idtoken_parse(NULL, &t), INK_IDT_MALFORMED);
    assert_int_equal(ink_idtoken_parse("a.b", &t), INK_IDT_MALFORMED);
    snprintf(buf, sizeof buf, "%s.extra", good);
    assert_int_equal(ink_idtoken_parse(buf, &t), INK_IDT_MALFORMED);
    const char *last = strrchr(good, '.');
    snprintf(buf, sizeof buf, "%.*s.", (int)(last - good), good); /* empty signature */
    assert_int_equal(ink_idtoken_parse(buf, &t), INK_IDT_MALFORMED);
    snprintf(buf, sizeof buf, "%.*s.!!!!", (int)(last - good), good);
    assert_int_equal(ink_idtoken_parse(buf, &t), INK_IDT_MALFORMED);
    char *h = b64_str("not json"), *p = b64_str("{}");
    snprintf(buf, sizeof buf, "%s.%s.AAAA", h, p);
    assert_int_equal(ink_idtoken_parse(buf, &t), INK_IDT_MALFORMED);
    free(h);
    free(p);
    /* over the length cap */
    char *huge = malloc(INK_IDTOKEN_MAX_LEN + 2);
    memset(huge, 'A', INK_IDTOKEN_MAX_LEN + 1);
    huge[INK_IDTOKEN_MAX_LEN + 1] = '\0';
    assert_int_equal(ink_idtoken_parse(huge, &t), INK_IDT_MALFORMED);
    free(huge);
    /* no kid: nothing to choose a key by */
    json_t *c2 = good_claims();
    char *nokid = make_token("RS256", NULL, c2, key_a, NULL);
    assert_int_equal(ink_idtoken_parse(nokid, &t), INK_IDT_NO_KEY);
    free(nokid);
    json_decref(c2);
    free(good);
}

/* ---- signature ---------------------------------------------------------------------------- */

static void signature_by_another_key_or_over_other_bytes_fails(void **state)
{
    (void)state;
    struct ink_identity id;
    char *tok = signed_good(key_a);
    assert_int_equal(verify_with(tok, key_b, &RULES, &id), INK_IDT_SIGNATURE);
    assert_int_equal(verify_with(tok, key_small, &RULES, &id), INK_IDT_SIGNATURE);
    /* one payload byte changed (still valid base64url and JSON) */
    char *dot = strchr(tok, '.');
    dot[5] = dot[5] == 'A' ? 'Q' : 'A';
    enum ink_idtoken_result r = verify_with(tok, key_a, &RULES, &id);
    assert_true(r == INK_IDT_SIGNATURE || r == INK_IDT_MALFORMED);
    free(tok);
    struct ink_idtoken t;
    char *tok2 = signed_good(key_a);
    assert_int_equal(ink_idtoken_parse(tok2, &t), INK_IDT_OK);
    const char *why;
    assert_int_equal(ink_idtoken_check(&t, NULL, &RULES, &id, &why), INK_IDT_NO_KEY);
    ink_idtoken_free(&t);
    free(tok2);
}

/* ---- claims ------------------------------------------------------------------------------- */

static void each_wrong_claim_fails(void **state)
{
    (void)state;
    struct ink_identity id;
    struct {
        const char *field;
        json_t *value; /* NULL: the claim is removed */
    } cases[] = {
        {"iss", json_string("https://evil.example")},
        {"iss", NULL},
        {"aud", json_string("someone-else")},
        {"aud", json_pack("[s]", "someone-else")},
        {"aud", json_pack("[]")},
        {"aud", json_integer(1)},
        {"aud", NULL},
        {"exp", json_integer(NOW - 61)},
        {"exp", json_string("2100000000")},
        {"exp", json_real((double)NOW + 100)},
        {"exp", NULL},
        {"iat", json_integer(NOW + 61)},
        {"iat", NULL},
        {"nonce", json_string("another-nonce")},
        {"nonce", NULL},
        {"sub", json_string("")},
        {"sub", json_integer(5)},
        {"sub", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *c = good_claims();
        if (cases[i].value)
            json_object_set_new(c, cases[i].field, cases[i].value);
        else
            json_object_del(c, cases[i].field);
        enum ink_idtoken_result r = verify_claims(c, &id);
        if (r != INK_IDT_CLAIMS)
            fail_msg("case %zu (%s) gave %d", i, cases[i].field, r);
    }
}

static void accepted_variants_of_good_claims(void **state)
{
    (void)state;
    struct ink_identity id;
    /* Google's other issuer spelling; an audience array with our azp; leeway on exp and iat */
    json_t *c = good_claims();
    json_object_set_new(c, "iss", json_string("accounts.google.com"));
    json_object_set_new(c, "aud", json_pack("[s,s]", "someone-else", AUD));
    json_object_set_new(c, "exp", json_integer(NOW - 59));
    json_object_set_new(c, "iat", json_integer(NOW - 100));
    assert_int_equal(verify_claims(c, &id), INK_IDT_OK);
    /* several audiences but azp not ours */
    c = good_claims();
    json_object_set_new(c, "aud", json_pack("[s,s]", "someone-else", AUD));
    json_object_set_new(c, "azp", json_string("someone-else"));
    assert_int_equal(verify_claims(c, &id), INK_IDT_CLAIMS);
    /* the native flow without a nonce does not look for one */
    c = good_claims();
    json_object_del(c, "nonce");
    struct ink_idtoken_rules no_nonce = RULES;
    no_nonce.nonce = NULL;
    char *tok = make_token("RS256", "k1", c, key_a, NULL);
    json_decref(c);
    assert_int_equal(verify_with(tok, key_a, &no_nonce, &id), INK_IDT_OK);
    free(tok);
}

static void email_verified_is_true_only_for_true_or_the_string_true(void **state)
{
    (void)state;
    struct ink_identity id;
    struct {
        json_t *value;
        bool verified;
    } cases[] = {
        {json_true(), true},
        {json_string("true"), true},
        {json_false(), false},
        {json_string("false"), false},
        {json_string("TRUE"), false},
        {json_integer(1), false},
        {NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *c = good_claims();
        if (cases[i].value)
            json_object_set_new(c, "email_verified", cases[i].value);
        else
            json_object_del(c, "email_verified");
        assert_int_equal(verify_claims(c, &id), INK_IDT_OK);
        if (id.email_verified != cases[i].verified)
            fail_msg("case %zu: email_verified %d", i, id.email_verified);
    }
    /* no email at all: nothing is verified */
    json_t *c = good_claims();
    json_object_del(c, "email");
    assert_int_equal(verify_claims(c, &id), INK_IDT_OK);
    assert_string_equal(id.email, "");
    assert_false(id.email_verified);
}

static void nonce_matches_raw_or_as_hex_sha256(void **state)
{
    (void)state;
    /* sha256("n-0S6_WzA2Mj") as hex, computed with Python's hashlib */
    const char *hex = "0823a09b54cb9381561068b00aaf4e539b3f54604631d3e6a820879b6b04cc19";
    assert_true(ink_idtoken_nonce_matches("n-0S6_WzA2Mj", "n-0S6_WzA2Mj"));
    assert_true(ink_idtoken_nonce_matches(hex, "n-0S6_WzA2Mj"));
    assert_false(ink_idtoken_nonce_matches("n-0S6_WzA2Mj", hex)); /* not the other way round */
    assert_false(ink_idtoken_nonce_matches("n-0S6_WzA2M", "n-0S6_WzA2Mj"));
    assert_false(ink_idtoken_nonce_matches("", ""));
    assert_false(ink_idtoken_nonce_matches(NULL, "x"));
    assert_false(ink_idtoken_nonce_matches("x", NULL));
    /* and in a token */
    json_t *c = good_claims();
    json_object_set_new(c, "nonce", json_string(hex));
    struct ink_identity id;
    assert_int_equal(verify_claims(c, &id), INK_IDT_OK);
}

/* ---- base64url ---------------------------------------------------------------------------- */

static void base64url_decoding_is_strict(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n = 0;
    assert_true(ink_base64url_decode("AQAB", 4, out, sizeof out, &n));
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\x01\x00\x01", 3);
    assert_true(ink_base64url_decode("_-8", 3, out, sizeof out, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xff\xef", 2);
    assert_true(ink_base64url_decode("", 0, out, sizeof out, &n));
    assert_int_equal(n, 0);
    assert_false(ink_base64url_decode("AQAB=", 5, out, sizeof out, &n)); /* padding */
    assert_false(ink_base64url_decode("A", 1, out, sizeof out, &n));     /* impossible length */
    assert_false(ink_base64url_decode("AB", 2, out, sizeof out, &n));    /* non-zero spare bits */
    assert_false(ink_base64url_decode("+/==", 4, out, sizeof out, &n));  /* plain base64 */
    assert_false(ink_base64url_decode("AQ B", 4, out, sizeof out, &n));
    assert_false(ink_base64url_decode("AQABAQAB", 8, out, 5, &n)); /* does not fit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jwk_converts_to_a_key_that_verifies_a_token),
        cmocka_unit_test(jwk_that_is_not_an_rs256_signature_key_is_refused),
        cmocka_unit_test(jwk_with_bad_numbers_is_refused),
        cmocka_unit_test(jwk_set_keeps_usable_keys_by_kid),
        cmocka_unit_test(other_algorithms_are_refused_before_any_key),
        cmocka_unit_test(hs256_signed_with_the_providers_public_key_is_refused),
        cmocka_unit_test(malformed_tokens_are_refused),
        cmocka_unit_test(signature_by_another_key_or_over_other_bytes_fails),
        cmocka_unit_test(each_wrong_claim_fails),
        cmocka_unit_test(accepted_variants_of_good_claims),
        cmocka_unit_test(email_verified_is_true_only_for_true_or_the_string_true),
        cmocka_unit_test(nonce_matches_raw_or_as_hex_sha256),
        cmocka_unit_test(base64url_decoding_is_strict),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
