/* json: strict length-aware object parsing, typed optional fields, timestamps (contract §0). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/json.h"

#include <stdlib.h>
#include <string.h>

/* Parses buf[0..len) and returns the status; *why must be set on failure. */
static enum ink_status parse_len(const char *buf, size_t len)
{
    json_t *obj = (json_t *)1;
    const char *why = NULL;
    enum ink_status st = ink_json_parse_object(buf, len, &obj, &why);
    if (st == INK_OK) {
        assert_true(json_is_object(obj));
        json_decref(obj);
    } else {
        assert_null(obj);
        assert_non_null(why);
        assert_true(strlen(why) > 0);
    }
    return st;
}

static enum ink_status parse(const char *s)
{
    return parse_len(s, strlen(s));
}

static void object_is_accepted_and_readable(void **state)
{
    (void)state;
    const char *s = "{\"a\":\"b\"}";
    json_t *obj = NULL;
    const char *why = NULL;
    assert_int_equal(ink_json_parse_object(s, strlen(s), &obj, &why), INK_OK);
    assert_true(json_is_object(obj));
    assert_string_equal(json_string_value(json_object_get(obj, "a")), "b");
    json_decref(obj);
    assert_int_equal(parse("{}"), INK_OK);
    assert_int_equal(parse(" \n{ \"a\" : [1, {\"b\": null}] }\n "), INK_OK);
}

static void parse_respects_declared_length_without_nul_terminator(void **state)
{
    (void)state;
    /* only the first 9 bytes are the body; what follows in memory is not read */
    char buf[32];
    memcpy(buf, "{\"a\":\"b\"}GARBAGE", 16);
    assert_int_equal(parse_len(buf, 9), INK_OK);
    assert_int_equal(parse_len(buf, 16), INK_INVALID);
    assert_int_equal(parse_len(buf, 8), INK_INVALID); /* truncated */
}

static void empty_input_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse_len("", 0), INK_INVALID);
    assert_int_equal(parse_len("{}", 0), INK_INVALID);
    assert_int_equal(parse("   "), INK_INVALID);
}

static void nul_byte_inside_is_rejected(void **state)
{
    (void)state;
    static const char inside[] = "{\"a\":\"b\0c\"}";
    assert_int_equal(parse_len(inside, sizeof inside - 1), INK_INVALID);
    static const char in_key[] = "{\"a\0\":\"b\"}";
    assert_int_equal(parse_len(in_key, sizeof in_key - 1), INK_INVALID);
    static const char trailing[] = "{\"a\":\"b\"}\0junk";
    assert_int_equal(parse_len(trailing, sizeof trailing - 1), INK_INVALID);
    static const char just_nul[] = "{\"a\":\"b\"}\0";
    assert_int_equal(parse_len(just_nul, sizeof just_nul - 1), INK_INVALID);
}

static void invalid_utf8_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"a\":\"\xff\"}"), INK_INVALID);
    assert_int_equal(parse("{\"a\":\"\xc0\xaf\"}"), INK_INVALID);     /* overlong '/' */
    assert_int_equal(parse("{\"a\":\"\xe0\x80\xaf\"}"), INK_INVALID); /* overlong */
    assert_int_equal(parse("{\"a\":\"\xed\xa0\x80\"}"), INK_INVALID); /* raw surrogate */
    assert_int_equal(parse("{\"a\":\"\xc3\"}"), INK_INVALID);         /* truncated */
    assert_int_equal(parse("{\"\xfe\":1}"), INK_INVALID);             /* in a key */
    assert_int_equal(parse("{\"a\":\"\\ud800\"}"), INK_INVALID);      /* lone high */
    assert_int_equal(parse("{\"a\":\"\\udc00\"}"), INK_INVALID);      /* lone low */
    assert_int_equal(parse("{\"a\":\"\\ud800x\"}"), INK_INVALID);
    /* valid multibyte text and a proper surrogate pair are fine */
    assert_int_equal(parse("{\"a\":\"j\xc3\xbcrgen \xf0\x9f\x98\x80\"}"), INK_OK);
    assert_int_equal(parse("{\"a\":\"\\ud83d\\ude00\"}"), INK_OK);
}

static void escaped_nul_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"a\":\"\\u0000\"}"), INK_INVALID);
    assert_int_equal(parse("{\"a\":\"x\\u0000y\"}"), INK_INVALID);
    assert_int_equal(parse("{\"\\u0000\":1}"), INK_INVALID);
}

static void duplicate_keys_are_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"a\":1,\"a\":2}"), INK_INVALID);
    assert_int_equal(parse("{\"role\":\"user\",\"x\":1,\"role\":\"admin\"}"), INK_INVALID);
    assert_int_equal(parse("{\"o\":{\"k\":1,\"k\":1}}"), INK_INVALID);
    /* an escaped spelling of the same key is the same key */
    assert_int_equal(parse("{\"a\":1,\"\\u0061\":2}"), INK_INVALID);
}

static void non_object_top_level_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse("[]"), INK_INVALID);
    assert_int_equal(parse("[{\"a\":1}]"), INK_INVALID);
    assert_int_equal(parse("\"str\""), INK_INVALID);
    assert_int_equal(parse("42"), INK_INVALID);
    assert_int_equal(parse("true"), INK_INVALID);
    assert_int_equal(parse("null"), INK_INVALID);
}

static void trailing_garbage_is_rejected(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"a\":1} x"), INK_INVALID);
    assert_int_equal(parse("{\"a\":1}{\"b\":2}"), INK_INVALID);
    assert_int_equal(parse("{\"a\":1},"), INK_INVALID);
}

static void truncated_json_is_rejected(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{",           "{\"a\"",     "{\"a\":",    "{\"a\":\"b", "{\"a\":\"b\"",
        "{\"a\":[1,2", "{\"a\":tru", "{\"a\":1,}", "{'a':1}",    "{a:1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (parse(bad[i]) != INK_INVALID)
            fail_msg("accepted \"%s\"", bad[i]);
}

static char *nested(size_t depth)
{
    /* {"a":{"a":...{}...}} */
    size_t len = depth * 5 + 2 + depth;
    char *s = malloc(len + 1), *p = s;
    assert_non_null(s);
    for (size_t i = 0; i < depth; i++) {
        memcpy(p, "{\"a\":", 5);
        p += 5;
    }
    *p++ = '{';
    *p++ = '}';
    memset(p, '}', depth);
    p += depth;
    *p = '\0';
    return s;
}

static void deep_nesting_is_rejected_without_crashing(void **state)
{
    (void)state;
    char *deep = nested(3000);
    assert_int_equal(parse(deep), INK_INVALID);
    free(deep);
    char *shallow = nested(100);
    assert_int_equal(parse(shallow), INK_OK);
    free(shallow);
    /* unbalanced deep arrays too */
    char *arrays = malloc(100001);
    assert_non_null(arrays);
    memset(arrays, '[', 100000);
    arrays[0] = '{';
    arrays[100000] = '\0';
    assert_int_equal(parse(arrays), INK_INVALID);
    free(arrays);
}

static json_t *obj_of(const char *text)
{
    json_t *obj = NULL;
    const char *why = NULL;
    assert_int_equal(ink_json_parse_object(text, strlen(text), &obj, &why), INK_OK);
    return obj;
}

static void opt_string_present(void **state)
{
    (void)state;
    json_t *obj = obj_of("{\"name\":\"ink\",\"empty\":\"\"}");
    const char *s = NULL;
    assert_int_equal(ink_json_opt_string(obj, "name", &s), INK_OK);
    assert_string_equal(s, "ink");
    assert_ptr_equal(s, json_string_value(json_object_get(obj, "name"))); /* borrowed */
    assert_int_equal(ink_json_opt_string(obj, "empty", &s), INK_OK);
    assert_non_null(s);
    assert_string_equal(s, "");
    json_decref(obj);
}

static void opt_string_absent_or_null_gives_null(void **state)
{
    (void)state;
    json_t *obj = obj_of("{\"n\":null}");
    const char *s = "sentinel";
    assert_int_equal(ink_json_opt_string(obj, "missing", &s), INK_OK);
    assert_null(s);
    s = "sentinel";
    assert_int_equal(ink_json_opt_string(obj, "n", &s), INK_OK);
    assert_null(s);
    s = "sentinel";
    assert_int_equal(ink_json_opt_string(NULL, "n", &s), INK_OK);
    assert_null(s);
    json_decref(obj);
}

static void opt_string_or_null_distinguishes_null_from_absent(void **state)
{
    (void)state;
    json_t *obj = obj_of("{\"n\":null,\"s\":\"x\"}");
    const char *s = "sentinel";
    bool is_null = false;
    assert_int_equal(ink_json_opt_string_or_null(obj, "n", &s, &is_null), INK_OK);
    assert_null(s);
    assert_true(is_null);
    is_null = true;
    assert_int_equal(ink_json_opt_string_or_null(obj, "missing", &s, &is_null), INK_OK);
    assert_null(s);
    assert_false(is_null);
    is_null = true;
    assert_int_equal(ink_json_opt_string_or_null(obj, "s", &s, &is_null), INK_OK);
    assert_string_equal(s, "x");
    assert_false(is_null);
    json_decref(obj);
}

static void opt_string_never_coerces_other_types(void **state)
{
    (void)state;
    json_t *obj = obj_of("{\"i\":1,\"r\":1.5,\"t\":true,\"f\":false,\"o\":{},\"a\":[\"x\"]}");
    static const char *const keys[] = {"i", "r", "t", "f", "o", "a"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *s = "sentinel";
        bool is_null = true;
        assert_int_equal(ink_json_opt_string(obj, keys[i], &s), INK_INVALID);
        assert_null(s);
        assert_int_equal(ink_json_opt_string_or_null(obj, keys[i], &s, &is_null), INK_INVALID);
        assert_null(s);
        assert_false(is_null);
    }
    json_decref(obj);
}

static void time_zero_is_json_null(void **state)
{
    (void)state;
    json_t *t = ink_json_time(0);
    assert_non_null(t);
    assert_true(json_is_null(t));
    json_decref(t);
}

static void time_is_rfc3339_utc_seconds_with_z(void **state)
{
    (void)state;
    json_t *t = ink_json_time(1768473000);
    assert_true(json_is_string(t));
    assert_string_equal(json_string_value(t), "2026-01-15T10:30:00Z");
    json_decref(t);
    t = ink_json_time(1);
    assert_string_equal(json_string_value(t), "1970-01-01T00:00:01Z");
    json_decref(t);
    t = ink_json_time(951782400); /* leap day */
    assert_string_equal(json_string_value(t), "2000-02-29T00:00:00Z");
    json_decref(t);
}

static void str_or_null_and_dump(void **state)
{
    (void)state;
    json_t *o = json_object();
    json_object_set_new(o, "s", ink_json_str_or_null("v"));
    json_object_set_new(o, "n", ink_json_str_or_null(NULL));
    size_t len = 0;
    char *text = ink_json_dump(o, &len);
    assert_int_equal(len, strlen(text));
    /* dump output parses back to the same object */
    json_t *back = obj_of(text);
    assert_true(json_equal(o, back));
    assert_null(strchr(text, '\n'));
    assert_null(strchr(text, ' ')); /* compact */
    free(text);
    json_decref(back);
    json_decref(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(object_is_accepted_and_readable),
        cmocka_unit_test(parse_respects_declared_length_without_nul_terminator),
        cmocka_unit_test(empty_input_is_rejected),
        cmocka_unit_test(nul_byte_inside_is_rejected),
        cmocka_unit_test(invalid_utf8_is_rejected),
        cmocka_unit_test(escaped_nul_is_rejected),
        cmocka_unit_test(duplicate_keys_are_rejected),
        cmocka_unit_test(non_object_top_level_is_rejected),
        cmocka_unit_test(trailing_garbage_is_rejected),
        cmocka_unit_test(truncated_json_is_rejected),
        cmocka_unit_test(deep_nesting_is_rejected_without_crashing),
        cmocka_unit_test(opt_string_present),
        cmocka_unit_test(opt_string_absent_or_null_gives_null),
        cmocka_unit_test(opt_string_or_null_distinguishes_null_from_absent),
        cmocka_unit_test(opt_string_never_coerces_other_types),
        cmocka_unit_test(time_zero_is_json_null),
        cmocka_unit_test(time_is_rfc3339_utc_seconds_with_z),
        cmocka_unit_test(str_or_null_and_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
