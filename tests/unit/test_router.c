/* router: pattern matching, path parameters, 404 vs 405 + Allow, and the real route table. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum ink_status h_a(struct ink_req *req)
{
    (void)req;
    return INK_OK;
}
static enum ink_status h_b(struct ink_req *req)
{
    (void)req;
    return INK_OK;
}
static enum ink_status h_c(struct ink_req *req)
{
    (void)req;
    return INK_OK;
}

static const struct ink_route TABLE[] = {
    {"GET", "/health", h_a, 0, INK_RATE_NONE, NULL},
    {"POST", "/auth/login", h_b, INK_ROUTE_JSON_REQ, INK_RATE_LOGIN, NULL},
    {"GET", "/auth/sessions", h_a, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/auth/sessions", h_b, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/auth/sessions/{id}", h_c, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"GET", "/api/devices/{id}", h_a, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/api/devices/{id}", h_b, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"GET", "/api/devices/{id}/commands", h_a, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"POST", "/api/devices/{id}/commands", h_c, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    /* same method+path twice (an alias) must still list the method once in Allow */
    {"POST", "/api/devices/{id}/unbind", h_a, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"POST", "/api/devices/{id}/unbind", h_b, INK_ROUTE_AUTH, INK_RATE_NONE, NULL},
    {"GET", "/x/{a}/y/{b}", h_a, 0, INK_RATE_NONE, NULL},
};
#define NTABLE (sizeof TABLE / sizeof *TABLE)

struct match {
    enum ink_status st;
    const struct ink_route *route;
    const char *params[INK_MAX_PATH_PARAMS];
    char allow[128];
    char *scratch;
};

static void do_match(struct match *m, const struct ink_route *table, size_t n, const char *method,
                     const char *path)
{
    free(m->scratch);
    memset(m, 0, sizeof *m);
    m->scratch = malloc(strlen(path) + 1);
    assert_non_null(m->scratch);
    m->st = ink_route_match(table, n, method, path, m->scratch, &m->route, m->params, m->allow,
                            sizeof m->allow);
}

static void match_free(struct match *m)
{
    free(m->scratch);
    m->scratch = NULL;
}

static void exact_path_and_method_match(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/health");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[0]);
    assert_null(m.params[0]);

    do_match(&m, TABLE, NTABLE, "POST", "/auth/login");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[1]);
    assert_ptr_equal(m.route->handler, h_b);
    match_free(&m);
}

static void method_selects_between_routes_with_the_same_path(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/auth/sessions");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[2]);
    do_match(&m, TABLE, NTABLE, "DELETE", "/auth/sessions");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[3]);
    match_free(&m);
}

static void head_is_served_by_the_get_route(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "HEAD", "/health");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[0]);
    /* but not by a route of another method */
    do_match(&m, TABLE, NTABLE, "HEAD", "/auth/login");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "POST");
    match_free(&m);
}

static void path_parameter_is_captured(void **state)
{
    (void)state;
    struct match m = {0};
    const char *id = "0190f3a2-7b1c-7d2e-8f00-123456789abc";
    char path[128], orig[128];
    snprintf(path, sizeof path, "/api/devices/%s/commands", id);
    memcpy(orig, path, sizeof path);
    do_match(&m, TABLE, NTABLE, "POST", path);
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[8]);
    assert_non_null(m.params[0]);
    assert_string_equal(m.params[0], id);
    assert_null(m.params[1]);
    /* parameters point into scratch, the caller's copy; the path itself is untouched */
    assert_true(m.params[0] >= m.scratch && m.params[0] < m.scratch + strlen(path));
    assert_string_equal(path, orig);
    match_free(&m);
}

static void parameter_at_end_of_pattern_is_captured(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "DELETE", "/auth/sessions/abc");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[4]);
    assert_string_equal(m.params[0], "abc");
    match_free(&m);
}

static void several_parameters_are_captured_in_order(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/x/first/y/second");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, &TABLE[11]);
    assert_string_equal(m.params[0], "first");
    assert_string_equal(m.params[1], "second");
    assert_null(m.params[2]);
    match_free(&m);
}

static void trailing_slash_does_not_match(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/health/");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/api/devices/abc/");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "POST", "/api/devices/abc/commands/");
    assert_int_equal(m.st, INK_NOT_FOUND);
    match_free(&m);
}

static void extra_segment_does_not_match(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/health/extra");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "DELETE", "/auth/sessions/abc/def");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/api/devices/abc/commands/more");
    assert_int_equal(m.st, INK_NOT_FOUND);
    match_free(&m);
}

static void prefix_of_a_pattern_does_not_match(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/heal");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/healthz");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/");
    assert_int_equal(m.st, INK_NOT_FOUND);
    match_free(&m);
}

static void empty_parameter_segment_does_not_match(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "DELETE", "/auth/sessions/");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/api/devices//commands");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "GET", "/x//y/b");
    assert_int_equal(m.st, INK_NOT_FOUND);
    match_free(&m);
}

static void unknown_path_is_not_found_with_empty_allow(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "GET", "/nope");
    assert_int_equal(m.st, INK_NOT_FOUND);
    assert_string_equal(m.allow, "");
    assert_null(m.route);
    match_free(&m);
}

static void wrong_method_is_405_with_allow_listing_each_method_once(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "POST", "/api/devices/abc");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "GET, DELETE");
    assert_null(m.route);

    do_match(&m, TABLE, NTABLE, "PUT", "/auth/sessions");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "GET, DELETE");

    do_match(&m, TABLE, NTABLE, "GET", "/auth/login");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "POST");

    do_match(&m, TABLE, NTABLE, "GET", "/api/devices/abc/unbind");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "POST"); /* two POST rows, listed once */
    match_free(&m);
}

static void method_comparison_is_exact(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "get", "/health");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "GET");
    match_free(&m);
}

static void decoded_slash_in_parameter_does_not_match_one_segment(void **state)
{
    (void)state;
    /* MHD hands over "/api/devices/a%2Fb/commands" already decoded as ".../a/b/commands" */
    struct match m = {0};
    do_match(&m, TABLE, NTABLE, "POST", "/api/devices/a/b/commands");
    assert_int_equal(m.st, INK_NOT_FOUND);
    do_match(&m, TABLE, NTABLE, "DELETE", "/auth/sessions/../../health");
    assert_int_equal(m.st, INK_NOT_FOUND);
    match_free(&m);
}

static void allow_buffer_too_small_is_not_overrun(void **state)
{
    (void)state;
    char allow[8];
    memset(allow, 'Z', sizeof allow);
    const struct ink_route *route = NULL;
    const char *params[INK_MAX_PATH_PARAMS];
    char scratch[32];
    enum ink_status st = ink_route_match(TABLE, NTABLE, "PUT", "/auth/sessions", scratch, &route,
                                         params, allow, sizeof allow);
    assert_int_equal(st, INK_METHOD);
    assert_non_null(memchr(allow, '\0', sizeof allow));
    assert_true(strlen(allow) < sizeof allow);
}

static const struct ink_route *find_real(const char *method, const char *pattern)
{
    for (size_t i = 0; i < ink_routes_count; i++)
        if (strcmp(ink_routes[i].method, method) == 0 &&
            strcmp(ink_routes[i].pattern, pattern) == 0)
            return &ink_routes[i];
    return NULL;
}

static void real_table_has_health_login_and_session_revoke(void **state)
{
    (void)state;
    const struct ink_route *health = find_real("GET", "/health");
    const struct ink_route *login = find_real("POST", "/auth/login");
    const struct ink_route *revoke = find_real("DELETE", "/auth/sessions/{id}");
    assert_non_null(health);
    assert_non_null(login);
    assert_non_null(revoke);
    assert_non_null(health->handler);
    assert_non_null(login->handler);
    assert_non_null(revoke->handler);
    assert_false(health->flags & INK_ROUTE_AUTH);
    assert_false(login->flags & INK_ROUTE_AUTH);
    assert_int_equal(login->rate, INK_RATE_LOGIN);
    assert_true(revoke->flags & INK_ROUTE_AUTH);
}

static void real_table_routes_requests_to_those_entries(void **state)
{
    (void)state;
    struct match m = {0};
    do_match(&m, ink_routes, ink_routes_count, "GET", "/health");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, find_real("GET", "/health"));

    do_match(&m, ink_routes, ink_routes_count, "POST", "/auth/login");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, find_real("POST", "/auth/login"));

    do_match(&m, ink_routes, ink_routes_count, "DELETE",
             "/auth/sessions/0190f3a2-7b1c-7d2e-8f00-123456789abc");
    assert_int_equal(m.st, INK_OK);
    assert_ptr_equal(m.route, find_real("DELETE", "/auth/sessions/{id}"));
    assert_string_equal(m.params[0], "0190f3a2-7b1c-7d2e-8f00-123456789abc");

    do_match(&m, ink_routes, ink_routes_count, "GET", "/auth/login");
    assert_int_equal(m.st, INK_METHOD);
    assert_string_equal(m.allow, "POST");
    match_free(&m);
}

static void real_table_has_no_duplicate_method_pattern_pairs(void **state)
{
    (void)state;
    assert_true(ink_routes_count > 0);
    for (size_t i = 0; i < ink_routes_count; i++) {
        assert_non_null(ink_routes[i].handler);
        assert_int_equal(ink_routes[i].pattern[0], '/');
        for (size_t j = i + 1; j < ink_routes_count; j++)
            assert_false(strcmp(ink_routes[i].method, ink_routes[j].method) == 0 &&
                         strcmp(ink_routes[i].pattern, ink_routes[j].pattern) == 0);
    }
}

/* An inline route runs on an HTTP thread, which must never wait: no authentication (it may
 * query the session), no hashing lane; and only the operational routes are inline. */
static void real_table_inline_routes_never_wait(void **state)
{
    (void)state;
    static const char *const inline_ok[] = {"/health", "/health/ready", "/metrics",
                                            "/openapi.json"};
    for (size_t i = 0; i < ink_routes_count; i++) {
        const struct ink_route *r = &ink_routes[i];
        bool is_ops = false;
        for (size_t k = 0; k < sizeof inline_ok / sizeof *inline_ok; k++)
            is_ops |= strcmp(r->pattern, inline_ok[k]) == 0;
        if (!(r->flags & INK_ROUTE_INLINE)) {
            if (is_ops)
                fail_msg("%s %s waits for a worker but needs nothing slow", r->method, r->pattern);
            continue;
        }
        if (!is_ops)
            fail_msg("%s %s runs on the HTTP thread", r->method, r->pattern);
        assert_false(r->flags & (INK_ROUTE_AUTH | INK_ROUTE_SLOW));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_path_and_method_match),
        cmocka_unit_test(method_selects_between_routes_with_the_same_path),
        cmocka_unit_test(head_is_served_by_the_get_route),
        cmocka_unit_test(path_parameter_is_captured),
        cmocka_unit_test(parameter_at_end_of_pattern_is_captured),
        cmocka_unit_test(several_parameters_are_captured_in_order),
        cmocka_unit_test(trailing_slash_does_not_match),
        cmocka_unit_test(extra_segment_does_not_match),
        cmocka_unit_test(prefix_of_a_pattern_does_not_match),
        cmocka_unit_test(empty_parameter_segment_does_not_match),
        cmocka_unit_test(unknown_path_is_not_found_with_empty_allow),
        cmocka_unit_test(wrong_method_is_405_with_allow_listing_each_method_once),
        cmocka_unit_test(method_comparison_is_exact),
        cmocka_unit_test(decoded_slash_in_parameter_does_not_match_one_segment),
        cmocka_unit_test(allow_buffer_too_small_is_not_overrun),
        cmocka_unit_test(real_table_has_health_login_and_session_revoke),
        cmocka_unit_test(real_table_routes_requests_to_those_entries),
        cmocka_unit_test(real_table_has_no_duplicate_method_pattern_pairs),
        cmocka_unit_test(real_table_inline_routes_never_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
