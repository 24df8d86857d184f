/* Encryption at rest of stored provider tokens: HKDF-derived keys (checked against RFC 5869
 * computed independently with HMAC here), AES-256-GCM sealing that refuses any change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/secretbox.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

static const unsigned char MASTER[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10,
                                         11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                                         21, 22, 23, 24, 25, 26, 27, 28, 29, 30};
#define TOKEN "r.apple-refresh-token.0123456789abcdef"

/* RFC 5869 with an empty salt (HashLen zeros) and one 32-byte output block. */
static void hkdf_by_hand(const unsigned char ikm[32], const char *info, unsigned char out[32])
{
    unsigned char salt[32] = {0}, prk[32], block[256];
    unsigned len = 0;
    assert_non_null(HMAC(EVP_sha256(), salt, sizeof salt, ikm, 32, prk, &len));
    size_t n = strlen(info);
    memcpy(block, info, n);
    block[n] = 1;
    assert_non_null(HMAC(EVP_sha256(), prk, sizeof prk, block, n + 1, out, &len));
}

static void key_is_rfc5869_hkdf_sha256_of_the_master_and_purpose(void **state)
{
    (void)state;
    struct ink_secretbox box;
    assert_true(ink_secretbox_init(&box, MASTER, "apple-refresh-token/v1"));
    unsigned char expected[32];
    hkdf_by_hand(MASTER, "apple-refresh-token/v1", expected);
    assert_memory_equal(box.key, expected, 32);
    struct ink_secretbox other;
    assert_true(ink_secretbox_init(&other, MASTER, "another-purpose"));
    assert_memory_not_equal(box.key, other.key, 32);
}

static void sealed_token_opens_to_the_same_bytes(void **state)
{
    (void)state;
    struct ink_secretbox box;
    assert_true(ink_secretbox_init(&box, MASTER, "p"));
    unsigned char sealed[sizeof TOKEN + INK_SECRETBOX_OVERHEAD];
    size_t n = ink_secretbox_seal(&box, TOKEN, strlen(TOKEN), sealed);
    assert_int_equal(n, strlen(TOKEN) + INK_SECRETBOX_OVERHEAD);
    assert_null(memmem(sealed, n, "apple-refresh", 13)); /* not stored in clear */
    char plain[sizeof sealed];
    size_t len = 0;
    assert_true(ink_secretbox_open(&box, sealed, n, plain, &len));
    assert_int_equal(len, strlen(TOKEN));
    assert_string_equal(plain, TOKEN);
}

static void two_seals_of_one_token_differ(void **state)
{
    (void)state;
    struct ink_secretbox box;
    assert_true(ink_secretbox_init(&box, MASTER, "p"));
    unsigned char a[64 + INK_SECRETBOX_OVERHEAD], b[sizeof a];
    size_t na = ink_secretbox_seal(&box, TOKEN, strlen(TOKEN), a);
    size_t nb = ink_secretbox_seal(&box, TOKEN, strlen(TOKEN), b);
    assert_int_equal(na, nb);
    assert_memory_not_equal(a, b, na); /* a fresh nonce each time */
}

static void any_changed_byte_is_refused(void **state)
{
    (void)state;
    struct ink_secretbox box;
    assert_true(ink_secretbox_init(&box, MASTER, "p"));
    unsigned char sealed[sizeof TOKEN + INK_SECRETBOX_OVERHEAD];
    size_t n = ink_secretbox_seal(&box, TOKEN, strlen(TOKEN), sealed);
    char plain[sizeof sealed];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        sealed[i] ^= 0x01;
        if (ink_secretbox_open(&box, sealed, n, plain, &len))
            fail_msg("a change at byte %zu was accepted", i);
        sealed[i] ^= 0x01;
    }
    assert_false(ink_secretbox_open(&box, sealed, n - 1, plain, &len)); /* cut */
    assert_false(ink_secretbox_open(&box, sealed, INK_SECRETBOX_OVERHEAD - 1, plain, &len));
    assert_true(ink_secretbox_open(&box, sealed, n, plain, &len));
}

static void another_key_or_purpose_cannot_open_it(void **state)
{
    (void)state;
    struct ink_secretbox box, other_purpose, other_master;
    unsigned char master2[32];
    memcpy(master2, MASTER, 32);
    master2[31] ^= 0x80;
    assert_true(ink_secretbox_init(&box, MASTER, "p"));
    assert_true(ink_secretbox_init(&other_purpose, MASTER, "q"));
    assert_true(ink_secretbox_init(&other_master, master2, "p"));
    unsigned char sealed[sizeof TOKEN + INK_SECRETBOX_OVERHEAD];
    size_t n = ink_secretbox_seal(&box, TOKEN, strlen(TOKEN), sealed);
    char plain[sizeof sealed];
    size_t len = 0;
    assert_false(ink_secretbox_open(&other_purpose, sealed, n, plain, &len));
    assert_false(ink_secretbox_open(&other_master, sealed, n, plain, &len));
}

static void oversized_plaintext_is_refused(void **state)
{
    (void)state;
    struct ink_secretbox box;
    assert_true(ink_secretbox_init(&box, MASTER, "p"));
    static char big[INK_SECRETBOX_MAX_PLAIN + 1];
    static unsigned char out[sizeof big + INK_SECRETBOX_OVERHEAD];
    assert_int_equal(ink_secretbox_seal(&box, big, sizeof big, out), 0);
    assert_int_equal(ink_secretbox_seal(&box, big, sizeof big - 1, out),
                     sizeof big - 1 + INK_SECRETBOX_OVERHEAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_is_rfc5869_hkdf_sha256_of_the_master_and_purpose),
        cmocka_unit_test(sealed_token_opens_to_the_same_bytes),
        cmocka_unit_test(two_seals_of_one_token_differ),
        cmocka_unit_test(any_changed_byte_is_refused),
        cmocka_unit_test(another_key_or_purpose_cannot_open_it),
        cmocka_unit_test(oversized_plaintext_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
