/* NFC payloads, claim codes, topics and the text-length rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/claimcode.h"
#include "inklet/devices.h"
#include "inklet/ids.h"
#include "inklet/nfc.h"
#include "inklet/topic.h"

#include <string.h>

static const char *HW = "a1b2c3d4-5678-9012-abcd-ef0123456789";

static void contract_key(unsigned char key[32])
{
    assert_true(ink_hex_decode("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                               64, key, 32));
}

static void nfc_test_vector_signs_and_verifies(void **state)
{
    (void)state;
    unsigned char key[32];
    contract_key(key);
    char sig[INK_NFC_SIG_LEN + 1];
    ink_nfc_sign(key, HW, sig);
    assert_string_equal(sig, "6bf869d301fb599a");
    assert_true(ink_nfc_verify(key, HW, "6bf869d301fb599a"));
}

static void nfc_look_alike_signatures_are_rejected(void **state)
{
    (void)state;
    unsigned char key[32];
    contract_key(key);
    assert_false(ink_nfc_verify(key, HW, "3f7a8b2c1d9e0f4a")); /* the public docs' example */
    assert_false(ink_nfc_verify(key, HW, "7669632bf4f02b76")); /* secret's hex text as key */
    assert_false(ink_nfc_verify(key, HW, "4abe3aacfe1bb2cd")); /* key and message swapped */
    assert_false(ink_nfc_verify(key, HW, "6bf869d301fb599b")); /* one bit off */
    assert_false(ink_nfc_verify(key, HW, "6bf869d301fb599"));  /* short */
}

static void nfc_parse_accepts_upper_case_signature(void **state)
{
    (void)state;
    char hw[INK_UUID_STRLEN + 1], sig[INK_NFC_SIG_LEN + 1];
    assert_int_equal(
        ink_nfc_parse("inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6BF869D301FB599A", hw, sig),
        INK_OK);
    assert_string_equal(hw, HW);
    assert_string_equal(sig, "6bf869d301fb599a");
}

static void nfc_parse_rejects_malformed_payloads(void **state)
{
    (void)state;
    char hw[INK_UUID_STRLEN + 1], sig[INK_NFC_SIG_LEN + 1];
    static const char *const bad[] = {
        "",
        "inklet:2:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599a",   /* version */
        "inklit:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599a",   /* prefix */
        "INKLET:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599a",   /* prefix case */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef012345678:6bf869d301fb599a",    /* short hwId */
        "inklet:1:a1b2c3d4x5678-9012-abcd-ef0123456789:6bf869d301fb599a",   /* bad hwId */
        "inklet:1:g1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599a",   /* non-hex hwId */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599g",   /* bad hex */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599",    /* 15 hex */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599aa",  /* 17 hex */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789",                    /* missing part */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:6bf869d301fb599a:x", /* extra part */
        "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789::6bf869d301fb599",   /* empty part */
        "inklet:1::6bf869d301fb599a",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ink_nfc_parse(bad[i], hw, sig), INK_INVALID);
    assert_int_equal(ink_nfc_parse(NULL, hw, sig), INK_INVALID);
}

static void claim_codes_use_only_the_alphabet(void **state)
{
    (void)state;
    unsigned counts[256] = {0};
    for (int i = 0; i < 20000; i++) {
        char code[INK_CLAIM_CODE_LEN + 1];
        ink_claim_code_new(code);
        assert_int_equal(strlen(code), INK_CLAIM_CODE_LEN);
        for (int k = 0; k < INK_CLAIM_CODE_LEN; k++) {
            assert_non_null(strchr(INK_CLAIM_ALPHABET, code[k]));
            counts[(unsigned char)code[k]]++;
        }
    }
    /* 120000 letters over 31 symbols: each near 3871; a biased generator would stray far */
    for (const char *a = INK_CLAIM_ALPHABET; *a; a++) {
        assert_true(counts[(unsigned char)*a] > 3400);
        assert_true(counts[(unsigned char)*a] < 4350);
    }
    assert_int_equal(counts['0'] + counts['O'] + counts['1'] + counts['I'] + counts['L'], 0);
}

static void claim_codes_differ(void **state)
{
    (void)state;
    char a[INK_CLAIM_CODE_LEN + 1], b[INK_CLAIM_CODE_LEN + 1];
    ink_claim_code_new(a);
    ink_claim_code_new(b);
    assert_string_not_equal(a, b);
}

static void claim_code_normalization_is_case_insensitive_and_strict(void **state)
{
    (void)state;
    char out[INK_CLAIM_CODE_LEN + 1];
    assert_true(ink_claim_code_normalize("abc234", out));
    assert_string_equal(out, "ABC234");
    assert_true(ink_claim_code_normalize("XyZ789", out));
    assert_string_equal(out, "XYZ789");
    assert_false(ink_claim_code_normalize("ABC23", out));   /* 5 */
    assert_false(ink_claim_code_normalize("ABC2345", out)); /* 7 */
    assert_false(ink_claim_code_normalize("ABC230", out));  /* 0 not in the alphabet */
    assert_false(ink_claim_code_normalize("ABCO23", out));  /* O */
    assert_false(ink_claim_code_normalize("ABCI23", out));  /* I */
    assert_false(ink_claim_code_normalize("abcl23", out));  /* l → L */
    assert_false(ink_claim_code_normalize("ABC 23", out));
    assert_false(ink_claim_code_normalize("", out));
    assert_false(ink_claim_code_normalize(NULL, out));
}

static void topics_parse_the_three_up_kinds(void **state)
{
    (void)state;
    char thing[INK_THING_NAME_MAX + 1];
    enum ink_up_kind kind;
    assert_true(ink_topic_parse_up("inklet/dev/thing-1/up/heartbeat", thing, &kind));
    assert_string_equal(thing, "thing-1");
    assert_int_equal(kind, INK_UP_HEARTBEAT);
    assert_true(ink_topic_parse_up("inklet/dev/a:b_c/up/state", thing, &kind));
    assert_string_equal(thing, "a:b_c");
    assert_int_equal(kind, INK_UP_STATE);
    assert_true(ink_topic_parse_up("inklet/dev/X/up/request_claim", thing, &kind));
    assert_int_equal(kind, INK_UP_REQUEST_CLAIM);
}

static void topics_reject_everything_else(void **state)
{
    (void)state;
    char thing[INK_THING_NAME_MAX + 1];
    enum ink_up_kind kind;
    char longname[300] = "inklet/dev/";
    memset(longname + 11, 'a', 129);
    memcpy(longname + 140, "/up/state", sizeof "/up/state");
    static const char *const bad[] = {
        "inklet/dev//up/state",          "inklet/dev/t/up/",           "inklet/dev/t/up/status",
        "inklet/dev/t/down/cmd",         "inklet/dev/t/up/state/x",    "inklet/dev/t+/up/state",
        "inklet/dev/#/up/state",         "inklet/dev/t/t/up/state",    "inkle/dev/t/up/state",
        "/inklet/dev/t/up/state",        "inklet/dev/t/up/heartbeatx", "",
        "inklet/dev/t\xc3\xa9/up/state",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(ink_topic_parse_up(bad[i], thing, &kind));
    assert_false(ink_topic_parse_up(longname, thing, &kind));
    assert_false(ink_topic_parse_up(NULL, thing, &kind));
}

static void down_topic_is_built_from_the_thing_name(void **state)
{
    (void)state;
    char topic[200];
    ink_topic_down_cmd("thing-1", topic, sizeof topic);
    assert_string_equal(topic, "inklet/dev/thing-1/down/cmd");
}

static void text_length_counts_characters_not_bytes(void **state)
{
    (void)state;
    assert_int_equal(ink_utf8_chars(""), 0);
    assert_int_equal(ink_utf8_chars("abc"), 3);
    assert_int_equal(ink_utf8_chars("h\xc3\xa9llo"), 5);      /* é */
    assert_int_equal(ink_utf8_chars("\xf0\x9f\x98\x80!"), 2); /* emoji */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nfc_test_vector_signs_and_verifies),
        cmocka_unit_test(nfc_look_alike_signatures_are_rejected),
        cmocka_unit_test(nfc_parse_accepts_upper_case_signature),
        cmocka_unit_test(nfc_parse_rejects_malformed_payloads),
        cmocka_unit_test(claim_codes_use_only_the_alphabet),
        cmocka_unit_test(claim_codes_differ),
        cmocka_unit_test(claim_code_normalization_is_case_insensitive_and_strict),
        cmocka_unit_test(topics_parse_the_three_up_kinds),
        cmocka_unit_test(topics_reject_everything_else),
        cmocka_unit_test(down_topic_is_built_from_the_thing_name),
        cmocka_unit_test(text_length_counts_characters_not_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
