/* ids: UUID v7 generation and validation, base64url (RFC 4648 §5 vectors), hex. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/ids.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t uuid_ms(const char *u)
{
    /* first 48 bits: 8 hex chars, '-', 4 hex chars */
    char hex[13];
    memcpy(hex, u, 8);
    memcpy(hex + 8, u + 9, 4);
    hex[12] = '\0';
    return strtoull(hex, NULL, 16);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void uuid_v7_has_canonical_shape_version_and_variant(void **state)
{
    (void)state;
    for (int n = 0; n < 200; n++) {
        char u[INK_UUID_STRLEN + 1];
        memset(u, 'x', sizeof u);
        ink_uuid_v7(u);
        assert_int_equal(strlen(u), INK_UUID_STRLEN);
        for (int i = 0; i < INK_UUID_STRLEN; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                assert_int_equal(u[i], '-');
            else
                assert_non_null(strchr("0123456789abcdef", u[i])); /* lower-case hex */
        }
        assert_int_equal(u[14], '7');
        assert_non_null(strchr("89ab", u[19]));
        assert_true(ink_uuid_valid(u));
    }
}

static void uuid_v7_timestamp_is_current_unix_ms(void **state)
{
    (void)state;
    struct timespec before, after;
    char u[INK_UUID_STRLEN + 1];
    clock_gettime(CLOCK_REALTIME, &before);
    ink_uuid_v7(u);
    clock_gettime(CLOCK_REALTIME, &after);
    uint64_t lo = (uint64_t)before.tv_sec * 1000 + (uint64_t)before.tv_nsec / 1000000;
    uint64_t hi = (uint64_t)after.tv_sec * 1000 + (uint64_t)after.tv_nsec / 1000000;
    uint64_t ms = uuid_ms(u);
    assert_in_range(ms, lo, hi);
}

static void uuid_v7_time_prefix_increases_across_calls_2ms_apart(void **state)
{
    (void)state;
    char prev[INK_UUID_STRLEN + 1], cur[INK_UUID_STRLEN + 1];
    ink_uuid_v7(prev);
    for (int i = 0; i < 20; i++) {
        sleep_ms(2);
        ink_uuid_v7(cur);
        assert_true(uuid_ms(cur) > uuid_ms(prev));
        /* textual order follows time order, which is what makes v7 keys index-friendly */
        assert_true(strcmp(cur, prev) > 0);
        memcpy(prev, cur, sizeof cur);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void uuid_v7_is_unique_over_10000_calls(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[INK_UUID_STRLEN + 1] = malloc(N * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++)
        ink_uuid_v7(ids[i]);
    qsort(ids, N, sizeof *ids, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

static void uuid_valid_accepts_canonical_either_case(void **state)
{
    (void)state;
    assert_true(ink_uuid_valid("01890a5d-ac96-774b-bcce-b302099a8057"));
    assert_true(ink_uuid_valid("01890A5D-AC96-774B-BCCE-B302099A8057"));
    assert_true(ink_uuid_valid("00000000-0000-0000-0000-000000000000"));
}

static void uuid_valid_rejects_malformed(void **state)
{
    (void)state;
    assert_false(ink_uuid_valid(NULL));
    assert_false(ink_uuid_valid(""));
    assert_false(ink_uuid_valid("01890a5d-ac96-774b-bcce-b302099a805"));   /* 35 */
    assert_false(ink_uuid_valid("01890a5d-ac96-774b-bcce-b302099a80577")); /* 37 */
    assert_false(ink_uuid_valid("01890a5dac96774bbcceb302099a8057"));      /* no dashes */
    assert_false(ink_uuid_valid("01890a5d-ac96774b-bcce-b302099a8057-"));  /* dash moved */
    assert_false(ink_uuid_valid("01890a5d_ac96_774b_bcce_b302099a8057"));  /* wrong separator */
    assert_false(ink_uuid_valid("01890a5g-ac96-774b-bcce-b302099a8057"));  /* 'g' */
    assert_false(ink_uuid_valid("01890a5d-ac96-774b-bcce-b302099a805 "));  /* space */
    assert_false(ink_uuid_valid("{1890a5d-ac96-774b-bcce-b302099a8057"));
    assert_false(ink_uuid_valid("01890a5d-ac96-774b-bcce-b302099a8057\n"));
    assert_false(ink_uuid_valid("../../../../../../../../../etc/passwd"));
}

static void uuid_valid_rejects_string_cut_short_by_nul(void **state)
{
    (void)state;
    /* what a percent-decoded "%00" in a path parameter leaves behind */
    char buf[] = "01890a5d-ac96-774b-bcce-b302099a8057";
    assert_true(ink_uuid_valid(buf));
    buf[20] = '\0';
    assert_false(ink_uuid_valid(buf));
    buf[20] = 'c';
    buf[8] = '\0';
    assert_false(ink_uuid_valid(buf));
}

static void check_b64(const char *in, size_t n, const char *want)
{
    char out[64];
    memset(out, 'x', sizeof out);
    size_t len = ink_base64url_encode((const unsigned char *)in, n, out);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void base64url_matches_rfc4648_vectors_without_padding(void **state)
{
    (void)state;
    check_b64("", 0, "");
    check_b64("f", 1, "Zg");
    check_b64("fo", 2, "Zm8");
    check_b64("foo", 3, "Zm9v");
    check_b64("foob", 4, "Zm9vYg");
    check_b64("fooba", 5, "Zm9vYmE");
    check_b64("foobar", 6, "Zm9vYmFy");
}

static void base64url_uses_url_safe_alphabet(void **state)
{
    (void)state;
    check_b64("\xfb\xff", 2, "-_8");
    check_b64("\xfb\xff\xbf", 3, "-_-_");
    check_b64("\x00\x00\x00", 3, "AAAA");
}

static void base64url_of_32_bytes_is_43_chars(void **state)
{
    (void)state;
    unsigned char raw[32];
    char out[4 * 11 + 1];
    memset(raw, 0xff, sizeof raw);
    assert_int_equal(ink_base64url_encode(raw, sizeof raw, out), 43);
    assert_int_equal(strlen(out), 43);
    assert_null(strpbrk(out, "+/="));
}

static void base64_uses_standard_alphabet_and_each_decoder_only_its_own(void **state)
{
    (void)state;
    char out[64];
    unsigned char back[8];
    size_t n = 99;
    assert_int_equal(ink_base64_encode((const unsigned char *)"\xfb\xff\xbf", 3, out), 4);
    assert_string_equal(out, "+/+/");
    assert_int_equal(ink_base64_encode((const unsigned char *)"foobar", 6, out), 8);
    assert_string_equal(out, "Zm9vYmFy");
    assert_true(ink_base64_decode("+/8", 3, back, sizeof back, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(back, "\xfb\xff", 2);
    assert_true(ink_base64url_decode("-_8", 3, back, sizeof back, &n));
    assert_int_equal(n, 2);
    assert_memory_equal(back, "\xfb\xff", 2);
    assert_false(ink_base64_decode("-_8", 3, back, sizeof back, &n));
    assert_false(ink_base64url_decode("+/8", 3, back, sizeof back, &n));
    assert_false(ink_base64_decode("+/9", 3, back, sizeof back, &n));  /* spare bits set */
    assert_false(ink_base64_decode("Zm8=", 4, back, sizeof back, &n)); /* padding */
    assert_false(ink_base64_decode("Zm9vYmFy", 8, back, 5, &n));       /* does not fit */
    for (int round = 0; round < 50; round++) {
        unsigned char in[1 + 7], dec[sizeof in];
        size_t len = 1 + (size_t)round % 7;
        ink_random_bytes(in, len);
        assert_int_equal(ink_base64_encode(in, len, out), (len * 4 + 2) / 3);
        assert_true(ink_base64_decode(out, strlen(out), dec, sizeof dec, &n));
        assert_int_equal(n, len);
        assert_memory_equal(dec, in, len);
    }
}

static void hex_encode_is_lower_case(void **state)
{
    (void)state;
    const unsigned char in[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
    char out[2 * sizeof in + 1];
    ink_hex_encode(in, sizeof in, out);
    assert_string_equal(out, "0001abcdefff");
    ink_hex_encode(in, 0, out);
    assert_string_equal(out, "");
}

static void hex_round_trips_random_bytes(void **state)
{
    (void)state;
    for (int round = 0; round < 50; round++) {
        unsigned char in[37], back[37];
        char hex[2 * sizeof in + 1];
        ink_random_bytes(in, sizeof in);
        ink_hex_encode(in, sizeof in, hex);
        assert_int_equal(strlen(hex), 2 * sizeof in);
        assert_true(ink_hex_decode(hex, strlen(hex), back, sizeof back));
        assert_memory_equal(in, back, sizeof in);
    }
}

static void hex_decode_accepts_either_case(void **state)
{
    (void)state;
    unsigned char out[3];
    assert_true(ink_hex_decode("aBcDeF", 6, out, 3));
    const unsigned char want[] = {0xab, 0xcd, 0xef};
    assert_memory_equal(out, want, 3);
}

static void hex_decode_rejects_bad_length_and_characters(void **state)
{
    (void)state;
    unsigned char out[4];
    assert_false(ink_hex_decode("abcdef", 6, out, 4));      /* too short */
    assert_false(ink_hex_decode("abcdef0", 7, out, 4));     /* odd */
    assert_false(ink_hex_decode("abcdef0102", 10, out, 4)); /* too long */
    assert_false(ink_hex_decode("abcdefg1", 8, out, 4));
    assert_false(ink_hex_decode("abcd ef1", 8, out, 4));
    assert_false(ink_hex_decode("0x0102ab", 8, out, 4));
    assert_false(ink_hex_decode("abcd\0ef1", 8, out, 4)); /* NUL within declared length */
}

static void random_bytes_fills_buffer_and_differs_between_calls(void **state)
{
    (void)state;
    unsigned char a[32], b[32], zero[32] = {0};
    ink_random_bytes(a, sizeof a);
    ink_random_bytes(b, sizeof b);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a, zero, sizeof a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid_v7_has_canonical_shape_version_and_variant),
        cmocka_unit_test(uuid_v7_timestamp_is_current_unix_ms),
        cmocka_unit_test(uuid_v7_time_prefix_increases_across_calls_2ms_apart),
        cmocka_unit_test(uuid_v7_is_unique_over_10000_calls),
        cmocka_unit_test(uuid_valid_accepts_canonical_either_case),
        cmocka_unit_test(uuid_valid_rejects_malformed),
        cmocka_unit_test(uuid_valid_rejects_string_cut_short_by_nul),
        cmocka_unit_test(base64url_matches_rfc4648_vectors_without_padding),
        cmocka_unit_test(base64url_uses_url_safe_alphabet),
        cmocka_unit_test(base64url_of_32_bytes_is_43_chars),
        cmocka_unit_test(base64_uses_standard_alphabet_and_each_decoder_only_its_own),
        cmocka_unit_test(hex_encode_is_lower_case),
        cmocka_unit_test(hex_round_trips_random_bytes),
        cmocka_unit_test(hex_decode_accepts_either_case),
        cmocka_unit_test(hex_decode_rejects_bad_length_and_characters),
        cmocka_unit_test(random_bytes_fills_buffer_and_differs_between_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
