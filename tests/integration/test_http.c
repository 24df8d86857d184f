/* Contract §0: body limits, strict JSON, content types, CORS, request ids, routing errors and
 * connection reuse. */
#include "harness.h"
#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define D itest_shared

/* POST `body` to `path` with the given Content-Type line (NULL: none at all). */
static void post_raw(const char *path, const char *content_type, const void *body, size_t len,
                     struct itest_resp *r)
{
    char url[256], ct[128];
    snprintf(url, sizeof url, "%s%s", D->url, path);
    if (content_type)
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
    else
        snprintf(ct, sizeof ct, "Content-Type:"); /* tells curl to send no Content-Type */
    const char *headers[] = {ct, "User-Agent: " ITEST_USER_AGENT, NULL};
    itest_request(NULL, "POST", url, headers, body, len, r);
}

static void expect_health(void)
{
    struct itest_resp r;
    itest_get(D, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
}

/* A login body of exactly `size` bytes: {"identifier":"xxx…","password":"Some-password-1"}. */
static char *login_body_of_size(size_t size)
{
    const char *head = "{\"identifier\":\"", *tail = "\",\"password\":\"Some-password-1\"}";
    size_t fixed = strlen(head) + strlen(tail);
    assert_true(size > fixed);
    char *b = malloc(size + 1);
    assert_non_null(b);
    memcpy(b, head, strlen(head));
    memset(b + strlen(head), 'x', size - fixed);
    memcpy(b + size - strlen(tail), tail, strlen(tail) + 1);
    return b;
}

/* ---- body limits -------------------------------------------------------------------------- */

static void test_body_over_64k_is_413_and_server_stays_healthy(void **state)
{
    (void)state;
    char *big = login_body_of_size(70 * 1024);
    struct itest_resp r;
    post_raw("/auth/login", "application/json", big, strlen(big), &r);
    itest_expect_error(&r, 413, "payload_too_large");
    assert_non_null(itest_header(&r, "X-Request-Id"));
    itest_resp_free(&r);
    free(big);
    expect_health();
    /* the limit is 64 KiB: exactly that much is still read and answered normally */
    char *edge = login_body_of_size(64 * 1024);
    post_raw("/auth/login", "application/json", edge, strlen(edge), &r);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    free(edge);
    edge = login_body_of_size(64 * 1024 + 1);
    post_raw("/auth/login", "application/json", edge, strlen(edge), &r);
    itest_expect_error(&r, 413, "payload_too_large");
    itest_resp_free(&r);
    free(edge);
    expect_health();
}

static void test_chunked_body_over_64k_is_413(void **state)
{
    (void)state;
    /* no Content-Length: the limit is found while reading */
    char *big = login_body_of_size(100 * 1024);
    char url[128];
    snprintf(url, sizeof url, "%s/auth/login", D->url);
    const char *headers[] = {"Content-Type: application/json", "Transfer-Encoding: chunked", NULL};
    struct itest_resp r;
    itest_request(NULL, "POST", url, headers, big, strlen(big), &r);
    itest_expect_error(&r, 413, "payload_too_large");
    itest_resp_free(&r);
    free(big);
    expect_health();
}

static void test_announced_10mb_body_is_413_without_reading_it(void **state)
{
    (void)state;
    int fd = itest_raw_connect(D->port);
    assert_true(fd >= 0);
    char req[512];
    snprintf(req, sizeof req,
             "POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
             "Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"
             "{\"identifier\":\"someone\",\"password\":\"",
             D->port);
    int64_t t0 = itest_now_ms();
    assert_true(itest_raw_send_str(fd, req));
    struct itest_raw_resp resp;
    int rc = itest_raw_read_response(fd, 3000, &resp);
    int64_t elapsed = itest_now_ms() - t0;
    if (rc != 0)
        fprintf(stderr, "  no response (%d) after %lld ms\n", rc, (long long)elapsed);
    assert_int_equal(rc, 0);
    assert_int_equal(resp.status, 413);
    assert_true(elapsed < (int64_t)itest_scaled(2000));
    json_t *body = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(body, "code")), "payload_too_large");
    json_decref(body);
    itest_raw_resp_free(&resp);
    close(fd);
    expect_health();
}

/* ---- strict JSON -------------------------------------------------------------------------- */

/* Expands a body template: $E, $U and $P become u's email, username and password; '#' becomes a
 * NUL byte and '~' a 0xff byte. Returns the length. */
static size_t expand(const char *tpl, const struct itest_user *u, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *t = tpl; *t; t++) {
        const char *sub = NULL;
        char c = *t;
        if (c == '$' && (t[1] == 'E' || t[1] == 'U' || t[1] == 'P')) {
            sub = t[1] == 'E' ? u->email : t[1] == 'U' ? u->username : u->password;
            t++;
        }
        size_t n = sub ? strlen(sub) : 1;
        assert_true(o + n < cap);
        if (sub)
            memcpy(out + o, sub, n);
        else
            out[o] = c == '#' ? '\0' : c == '~' ? (char)0xff : c;
        o += n;
    }
    out[o] = '\0';
    return o;
}

/* Sends each malformed variant of a registration for `u` and expects 400 with `code`, then shows
 * nothing was created by registering `u` properly. */
static void expect_rejected_then_clean(const struct itest_user *u, const char *const tpls[],
                                       size_t n, const char *code)
{
    for (size_t i = 0; i < n; i++) {
        char body[512];
        size_t len = expand(tpls[i], u, body, sizeof body);
        struct itest_resp r;
        post_raw("/auth/register", "application/json", body, len, &r);
        if (r.status != 400)
            fprintf(stderr, "  variant %zu: %s\n", i, tpls[i]);
        itest_expect_error(&r, 400, code);
        itest_resp_free(&r);
    }
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", u->email,
                "username", u->username, "password", u->password);
    itest_expect_status(&r, 201);
    itest_resp_free(&r);
}

static void test_malformed_json_is_400_and_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\"",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\",}",
        "{'email':'$E','username':'$U','password':'$P'}",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\"} trailing",
        "email=$E&username=$U&password=$P",
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_json");
}

static void test_nul_byte_in_body_is_400_and_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        /* a raw NUL inside the username: a C-string parser would see a shorter name */
        "{\"email\":\"$E\",\"username\":\"$U#x\",\"password\":\"$P\"}",
        /* a raw NUL after the document */
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\"}#",
        /* an escaped NUL */
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\\u0000tail\"}",
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_json");
}

static void test_invalid_utf8_is_400_and_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P~\"}",
        "{\"email\":\"$E\",\"username\":\"$U~\",\"password\":\"$P\"}",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\\ud800\"}", /* lone surrogate */
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_json");
}

static void test_duplicate_keys_are_400_and_change_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        "{\"email\":\"$E\",\"email\":\"x@y.z\",\"username\":\"$U\",\"password\":\"$P\"}",
        "{\"email\":\"x@y.z\",\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\"}",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\",\"password\":\"other-pass\"}",
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_json");
}

static void test_top_level_non_object_is_400_and_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        "[{\"email\":\"$E\",\"username\":\"$U\",\"password\":\"$P\"}]",
        "\"{\\\"email\\\":\\\"$E\\\",\\\"username\\\":\\\"$U\\\",\\\"password\\\":\\\"$P\\\"}\"",
        "null ",
        "42 ",
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_json");
}

static void test_wrong_json_types_are_400_and_change_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    static const char *const tpls[] = {
        "{\"email\":[\"$E\"],\"username\":\"$U\",\"password\":\"$P\"}",
        "{\"email\":\"$E\",\"username\":{\"name\":\"$U\"},\"password\":\"$P\"}",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":12345678}",
        "{\"email\":\"$E\",\"username\":\"$U\",\"password\":true}",
    };
    expect_rejected_then_clean(&u, tpls, ITEST_ARRAY_LEN(tpls), "invalid_request");
}

static void test_missing_body_on_json_route_is_400(void **state)
{
    (void)state;
    struct itest_resp r;
    post_raw("/auth/login", "application/json", "", 0, &r);
    itest_expect_status(&r, 400);
    assert_non_null(json_string_value(json_object_get(r.json, "code")));
    itest_resp_free(&r);
}

static void test_non_json_content_type_is_415(void **state)
{
    (void)state;
    const char *body = "{\"identifier\":\"someone\",\"password\":\"Some-password-1\"}";
    static const char *const types[] = {"text/plain", "application/x-www-form-urlencoded",
                                        "multipart/form-data; boundary=x", "application/jsonp",
                                        NULL /* no Content-Type at all */};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(types); i++) {
        struct itest_resp r;
        post_raw("/auth/login", types[i], body, strlen(body), &r);
        if (r.status != 415)
            fprintf(stderr, "  Content-Type: %s\n", types[i] ? types[i] : "(none)");
        itest_expect_error(&r, 415, "unsupported_media_type");
        itest_resp_free(&r);
    }
    /* parameters and case are fine */
    struct itest_resp r;
    post_raw("/auth/login", "Application/JSON; charset=utf-8", body, strlen(body), &r);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
}

/* ---- CORS --------------------------------------------------------------------------------- */

static void request_with_origin(const char *method, const char *path, const char *origin,
                                const char *const extra[], struct itest_resp *r)
{
    char url[256], o[160];
    snprintf(url, sizeof url, "%s%s", D->url, path);
    snprintf(o, sizeof o, "Origin: %s", origin);
    const char *headers[8] = {o};
    size_t n = 1;
    for (size_t i = 0; extra && extra[i] && n < 7; i++)
        headers[n++] = extra[i];
    headers[n] = NULL;
    itest_request(NULL, method, url, headers, NULL, 0, r);
}

static void expect_no_credentials(const struct itest_resp *r)
{
    assert_null(itest_header(r, "Access-Control-Allow-Credentials"));
}

static void test_cors_allowed_origin_gets_allow_origin_and_exposed_headers(void **state)
{
    (void)state;
    static const char *const paths[] = {"/health", "/auth/me", "/no/such/route"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(paths); i++) {
        struct itest_resp r;
        request_with_origin("GET", paths[i], ITEST_ORIGIN, NULL, &r);
        assert_true(r.status > 0);
        const char *acao = itest_header(&r, "Access-Control-Allow-Origin");
        assert_non_null(acao);
        assert_string_equal(acao, ITEST_ORIGIN);
        assert_int_equal(itest_header_count(&r, "Access-Control-Allow-Origin"), 1);
        assert_true(itest_header_has_token(&r, "Vary", "Origin"));
        assert_true(itest_header_has_token(&r, "Access-Control-Expose-Headers", "Retry-After"));
        assert_true(itest_header_has_token(&r, "Access-Control-Expose-Headers", "X-Request-Id"));
        expect_no_credentials(&r);
        itest_resp_free(&r);
    }
}

static void test_cors_denied_origin_gets_no_allow_origin(void **state)
{
    (void)state;
    static const char *const origins[] = {"https://evil.example", "http://localhost:5174",
                                          "http://localhost:5173.evil.example", "null",
                                          "HTTP://LOCALHOST:5173"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(origins); i++) {
        struct itest_resp r;
        request_with_origin("GET", "/health", origins[i], NULL, &r);
        itest_expect_status(&r, 200);
        assert_null(itest_header(&r, "Access-Control-Allow-Origin"));
        expect_no_credentials(&r);
        itest_resp_free(&r);
        const char *pre[] = {"Access-Control-Request-Method: POST", NULL};
        request_with_origin("OPTIONS", "/auth/login", origins[i], pre, &r);
        assert_true(r.status > 0);
        assert_null(itest_header(&r, "Access-Control-Allow-Origin"));
        assert_null(itest_header(&r, "Access-Control-Allow-Methods"));
        expect_no_credentials(&r);
        itest_resp_free(&r);
    }
}

static void test_cors_preflight_allows_methods_and_headers(void **state)
{
    (void)state;
    const char *pre[] = {"Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: authorization, content-type", NULL};
    struct itest_resp r;
    request_with_origin("OPTIONS", "/auth/login", ITEST_ORIGIN, pre, &r);
    itest_expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    assert_string_equal(itest_header(&r, "Access-Control-Allow-Origin"), ITEST_ORIGIN);
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Methods", "POST"));
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Headers", "Authorization"));
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Headers", "Content-Type"));
    const char *max_age = itest_header(&r, "Access-Control-Max-Age");
    assert_non_null(max_age);
    assert_true(strtol(max_age, NULL, 10) > 0);
    assert_true(itest_header_has_token(&r, "Vary", "Origin"));
    assert_non_null(itest_header(&r, "X-Request-Id"));
    expect_no_credentials(&r);
    itest_resp_free(&r);

    const char *pre2[] = {"Access-Control-Request-Method: PATCH", NULL};
    request_with_origin("OPTIONS", "/auth/me", ITEST_ORIGIN, pre2, &r);
    itest_expect_status(&r, 204);
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Methods", "GET"));
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Methods", "PATCH"));
    assert_true(itest_header_has_token(&r, "Access-Control-Allow-Methods", "DELETE"));
    expect_no_credentials(&r);
    itest_resp_free(&r);
}

/* ---- request ids -------------------------------------------------------------------------- */

static void test_request_id_on_every_response(void **state)
{
    (void)state;
    struct itest_resp r;
    char *big = login_body_of_size(70 * 1024);
    struct {
        const char *method, *path, *ct, *body;
        size_t len;
        long status;
    } cases[] = {
        {"GET", "/health", NULL, NULL, 0, 200},
        {"GET", "/nope", NULL, NULL, 0, 404},
        {"DELETE", "/health", NULL, NULL, 0, 405},
        {"GET", "/auth/me", NULL, NULL, 0, 401},
        {"POST", "/auth/login", "Content-Type: application/json", "{", 1, 400},
        {"POST", "/auth/login", "Content-Type: text/plain", "x", 1, 415},
        {"POST", "/auth/login", "Content-Type: application/json", big, strlen(big), 413},
        {"OPTIONS", "/auth/login", "Origin: " ITEST_ORIGIN, NULL, 0, 204},
    };
    char seen[ITEST_ARRAY_LEN(cases)][80];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cases); i++) {
        char url[256];
        snprintf(url, sizeof url, "%s%s", D->url, cases[i].path);
        const char *headers[] = {cases[i].ct, NULL};
        itest_request(NULL, cases[i].method, url, cases[i].ct ? headers : NULL, cases[i].body,
                      cases[i].len, &r);
        itest_expect_status(&r, cases[i].status);
        const char *rid = itest_header(&r, "X-Request-Id");
        if (!rid)
            fprintf(stderr, "  %s %s: no X-Request-Id\n", cases[i].method, cases[i].path);
        assert_non_null(rid);
        assert_true(strlen(rid) > 0 && strlen(rid) < sizeof seen[i]);
        snprintf(seen[i], sizeof seen[i], "%s", rid);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]); /* generated ids are unique */
        itest_resp_free(&r);
    }
    free(big);
}

static void test_request_id_sane_is_echoed(void **state)
{
    (void)state;
    static const char *const ids[] = {"itest-abc_123.XYZ", "0f8fad5b-d9cb-469f-a165-70867728950e",
                                      "a"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(ids); i++) {
        char url[128], h[128];
        snprintf(url, sizeof url, "%s/auth/me", D->url);
        snprintf(h, sizeof h, "X-Request-Id: %s", ids[i]);
        const char *headers[] = {h, NULL};
        struct itest_resp r;
        itest_request(NULL, "GET", url, headers, NULL, 0, &r);
        itest_expect_status(&r, 401);
        assert_string_equal(itest_header(&r, "X-Request-Id"), ids[i]);
        itest_resp_free(&r);
    }
}

static void test_request_id_insane_is_replaced(void **state)
{
    (void)state;
    char too_long[200];
    memset(too_long, 'a', 150);
    too_long[150] = '\0';
    static const char *const others[] = {"has space", "semi;colon", "quote\"d", "<script>",
                                         "tab\there"};
    const char *ids[ITEST_ARRAY_LEN(others) + 1];
    ids[0] = too_long;
    for (size_t i = 0; i < ITEST_ARRAY_LEN(others); i++)
        ids[i + 1] = others[i];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(ids); i++) {
        char url[128], h[256];
        snprintf(url, sizeof url, "%s/health", D->url);
        snprintf(h, sizeof h, "X-Request-Id: %s", ids[i]);
        const char *headers[] = {h, NULL};
        struct itest_resp r;
        itest_request(NULL, "GET", url, headers, NULL, 0, &r);
        itest_expect_status(&r, 200);
        const char *rid = itest_header(&r, "X-Request-Id");
        assert_non_null(rid);
        assert_true(strlen(rid) > 0 && strlen(rid) <= 64);
        assert_string_not_equal(rid, ids[i]);
        for (const char *p = rid; *p; p++)
            assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-_.",
                                   *p));
        itest_resp_free(&r);
    }
}

/* ---- routing ------------------------------------------------------------------------------ */

static void test_unknown_route_is_404_json(void **state)
{
    (void)state;
    static const char *const paths[] = {"/nope",    "/auth",      "/auth/",
                                        "/health/", "/auth/me/x", "/AUTH/ME"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(paths); i++) {
        struct itest_resp r;
        itest_get(D, paths[i], &r);
        if (r.status != 404)
            fprintf(stderr, "  GET %s\n", paths[i]);
        itest_expect_error(&r, 404, "not_found");
        itest_resp_free(&r);
    }
}

static void test_wrong_method_is_405_with_allow(void **state)
{
    (void)state;
    struct {
        const char *method, *path;
        const char *const allow[4];
    } cases[] = {
        {"DELETE", "/health", {"GET", NULL}},
        {"GET", "/auth/login", {"POST", NULL}},
        {"PUT", "/auth/me", {"GET", "PATCH", "DELETE", NULL}},
        {"POST", "/auth/sessions", {"GET", "DELETE", NULL}},
    };
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cases); i++) {
        char url[128];
        snprintf(url, sizeof url, "%s%s", D->url, cases[i].path);
        struct itest_resp r;
        itest_request(NULL, cases[i].method, url, NULL, NULL, 0, &r);
        itest_expect_error(&r, 405, "method_not_allowed");
        assert_non_null(itest_header(&r, "Allow"));
        for (size_t k = 0; cases[i].allow[k]; k++) {
            if (!itest_header_has_token(&r, "Allow", cases[i].allow[k]))
                fprintf(stderr, "  %s %s: Allow: %s lacks %s\n", cases[i].method, cases[i].path,
                        itest_header(&r, "Allow"), cases[i].allow[k]);
            assert_true(itest_header_has_token(&r, "Allow", cases[i].allow[k]));
        }
        assert_false(itest_header_has_token(&r, "Allow", cases[i].method));
        itest_resp_free(&r);
    }
}

/* ---- connections -------------------------------------------------------------------------- */

static void test_keepalive_reuses_connection(void **state)
{
    (void)state;
    CURL *h = curl_easy_init();
    char health[128], login[128];
    snprintf(health, sizeof health, "%s/health", D->url);
    snprintf(login, sizeof login, "%s/auth/login", D->url);
    const char *json[] = {"Content-Type: application/json", NULL};
    const char *body = "{\"identifier\":\"nobody\",\"password\":\"Some-password-1\"}";
    struct itest_resp r;
    itest_request(h, "GET", health, NULL, NULL, 0, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(r.num_connects, 1);
    assert_false(itest_header_has_token(&r, "Connection", "close"));
    itest_resp_free(&r);
    itest_request(h, "GET", health, NULL, NULL, 0, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(r.num_connects, 0); /* no new connection */
    assert_false(itest_header_has_token(&r, "Connection", "close"));
    itest_resp_free(&r);
    /* a route answered from the worker pool (suspend/resume) keeps the connection too */
    for (int i = 0; i < 2; i++) {
        itest_request(h, "POST", login, json, body, strlen(body), &r);
        itest_expect_error(&r, 401, "invalid_credentials");
        assert_int_equal(r.num_connects, 0);
        assert_false(itest_header_has_token(&r, "Connection", "close"));
        itest_resp_free(&r);
    }
    /* and so do error answers */
    itest_request(h, "GET", login, NULL, NULL, 0, &r);
    itest_expect_status(&r, 405);
    assert_int_equal(r.num_connects, 0);
    itest_resp_free(&r);
    itest_request(h, "GET", health, NULL, NULL, 0, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(r.num_connects, 0);
    itest_resp_free(&r);
    curl_easy_cleanup(h);
}

static void test_keepalive_two_requests_on_one_socket(void **state)
{
    (void)state;
    int fd = itest_raw_connect(D->port);
    assert_true(fd >= 0);
    char req[512];
    const char *body = "{\"identifier\":\"nobody\",\"password\":\"Some-password-1\"}";
    const int expect[] = {200, 401, 200};
    for (int i = 0; i < 3; i++) {
        if (i == 1)
            snprintf(req, sizeof req,
                     "POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
        else
            snprintf(req, sizeof req, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert_true(itest_raw_send_str(fd, req));
        struct itest_raw_resp resp;
        int rc = itest_raw_read_response(fd, 5000, &resp);
        assert_int_equal(rc, 0);
        assert_int_equal(resp.status, expect[i]);
        const char *conn = itest_raw_header(&resp, "Connection");
        assert_true(!conn || strcasecmp(conn, "close") != 0);
        itest_raw_resp_free(&resp);
    }
    close(fd);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

/* ---- connection limits ---------------------------------------------------------------------- */

static void test_idle_connection_is_closed_after_the_timeout(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"HTTP_CONNECTION_TIMEOUT=1", NULL});
    assert_non_null(d);
    /* half a request line and then silence: the slowloris shape */
    int fd = itest_raw_connect(d->port);
    assert_true(fd >= 0);
    assert_true(itest_raw_send_str(fd, "GET /hea"));
    int64_t t0 = itest_now_ms();
    assert_true(itest_raw_wait_closed(fd, itest_scaled(5000)));
    assert_true(itest_now_ms() - t0 >= 900);
    close(fd);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* A connection that has answered one request. Retried briefly: the harness's own health check
 * may still hold a slot for a moment after its client closed. */
static int open_served(unsigned port)
{
    for (int attempt = 0; attempt < 40; attempt++) {
        int fd = itest_raw_connect(port);
        if (fd >= 0 && itest_raw_send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")) {
            struct itest_raw_resp rr;
            int rc = itest_raw_read_response(fd, itest_scaled(5000), &rr);
            bool ok = rc == 0 && rr.status == 200;
            if (rc == 0)
                itest_raw_resp_free(&rr);
            if (ok)
                return fd;
        }
        if (fd >= 0)
            close(fd);
        itest_sleep_ms(50);
    }
    return -1;
}

static void test_connections_per_address_are_capped(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"HTTP_MAX_CONNECTIONS_PER_IP=3", NULL});
    assert_non_null(d);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = open_served(d->port);
        assert_true(fds[i] >= 0);
    }
    /* a fourth connection from the same address is dropped without an answer */
    int extra = itest_raw_connect(d->port);
    if (extra >= 0) {
        itest_raw_send_str(extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_true(itest_raw_wait_closed(extra, itest_scaled(5000)));
        close(extra);
    }
    /* closing one makes room again */
    close(fds[0]);
    int64_t until = itest_now_ms() + itest_scaled(5000);
    long status = 0;
    while (status != 200 && itest_now_ms() < until) {
        struct itest_resp r;
        itest_get(d, "/health", &r);
        status = r.status;
        itest_resp_free(&r);
        if (status != 200)
            itest_sleep_ms(50);
    }
    assert_int_equal(status, 200);
    close(fds[1]);
    close(fds[2]);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- reads share round trips (inklet/batched.h) --------------------------------------------- */

#define READERS 24
#define READS_EACH 30

/* Reader i owns i % 3 displays, nicknamed "<i>.<k>", k = 0 the most recently bound. */
#define DEVICES_OF(i) ((i) % 3)

struct reader {
    const struct itest_user *u;
    unsigned index;
    pthread_barrier_t *go;
    char url_me[128], url_devices[128];
    /* what the thread saw; checked by the test */
    unsigned me_ok, me_failed, devices_ok, devices_failed, wrong;
};

/* r's own list, newest first */
static bool own_devices(const struct reader *r, const json_t *list)
{
    if (!json_is_array(list) || json_array_size(list) != DEVICES_OF(r->index))
        return false;
    for (unsigned k = 0; k < json_array_size(list); k++) {
        char want[32];
        snprintf(want, sizeof want, "%u.%u", r->index, k);
        const char *nick = json_string_value(json_object_get(json_array_get(list, k), "nickname"));
        if (!nick || strcmp(nick, want) != 0)
            return false;
    }
    return true;
}

/* No cmocka assertions in a thread: it records, the main thread checks. */
static void *reader_main(void *arg)
{
    struct reader *r = arg;
    char bearer[1100];
    snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", r->u->s.access);
    const char *headers[] = {bearer, "User-Agent: " ITEST_USER_AGENT, NULL};
    CURL *h = curl_easy_init();
    pthread_barrier_wait(r->go);
    for (unsigned i = 0; i < READS_EACH; i++) {
        bool me = i % 3 != 2;
        struct itest_resp resp;
        itest_request(h, "GET", me ? r->url_me : r->url_devices, headers, NULL, 0, &resp);
        const char *id = json_string_value(json_object_get(resp.json, "id"));
        if (me && resp.status == 200 && id && strcmp(id, r->u->id) == 0)
            r->me_ok++;
        else if (me && resp.status == 500)
            r->me_failed++;
        else if (!me && resp.status == 200 && own_devices(r, resp.json))
            r->devices_ok++;
        else if (!me && resp.status == 500)
            r->devices_failed++;
        else
            r->wrong++;
        itest_resp_free(&resp);
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* Many users read at once, so the request lane runs their statements in shared pipelines, and
 * the reads of one route in one statement for all of them: each answer is still its own user's
 * (their own displays, in their order), and a row failing (a subscription, or a display, whose
 * time PostgreSQL cannot turn into epoch seconds) fails only its own user's request; the
 * statements the server skipped after it, or shared with it, are run again. */
static void test_concurrent_reads_share_round_trips_and_keep_their_own_answers(void **state)
{
    (void)state;
    static struct itest_user users[READERS];
    for (unsigned i = 0; i < READERS; i++) {
        memset(&users[i], 0, sizeof users[i]);
        itest_register(D, &users[i]);
    }
    const struct itest_user *poisoned = &users[READERS / 2];
    itest_db_exec1("INSERT INTO subscriptions (subscription_id, user_id, customer_id, status,"
                   " stripe_status, current_period_end, started_at, state_at)"
                   " VALUES ('sub_' || $1, $1::uuid, 'cus_' || $1, 'active', 'active', 'infinity',"
                   " now(), 0)",
                   poisoned->id);
    for (unsigned i = 0; i < READERS; i++) {
        for (unsigned k = 0; k < DEVICES_OF(i); k++) {
            char nick[32];
            snprintf(nick, sizeof nick, "%u.%u", i, k);
            /* $1 is "<owner id> <k> <nickname>" */
            char param[128];
            snprintf(param, sizeof param, "%s %u %s", users[i].id, k, nick);
            itest_db_exec1(
                "INSERT INTO devices (id, hw_id, thing_name, owner_id, bound_at, nickname)"
                " SELECT gen_random_uuid(), gen_random_uuid(),"
                " 'read-' || gen_random_uuid(), split_part($1, ' ', 1)::uuid,"
                " now() - interval '1 minute' * split_part($1, ' ', 2)::int,"
                " split_part($1, ' ', 3)",
                param);
        }
    }
    const struct itest_user *poisoned_devices = &users[5]; /* owns two good ones too */
    itest_db_exec1("INSERT INTO devices (id, hw_id, thing_name, owner_id, bound_at)"
                   " VALUES (gen_random_uuid(), gen_random_uuid(), 'read-' || gen_random_uuid(),"
                   " $1::uuid, 'infinity')",
                   poisoned_devices->id);
    unsigned long long batches0 = itest_metric(D, "inklet_db_batches_total"),
                       statements0 = itest_metric(D, "inklet_db_batched_statements_total"),
                       shared0 = itest_metric(D, "inklet_db_shared_statements_total"),
                       sharing0 = itest_metric(D, "inklet_db_shared_statement_requests_total");

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, READERS);
    static struct reader readers[READERS];
    pthread_t threads[READERS];
    for (unsigned i = 0; i < READERS; i++) {
        readers[i] = (struct reader){.u = &users[i], .index = i, .go = &go};
        snprintf(readers[i].url_me, sizeof readers[i].url_me, "%s/auth/me", D->url);
        snprintf(readers[i].url_devices, sizeof readers[i].url_devices, "%s/api/devices", D->url);
        assert_int_equal(pthread_create(&threads[i], NULL, reader_main, &readers[i]), 0);
    }
    for (unsigned i = 0; i < READERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&go);

    unsigned me_each = READS_EACH - READS_EACH / 3, devices_each = READS_EACH / 3;
    for (unsigned i = 0; i < READERS; i++) {
        const struct reader *r = &readers[i];
        if (r->wrong)
            fprintf(stderr, "  reader %u: %u wrong answers, %u of %u device lists\n", i, r->wrong,
                    r->devices_ok, devices_each);
        assert_int_equal(r->wrong, 0);
        assert_int_equal(r->devices_ok, r->u == poisoned_devices ? 0 : devices_each);
        assert_int_equal(r->devices_failed, r->u == poisoned_devices ? devices_each : 0);
        assert_int_equal(r->me_ok, r->u == poisoned ? 0 : me_each);
        assert_int_equal(r->me_failed, r->u == poisoned ? me_each : 0);
    }
    unsigned long long batches = itest_metric(D, "inklet_db_batches_total") - batches0,
                       statements =
                           itest_metric(D, "inklet_db_batched_statements_total") - statements0;
    unsigned long long shared = itest_metric(D, "inklet_db_shared_statements_total") - shared0,
                       sharing =
                           itest_metric(D, "inklet_db_shared_statement_requests_total") - sharing0;
    fprintf(stderr,
            "  %llu statements in %llu shared round trips; %llu reads in %llu shared"
            " statements\n",
            statements, batches, sharing, shared);
    assert_true(shared > 0);
    assert_true(sharing >= 2 * shared); /* every shared statement answers two or more */
    assert_true(sharing <= (unsigned long long)READERS * READS_EACH);
    assert_true(batches > 0);
    assert_true(statements >= 2 * batches); /* every batch holds two or more */
    assert_true(statements <= (unsigned long long)READERS * READS_EACH);
}

int itest_group_http(void)
{
    const struct CMUnitTest tests[] = {
        T(test_body_over_64k_is_413_and_server_stays_healthy),
        T(test_chunked_body_over_64k_is_413),
        T(test_announced_10mb_body_is_413_without_reading_it),
        T(test_malformed_json_is_400_and_changes_nothing),
        T(test_nul_byte_in_body_is_400_and_changes_nothing),
        T(test_invalid_utf8_is_400_and_changes_nothing),
        T(test_duplicate_keys_are_400_and_change_nothing),
        T(test_top_level_non_object_is_400_and_changes_nothing),
        T(test_wrong_json_types_are_400_and_change_nothing),
        T(test_missing_body_on_json_route_is_400),
        T(test_non_json_content_type_is_415),
        T(test_cors_allowed_origin_gets_allow_origin_and_exposed_headers),
        T(test_cors_denied_origin_gets_no_allow_origin),
        T(test_cors_preflight_allows_methods_and_headers),
        T(test_request_id_on_every_response),
        T(test_request_id_sane_is_echoed),
        T(test_request_id_insane_is_replaced),
        T(test_unknown_route_is_404_json),
        T(test_wrong_method_is_405_with_allow),
        T(test_keepalive_reuses_connection),
        T(test_keepalive_two_requests_on_one_socket),
        T(test_idle_connection_is_closed_after_the_timeout),
        T(test_connections_per_address_are_capped),
        T(test_concurrent_reads_share_round_trips_and_keep_their_own_answers),
    };
    return cmocka_run_group_tests_name("http", tests, itest_group_setup, itest_group_teardown);
}
