/* The browser flow's small pieces: states are only ever ours (43 base64url characters, stored
 * as their SHA-256), the PKCE S256 challenge (RFC 7636 appendix B), redirect URLs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../src/oauth/oauth_internal.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pkce_challenge_is_rfc7636_appendix_b(void **state)
{
    (void)state;
    char out[INK_OAUTH_SECRET_LEN + 1];
    ink_oauth_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", out);
    assert_string_equal(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

static void secrets_are_43_base64url_chars_and_differ(void **state)
{
    (void)state;
    char a[INK_OAUTH_SECRET_LEN + 1], b[INK_OAUTH_SECRET_LEN + 1];
    ink_oauth_secret(a);
    ink_oauth_secret(b);
    assert_int_equal(strlen(a), 43);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     43);
    assert_string_not_equal(a, b);
}

static void state_key_is_the_sha256_of_the_state_as_bytea_hex(void **state)
{
    (void)state;
    char s[INK_OAUTH_SECRET_LEN + 1], key[2 + 64 + 1];
    ink_oauth_secret(s);
    assert_true(ink_oauth_state_key(s, key));
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, strlen(s), d);
    char expected[2 + 64 + 1] = "\\x";
    for (int i = 0; i < 32; i++)
        snprintf(expected + 2 + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(key, expected);
}

static void states_that_cannot_be_ours_never_reach_the_database(void **state)
{
    (void)state;
    char key[2 + 64 + 1];
    char good[INK_OAUTH_SECRET_LEN + 1];
    ink_oauth_secret(good);
    char longer[64], cut[64], bad_char[64], bad_bits[64];
    snprintf(longer, sizeof longer, "%sA", good);
    snprintf(cut, sizeof cut, "%.42s", good);
    snprintf(bad_char, sizeof bad_char, "%s", good);
    bad_char[10] = '%';
    /* 43 characters whose last one has bits a 32-byte value cannot have */
    snprintf(bad_bits, sizeof bad_bits, "%.42sB", good);
    const char *bad[] = {NULL, "", longer, cut, bad_char, bad_bits, "'; DROP TABLE users; --"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ink_oauth_state_key(bad[i], key))
            fail_msg("state \"%s\" was accepted", bad[i] ? bad[i] : "(null)");
}

static void url_with_appends_with_the_right_separator(void **state)
{
    (void)state;
    char *a = ink_oauth_url_with("https://portal.example/auth/callback", "error=oauth_failed");
    assert_string_equal(a, "https://portal.example/auth/callback?error=oauth_failed");
    char *b = ink_oauth_url_with("https://p.example/cb?from=inklet", "accessToken=x");
    assert_string_equal(b, "https://p.example/cb?from=inklet&accessToken=x");
    char *c = ink_oauth_url_with("inklet://auth/callback", "accessToken=x&refreshToken=y");
    assert_string_equal(c, "inklet://auth/callback?accessToken=x&refreshToken=y");
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pkce_challenge_is_rfc7636_appendix_b),
        cmocka_unit_test(secrets_are_43_base64url_chars_and_differ),
        cmocka_unit_test(state_key_is_the_sha256_of_the_state_as_bytea_hex),
        cmocka_unit_test(states_that_cannot_be_ours_never_reach_the_database),
        cmocka_unit_test(url_with_appends_with_the_right_separator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
