/* The Sign in with Apple client secret: an ES256 JWT whose r||s signature verifies (converted
 * back to DER here, independently of the code under test) and whose claims are Apple's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/apple.h"
#include "inklet/ids.h"

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *segment(const char *s, size_t n)
{
    unsigned char buf[2048];
    size_t len = 0;
    assert_true(ink_base64url_decode(s, n, buf, sizeof buf, &len));
    json_error_t e;
    json_t *v = json_loadb((const char *)buf, len, 0, &e);
    assert_non_null(v);
    return v;
}

static bool verify_es256(EVP_PKEY *key, const char *jwt)
{
    const char *dot = strrchr(jwt, '.');
    unsigned char raw[64];
    size_t n = 0;
    if (!ink_base64url_decode(dot + 1, strlen(dot + 1), raw, sizeof raw, &n) || n != 64)
        return false;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(md, der, (size_t)der_len, (const unsigned char *)jwt,
                               (size_t)(dot - jwt)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok;
}

/* Writes `key` as a PKCS#8 PEM file like Apple's .p8 and returns its path (static buffer). */
static const char *write_p8(EVP_PKEY *key)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/inklet-test-p8-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_int_equal(PEM_write_PKCS8PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    return path;
}

static void client_secret_is_an_es256_jwt_apple_accepts(void **state)
{
    (void)state;
    EVP_PKEY *gen = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(gen);
    const char *path = write_p8(gen);
    const char *why = NULL;
    EVP_PKEY *key = ink_apple_load_key(path, &why);
    unlink(path);
    assert_non_null(key);
    char *jwt = ink_apple_client_secret(key, "ABC123DEFG", "TEAM123456", "com.iminklet.web",
                                        1800000000LL, 3600);
    assert_non_null(jwt);
    const char *d1 = strchr(jwt, '.'), *d2 = strrchr(jwt, '.');
    json_t *h = segment(jwt, (size_t)(d1 - jwt)), *c = segment(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(h, "kid")), "ABC123DEFG");
    assert_string_equal(json_string_value(json_object_get(c, "iss")), "TEAM123456");
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "com.iminklet.web");
    assert_string_equal(json_string_value(json_object_get(c, "aud")), "https://appleid.apple.com");
    assert_int_equal(json_integer_value(json_object_get(c, "iat")), 1800000000LL);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), 1800003600LL);
    assert_true(verify_es256(gen, jwt));
    /* a signature over other bytes does not verify */
    jwt[5] ^= 1;
    assert_false(verify_es256(gen, jwt));
    free(jwt);
    /* Apple refuses secrets valid longer than six months: capped */
    jwt = ink_apple_client_secret(key, "K", "T", "C", 1800000000LL, 400 * 86400);
    d1 = strchr(jwt, '.'), d2 = strrchr(jwt, '.');
    json_t *c2 = segment(d1 + 1, (size_t)(d2 - d1 - 1));
    assert_int_equal(json_integer_value(json_object_get(c2, "exp")),
                     1800000000LL + INK_APPLE_SECRET_MAX_TTL);
    json_decref(c2);
    free(jwt);
    json_decref(h);
    json_decref(c);
    EVP_PKEY_free(key);
    EVP_PKEY_free(gen);
}

static void key_that_is_not_p256_is_refused(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_null(ink_apple_load_key("/nonexistent/AuthKey.p8", &why));
    assert_non_null(why);
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    const char *path = write_p8(rsa);
    assert_null(ink_apple_load_key(path, &why));
    unlink(path);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    path = write_p8(p384);
    assert_null(ink_apple_load_key(path, &why));
    unlink(path);
    char junk[] = "/tmp/inklet-test-junk-XXXXXX";
    int fd = mkstemp(junk);
    assert_int_equal(write(fd, "not a key\n", 10), 10);
    close(fd);
    assert_null(ink_apple_load_key(junk, &why));
    unlink(junk);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p384);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(client_secret_is_an_es256_jwt_apple_accepts),
        cmocka_unit_test(key_that_is_not_p256_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
