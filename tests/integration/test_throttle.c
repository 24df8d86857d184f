/* Contract §0/§2: per-IP token buckets, per-account back-off, and the trusted-proxy rule for
 * X-Forwarded-For. Each test runs its own inkletd with tight limits. */
#include "harness.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* POST /auth/login on `d` with an optional X-Forwarded-For; returns the response in *r. */
static void login_from(const struct itest_daemon *d, const char *xff, const char *identifier,
                       const char *password, struct itest_resp *r)
{
    char url[128], xff_line[256];
    snprintf(url, sizeof url, "%s/auth/login", d->url);
    const char *headers[4] = {"Content-Type: application/json", "User-Agent: " ITEST_USER_AGENT,
                              NULL, NULL};
    if (xff) {
        snprintf(xff_line, sizeof xff_line, "X-Forwarded-For: %s", xff);
        headers[2] = xff_line;
    }
    json_t *body = json_pack("{s:s,s:s}", "identifier", identifier, "password", password);
    char *text = json_dumps(body, JSON_COMPACT);
    itest_request(NULL, "POST", url, headers, text, strlen(text), r);
    free(text);
    json_decref(body);
}

/* A login for a fresh unknown name each time, so only the per-IP bucket can answer 429 (a
 * repeated name would meet its own back-off). */
static void expect_login_status(const struct itest_daemon *d, const char *xff, long status)
{
    static unsigned n;
    char name[64];
    snprintf(name, sizeof name, "nobody-%s-%u", itest.run_tag, ++n);
    struct itest_resp r;
    login_from(d, xff, name, "Some-password-1", &r);
    if (status == 429) {
        itest_expect_error(&r, 429, "rate_limited");
        unsigned ra = itest_expect_retry_after(&r);
        assert_true(ra <= 60);
    } else {
        itest_expect_status(&r, status);
    }
    itest_resp_free(&r);
}

static void test_login_rate_limit_answers_429_with_retry_after(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"RATE_LIMIT_LOGIN=3/60", "RATE_LIMIT_REGISTER=2/60", NULL});
    assert_non_null(d);
    for (int i = 0; i < 3; i++)
        expect_login_status(d, NULL, 401);
    expect_login_status(d, NULL, 429);
    expect_login_status(d, NULL, 429);
    /* a 429 for an allowed origin still exposes Retry-After to the browser */
    char url[128];
    snprintf(url, sizeof url, "%s/auth/login", d->url);
    const char *headers[] = {"Content-Type: application/json", "Origin: " ITEST_ORIGIN, NULL};
    const char *body = "{\"identifier\":\"nobody\",\"password\":\"Some-password-1\"}";
    struct itest_resp r;
    itest_request(NULL, "POST", url, headers, body, strlen(body), &r);
    itest_expect_error(&r, 429, "rate_limited");
    itest_expect_retry_after(&r);
    assert_true(itest_header_has_token(&r, "Access-Control-Expose-Headers", "Retry-After"));
    itest_resp_free(&r);
    /* other classes have their own buckets, of their own size: with the login bucket empty,
     * register still has its 2 and then stops at its own limit */
    struct itest_user u = {0}, v = {0}, w;
    itest_register(d, &u);
    itest_register(d, &v);
    itest_user_new(&w);
    itest_callf(d, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", w.email,
                "username", w.username, "password", w.password);
    itest_expect_error(&r, 429, "rate_limited");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_unknown_name_backs_off_like_an_account(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"LOGIN_BACKOFF_AFTER=2", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    char ghost[64];
    snprintf(ghost, sizeof ghost, "ghost-%s", itest.run_tag);
    /* the same sequence for a real account and a name nobody has: no difference to observe.
     * The first block lasts 1 s, so each 429 is checked right after the failure that set it. */
    const char *names[] = {u.username, ghost};
    for (int k = 0; k < 2; k++) {
        struct itest_resp r;
        for (int i = 0; i < 2; i++) {
            login_from(d, NULL, names[k], "Wrong-password-1", &r);
            itest_expect_error(&r, 401, "invalid_credentials");
            itest_resp_free(&r);
        }
        /* for the account: its counter follows it, whichever of its names is typed, and holds
         * even the right password back */
        if (k == 0)
            login_from(d, NULL, u.email, u.password, &r);
        else
            login_from(d, NULL, names[k], "Wrong-password-1", &r);
        itest_expect_error(&r, 429, "login_backoff");
        itest_expect_retry_after(&r);
        itest_resp_free(&r);
    }
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_login_backoff_after_failures_then_recovers(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"LOGIN_BACKOFF_AFTER=2", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_resp r;
    for (int i = 0; i < 2; i++) {
        login_from(d, NULL, u.username, "Wrong-password-1", &r);
        itest_expect_error(&r, 401, "invalid_credentials");
        itest_resp_free(&r);
    }
    /* even the right password waits now */
    login_from(d, NULL, u.username, u.password, &r);
    itest_expect_status(&r, 429);
    unsigned wait = itest_expect_retry_after(&r);
    assert_true(wait <= 900);
    itest_resp_free(&r);
    /* by email too: the back-off belongs to the account */
    login_from(d, NULL, u.email, u.password, &r);
    itest_expect_status(&r, 429);
    itest_expect_retry_after(&r);
    itest_resp_free(&r);

    itest_sleep_ms(wait * 1000 + 100);
    login_from(d, NULL, u.username, u.password, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    /* success reset the counter: one wrong password is a plain 401 again */
    login_from(d, NULL, u.username, "Wrong-password-1", &r);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* The re-authentication of POST /auth/password, PATCH /auth/me (a new email) and DELETE /auth/me
 * shares the account's login back-off: wrong passwords there count like failed logins, and while
 * the account is backed off they wait too. Otherwise a stolen access token would guess the
 * password at hashing speed, past the back-off that protects login. Each block is checked right
 * after the failure that set it (the first lasts 1 s, the next 2 s). */
static void test_reauth_guesses_share_the_login_backoff(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"LOGIN_BACKOFF_AFTER=2", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    char new_email[128];
    snprintf(new_email, sizeof new_email, "moved-%s", u.email);
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                "Wrong-password-1", "newPassword", "Stolen-session-1");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_callf(d, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", new_email,
                "currentPassword", "Wrong-password-2");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    /* two failures: backed off, the right password waits as well */
    itest_callf(d, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                u.password, "newPassword", "Stolen-session-1");
    itest_expect_error(&r, 429, "login_backoff");
    unsigned wait = itest_expect_retry_after(&r);
    assert_true(wait >= 1 && wait <= 2);
    itest_resp_free(&r);
    itest_sleep_ms(wait * 1000 + 100);
    /* a third failure: 2 s now, and login (the same counter) is held back too */
    itest_callf(d, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", "Wrong-password-3");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    login_from(d, NULL, u.email, u.password, &r);
    itest_expect_error(&r, 429, "login_backoff");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);
    itest_callf(d, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", u.password);
    itest_expect_error(&r, 429, "login_backoff");
    wait = itest_expect_retry_after(&r);
    itest_resp_free(&r);
    itest_callf(d, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", new_email,
                "currentPassword", u.password);
    itest_expect_error(&r, 429, "login_backoff");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);
    /* nothing changed: the account, its address and its password are as they were */
    itest_call(d, "GET", "/auth/me", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(r.json, "email"), u.email);
    itest_resp_free(&r);
    itest_sleep_ms(wait * 1000 + 100);
    login_from(d, NULL, u.username, u.password, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    /* and the other way: failed logins hold re-authentication back */
    for (int i = 0; i < 2; i++) {
        login_from(d, NULL, u.username, "Wrong-password-4", &r);
        itest_expect_error(&r, 401, "invalid_credentials");
        itest_resp_free(&r);
    }
    itest_callf(d, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", new_email,
                "currentPassword", u.password);
    itest_expect_error(&r, 429, "login_backoff");
    wait = itest_expect_retry_after(&r);
    itest_resp_free(&r);
    /* once it has passed, the right password works and the change goes through */
    itest_sleep_ms(wait * 1000 + 100);
    itest_callf(d, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", new_email,
                "currentPassword", u.password);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(r.json, "email"), new_email);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_trusted_proxy_forwarded_clients_are_limited_separately(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"TRUSTED_PROXIES=127.0.0.1/32", "RATE_LIMIT_LOGIN=2/60", NULL});
    assert_non_null(d);
    expect_login_status(d, "203.0.113.1", 401);
    expect_login_status(d, "203.0.113.1", 401);
    expect_login_status(d, "203.0.113.1", 429);
    /* the right-most untrusted hop is the client: a trusted hop after it changes nothing */
    expect_login_status(d, "203.0.113.1, 127.0.0.1", 429);
    /* a spoofed left-most entry does not buy a fresh bucket */
    expect_login_status(d, "198.51.100.7, 203.0.113.1", 429);
    expect_login_status(d, "203.0.113.2", 401);
    expect_login_status(d, "203.0.113.2", 401);
    expect_login_status(d, "203.0.113.2", 429);
    /* the proxy's own address is one more client */
    expect_login_status(d, NULL, 401);

    /* sessions record the forwarded client address */
    char url[128];
    snprintf(url, sizeof url, "%s/auth/register", d->url);
    struct itest_user u;
    itest_user_new(&u);
    json_t *body = json_pack("{s:s,s:s,s:s}", "email", u.email, "username", u.username, "password",
                             u.password);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    const char *headers[] = {"Content-Type: application/json", "X-Forwarded-For: 192.0.2.44", NULL};
    struct itest_resp r;
    itest_request(NULL, "POST", url, headers, text, strlen(text), &r);
    free(text);
    itest_expect_status(&r, 201);
    itest_session_from(r.json, &u.s);
    itest_resp_free(&r);
    itest_call(d, "GET", "/auth/sessions", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(json_array_get(r.json, 0), "ip"), "192.0.2.44");
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_untrusted_peer_forwarded_header_is_ignored(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"RATE_LIMIT_LOGIN=2/60", NULL});
    assert_non_null(d);
    expect_login_status(d, "203.0.113.1", 401);
    expect_login_status(d, "203.0.113.2", 401);
    expect_login_status(d, "203.0.113.3", 429); /* one shared bucket: the socket peer */
    expect_login_status(d, NULL, 429);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* POST /api/devices/bind/code with a well-formed code no display shows; returns the status. */
static long bind_unknown_code(const struct itest_daemon *d, const char *token, const char *xff)
{
    char url[128], auth[1100], xff_line[128];
    snprintf(url, sizeof url, "%s/api/devices/bind/code", d->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(xff_line, sizeof xff_line, "X-Forwarded-For: %s", xff ? xff : "");
    const char *headers[] = {"Content-Type: application/json", auth, xff ? xff_line : NULL, NULL};
    const char *body = "{\"claimCode\":\"ABC234\"}";
    struct itest_resp r;
    itest_request(NULL, "POST", url, headers, body, strlen(body), &r);
    long status = r.status;
    if (status == 429) {
        itest_expect_error(&r, 429, "rate_limited");
        itest_expect_retry_after(&r);
    } else {
        itest_expect_error(&r, 404, "claim_code_not_found");
    }
    itest_resp_free(&r);
    return status;
}

static void test_bind_attempts_are_limited_per_ip(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"RATE_LIMIT_BIND=3/60", NULL});
    assert_non_null(d);
    struct itest_user a = {0}, b = {0};
    itest_register(d, &a);
    itest_register(d, &b);
    for (int i = 0; i < 3; i++)
        assert_int_equal(bind_unknown_code(d, a.s.access, NULL), 404);
    assert_int_equal(bind_unknown_code(d, a.s.access, NULL), 429);
    /* another account from the same address shares the address's bucket */
    assert_int_equal(bind_unknown_code(d, b.s.access, NULL), 429);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_bind_attempts_are_limited_per_user_across_addresses(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"RATE_LIMIT_BIND=3/60", "TRUSTED_PROXIES=127.0.0.1/32", NULL});
    assert_non_null(d);
    struct itest_user a = {0}, b = {0};
    itest_register(d, &a);
    itest_register(d, &b);
    static const char *const addrs[] = {"198.51.100.1", "198.51.100.2", "198.51.100.3",
                                        "198.51.100.4"};
    /* a guesser rotating addresses still has one bucket per account */
    for (int i = 0; i < 3; i++)
        assert_int_equal(bind_unknown_code(d, a.s.access, addrs[i]), 404);
    assert_int_equal(bind_unknown_code(d, a.s.access, addrs[3]), 429);
    /* someone else is not affected */
    assert_int_equal(bind_unknown_code(d, b.s.access, "198.51.100.9"), 404);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- the password-hash cap ------------------------------------------------------------------ */

struct reg_job {
    const struct itest_daemon *d;
    pthread_barrier_t *barrier;
    struct itest_resp r;
};

static void *register_one(void *arg)
{
    struct reg_job *j = arg;
    struct itest_user u;
    itest_user_new(&u);
    char *body = NULL;
    json_t *o = json_pack("{s:s,s:s,s:s}", "email", u.email, "username", u.username, "password",
                          u.password);
    body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    pthread_barrier_wait(j->barrier);
    itest_call(j->d, "POST", "/auth/register", NULL, body, &j->r);
    free(body);
    return NULL;
}

static void test_excess_password_hashes_get_503_and_health_stays_fast(void **state)
{
    (void)state;
    if (itest.slow > 1)
        skip(); /* seconds-long hashes under valgrind would only measure valgrind */
    /* one hash at a time, each far longer than the 2 s a waiting hash may queue */
    struct itest_daemon *d = itest_daemon_start((const char *const[]){
        "HASH_CONCURRENCY=1", "ARGON2_MEMORY_KIB=262144", "ARGON2_ITERATIONS=15", NULL});
    assert_non_null(d);
    enum { N = 3 };
    struct reg_job jobs[N];
    pthread_t th[N];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N + 1);
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct reg_job){.d = d, .barrier = &barrier};
        assert_int_equal(pthread_create(&th[i], NULL, register_one, &jobs[i]), 0);
    }
    pthread_barrier_wait(&barrier);
    itest_sleep_ms(300);
    /* meanwhile /health answers at once: hashing runs on the worker pool */
    struct itest_resp h;
    itest_get(d, "/health", &h);
    itest_expect_status(&h, 200);
    assert_true(h.seconds < 0.5);
    itest_resp_free(&h);
    int created = 0, shed = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].r.status == 201) {
            created++;
        } else {
            itest_expect_error(&jobs[i].r, 503, "service_unavailable");
            itest_expect_retry_after(&jobs[i].r);
            shed++;
        }
        itest_resp_free(&jobs[i].r);
    }
    pthread_barrier_destroy(&barrier);
    assert_true(created >= 1);
    assert_true(shed >= 1);
    assert_int_equal(itest_daemon_stop(d), 0);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

int itest_group_throttle(void)
{
    const struct CMUnitTest tests[] = {
        T(test_login_rate_limit_answers_429_with_retry_after),
        T(test_login_backoff_after_failures_then_recovers),
        T(test_unknown_name_backs_off_like_an_account),
        T(test_reauth_guesses_share_the_login_backoff),
        T(test_excess_password_hashes_get_503_and_health_stays_fast),
        T(test_trusted_proxy_forwarded_clients_are_limited_separately),
        T(test_untrusted_peer_forwarded_header_is_ignored),
        T(test_bind_attempts_are_limited_per_ip),
        T(test_bind_attempts_are_limited_per_user_across_addresses),
    };
    /* every test starts its own daemon: no shared one */
    return cmocka_run_group_tests_name("throttle", tests, NULL, NULL);
}
