/* text: UTF-8 well-formedness and the sanitiser for header values that are stored. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/text.h"

#include <string.h>

#define U(s) ((const unsigned char *)(s))

static void utf8_lengths_of_well_formed_characters(void **state)
{
    (void)state;
    assert_int_equal(ink_utf8_char_len(U("a"), 1), 1);
    assert_int_equal(ink_utf8_char_len(U("\xc3\xa9"), 2), 2);         /* é */
    assert_int_equal(ink_utf8_char_len(U("\xe2\x82\xac"), 3), 3);     /* € */
    assert_int_equal(ink_utf8_char_len(U("\xf0\x9f\x98\x80"), 4), 4); /* 😀 */
    assert_int_equal(ink_utf8_char_len(U("\xf4\x8f\xbf\xbf"), 4), 4); /* U+10FFFF */
    assert_int_equal(ink_utf8_char_len(U("\xed\x9f\xbf"), 3), 3);     /* U+D7FF */
}

static void utf8_rejects_ill_formed_sequences(void **state)
{
    (void)state;
    assert_int_equal(ink_utf8_char_len(U("\x80"), 1), 0);             /* lone continuation */
    assert_int_equal(ink_utf8_char_len(U("\xc0\xaf"), 2), 0);         /* overlong '/' */
    assert_int_equal(ink_utf8_char_len(U("\xc1\xbf"), 2), 0);         /* overlong */
    assert_int_equal(ink_utf8_char_len(U("\xe0\x80\xaf"), 3), 0);     /* overlong 3-byte */
    assert_int_equal(ink_utf8_char_len(U("\xed\xa0\x80"), 3), 0);     /* surrogate D800 */
    assert_int_equal(ink_utf8_char_len(U("\xf0\x80\x80\xaf"), 4), 0); /* overlong 4-byte */
    assert_int_equal(ink_utf8_char_len(U("\xf4\x90\x80\x80"), 4), 0); /* > U+10FFFF */
    assert_int_equal(ink_utf8_char_len(U("\xf5\x80\x80\x80"), 4), 0);
    assert_int_equal(ink_utf8_char_len(U("\xff"), 1), 0);
    assert_int_equal(ink_utf8_char_len(U("\xc3"), 1), 0);         /* truncated by n */
    assert_int_equal(ink_utf8_char_len(U("\xe2\x82\xac"), 2), 0); /* truncated by n */
    assert_int_equal(ink_utf8_char_len(U("\xe2\x28\xa1"), 3), 0); /* bad continuation */
    assert_int_equal(ink_utf8_char_len(U("a"), 0), 0);
}

static void sanitize_cuts_at_a_character_boundary(void **state)
{
    (void)state;
    /* "é" * 200 is 400 bytes; in 256 bytes (255 + NUL) 127 whole characters fit, not 127.5 */
    char in[401], out[256];
    for (int i = 0; i < 200; i++)
        memcpy(in + 2 * i, "\xc3\xa9", 2);
    in[400] = '\0';
    assert_int_equal(ink_utf8_sanitize(in, out, sizeof out), 254);
    assert_int_equal(strlen(out), 254);
    assert_memory_equal(out, in, 254);
    /* 255 ASCII bytes fit whole, the 256th does not */
    char ascii[300];
    memset(ascii, 'x', 299);
    ascii[299] = '\0';
    assert_int_equal(ink_utf8_sanitize(ascii, out, sizeof out), 255);
    ascii[255] = '\0';
    assert_int_equal(ink_utf8_sanitize(ascii, out, sizeof out), 255);
    assert_string_equal(out, ascii);
}

static void sanitize_replaces_invalid_bytes_and_controls(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(ink_utf8_sanitize("abc\xff\xfe"
                                       "def",
                                       out, sizeof out),
                     12);
    assert_string_equal(out, "abc\xef\xbf\xbd\xef\xbf\xbd"
                             "def");
    ink_utf8_sanitize("a\tb\nc\x7f"
                      "d",
                      out, sizeof out);
    assert_string_equal(out, "a\xef\xbf\xbd"
                             "b\xef\xbf\xbd"
                             "c\xef\xbf\xbd"
                             "d");
    ink_utf8_sanitize("\xed\xa0\x80", out, sizeof out); /* a surrogate: three bad bytes */
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    ink_utf8_sanitize("caf\xc3\xa9 \xe2\x82\xac", out, sizeof out); /* valid text is kept */
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac");
    ink_utf8_sanitize(NULL, out, sizeof out);
    assert_string_equal(out, "");
    /* a replacement that would not fit whole is left out, never half-written */
    char small[5];
    assert_int_equal(ink_utf8_sanitize("ab\xff", small, sizeof small), 2);
    assert_string_equal(small, "ab");
}

/* For a reader: controls, bidi controls and line separators vanish, bad bytes become U+FFFD,
 * and a cut value ends in "…" inside the same buffer. */
static void display_mode_drops_the_invisible_and_marks_a_cut(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(ink_utf8_clean("ev\xe2\x80\xaeil\r\nBcc: x\xc2\x85\xe2\x80\xa8\xff", out,
                                    sizeof out, INK_UTF8_DISPLAY),
                     strlen("evilBcc: x\xef\xbf\xbd"));
    assert_string_equal(out, "evilBcc: x\xef\xbf\xbd");
    /* 10 bytes of room: 6 of text and the 3-byte mark; "é" is never split */
    char small[10];
    ink_utf8_clean("abcde\xc3\xa9xyz", small, sizeof small, INK_UTF8_DISPLAY);
    assert_string_equal(small, "abcde\xe2\x80\xa6");
    ink_utf8_clean("abcdef", small, sizeof small, INK_UTF8_DISPLAY); /* fits: no mark */
    assert_string_equal(small, "abcdef");
    char tiny[3];
    assert_int_equal(ink_utf8_clean("abc", tiny, sizeof tiny, INK_UTF8_DISPLAY), 0);
    assert_string_equal(tiny, "");
    /* the storage mode replaces controls instead and cuts silently */
    ink_utf8_clean("a\rb", out, sizeof out, INK_UTF8_STORE);
    assert_string_equal(out, "a\xef\xbf\xbd" "b");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_lengths_of_well_formed_characters),
        cmocka_unit_test(utf8_rejects_ill_formed_sequences),
        cmocka_unit_test(sanitize_cuts_at_a_character_boundary),
        cmocka_unit_test(sanitize_replaces_invalid_bytes_and_controls),
        cmocka_unit_test(display_mode_drops_the_invisible_and_marks_a_cut),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
