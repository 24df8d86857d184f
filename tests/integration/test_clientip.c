/* Contract §0 "Rate limiting" and "Hostile framing": what the server keeps of a client's
 * identity. User-Agent values are stored cut at a UTF-8 character boundary (at most 255 bytes)
 * with invalid UTF-8 and control characters replaced, and never fail a request; several
 * X-Forwarded-For lines are one list, in order; IPv6 clients share a bucket per /64, IPv4
 * clients have one per address. Each test runs its own inkletd. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UA_MAX 255
#define MAX_LINES 8
#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */
/* Rate-limit window in seconds: long enough that no token comes back while a test runs, even
 * under valgrind where each login's password hash takes seconds. */
#define WINDOW_SECONDS 3600
#define WINDOW "3600"

/* ---- helpers ------------------------------------------------------------------------------ */

/* POST `json_text` to `path` on `d` with Content-Type application/json plus the given header
 * lines (NULL-terminated, may be NULL). */
static void post_json(const struct itest_daemon *d, const char *path, const char *const extra[],
                      const char *json_text, struct itest_resp *r)
{
    char url[160];
    snprintf(url, sizeof url, "%s%s", d->url, path);
    const char *headers[MAX_LINES + 2] = {"Content-Type: application/json"};
    size_t n = 1;
    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(n < MAX_LINES + 1);
        headers[n++] = extra[i];
    }
    headers[n] = NULL;
    itest_request(NULL, "POST", url, headers, json_text, strlen(json_text), r);
}

/* Logs `u` in (by username) with the given extra header lines; asserts 200 and fills *s. */
static void login_with(const struct itest_daemon *d, const struct itest_user *u,
                       const char *const extra[], struct itest_session *s)
{
    json_t *body = json_pack("{s:s,s:s}", "identifier", u->username, "password", u->password);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct itest_resp r;
    post_json(d, "/auth/login", extra, text, &r);
    free(text);
    itest_expect_status(&r, 200);
    itest_session_from(r.json, s);
    itest_resp_free(&r);
}

/* Registers fresh credentials in *u with the given extra header lines; asserts 201 and fills
 * u->s with the session register opened. */
static void register_with(const struct itest_daemon *d, struct itest_user *u,
                          const char *const extra[])
{
    itest_user_new(u);
    json_t *body = json_pack("{s:s,s:s,s:s}", "email", u->email, "username", u->username,
                             "password", u->password);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct itest_resp r;
    post_json(d, "/auth/register", extra, text, &r);
    free(text);
    itest_expect_status(&r, 201);
    itest_session_from(r.json, &u->s);
    itest_resp_free(&r);
}

/* The entry of GET /auth/sessions (listed with `access`) whose id is `sid`; asserts it exists.
 * Returns a new reference. */
static json_t *session_entry(const struct itest_daemon *d, const char *access, const char *sid)
{
    struct itest_resp r;
    itest_call(d, "GET", "/auth/sessions", access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_array(r.json));
    json_t *found = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(r.json, i, s)
    {
        const char *id = json_string_value(json_object_get(s, "id"));
        if (id && strcmp(id, sid) == 0)
            found = json_incref(s);
    }
    itest_resp_free(&r);
    if (!found)
        fprintf(stderr, "  session %s is not listed\n", sid);
    assert_non_null(found);
    return found;
}

/* True if s is well-formed UTF-8 (no overlong forms, surrogates or code points over U+10FFFF). */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p, len, min;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2, min = 0x80, c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, min = 0x800, c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        p += len;
    }
    return true;
}

/* True if s holds a C0 control character or DEL. */
static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

/* Prints `label: "value"` with bytes outside printable ASCII as \xNN. */
static void print_escaped(const char *label, const char *value)
{
    fprintf(stderr, "%s (%zu bytes): \"", label, strlen(value));
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\' && *p != '"')
            fputc(*p, stderr);
        else
            fprintf(stderr, "\\x%02x", *p);
    }
    fprintf(stderr, "\"\n");
}

/* The userAgent of session `sid` (as listed with `access`), checked to be a storable value:
 * valid UTF-8, no control characters, at most 255 bytes. Returns a malloc'd copy. */
static char *stored_user_agent(const struct itest_daemon *d, const char *access, const char *sid)
{
    json_t *s = session_entry(d, access, sid);
    const char *ua = itest_str(s, "userAgent");
    if (!utf8_valid(ua) || has_control(ua) || strlen(ua) > UA_MAX)
        print_escaped("  stored userAgent", ua);
    assert_true(utf8_valid(ua));
    assert_false(has_control(ua));
    assert_true(strlen(ua) <= UA_MAX);
    char *copy = strdup(ua);
    assert_non_null(copy);
    json_decref(s);
    return copy;
}

/* Logs in and registers with User-Agent `sent` (the raw bytes of the header value) and calls
 * `check(stored, want)` on what each of the two sessions stored. */
static void user_agent_round_trip(const char *sent, void (*check)(const char *, const char *),
                                  const char *want)
{
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    char line[1600];
    int n = snprintf(line, sizeof line, "User-Agent: %s", sent);
    assert_true(n > 0 && (size_t)n < sizeof line);
    const char *extra[] = {line, NULL};

    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_session s;
    login_with(d, &u, extra, &s);
    char *ua = stored_user_agent(d, s.access, s.sid);
    check(ua, want);
    free(ua);

    struct itest_user v;
    register_with(d, &v, extra);
    ua = stored_user_agent(d, v.s.access, v.s.sid);
    check(ua, want);
    free(ua);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* `unit` repeated `count` times, NUL-terminated, in a malloc'd buffer. */
static char *repeat(const char *unit, size_t count)
{
    size_t len = strlen(unit);
    char *s = malloc(len * count + 1);
    assert_non_null(s);
    for (size_t i = 0; i < count; i++)
        memcpy(s + i * len, unit, len);
    s[len * count] = '\0';
    return s;
}

static void check_equals(const char *stored, const char *want)
{
    assert_string_equal(stored, want);
}

/* ---- User-Agent --------------------------------------------------------------------------- */

static void test_clientip_user_agent_cut_inside_a_character_keeps_whole_characters(void **state)
{
    (void)state;
    char *sent = repeat("\xc3\xa9", 200); /* "é" x 200: 400 bytes, byte 255 is mid-character */
    char *want = repeat("\xc3\xa9", 127); /* 254 bytes */
    user_agent_round_trip(sent, check_equals, want);
    free(want);
    free(sent);
}

static void test_clientip_user_agent_cut_inside_a_4_byte_character_keeps_whole_ones(void **state)
{
    (void)state;
    /* "a" then 100 x U+1F600: the character at bytes 253..256 is split by a 255-byte cut, two
     * of its bytes stay */
    char *emoji = repeat("\xf0\x9f\x98\x80", 100);
    char sent[512], want[512];
    snprintf(sent, sizeof sent, "a%s", emoji);
    emoji[63 * 4] = '\0';
    snprintf(want, sizeof want, "a%s", emoji); /* 253 bytes */
    free(emoji);
    user_agent_round_trip(sent, check_equals, want);
}

static void test_clientip_user_agent_invalid_bytes_become_replacement_characters(void **state)
{
    (void)state;
    user_agent_round_trip("abc\xff\xfe"
                          "def",
                          check_equals, "abc" REPLACEMENT REPLACEMENT "def");
}

/* The stored value with every run of U+FFFD written as one '?'. */
static void replacement_runs_as_question_marks(const char *stored, char *out, size_t outlen)
{
    size_t o = 0;
    const char *p = stored;
    const size_t rlen = strlen(REPLACEMENT);
    while (*p && o + 1 < outlen) {
        if (strncmp(p, REPLACEMENT, rlen) == 0) {
            out[o++] = '?';
            while (strncmp(p, REPLACEMENT, rlen) == 0)
                p += rlen;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

/* `want` is the stored value's shape: each run of U+FFFD written as one '?'. */
static void check_shape(const char *stored, const char *want)
{
    char shape[UA_MAX + 1];
    replacement_runs_as_question_marks(stored, shape, sizeof shape);
    assert_string_equal(shape, want);
}

static void test_clientip_user_agent_malformed_sequences_become_replacement_characters(void **state)
{
    (void)state;
    /* PostgreSQL refuses each of these: a UTF-8-encoded surrogate (U+D800), an overlong "/",
     * a code point over U+10FFFF, a sequence cut short. How many U+FFFD each becomes is left to
     * the implementation (one per byte or one per maximal subpart); at least one, and nothing
     * of the ASCII around them is lost. */
    user_agent_round_trip("abc\xed\xa0\x80"
                          "def\xc0\xaf"
                          "ghi\xf4\x90\x80\x80"
                          "jkl\xe2\x82"
                          "mno",
                          check_shape, "abc?def?ghi?jkl?mno");
}

static void test_clientip_user_agent_control_characters_become_replacement_characters(void **state)
{
    (void)state;
    /* SOH, TAB, DEL and ESC (the start of a terminal colour sequence) */
    user_agent_round_trip("a\x01"
                          "b\tc\x7f"
                          "d\x1b[31m",
                          check_equals,
                          "a" REPLACEMENT "b" REPLACEMENT "c" REPLACEMENT "d" REPLACEMENT "[31m");
}

static void test_clientip_user_agent_replacements_still_fit_in_255_bytes(void **state)
{
    (void)state;
    /* 300 invalid bytes would grow to 900 once replaced: 85 x U+FFFD is all that fits */
    char *sent = repeat("\xff", 300);
    char *want = repeat(REPLACEMENT, UA_MAX / 3);
    user_agent_round_trip(sent, check_equals, want);
    free(want);
    free(sent);
}

static void test_clientip_user_agent_long_ascii_is_cut_to_255_bytes(void **state)
{
    (void)state;
    char sent[301];
    for (size_t i = 0; i < 300; i++)
        sent[i] = (char)('a' + i % 26);
    sent[300] = '\0';
    char want[UA_MAX + 1];
    memcpy(want, sent, UA_MAX);
    want[UA_MAX] = '\0';
    user_agent_round_trip(sent, check_equals, want);
}

static void test_clientip_user_agent_of_255_ascii_bytes_is_stored_whole(void **state)
{
    (void)state;
    char sent[UA_MAX + 1];
    for (size_t i = 0; i < UA_MAX; i++)
        sent[i] = (char)('A' + i % 26);
    sent[UA_MAX] = '\0';
    user_agent_round_trip(sent, check_equals, sent);
}

/* ---- X-Forwarded-For lines ---------------------------------------------------------------- */

/* Fills lines[] with one "X-Forwarded-For: v" line per value (NULL-terminated `values`), into
 * the caller's storage; lines[] ends with NULL. */
static void xff_lines(const char *const values[], char storage[][128], const char *lines[])
{
    size_t n = 0;
    for (; values && values[n]; n++) {
        assert_true(n < MAX_LINES);
        snprintf(storage[n], 128, "X-Forwarded-For: %s", values[n]);
        lines[n] = storage[n];
    }
    lines[n] = NULL;
}

/* A login for a fresh unknown name each time (so only the per-IP bucket can answer 429) with
 * one X-Forwarded-For line per value; asserts `status` (429: rate_limited with Retry-After). */
static void expect_unknown_login(const struct itest_daemon *d, const char *const xff_values[],
                                 long status)
{
    static unsigned n;
    char name[64], storage[MAX_LINES][128];
    const char *lines[MAX_LINES + 1];
    snprintf(name, sizeof name, "nobody-clientip-%s-%u", itest.run_tag, ++n);
    xff_lines(xff_values, storage, lines);
    json_t *body = json_pack("{s:s,s:s}", "identifier", name, "password", "Some-password-1");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    struct itest_resp r;
    post_json(d, "/auth/login", lines, text, &r);
    free(text);
    if (status == 429) {
        itest_expect_error(&r, 429, "rate_limited");
        assert_true(itest_expect_retry_after(&r) <= WINDOW_SECONDS);
    } else {
        itest_expect_error(&r, status, "invalid_credentials");
    }
    itest_resp_free(&r);
}

/* Shorthand for one X-Forwarded-For line. */
static void expect_unknown_login_from(const struct itest_daemon *d, const char *xff, long status)
{
    expect_unknown_login(d, (const char *const[]){xff, NULL}, status);
}

/* Logs a registered user in with one X-Forwarded-For line per value and returns the `ip` of
 * the new session as listed by GET /auth/sessions (malloc'd). */
static char *session_ip_after_login(const struct itest_daemon *d, const struct itest_user *u,
                                    const char *const xff_values[])
{
    char storage[MAX_LINES][128];
    const char *lines[MAX_LINES + 1];
    xff_lines(xff_values, storage, lines);
    struct itest_session s;
    login_with(d, u, lines, &s);
    json_t *entry = session_entry(d, s.access, s.sid);
    char *ip = strdup(itest_str(entry, "ip"));
    assert_non_null(ip);
    json_decref(entry);
    return ip;
}

static const char *const FORGED_THEN_APPENDED[] = {"198.51.100.1", "203.0.113.9", NULL};

static void test_clientip_forwarded_lines_are_one_list_for_the_session_ip(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"TRUSTED_PROXIES=127.0.0.1", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    /* the client sent its own (forged) line, the proxy appended the address it saw */
    char *ip = session_ip_after_login(d, &u, FORGED_THEN_APPENDED);
    assert_string_equal(ip, "203.0.113.9");
    free(ip);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_clientip_forwarded_lines_are_one_list_for_rate_limiting(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"TRUSTED_PROXIES=127.0.0.1", "RATE_LIMIT_LOGIN=2/" WINDOW, NULL});
    assert_non_null(d);
    expect_unknown_login(d, FORGED_THEN_APPENDED, 401);
    expect_unknown_login(d, FORGED_THEN_APPENDED, 401);
    /* both were 203.0.113.9's: its bucket is empty, whichever way it is written */
    expect_unknown_login_from(d, "203.0.113.9", 429);
    /* and the forged address was never charged */
    expect_unknown_login_from(d, "198.51.100.1", 401);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_clientip_forwarded_lines_skip_trusted_hops_across_lines(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    /* joined: "198.51.100.1, 203.0.113.9, 10.1.2.3, 10.4.5.6"; the last two are our proxies */
    char *ip = session_ip_after_login(
        d, &u, (const char *const[]){"198.51.100.1", "203.0.113.9, 10.1.2.3", "10.4.5.6", NULL});
    assert_string_equal(ip, "203.0.113.9");
    free(ip);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- bucket per /64 (IPv6) or per address (IPv4) ------------------------------------------ */

static const char *const LIMIT_3_VIA_PROXY[] = {"TRUSTED_PROXIES=127.0.0.1",
                                                "RATE_LIMIT_LOGIN=3/" WINDOW, NULL};

static void test_clientip_ipv6_addresses_in_one_64_share_a_bucket(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(LIMIT_3_VIA_PROXY);
    assert_non_null(d);
    expect_unknown_login_from(d, "2001:db8:1:2::1", 401);
    expect_unknown_login_from(d, "2001:db8:1:2::2", 401);
    expect_unknown_login_from(d, "2001:db8:1:2::3", 401);
    /* the farthest address of the same /64 */
    expect_unknown_login_from(d, "2001:db8:1:2:ffff:ffff:ffff:ffff", 429);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_clientip_ipv6_neighbouring_64_has_its_own_bucket(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(LIMIT_3_VIA_PROXY);
    assert_non_null(d);
    expect_unknown_login_from(d, "2001:db8:1:2::1", 401);
    expect_unknown_login_from(d, "2001:db8:1:2::2", 401);
    expect_unknown_login_from(d, "2001:db8:1:2::3", 401);
    expect_unknown_login_from(d, "2001:db8:1:2::4", 429); /* 2001:db8:1:2::/64 is used up */
    /* 2001:db8:1:3::/64 differs only in the 64th bit */
    expect_unknown_login_from(d, "2001:db8:1:3::1", 401);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_clientip_ipv4_addresses_have_a_bucket_each(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(LIMIT_3_VIA_PROXY);
    assert_non_null(d);
    for (int i = 0; i < 3; i++)
        expect_unknown_login_from(d, "192.0.2.1", 401);
    expect_unknown_login_from(d, "192.0.2.2", 401);
    expect_unknown_login_from(d, "192.0.2.1", 429); /* its bucket was used up */
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_clientip_ipv6_session_keeps_the_full_address(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"TRUSTED_PROXIES=127.0.0.1", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    /* two addresses of one /64 are still told apart in the session list */
    static const char *const addrs[] = {"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(addrs); i++) {
        char *ip = session_ip_after_login(d, &u, (const char *const[]){addrs[i], NULL});
        assert_string_equal(ip, addrs[i]);
        free(ip);
    }
    assert_int_equal(itest_daemon_stop(d), 0);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

int itest_group_clientip(void)
{
    const struct CMUnitTest tests[] = {
        T(test_clientip_user_agent_cut_inside_a_character_keeps_whole_characters),
        T(test_clientip_user_agent_cut_inside_a_4_byte_character_keeps_whole_ones),
        T(test_clientip_user_agent_invalid_bytes_become_replacement_characters),
        T(test_clientip_user_agent_malformed_sequences_become_replacement_characters),
        T(test_clientip_user_agent_control_characters_become_replacement_characters),
        T(test_clientip_user_agent_replacements_still_fit_in_255_bytes),
        T(test_clientip_user_agent_long_ascii_is_cut_to_255_bytes),
        T(test_clientip_user_agent_of_255_ascii_bytes_is_stored_whole),
        T(test_clientip_forwarded_lines_are_one_list_for_the_session_ip),
        T(test_clientip_forwarded_lines_are_one_list_for_rate_limiting),
        T(test_clientip_forwarded_lines_skip_trusted_hops_across_lines),
        T(test_clientip_ipv6_addresses_in_one_64_share_a_bucket),
        T(test_clientip_ipv6_neighbouring_64_has_its_own_bucket),
        T(test_clientip_ipv4_addresses_have_a_bucket_each),
        T(test_clientip_ipv6_session_keeps_the_full_address),
    };
    /* every test starts its own daemon: no shared one */
    return cmocka_run_group_tests_name("clientip", tests, NULL, NULL);
}
