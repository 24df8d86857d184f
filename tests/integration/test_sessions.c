/* Contract §2: refresh rotation and reuse detection, logout, session management, and access
 * token verification on every Bearer route. */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D itest_shared
#define RACERS 16

static const char *const SESSION_KEYS[] = {"id",           "userAgent", "ip",      "createdAt",
                                           "lastActiveAt", "expiresAt", "current", NULL};

/* A syntactically valid UUID v7 that names nothing. */
static const char *const NO_SUCH_ID = "01900000-0000-7000-8000-000000000000";

static void refresh_expect(const char *refresh, long status, const char *code,
                           struct itest_session *out)
{
    itest_refresh_expect(D, refresh, status, code, out);
}

/* ---- refresh ------------------------------------------------------------------------------ */

static void test_refresh_returns_new_pair_in_same_session(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session next;
    refresh_expect(u.s.refresh, 200, NULL, &next);
    assert_string_not_equal(next.refresh, u.s.refresh);
    assert_string_equal(next.sid, u.s.sid); /* same session */
    assert_int_equal(itest_me_status(D, next.access), 200);
    /* and the new refresh token rotates again */
    struct itest_session third;
    refresh_expect(next.refresh, 200, NULL, &third);
    assert_string_equal(third.sid, u.s.sid);
    assert_int_equal(itest_me_status(D, third.access), 200);
}

/* Past REFRESH_REUSE_GRACE, presenting a rotated token is theft: every session goes. */
static void test_refresh_reuse_after_the_grace_revokes_every_session(void **state)
{
    (void)state;
    struct itest_daemon *g =
        itest_daemon_start((const char *const[]){"REFRESH_REUSE_GRACE=1", NULL});
    assert_non_null(g);
    struct itest_user u = {0};
    itest_register(g, &u);
    struct itest_session other, rotated;
    itest_login(g, &u, &other);
    itest_refresh_expect(g, u.s.refresh, 200, NULL, &rotated);
    assert_int_equal(itest_me_status(g, rotated.access), 200);
    assert_int_equal(itest_me_status(g, other.access), 200);

    itest_sleep_ms(1500);
    itest_refresh_expect(g, u.s.refresh, 401, "refresh_token_reused", NULL);
    int64_t t0 = itest_now_ms();
    itest_expect_token_dies(g, rotated.access, t0, 5000);
    itest_expect_token_dies(g, other.access, t0, 5000);
    itest_expect_token_dies(g, u.s.access, t0, 5000);
    /* the refresh tokens of every session are dead too */
    itest_refresh_expect(g, rotated.refresh, 401, NULL, NULL);
    itest_refresh_expect(g, other.refresh, 401, NULL, NULL);
    /* the account itself still works */
    struct itest_session again;
    itest_login(g, &u, &again);
    assert_int_equal(itest_me_status(g, again.access), 200);
    assert_int_equal(itest_daemon_stop(g), 0);
}

/* Within the grace (default 10 s) a rotated token is a lost race: 401 refresh_token_rotated
 * and nothing is revoked, the rotation's result keeps working. */
static void test_refresh_reuse_within_the_grace_is_rotated_and_revokes_nothing(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session other, rotated, next;
    itest_login(D, &u, &other);
    refresh_expect(u.s.refresh, 200, NULL, &rotated);
    refresh_expect(u.s.refresh, 401, "refresh_token_rotated", NULL);
    refresh_expect(u.s.refresh, 401, "refresh_token_rotated", NULL);
    itest_sleep_ms(itest_window(2500)); /* longer than the liveness cache */
    assert_int_equal(itest_me_status(D, rotated.access), 200);
    assert_int_equal(itest_me_status(D, other.access), 200);
    refresh_expect(rotated.refresh, 200, NULL, &next);
    refresh_expect(other.refresh, 200, NULL, NULL);
    assert_int_equal(itest_me_status(D, next.access), 200);
}

static void test_refresh_unknown_token_is_401_invalid_refresh_token(void **state)
{
    (void)state;
    /* well-formed (43 base64url chars) but never issued */
    refresh_expect("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401, "invalid_refresh_token",
                   NULL);
    refresh_expect("not-a-refresh-token", 401, "invalid_refresh_token", NULL);
    refresh_expect("", 401, "invalid_refresh_token", NULL);
    struct itest_resp r;
    itest_call(D, "POST", "/auth/refresh", NULL, "{}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/refresh", NULL, "{\"refreshToken\":7}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
}

/* Fires RACERS refreshes of one token, alternating between the given daemons, released together
 * by a barrier: exactly one 200, every other 401 refresh_token_rotated (a lost race, not reuse),
 * and 6 s later the winner's pair still works on every daemon. */
static void race_one_token(struct itest_daemon *const *daemons, size_t ndaemons)
{
    struct itest_user u = {0};
    itest_register(D, &u);
    char body[256], urls[2][96];
    snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", u.s.refresh);
    for (size_t i = 0; i < ndaemons; i++)
        snprintf(urls[i], sizeof urls[i], "%s/auth/refresh", daemons[i]->url);
    struct itest_race racers[RACERS];
    for (size_t i = 0; i < RACERS; i++)
        racers[i] = (struct itest_race){.url = urls[i % ndaemons], .body = body};
    itest_race_posts(racers, RACERS);
    int ok = 0, rotated = 0;
    const struct itest_race *winner = NULL;
    for (size_t i = 0; i < RACERS; i++) {
        if (racers[i].status == 200) {
            ok++;
            winner = &racers[i];
        } else if (racers[i].status == 401 &&
                   strcmp(racers[i].code, "refresh_token_rotated") == 0) {
            rotated++;
        } else {
            fprintf(stderr, "  racer %zu got %ld (%s)\n", i, racers[i].status, racers[i].code);
        }
    }
    if (ok != 1)
        fprintf(stderr, "  %d of %d concurrent refreshes succeeded\n", ok, RACERS);
    assert_int_equal(ok, 1);
    assert_int_equal(rotated, RACERS - 1);
    const char *access = itest_race_str(winner, "accessToken");
    const char *refresh = itest_race_str(winner, "refreshToken");
    assert_true(access[0] && refresh[0]);

    /* the losers revoked nothing: the winner's pair outlives the liveness cache and rotates */
    itest_sleep_ms(6000);
    for (size_t i = 0; i < ndaemons; i++)
        assert_int_equal(itest_me_status(daemons[i], access), 200);
    struct itest_session next;
    itest_refresh_expect(daemons[ndaemons - 1], refresh, 200, NULL, &next);
    assert_int_equal(itest_me_status(daemons[0], next.access), 200);
    itest_race_free(racers, RACERS);
}

static void test_concurrent_refresh_exactly_one_wins(void **state)
{
    (void)state;
    struct itest_daemon *list[] = {D};
    race_one_token(list, 1);
}

static void test_concurrent_refresh_across_instances_exactly_one_wins(void **state)
{
    (void)state;
    struct itest_daemon *b = itest_daemon_start(NULL);
    assert_non_null(b);
    struct itest_daemon *list[] = {D, b};
    race_one_token(list, 2);
    assert_int_equal(itest_daemon_stop(b), 0);
}

/* ---- rotations share commits (inklet/batched.h) ------------------------------------------- */

#define WRITERS 24
#define ROTATIONS_EACH 12

struct writer {
    pthread_barrier_t *go;
    char url[128];
    char refresh[128];          /* the chain's newest token */
    unsigned ok, failed, wrong; /* what the thread saw; checked by the test */
};

/* Rotates its own chain ROTATIONS_EACH times, each time with the token the last 200 gave. A
 * rotation answered 200 whose transaction did not commit shows as the next one's 401. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    const char *headers[] = {"Content-Type: application/json", "User-Agent: " ITEST_USER_AGENT,
                             NULL};
    CURL *h = curl_easy_init();
    pthread_barrier_wait(w->go);
    for (unsigned i = 0; i < ROTATIONS_EACH; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", w->refresh);
        struct itest_resp resp;
        itest_request(h, "POST", w->url, headers, body, strlen(body), &resp);
        const char *next = json_string_value(json_object_get(resp.json, "refreshToken"));
        if (resp.status == 200 && next && strlen(next) < sizeof w->refresh) {
            snprintf(w->refresh, sizeof w->refresh, "%s", next);
            w->ok++;
        } else if (resp.status == 500) {
            w->failed++;
        } else {
            w->wrong++;
        }
        itest_resp_free(&resp);
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* Many users rotate at once, so the request lane commits their rotations together. One session
 * cannot take a new token (a trigger refuses it): every rotation of that session fails alone
 * (500, its token unchanged), and the rotations that shared its transaction were run again, so
 * every other chain continues: a 200 whose commit was lost would break its chain. */
static void test_concurrent_refreshes_share_commits_and_a_failing_one_fails_alone(void **state)
{
    (void)state;
    static struct itest_user users[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        memset(&users[i], 0, sizeof users[i]);
        itest_register(D, &users[i]);
    }
    const struct itest_user *poisoned = &users[WRITERS / 2];
    char ddl[768];
    snprintf(ddl, sizeof ddl,
             "CREATE FUNCTION itest_refuse_token() RETURNS trigger LANGUAGE plpgsql AS $$"
             " BEGIN IF NEW.session_id = '%s' THEN RAISE EXCEPTION 'refused by the test';"
             " END IF; RETURN NEW; END $$;"
             "CREATE TRIGGER itest_refuse_token BEFORE INSERT ON refresh_tokens"
             " FOR EACH ROW EXECUTE FUNCTION itest_refuse_token()",
             poisoned->s.sid);
    itest_db_run(ddl);
    unsigned long long batches0 = itest_metric(D, "inklet_db_batches_total"),
                       statements0 = itest_metric(D, "inklet_db_batched_statements_total"),
                       retries0 = itest_metric(D, "inklet_db_batch_retries_total");

    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, WRITERS);
    static struct writer writers[WRITERS];
    pthread_t threads[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        writers[i] = (struct writer){.go = &go};
        snprintf(writers[i].url, sizeof writers[i].url, "%s/auth/refresh", D->url);
        snprintf(writers[i].refresh, sizeof writers[i].refresh, "%s", users[i].s.refresh);
        assert_int_equal(pthread_create(&threads[i], NULL, writer_main, &writers[i]), 0);
    }
    for (unsigned i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&go);
    unsigned long long batches = itest_metric(D, "inklet_db_batches_total") - batches0,
                       statements =
                           itest_metric(D, "inklet_db_batched_statements_total") - statements0,
                       retries = itest_metric(D, "inklet_db_batch_retries_total") - retries0;
    itest_db_run("DROP TRIGGER itest_refuse_token ON refresh_tokens;"
                 "DROP FUNCTION itest_refuse_token()");

    for (unsigned i = 0; i < WRITERS; i++) {
        const struct writer *w = &writers[i];
        bool p = &users[i] == poisoned;
        if (w->wrong || w->ok != (p ? 0 : ROTATIONS_EACH))
            fprintf(stderr, "  writer %u: %u rotated, %u failed, %u wrong\n", i, w->ok, w->failed,
                    w->wrong);
        assert_int_equal(w->wrong, 0);
        assert_int_equal(w->ok, p ? 0 : ROTATIONS_EACH);
        assert_int_equal(w->failed, p ? ROTATIONS_EACH : 0);
    }
    fprintf(stderr, "  %llu rotations in %llu shared commits, %llu run again alone\n", statements,
            batches, retries);
    assert_true(batches > 0);
    assert_true(statements >= 2 * batches);
    assert_true(retries > 0); /* the refused rotation shared a transaction at least once */
    assert_true(retries <= (unsigned long long)ROTATIONS_EACH);

    /* every chain still rotates, and the refused session's token was left as it was */
    for (unsigned i = 0; i < WRITERS; i++)
        refresh_expect(writers[i].refresh, 200, NULL, NULL);
    assert_string_equal(writers[WRITERS / 2].refresh, poisoned->s.refresh);
}

/* ---- logout ------------------------------------------------------------------------------- */

static void test_logout_without_refresh_token_revokes_current_session(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session other;
    itest_login(D, &u, &other);
    struct itest_resp r;
    itest_call(D, "POST", "/auth/logout", u.s.access, NULL, &r); /* no body at all */
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"message", NULL});
    assert_string_equal(itest_str(r.json, "message"), "logged out");
    itest_resp_free(&r);
    itest_expect_token_dies(D, u.s.access, t0, 5000);
    refresh_expect(u.s.refresh, 401, NULL, NULL);
    assert_int_equal(itest_me_status(D, other.access), 200);

    /* an empty object body behaves the same */
    itest_call(D, "POST", "/auth/logout", other.access, "{}", &r);
    t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_expect_token_dies(D, other.access, t0, 5000);
}

static void test_logout_with_refresh_token_revokes_that_session(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session second;
    itest_login(D, &u, &second);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/logout", u.s.access, &r, "{s:s}", "refreshToken", second.refresh);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(r.json, "message"), "logged out");
    itest_resp_free(&r);
    itest_expect_token_dies(D, second.access, t0, 5000);
    refresh_expect(second.refresh, 401, NULL, NULL);
    assert_int_equal(itest_me_status(D, u.s.access), 200); /* the caller's own stays */
}

static void test_logout_with_foreign_refresh_token_only_ends_own_session(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/logout", a.s.access, &r, "{s:s}", "refreshToken", b.s.refresh);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_expect_token_dies(D, a.s.access, t0, 5000);
    assert_int_equal(itest_me_status(D, b.s.access), 200);
    struct itest_session next;
    refresh_expect(b.s.refresh, 200, NULL, &next); /* b's refresh token was not touched */
}

/* ---- session management ------------------------------------------------------------------- */

static json_t *list_sessions(const char *token)
{
    struct itest_resp r;
    itest_call(D, "GET", "/auth/sessions", token, NULL, &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_array(r.json));
    json_t *list = json_incref(r.json);
    itest_resp_free(&r);
    return list;
}

static void test_sessions_list_newest_first_with_current_flag(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session s2, s3;
    itest_login(D, &u, &s2);
    itest_login(D, &u, &s3);
    json_t *list = list_sessions(s2.access);
    assert_int_equal(json_array_size(list), 3);
    const char *expected[] = {s3.sid, s2.sid, u.s.sid};
    long long now = (long long)time(NULL), prev_created = 0;
    for (size_t i = 0; i < 3; i++) {
        json_t *s = json_array_get(list, i);
        itest_expect_keys(s, SESSION_KEYS);
        assert_string_equal(itest_uuid_v7(s, "id"), expected[i]);
        assert_string_equal(itest_str(s, "userAgent"), ITEST_USER_AGENT);
        assert_string_equal(itest_str(s, "ip"), "127.0.0.1");
        long long created = itest_timestamp(s, "createdAt");
        long long active = itest_timestamp(s, "lastActiveAt");
        long long expires = itest_timestamp(s, "expiresAt");
        assert_true(llabs(created - now) < 300);
        assert_true(active >= created);
        assert_true(expires > now + 86400); /* days of refresh lifetime left */
        if (i)
            assert_true(created <= prev_created);
        prev_created = created;
        json_t *current = json_object_get(s, "current");
        assert_true(json_is_boolean(current));
        assert_int_equal(json_is_true(current), strcmp(expected[i], s2.sid) == 0);
    }
    json_decref(list);
}

static void test_session_delete_revokes_it(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session second;
    itest_login(D, &u, &second);
    char path[96];
    snprintf(path, sizeof path, "/auth/sessions/%s", second.sid);
    struct itest_resp r;
    itest_call(D, "DELETE", path, u.s.access, NULL, &r);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    itest_resp_free(&r);
    itest_expect_token_dies(D, second.access, t0, 5000);
    refresh_expect(second.refresh, 401, NULL, NULL);
    json_t *list = list_sessions(u.s.access);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(itest_str(json_array_get(list, 0), "id"), u.s.sid);
    json_decref(list);
    /* a second delete finds nothing */
    itest_call(D, "DELETE", path, u.s.access, NULL, &r);
    itest_expect_status(&r, 404);
    itest_resp_free(&r);
}

static void test_session_delete_unknown_or_foreign_is_404(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    char path[96];
    struct itest_resp r;
    snprintf(path, sizeof path, "/auth/sessions/%s", NO_SUCH_ID);
    itest_call(D, "DELETE", path, a.s.access, NULL, &r);
    itest_expect_status(&r, 404);
    assert_non_null(json_string_value(json_object_get(r.json, "code")));
    itest_resp_free(&r);
    snprintf(path, sizeof path, "/auth/sessions/%s", b.s.sid);
    itest_call(D, "DELETE", path, a.s.access, NULL, &r);
    itest_expect_status(&r, 404);
    itest_resp_free(&r);
    assert_int_equal(itest_me_status(D, b.s.access), 200); /* untouched */
}

static void test_session_delete_non_uuid_is_400_invalid_id(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    static const char *const bad[] = {
        "/auth/sessions/not-a-uuid", "/auth/sessions/01900000-0000-7000-8000-00000000000",
        "/auth/sessions/01900000-0000-7000-8000-0000000000000",
        "/auth/sessions/0190000000007000-8000-000000000000x", "/auth/sessions/%27%20OR%201=1--"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        struct itest_resp r;
        itest_call(D, "DELETE", bad[i], u.s.access, NULL, &r);
        itest_expect_error(&r, 400, "invalid_id");
        itest_resp_free(&r);
    }
    assert_int_equal(itest_me_status(D, u.s.access), 200);
}

static void test_sessions_delete_all_keeps_only_current(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session s2, s3;
    itest_login(D, &u, &s2);
    itest_login(D, &u, &s3);
    struct itest_resp r;
    itest_call(D, "DELETE", "/auth/sessions", s2.access, NULL, &r);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"revoked", NULL});
    json_t *n = json_object_get(r.json, "revoked");
    assert_true(json_is_integer(n));
    assert_int_equal(json_integer_value(n), 2);
    itest_resp_free(&r);
    itest_expect_token_dies(D, u.s.access, t0, 5000);
    itest_expect_token_dies(D, s3.access, t0, 5000);
    assert_int_equal(itest_me_status(D, s2.access), 200);
    json_t *list = list_sessions(s2.access);
    assert_int_equal(json_array_size(list), 1);
    json_t *only = json_array_get(list, 0);
    assert_string_equal(itest_str(only, "id"), s2.sid);
    assert_true(json_is_true(json_object_get(only, "current")));
    json_decref(list);
    /* nothing left to revoke */
    itest_call(D, "DELETE", "/auth/sessions", s2.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_integer_value(json_object_get(r.json, "revoked")), 0);
    itest_resp_free(&r);
}

static void test_revocation_through_other_instance_applies_within_5s(void **state)
{
    (void)state;
    struct itest_daemon *b = itest_daemon_start(NULL);
    assert_non_null(b);
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session victim, victim2;
    itest_login(D, &u, &victim);
    itest_login(D, &u, &victim2);
    /* instance A has just seen both sessions alive (and may cache that) */
    assert_int_equal(itest_me_status(D, victim.access), 200);
    assert_int_equal(itest_me_status(D, victim2.access), 200);

    char path[96];
    snprintf(path, sizeof path, "/auth/sessions/%s", victim.sid);
    struct itest_resp r;
    itest_call(b, "DELETE", path, u.s.access, NULL, &r);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    int64_t ms = itest_expect_token_dies(D, victim.access, t0, 5000);
    fprintf(stderr, "  revoked session rejected by the other instance after %lld ms\n",
            (long long)ms);

    /* logout through B, checked on A */
    assert_int_equal(itest_me_status(D, victim2.access), 200);
    itest_call(b, "POST", "/auth/logout", victim2.access, NULL, &r);
    t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_expect_token_dies(D, victim2.access, t0, 5000);
    assert_int_equal(itest_me_status(D, u.s.access), 200);
    assert_int_equal(itest_daemon_stop(b), 0);
}

/* ---- Bearer verification ------------------------------------------------------------------ */

struct bearer_route {
    const char *method;
    const char *path;
    const char *body;
};

static const struct bearer_route BEARER_ROUTES[] = {
    {"POST", "/auth/logout", "{}"},
    {"GET", "/auth/me", NULL},
    {"PATCH", "/auth/me", "{\"username\":\"never_applied\"}"},
    {"DELETE", "/auth/me", "{\"password\":\"Wrong-password-1\"}"},
    {"POST", "/auth/password",
     "{\"currentPassword\":\"Wrong-password-1\",\"newPassword\":\"Whatever-password-2\"}"},
    {"GET", "/auth/sessions", NULL},
    {"DELETE", "/auth/sessions", NULL},
    {"DELETE", "/auth/sessions/01900000-0000-7000-8000-000000000000", NULL},
};

/* Every Bearer route answers 401 invalid_token to `authorization` (a full header value, or NULL
 * for no header at all). */
static void expect_all_bearer_routes_401(const char *authorization)
{
    for (size_t i = 0; i < ITEST_ARRAY_LEN(BEARER_ROUTES); i++) {
        const struct bearer_route *br = &BEARER_ROUTES[i];
        char url[256], auth[1400];
        snprintf(url, sizeof url, "%s%s", D->url, br->path);
        const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
        if (authorization) {
            snprintf(auth, sizeof auth, "Authorization: %s", authorization);
            headers[1] = auth;
        }
        struct itest_resp r;
        itest_request(NULL, br->method, url, headers, br->body, br->body ? strlen(br->body) : 0,
                      &r);
        if (r.status != 401)
            fprintf(stderr, "  %s %s with \"%.60s\"\n", br->method, br->path,
                    authorization ? authorization : "(no Authorization)");
        itest_expect_error(&r, 401, "invalid_token");
        itest_resp_free(&r);
    }
}

static void test_bearer_routes_reject_missing_token(void **state)
{
    (void)state;
    expect_all_bearer_routes_401(NULL);
}

static void test_bearer_routes_reject_garbage_tokens(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char tampered[1100], wrong_scheme[1100];
    snprintf(tampered, sizeof tampered, "Bearer %s", u.s.access);
    size_t n = strlen(tampered);
    /* not the last character: its low bits are padding a lax decoder may ignore */
    tampered[n - 5] = tampered[n - 5] == 'A' ? 'Q' : 'A';
    snprintf(wrong_scheme, sizeof wrong_scheme, "Basic %s", u.s.access);
    /* empty segments made libjwt 1.10 write past a heap buffer (seen under valgrind) */
    const char *const bad[] = {"Bearer garbage",
                               "Bearer a.b.c",
                               "Bearer ",
                               "Bearer",
                               tampered,
                               wrong_scheme,
                               "Bearer .....",
                               "Bearer ..",
                               "Bearer .e30.x",
                               "Bearer eyJhbGciOiJIUzI1NiJ9..x",
                               "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x.y",
                               "Bearer eyJhbGciOiJIUzI1NiJ9.e30=.x"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++)
        expect_all_bearer_routes_401(bad[i]);
    assert_int_equal(itest_me_status(D, u.s.access), 200);
}

/* A token for u's live session with the given algorithm and claim edits. */
static char *forge(const struct itest_user *u, const char *alg, const char *key,
                   json_t *edits /* stolen; may be NULL */)
{
    json_t *claims = itest_jwt_claims(u->s.access);
    assert_non_null(claims);
    if (edits) {
        const char *k;
        json_t *v;
        json_object_foreach(edits, k, v)
        {
            if (json_is_null(v))
                json_object_del(claims, k);
            else
                json_object_set(claims, k, v);
        }
        json_decref(edits);
    }
    json_t *header = json_pack("{s:s,s:s}", "alg", alg, "typ", "JWT");
    char *jwt = itest_jwt_make(header, claims, alg, key);
    json_decref(header);
    json_decref(claims);
    return jwt;
}

static void expect_forged_rejected(char *jwt)
{
    char auth[1400];
    snprintf(auth, sizeof auth, "Bearer %s", jwt);
    expect_all_bearer_routes_401(auth);
    free(jwt);
}

static void test_forged_hs256_control_token_is_accepted(void **state)
{
    (void)state;
    /* proves the forging below is right, so the rejections are for the stated reason */
    struct itest_user u = {0};
    itest_register(D, &u);
    long long now = (long long)time(NULL);
    char *jwt = forge(&u, "HS256", itest.jwt_secret,
                      json_pack("{s:I,s:I}", "iat", (json_int_t)now, "exp", (json_int_t)now + 600));
    assert_int_equal(itest_me_status(D, jwt), 200);
    free(jwt);
}

static void test_bearer_routes_reject_hs512_token(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    expect_forged_rejected(forge(&u, "HS512", itest.jwt_secret, NULL));
    expect_forged_rejected(forge(&u, "HS384", itest.jwt_secret, NULL));
    assert_int_equal(itest_me_status(D, u.s.access), 200);
}

static void test_bearer_routes_reject_alg_none_token(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    expect_forged_rejected(forge(&u, "none", "", NULL));
    /* "none" header with a real HS256 signature appended */
    char *jwt = forge(&u, "none", "", NULL);
    char *signed256 = forge(&u, "HS256", itest.jwt_secret, NULL);
    char mixed[2048];
    snprintf(mixed, sizeof mixed, "%s%s", jwt, strrchr(signed256, '.') + 1);
    free(jwt);
    free(signed256);
    char auth[2100];
    snprintf(auth, sizeof auth, "Bearer %s", mixed);
    expect_all_bearer_routes_401(auth);
}

static void test_bearer_routes_reject_expired_token(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    long long now = (long long)time(NULL);
    expect_forged_rejected(
        forge(&u, "HS256", itest.jwt_secret,
              json_pack("{s:I,s:I}", "iat", (json_int_t)now - 960, "exp", (json_int_t)now - 60)));
    expect_forged_rejected(
        forge(&u, "HS256", itest.jwt_secret,
              json_pack("{s:I,s:I}", "iat", (json_int_t)now - 900, "exp", (json_int_t)now)));
}

static void test_bearer_routes_reject_forged_claims(void **state)
{
    (void)state;
    struct itest_user u = {0}, other = {0};
    itest_register(D, &u);
    itest_register(D, &other);
    const char *k = itest.jwt_secret;
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "typ", "refresh")));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "aud", "someone-else")));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "iss", "https://evil")));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:n}", "exp")));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "exp", "9999999999")));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:f}", "exp", 9999999999.5)));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:n}", "sid")));
    /* another user's id with this session, and a session id that does not exist */
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "sub", other.id)));
    expect_forged_rejected(forge(&u, "HS256", k, json_pack("{s:s}", "sid", NO_SUCH_ID)));
    /* signed with another secret */
    expect_forged_rejected(forge(&u, "HS256", "another-secret-another-secret-0123456789", NULL));
}

/* ---- JWT_SECRET rotation (contract §6) ------------------------------------------------ */

/* During a rotation the old key (JWT_PREVIOUS_SECRET) still verifies the tokens it signed; new
 * tokens are signed with JWT_SECRET only; once the old key is removed its tokens die. */
static void test_rotation_accepts_previous_secret_tokens_and_signs_with_the_new(void **state)
{
    (void)state;
    static const char NEW_SECRET[] = "rotated-secret-rotated-secret-rotated-0123456789";
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session old_s;
    itest_login(D, &u, &old_s); /* signed with the suite's secret: the old key */
    char jwt_new[128], jwt_prev[128];
    snprintf(jwt_new, sizeof jwt_new, "JWT_SECRET=%s", NEW_SECRET);
    snprintf(jwt_prev, sizeof jwt_prev, "JWT_PREVIOUS_SECRET=%s", itest.jwt_secret);
    struct itest_daemon *rotating =
        itest_daemon_start((const char *const[]){jwt_new, jwt_prev, NULL});
    assert_non_null(rotating);
    assert_int_equal(itest_me_status(rotating, old_s.access), 200);
    struct itest_session new_s;
    itest_login(rotating, &u, &new_s);
    assert_int_equal(itest_me_status(rotating, new_s.access), 200);
    /* signed with the new key, not the previous one: the old-key server refuses it */
    assert_int_equal(itest_me_status(D, new_s.access), 401);
    /* a token signed with neither key */
    char *other = forge(&u, "HS256", "neither-secret-neither-secret-0123456789abc", NULL);
    assert_int_equal(itest_me_status(rotating, other), 401);
    free(other);
    assert_int_equal(itest_daemon_stop(rotating), 0);
    /* the rotation is over: only the new key */
    struct itest_daemon *rotated = itest_daemon_start((const char *const[]){jwt_new, NULL});
    assert_non_null(rotated);
    assert_int_equal(itest_me_status(rotated, old_s.access), 401);
    assert_int_equal(itest_me_status(rotated, new_s.access), 200);
    assert_int_equal(itest_daemon_stop(rotated), 0);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

int itest_group_sessions(void)
{
    const struct CMUnitTest tests[] = {
        T(test_refresh_returns_new_pair_in_same_session),
        T(test_refresh_reuse_after_the_grace_revokes_every_session),
        T(test_refresh_reuse_within_the_grace_is_rotated_and_revokes_nothing),
        T(test_refresh_unknown_token_is_401_invalid_refresh_token),
        T(test_concurrent_refresh_exactly_one_wins),
        T(test_concurrent_refresh_across_instances_exactly_one_wins),
        T(test_concurrent_refreshes_share_commits_and_a_failing_one_fails_alone),
        T(test_logout_without_refresh_token_revokes_current_session),
        T(test_logout_with_refresh_token_revokes_that_session),
        T(test_logout_with_foreign_refresh_token_only_ends_own_session),
        T(test_sessions_list_newest_first_with_current_flag),
        T(test_session_delete_revokes_it),
        T(test_session_delete_unknown_or_foreign_is_404),
        T(test_session_delete_non_uuid_is_400_invalid_id),
        T(test_sessions_delete_all_keeps_only_current),
        T(test_revocation_through_other_instance_applies_within_5s),
        T(test_bearer_routes_reject_missing_token),
        T(test_bearer_routes_reject_garbage_tokens),
        T(test_forged_hs256_control_token_is_accepted),
        T(test_bearer_routes_reject_hs512_token),
        T(test_bearer_routes_reject_alg_none_token),
        T(test_bearer_routes_reject_expired_token),
        T(test_bearer_routes_reject_forged_claims),
        T(test_rotation_accepts_previous_secret_tokens_and_signs_with_the_new),
    };
    return cmocka_run_group_tests_name("sessions", tests, itest_group_setup, itest_group_teardown);
}
