/* The form body parser for Apple's form_post callback: decoding, limits, hostile encodings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/formdata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse(const char *body, struct ink_formdata *f)
{
    const char *why;
    return ink_formdata_parse(body, strlen(body), f, &why);
}

static void apple_callback_body_is_decoded(void **state)
{
    (void)state;
    struct ink_formdata f;
    const char *body = "state=st_1%2B2&code=c.0.abc&id_token=eyJ.eyJ.sig"
                       "&user=%7B%22name%22%3A%7B%22firstName%22%3A%22Zo%C3%AB%22%7D%7D";
    assert_true(parse(body, &f));
    assert_int_equal(f.count, 4);
    assert_string_equal(ink_formdata_get(&f, "state"), "st_1+2");
    assert_string_equal(ink_formdata_get(&f, "code"), "c.0.abc");
    assert_string_equal(ink_formdata_get(&f, "id_token"), "eyJ.eyJ.sig");
    assert_string_equal(ink_formdata_get(&f, "user"), "{\"name\":{\"firstName\":\"Zoë\"}}");
    assert_null(ink_formdata_get(&f, "missing"));
    ink_formdata_free(&f);
}

static void plus_is_space_and_empty_values_and_pairs_are_fine(void **state)
{
    (void)state;
    struct ink_formdata f;
    assert_true(parse("a=1+2&&b=&c", &f));
    assert_int_equal(f.count, 3);
    assert_string_equal(ink_formdata_get(&f, "a"), "1 2");
    assert_string_equal(ink_formdata_get(&f, "b"), "");
    assert_string_equal(ink_formdata_get(&f, "c"), "");
    ink_formdata_free(&f);
    assert_true(parse("", &f));
    assert_int_equal(f.count, 0);
    ink_formdata_free(&f);
}

static void bad_percent_encoding_is_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"a=%",        "a=%4",
                                      "a=%zz",      "a=%4g",
                                      "a=%%41",     "%=1",
                                      "a%2=1",      "a=%00b",
                                      "a=%C3", /* cut UTF-8 */
                                      "a=%FF",      "a=%C0%AF" /* overlong */,
                                      "a=%ED%A0%80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ink_formdata f;
        if (parse(bad[i], &f))
            fail_msg("\"%s\" accepted", bad[i]);
        assert_int_equal(f.count, 0);
    }
}

static void raw_nul_repeated_or_empty_names_are_refused(void **state)
{
    (void)state;
    struct ink_formdata f;
    const char *why;
    const char body[] = "a=1\0&b=2";
    assert_false(ink_formdata_parse(body, sizeof body - 1, &f, &why));
    assert_false(parse("state=a&state=b", &f)); /* which one would win is ambiguous */
    assert_false(parse("=value", &f));
    assert_false(parse("st%61te=a&state=b", &f)); /* the same name once decoded */
}

static void limits_are_enforced(void **state)
{
    (void)state;
    struct ink_formdata f;
    char body[INK_FORMDATA_VALUE_MAX + 64];
    /* 16 fields pass, 17 do not */
    size_t o = 0;
    for (int i = 0; i < INK_FORMDATA_MAX_FIELDS; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%sf%d=v", i ? "&" : "", i);
    assert_true(parse(body, &f));
    ink_formdata_free(&f);
    snprintf(body + o, sizeof body - o, "&extra=v");
    assert_false(parse(body, &f));
    /* a name of 64 bytes passes, 65 not */
    memset(body, 'n', INK_FORMDATA_NAME_MAX);
    snprintf(body + INK_FORMDATA_NAME_MAX, 8, "=v");
    assert_true(parse(body, &f));
    ink_formdata_free(&f);
    memset(body, 'n', INK_FORMDATA_NAME_MAX + 1);
    snprintf(body + INK_FORMDATA_NAME_MAX + 1, 8, "=v");
    assert_false(parse(body, &f));
    /* a value at the limit passes, one byte more not (also when it gets there by decoding) */
    memcpy(body, "v=", 2);
    memset(body + 2, 'x', INK_FORMDATA_VALUE_MAX);
    body[2 + INK_FORMDATA_VALUE_MAX] = '\0';
    assert_true(parse(body, &f));
    assert_int_equal(strlen(ink_formdata_get(&f, "v")), INK_FORMDATA_VALUE_MAX);
    ink_formdata_free(&f);
    memcpy(body + 2 + INK_FORMDATA_VALUE_MAX, "%41", 4);
    assert_false(parse(body, &f));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(apple_callback_body_is_decoded),
        cmocka_unit_test(plus_is_space_and_empty_values_and_pairs_are_fine),
        cmocka_unit_test(bad_percent_encoding_is_refused),
        cmocka_unit_test(raw_nul_repeated_or_empty_names_are_refused),
        cmocka_unit_test(limits_are_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
