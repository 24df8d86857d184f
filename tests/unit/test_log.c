/* log + strbuf: the bounded line builder. A request whose method is a kilobyte long once crashed
 * the daemon here (snprintf's would-be length added to the offset); every field copied from a
 * request is hostile, so the lines are checked with the longest and strangest values. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/log.h"
#include "inklet/strbuf.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define TS "2026-12-01T10:30:00.123Z"

/* A string of n bytes cycling through the worst bytes for escaping: quotes, backslashes, every
 * control character, DEL and invalid UTF-8. */
static char *hostile(size_t n)
{
    static const char pool[] = "\"\\\x01\n\r\t\x7f\xff\xc3\xed\xa0\x80{}\x1b[31m";
    char *s = malloc(n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = pool[i % (sizeof pool - 1)];
    s[n] = '\0';
    return s;
}

static void sb_printf_never_writes_past_the_buffer(void **state)
{
    (void)state;
    char buf[16 + 8];
    memset(buf, 'Z', sizeof buf);
    struct ink_sb sb;
    ink_sb_init(&sb, buf, 16);
    ink_sb_printf(&sb, "%s", "0123456789");
    ink_sb_printf(&sb, "%s", "abcdefghij"); /* would-be length 10, room 5 */
    ink_sb_printf(&sb, "%s", "more");
    assert_true(sb.truncated);
    assert_int_equal(sb.len, 15);
    assert_string_equal(buf, "0123456789abcde");
    for (size_t i = 16; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'Z');
    ink_sb_putn(&sb, "x", 1);
    assert_int_equal(sb.len, 15);
}

static void sb_escaped_json_cuts_whole_and_marks_the_cut(void **state)
{
    (void)state;
    char buf[64];
    struct ink_sb sb;
    ink_sb_init(&sb, buf, sizeof buf);
    ink_sb_escaped(&sb, INK_ESC_JSON, "a\"b\\c\n\x01\xff", 100);
    assert_string_equal(buf, "a\\\"b\\\\c\\n\\u0001\\ufffd");
    assert_false(sb.truncated);
    ink_sb_init(&sb, buf, sizeof buf);
    /* "é" is 2 bytes: 10 bytes hold "..." plus 3 whole characters, never a half one */
    ink_sb_escaped(&sb, INK_ESC_JSON, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10);
    assert_string_equal(buf, "\xc3\xa9\xc3\xa9\xc3\xa9...");
    assert_true(sb.truncated);
    ink_sb_init(&sb, buf, sizeof buf);
    ink_sb_escaped(&sb, INK_ESC_JSON, "\"\"\"\"\"\"", 7); /* escapes are never split */
    assert_string_equal(buf, "\\\"\\\"...");
}

static void sb_escaped_text_keeps_one_line(void **state)
{
    (void)state;
    char buf[128];
    struct ink_sb sb;
    ink_sb_init(&sb, buf, sizeof buf);
    ink_sb_escaped(&sb, INK_ESC_TEXT, "GET\r\n2026 error forged\\x \xff caf\xc3\xa9", 100);
    assert_string_equal(buf, "GET\\x0d\\x0a2026 error forged\\x5cx \\xff caf\xc3\xa9");
}

static void check_request_line_is_one_json_object(const struct ink_request_log *f)
{
    char line[INK_LOG_REQUEST_LINE_MAX];
    size_t n = ink_log_format_request(f, true, TS, line, sizeof line);
    assert_int_equal(strlen(line), n);
    assert_true(n < sizeof line - 1); /* the bound holds: never cut */
    assert_null(memchr(line, '\n', n));
    json_error_t err;
    json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &err);
    if (!obj)
        fail_msg("not JSON (%s): %s", err.text, line);
    assert_string_equal(json_string_value(json_object_get(obj, "msg")), "request");
    assert_string_equal(json_string_value(json_object_get(obj, "level")), "info");
    assert_int_equal(json_integer_value(json_object_get(obj, "status")), f->status);
    /* the method field never grows past its cap, whatever came in */
    if (f->method) {
        const char *m = json_string_value(json_object_get(obj, "method"));
        assert_non_null(m);
        assert_true(strlen(m) <= INK_LOG_METHOD_MAX);
    } else {
        assert_true(json_is_null(json_object_get(obj, "method")));
    }
    json_decref(obj);
}

static void request_line_with_1100_byte_method_is_valid_json(void **state)
{
    (void)state;
    char *method = malloc(1101);
    assert_non_null(method);
    memset(method, 'A', 1100);
    method[1100] = '\0';
    struct ink_request_log f = {"req-1", method, "(unmatched)", 405, 0.25, NULL, "127.0.0.1"};
    check_request_line_is_one_json_object(&f);
    char line[INK_LOG_REQUEST_LINE_MAX];
    ink_log_format_request(&f, true, TS, line, sizeof line);
    assert_non_null(strstr(line, "\"method\":\"AAAA"));
    assert_non_null(strstr(line, "...\",\"route\""));
    free(method);
}

static void request_line_with_every_field_hostile_and_huge_is_valid_json(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 31, 32, 33, 127, 128, 129, 1024, 65536};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        char *h = hostile(sizes[i]);
        struct ink_request_log f = {h, h, h, 599, 1e300, h, h};
        check_request_line_is_one_json_object(&f);
        struct ink_request_log g = {NULL, NULL, NULL, 0, -1, NULL, NULL};
        check_request_line_is_one_json_object(&g);
        free(h);
    }
}

static void request_line_in_text_is_one_line_and_bounded(void **state)
{
    (void)state;
    char *h = hostile(65536);
    struct ink_request_log f = {h, h, h, 400, 1.5, h, h};
    char line[INK_LOG_REQUEST_LINE_MAX];
    size_t n = ink_log_format_request(&f, false, TS, line, sizeof line);
    assert_true(n < sizeof line - 1);
    for (size_t i = 0; i < n; i++)
        assert_true((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
    assert_non_null(strstr(line, " 400 1.500ms ip="));
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sb_printf_never_writes_past_the_buffer),
        cmocka_unit_test(sb_escaped_json_cuts_whole_and_marks_the_cut),
        cmocka_unit_test(sb_escaped_text_keeps_one_line),
        cmocka_unit_test(request_line_with_1100_byte_method_is_valid_json),
        cmocka_unit_test(request_line_with_every_field_hostile_and_huge_is_valid_json),
        cmocka_unit_test(request_line_in_text_is_one_line_and_bounded),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
