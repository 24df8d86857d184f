/* Contract §1 and §6: health, readiness, migrations, configuration, graceful shutdown, and
 * behaviour while the database is down. */
#include "harness.h"
#include "promtext.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define D itest_shared

/* ---- migrations and configuration --------------------------------------------------------- */

static void test_concurrent_migrations_on_fresh_db_both_exit_0(void **state)
{
    (void)state;
    /* run by main() before anything else, on the empty database */
    assert_int_equal(itest_migrate_status[0], 0);
    assert_int_equal(itest_migrate_status[1], 0);
    /* and again on the migrated schema: nothing to do, still success */
    struct itest_proc p;
    int st = itest_run_inkletd((const char *const[]){"migrate", NULL}, NULL, 60000, &p);
    if (st != 0)
        fprintf(stderr, "  stdout: %s\n  stderr: %s\n", p.out, p.err);
    assert_int_equal(st, 0);
    itest_proc_free(&p);
}

static void test_check_config_redacts_secrets(void **state)
{
    (void)state;
    struct itest_proc p;
    int st = itest_run_inkletd((const char *const[]){"check-config", NULL}, NULL, 20000, &p);
    if (st != 0)
        fprintf(stderr, "  stdout: %s\n  stderr: %s\n", p.out, p.err);
    assert_int_equal(st, 0);
    assert_non_null(strstr(p.out, "JWT_SECRET=<redacted>\n"));
    assert_non_null(strstr(p.out, "FACTORY_SECRET=<redacted>\n"));
    assert_non_null(strstr(p.out, "DATABASE_URL=<redacted>\n"));
    assert_non_null(strstr(p.out, "LISTEN_ADDR=127.0.0.1\n")); /* the effective values */
    assert_non_null(strstr(p.out, "RATE_LIMIT_LOGIN=100000/1\n"));
    const char *secrets[] = {itest.jwt_secret, ITEST_FACTORY_SECRET, itest.database_url};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(secrets); i++) {
        assert_null(strstr(p.out, secrets[i]));
        assert_null(strstr(p.err, secrets[i]));
    }
    itest_proc_free(&p);
}

/* Runs inkletd `command` (NULL: serve) with env and expects a non-zero exit with exactly one
 * line on stderr that names `key` and does not contain `secret` (may be NULL). */
static void expect_config_rejected(const char *command, const char *const env[], const char *key,
                                   const char *secret)
{
    struct itest_proc p;
    const char *args[] = {command, NULL};
    int st = itest_run_inkletd(args, env, 20000, &p);
    size_t lines = 0;
    for (const char *c = p.err; *c; c++)
        lines += *c == '\n';
    if (st == 0 || lines != 1 || !strstr(p.err, key))
        fprintf(stderr, "  %s %s: status %d, stderr:\n%s\n", command ? command : "(serve)", env[0],
                st, p.err);
    assert_true(st != 0 && st != -1 && st < 128); /* an exit, not a crash or a hang */
    assert_int_equal(lines, 1);
    assert_non_null(strstr(p.err, key));
    if (secret) {
        assert_null(strstr(p.err, secret));
        assert_null(strstr(p.out, secret));
    }
    itest_proc_free(&p);
}

static void test_invalid_config_exits_with_one_line_naming_the_key(void **state)
{
    (void)state;
    expect_config_rejected(NULL, (const char *const[]){"PORT=abc", NULL}, "PORT", NULL);
    expect_config_rejected(NULL, (const char *const[]){"PORT=70000", NULL}, "PORT", NULL);
    expect_config_rejected("check-config", (const char *const[]){"PORT=abc", NULL}, "PORT", NULL);
    expect_config_rejected(NULL, (const char *const[]){"RATE_LIMIT_LOGIN=fast", NULL},
                           "RATE_LIMIT_LOGIN", NULL);
    expect_config_rejected(NULL, (const char *const[]){"LOG_LEVEL=loud", NULL}, "LOG_LEVEL", NULL);
    expect_config_rejected(NULL, (const char *const[]){"TRUSTED_PROXIES=10.0.0.0/33", NULL},
                           "TRUSTED_PROXIES", NULL);
}

static void test_bad_or_missing_secrets_are_named_never_printed(void **state)
{
    (void)state;
    expect_config_rejected(NULL, (const char *const[]){"JWT_SECRET=too-short-secret-xyz", NULL},
                           "JWT_SECRET", "too-short-secret-xyz");
    expect_config_rejected(NULL, (const char *const[]){"JWT_SECRET", NULL}, "JWT_SECRET", NULL);
    expect_config_rejected(NULL,
                           (const char *const[]){"JWT_PREVIOUS_SECRET=short-old-secret", NULL},
                           "JWT_PREVIOUS_SECRET", "short-old-secret");
    expect_config_rejected(NULL, (const char *const[]){"FACTORY_SECRET=0123456789abcdeX", NULL},
                           "FACTORY_SECRET", "0123456789abcdeX");
    expect_config_rejected("migrate", (const char *const[]){"DATABASE_URL", NULL}, "DATABASE_URL",
                           NULL);
}

static void test_version_exits_0(void **state)
{
    (void)state;
    struct itest_proc p;
    int st = itest_run_inkletd((const char *const[]){"--version", NULL}, NULL, 20000, &p);
    assert_int_equal(st, 0);
    assert_true(strncmp(p.out, "inkletd ", 8) == 0);
    assert_true(strlen(p.out) > 9);
    itest_proc_free(&p);
}

/* ---- health ------------------------------------------------------------------------------- */

static void test_health_is_ok(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_get(D, "/health", &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_header(&r, "Content-Type"), "application/json; charset=utf-8");
    itest_expect_keys(r.json, (const char *const[]){"status", NULL});
    assert_string_equal(itest_str(r.json, "status"), "ok");
    itest_resp_free(&r);
}

static void test_ready_reports_database_ok(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_get(D, "/health/ready", &r);
    /* without a broker for this run the broker check may fail; the database one may not */
    if (itest.mqtt_url) {
        itest_expect_status(&r, 200);
        assert_string_equal(itest_str(r.json, "status"), "ok");
    } else {
        assert_true(r.status == 200 || r.status == 503);
    }
    json_t *checks = json_object_get(r.json, "checks");
    assert_true(json_is_object(checks));
    assert_string_equal(itest_str(checks, "database"), "ok");
    itest_resp_free(&r);
}

/* ---- graceful shutdown -------------------------------------------------------------------- */

/* True once `d` has begun draining: a new connection is refused or /health says "draining". */
static bool draining_seen(const struct itest_daemon *d)
{
    int fd = itest_raw_connect(d->port);
    if (fd < 0)
        return true;
    bool draining = false;
    struct itest_raw_resp resp;
    if (itest_raw_send_str(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") &&
        itest_raw_read_response(fd, 2000, &resp) == 0) {
        draining = resp.status == 503 && strstr(resp.body, "draining");
        itest_raw_resp_free(&resp);
    } else {
        draining = true; /* closed on us: no longer serving new requests */
    }
    close(fd);
    return draining;
}

static void test_sigterm_completes_in_flight_request_then_exits_0(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start((const char *const[]){"SHUTDOWN_GRACE=30", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);

    /* A: an accepted keep-alive connection with a login whose body is half sent */
    int a = itest_raw_connect(d->port);
    assert_true(a >= 0);
    struct itest_raw_resp resp;
    assert_true(itest_raw_send_str(a, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    assert_int_equal(itest_raw_read_response(a, 5000, &resp), 0);
    assert_int_equal(resp.status, 200);
    itest_raw_resp_free(&resp);
    char body[256], head[256];
    int blen = snprintf(body, sizeof body, "{\"identifier\":\"%s\",\"password\":\"%s\"}",
                        u.username, u.password);
    snprintf(head, sizeof head,
             "POST /auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %d\r\n\r\n",
             blen);
    assert_true(itest_raw_send_str(a, head));
    assert_true(itest_raw_send(a, body, 10));

    /* B: an idle keep-alive connection */
    int b = itest_raw_connect(d->port);
    assert_true(b >= 0);
    assert_true(itest_raw_send_str(b, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    assert_int_equal(itest_raw_read_response(b, 5000, &resp), 0);
    assert_int_equal(resp.status, 200);
    itest_raw_resp_free(&resp);
    /* the server cannot be asked whether it has parsed A's headers yet; give it a moment */
    itest_sleep_ms(itest_scaled(100));

    assert_int_equal(kill(d->pid, SIGTERM), 0);
    int64_t deadline = itest_now_ms() + itest_scaled(10000);
    bool seen = false;
    while (!seen && itest_now_ms() < deadline) {
        seen = draining_seen(d);
        if (!seen)
            itest_sleep_ms(10);
    }
    assert_true(seen);
    assert_true(itest_daemon_alive(d)); /* still waiting for A */

    /* the open keep-alive connection is told to go away */
    assert_true(itest_raw_send_str(b, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    int rc = itest_raw_read_response(b, 5000, &resp);
    assert_int_equal(rc, 0);
    assert_int_equal(resp.status, 503);
    json_t *hb = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(hb, "status")), "draining");
    json_decref(hb);
    itest_raw_resp_free(&resp);
    close(b);

    /* the in-flight request finishes normally */
    assert_true(itest_raw_send(a, body + 10, (size_t)blen - 10));
    rc = itest_raw_read_response(a, 10000, &resp);
    if (rc != 0)
        itest_daemon_dump_log(d, "no answer to the in-flight request");
    assert_int_equal(rc, 0);
    assert_int_equal(resp.status, 200);
    json_t *lb = json_loadb(resp.body, resp.body_len, 0, NULL);
    assert_non_null(json_string_value(json_object_get(lb, "accessToken")));
    json_decref(lb);
    itest_raw_resp_free(&resp);
    int64_t done = itest_now_ms();
    close(a);

    assert_int_equal(itest_daemon_wait_exit(d, 20000), 0);
    /* it stopped because nothing was left, not because the 30 s grace ran out */
    assert_true(itest_now_ms() - done < (int64_t)itest_scaled(10000));
}

static void test_sigterm_idle_daemon_exits_0_quickly(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    int64_t t0 = itest_now_ms();
    assert_int_equal(itest_daemon_stop(d), 0);
    assert_true(itest_now_ms() - t0 < (int64_t)itest_scaled(5000));
}

/* ---- database outage ---------------------------------------------------------------------- */

static void expect_503_with_retry_after(const struct itest_resp *r)
{
    itest_expect_error(r, 503, "service_unavailable");
    itest_expect_retry_after(r);
}

static int restart_pg_then_teardown(void **state)
{
    if (itest.pg_start && itest_sh(itest.pg_start, 120000) != 0)
        fprintf(stderr, "inklet-itest: INKLET_ITEST_PG_START failed: PostgreSQL may be down\n");
    return itest_teardown(state);
}

static void test_database_outage_is_503_then_recovers_without_restart(void **state)
{
    (void)state;
    if (!itest.pg_stop || !itest.pg_start) {
        fprintf(stderr, "  INKLET_ITEST_PG_STOP/START not set: skipped\n");
        skip();
    }
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    pid_t pid = d->pid;
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_session cold;
    itest_login(d, &u, &cold);
    assert_int_equal(itest_me_status(d, u.s.access), 200);

    assert_int_equal(itest_sh(itest.pg_stop, 120000), 0);

    struct itest_resp r;
    for (int i = 0; i < 3; i++) {
        itest_call(d, "GET", "/auth/me", u.s.access, NULL, &r); /* liveness may be cached */
        expect_503_with_retry_after(&r);
        itest_resp_free(&r);
        itest_call(d, "GET", "/auth/me", cold.access, NULL, &r); /* needs the database */
        expect_503_with_retry_after(&r);
        itest_resp_free(&r);
    }
    itest_callf(d, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", u.password);
    expect_503_with_retry_after(&r);
    itest_resp_free(&r);
    itest_callf(d, "POST", "/auth/refresh", NULL, &r, "{s:s}", "refreshToken", cold.refresh);
    expect_503_with_retry_after(&r);
    itest_resp_free(&r);
    struct itest_user fresh;
    itest_user_new(&fresh);
    itest_callf(d, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", fresh.email,
                "username", fresh.username, "password", fresh.password);
    expect_503_with_retry_after(&r);
    itest_resp_free(&r);

    itest_get(d, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    /* readiness may be cached for up to a second */
    int64_t deadline = itest_now_ms() + itest_scaled(5000);
    long ready = 0;
    do {
        itest_get(d, "/health/ready", &r);
        ready = r.status;
        if (ready == 503) {
            itest_expect_retry_after(&r);
            json_t *checks = json_object_get(r.json, "checks");
            assert_string_not_equal(itest_str(checks, "database"), "ok");
        } else {
            itest_expect_status(&r, 200);
            itest_sleep_ms(100);
        }
        itest_resp_free(&r);
    } while (ready != 503 && itest_now_ms() < deadline);
    assert_int_equal(ready, 503);

    assert_int_equal(itest_sh(itest.pg_start, 120000), 0);

    /* recovery without a restart: poll, every answer being 200 or 503 */
    deadline = itest_now_ms() + itest_scaled(15000);
    long me = 0;
    int64_t t0 = itest_now_ms();
    do {
        itest_call(d, "GET", "/auth/me", u.s.access, NULL, &r);
        me = r.status;
        if (me != 200) {
            expect_503_with_retry_after(&r);
            itest_sleep_ms(100);
        }
        itest_resp_free(&r);
    } while (me != 200 && itest_now_ms() < deadline);
    assert_int_equal(me, 200);
    fprintf(stderr, "  /auth/me recovered %lld ms after PostgreSQL was back\n",
            (long long)(itest_now_ms() - t0));
    deadline = itest_now_ms() + itest_scaled(15000);
    do {
        itest_get(d, "/health/ready", &r);
        ready = r.status;
        itest_resp_free(&r);
        if (ready != 200)
            itest_sleep_ms(100);
    } while (ready != 200 && itest_now_ms() < deadline);
    assert_int_equal(ready, 200);
    assert_int_equal(itest_me_status(d, cold.access), 200);
    struct itest_session again;
    itest_login(d, &u, &again);

    assert_true(itest_daemon_alive(d));
    assert_int_equal(d->pid, pid);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- a hung database (contract §1 "Database hung") ---------------------------------------- */

/* One request fired by a thread, released together with the others by a barrier. No cmocka
 * assertions in threads: they record, the main thread checks. */
struct timed_call {
    const struct itest_daemon *d;
    const char *method, *path, *token, *body;
    pthread_barrier_t *barrier;
    long status;
    char code[48];
    bool retry_after;
    int64_t ms;
};

static void *timed_call_run(void *arg)
{
    struct timed_call *c = arg;
    char url[256];
    snprintf(url, sizeof url, "%s%s", c->d->url, c->path);
    char auth[1100];
    const char *headers[4] = {"Content-Type: application/json", NULL, NULL, NULL};
    if (c->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        headers[1] = auth;
    }
    if (c->barrier)
        pthread_barrier_wait(c->barrier);
    int64_t t0 = itest_now_ms();
    struct itest_resp r;
    itest_request(NULL, c->method, url, headers, c->body, c->body ? strlen(c->body) : 0, &r);
    c->ms = itest_now_ms() - t0;
    c->status = r.status;
    const char *code = json_string_value(json_object_get(r.json, "code"));
    snprintf(c->code, sizeof c->code, "%s", code ? code : "");
    const char *ra = itest_header(&r, "Retry-After");
    c->retry_after = ra && *ra >= '1' && *ra <= '9';
    itest_resp_free(&r);
    return NULL;
}

/* Fires all `n` calls at once and waits for every answer. */
static void fire_together(struct timed_call *calls, size_t n)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    pthread_t th[32];
    assert_true(n <= ITEST_ARRAY_LEN(th));
    for (size_t i = 0; i < n; i++) {
        calls[i].barrier = &barrier;
        assert_int_equal(pthread_create(&th[i], NULL, timed_call_run, &calls[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
}

/* Each call answered 503 service_unavailable with Retry-After within `limit_ms`. */
static void expect_all_503_within(const struct timed_call *calls, size_t n, int64_t limit_ms)
{
    for (size_t i = 0; i < n; i++) {
        const struct timed_call *c = &calls[i];
        fprintf(stderr, "  %s %s -> %ld %s in %lld ms\n", c->method, c->path, c->status, c->code,
                (long long)c->ms);
        assert_int_equal(c->status, 503);
        assert_string_equal(c->code, "service_unavailable");
        assert_true(c->retry_after);
        assert_true(c->ms <= limit_ms);
    }
}

/* GET /health every 20 ms on one keep-alive connection until told to stop. */
struct health_probe {
    const struct itest_daemon *d;
    atomic_bool stop;
    int64_t ms[4096];
    size_t n;
    size_t not_ok;
};

static void *health_probe_run(void *arg)
{
    struct health_probe *p = arg;
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/health", p->d->url);
    while (!atomic_load(&p->stop) && p->n < ITEST_ARRAY_LEN(p->ms)) {
        int64_t t0 = itest_now_ms();
        struct itest_resp r;
        itest_request(h, "GET", url, NULL, NULL, 0, &r);
        p->ms[p->n++] = itest_now_ms() - t0;
        p->not_ok += r.status != 200;
        itest_resp_free(&r);
        itest_sleep_ms(20);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t probe_p99(struct health_probe *p)
{
    qsort(p->ms, p->n, sizeof *p->ms, cmp_i64);
    return p->ms[(p->n * 99) / 100 < p->n ? (p->n * 99) / 100 : p->n - 1];
}

/* Polls /health/ready until its database check reads `want` ("ok" or not); true if it did. */
static bool ready_database_becomes(const struct itest_daemon *d, bool want_ok, unsigned limit_ms)
{
    int64_t deadline = itest_now_ms() + limit_ms;
    for (;;) {
        struct itest_resp r;
        itest_get(d, "/health/ready", &r);
        json_t *checks = json_object_get(r.json, "checks");
        const char *db = json_string_value(json_object_get(checks, "database"));
        bool ok = r.status == 200 && db && strcmp(db, "ok") == 0;
        bool failing =
            r.status == 503 && db && strcmp(db, "ok") != 0 && itest_header(&r, "Retry-After");
        itest_resp_free(&r);
        if (want_ok ? ok : failing)
            return true;
        if (itest_now_ms() > deadline)
            return false;
        itest_sleep_ms(50);
    }
}

static int thaw_pg_then_teardown(void **state)
{
    if (itest.pg_thaw && itest_sh(itest.pg_thaw, 60000) != 0)
        fprintf(stderr, "inklet-itest: INKLET_ITEST_PG_THAW failed: PostgreSQL may be stopped\n");
    return itest_teardown(state);
}

/* The production default DB_TIMEOUT (3 s): with the cluster SIGSTOPped (a hung host: the kernel
 * still accepts connections, nothing answers), /health stays fast, every database request,
 * sent together, answers 503 + Retry-After within DB_TIMEOUT + 1 s, a second wave (that has to
 * reconnect) too, readiness reports the database, and service resumes without a restart. */
static void test_hung_database_answers_503_within_db_timeout_and_recovers(void **state)
{
    (void)state;
    if (!itest.pg_freeze || !itest.pg_thaw) {
        fprintf(stderr, "  INKLET_ITEST_PG_FREEZE/THAW not set: skipped\n");
        skip();
    }
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    pid_t pid = d->pid;
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_session second;
    itest_login(d, &u, &second);
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    char refresh_body[256], login_body[256];
    snprintf(refresh_body, sizeof refresh_body, "{\"refreshToken\":\"%s\"}", second.refresh);
    snprintf(login_body, sizeof login_body, "{\"identifier\":\"%s\",\"password\":\"%s\"}",
             u.username, u.password);
    /* the deadline is wall-clock; only the work around it is slower under a wrapper */
    const int64_t limit = 3000 + itest_scaled(1000);

    assert_int_equal(itest_sh(itest.pg_freeze, 60000), 0);
    struct health_probe probe = {.d = d};
    atomic_init(&probe.stop, false);
    pthread_t prober;
    assert_int_equal(pthread_create(&prober, NULL, health_probe_run, &probe), 0);

    struct timed_call wave[12];
    for (size_t i = 0; i < 8; i++)
        wave[i] =
            (struct timed_call){.d = d, .method = "GET", .path = "/auth/me", .token = u.s.access};
    for (size_t i = 8; i < 10; i++)
        wave[i] = (struct timed_call){
            .d = d, .method = "GET", .path = "/api/devices", .token = u.s.access};
    wave[10] = (struct timed_call){
        .d = d, .method = "POST", .path = "/auth/refresh", .body = refresh_body};
    wave[11] =
        (struct timed_call){.d = d, .method = "POST", .path = "/auth/login", .body = login_body};
    fire_together(wave, ITEST_ARRAY_LEN(wave));
    expect_all_503_within(wave, ITEST_ARRAY_LEN(wave), limit);

    /* the connections that timed out are gone: this wave has to connect to the hung host */
    struct timed_call again[6];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(again); i++)
        again[i] =
            (struct timed_call){.d = d, .method = "GET", .path = "/auth/me", .token = u.s.access};
    fire_together(again, ITEST_ARRAY_LEN(again));
    expect_all_503_within(again, ITEST_ARRAY_LEN(again), limit);
    assert_true(ready_database_becomes(d, false, itest_scaled(3000)));

    atomic_store(&probe.stop, true);
    pthread_join(prober, NULL);
    int64_t p99 = probe_p99(&probe);
    fprintf(stderr, "  /health during the hang: %zu probes, p99 %lld ms, max %lld ms\n", probe.n,
            (long long)p99, (long long)probe.ms[probe.n - 1]);
    assert_true(probe.n >= 50);
    assert_int_equal(probe.not_ok, 0);
    assert_true(p99 < (int64_t)itest_scaled(50));

    assert_int_equal(itest_sh(itest.pg_thaw, 60000), 0);
    int64_t t0 = itest_now_ms(), deadline = t0 + itest_scaled(10000);
    long me;
    while ((me = itest_me_status(d, u.s.access)) != 200 && itest_now_ms() < deadline)
        itest_sleep_ms(100);
    assert_int_equal(me, 200);
    fprintf(stderr, "  /auth/me recovered %lld ms after the thaw\n",
            (long long)(itest_now_ms() - t0));
    assert_true(ready_database_becomes(d, true, itest_scaled(5000)));
    struct itest_session fresh;
    itest_login(d, &u, &fresh);
    assert_int_equal(d->pid, pid);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* A busy pool is not a dead database: with every pool connection stuck behind a lock, requests
 * that need the locked table answer 503 within DB_TIMEOUT + 1 s, while /health/ready (its own
 * connection) keeps saying the database is ok; once the lock goes, requests succeed again. */
static void test_locked_table_fills_the_pool_without_failing_readiness(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"DB_TIMEOUT=2", "DB_POOL_SIZE=2", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_session cold[4];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cold); i++)
        itest_login(d, &u, &cold[i]);
    PGconn *pg = PQconnectdb(itest.database_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexec(pg, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    struct timed_call calls[6];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(calls); i++)
        calls[i] = (struct timed_call){.d = d,
                                       .method = "GET",
                                       .path = "/auth/me",
                                       .token = cold[i % ITEST_ARRAY_LEN(cold)].access};
    pthread_t th[ITEST_ARRAY_LEN(calls)];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(calls); i++)
        assert_int_equal(pthread_create(&th[i], NULL, timed_call_run, &calls[i]), 0);
    /* meanwhile the pool is full of waiting statements, yet the database is fine */
    int64_t until = itest_now_ms() + 1500;
    size_t ready_checks = 0;
    while (itest_now_ms() < until) {
        struct itest_resp r;
        itest_get(d, "/health/ready", &r);
        itest_expect_status(&r, 200);
        assert_string_equal(itest_str(json_object_get(r.json, "checks"), "database"), "ok");
        itest_resp_free(&r);
        ready_checks++;
        itest_sleep_ms(100);
    }
    for (size_t i = 0; i < ITEST_ARRAY_LEN(calls); i++)
        pthread_join(th[i], NULL);
    expect_all_503_within(calls, ITEST_ARRAY_LEN(calls), 2000 + itest_scaled(1000));
    assert_true(ready_checks >= 5);

    res = PQexec(pg, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(pg);
    long me = 0;
    int64_t deadline = itest_now_ms() + itest_scaled(5000);
    while ((me = itest_me_status(d, u.s.access)) != 200 && itest_now_ms() < deadline)
        itest_sleep_ms(100);
    assert_int_equal(me, 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

/* ---- systemd readiness ------------------------------------------------------------------------
 */

/* Receives one datagram within `ms`; returns its length or -1. */
static ssize_t recv_within(int fd, char *buf, size_t len, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, len - 1, 0);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

/* A notify socket of the test's own; returns the fd and writes NOTIFY_SOCKET=... into env. */
static int notify_socket(const char *name, char *env, size_t env_len)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", itest.tmpdir, name);
    unlink(sa.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    snprintf(env, env_len, "NOTIFY_SOCKET=%s", sa.sun_path);
    return fd;
}

static void test_systemd_notify_ready_then_stopping(void **state)
{
    (void)state;
    char env[200];
    int fd = notify_socket("notify.sock", env, sizeof env);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){env, NULL});
    assert_non_null(d);
    char msg[256];
    /* READY=1 once it serves (the harness already saw /health answer) */
    assert_true(recv_within(fd, msg, sizeof msg, itest_scaled(5000)) > 0);
    assert_non_null(strstr(msg, "READY=1"));
    kill(d->pid, SIGTERM);
    assert_true(recv_within(fd, msg, sizeof msg, itest_scaled(5000)) > 0);
    assert_non_null(strstr(msg, "STOPPING=1"));
    assert_int_equal(itest_daemon_stop(d), 0);
    close(fd);
}

/* Counts WATCHDOG=1 datagrams arriving within `ms`. */
static unsigned count_pings(int fd, unsigned ms)
{
    unsigned pings = 0;
    int64_t end = itest_now_ms() + ms;
    char msg[256];
    for (int64_t left; (left = end - itest_now_ms()) > 0;)
        if (recv_within(fd, msg, sizeof msg, (unsigned)left) > 0 && strstr(msg, "WATCHDOG=1"))
            pings++;
    return pings;
}

/* WatchdogSec=: pings at half the interval while the server answers its own loopback probe;
 * when no connection can be served (every slot of HTTP_MAX_CONNECTIONS held by silent
 * clients) the pings stop, and they resume once the server serves again. */
static void test_systemd_watchdog_pings_only_while_the_server_answers(void **state)
{
    (void)state;
    char env[200], usec[48];
    int fd = notify_socket("watchdog.sock", env, sizeof env);
    /* the probe gets a quarter interval: 1 s normally, 1.25 s under valgrind (where /health
     * still answers in a few hundred ms), so the test stays short there too */
    unsigned interval_ms = itest.slow > 1 ? 5000 : 1000;
    snprintf(usec, sizeof usec, "WATCHDOG_USEC=%u", interval_ms * 1000);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){
        env, usec, "HTTP_MAX_CONNECTIONS=6", "HTTP_CONNECTION_TIMEOUT=600", NULL});
    assert_non_null(d);
    /* serving: a ping every half interval (4 expected in 2 intervals; timing slack) */
    unsigned live = count_pings(fd, 2 * interval_ms);
    assert_in_range(live, 2, 6);
    /* wedge it: every connection slot held by a client that never finishes a request */
    int held[6];
    for (int i = 0; i < 6; i++) {
        held[i] = itest_raw_connect(d->port);
        assert_true(held[i] >= 0);
        assert_true(itest_raw_send_str(held[i], "GET /health HTTP/1.1\r\n"));
    }
    itest_sleep_ms(interval_ms); /* the probe in flight may still have succeeded */
    (void)count_pings(fd, 1);
    assert_int_equal(count_pings(fd, 3 * interval_ms), 0);
    /* freed: pings resume */
    for (int i = 0; i < 6; i++)
        close(held[i]);
    assert_true(count_pings(fd, 2 * interval_ms) >= 1);
    char *log = itest_read_file(d->log_path, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "watchdog: the server did not answer its probe"));
    free(log);
    assert_int_equal(itest_daemon_stop(d), 0);
    close(fd);
}

/* WATCHDOG_PID names the process the watchdog is for; another pid means no pings. */
static void test_systemd_watchdog_for_another_pid_sends_no_pings(void **state)
{
    (void)state;
    char env[200], usec[48];
    int fd = notify_socket("watchdog-pid.sock", env, sizeof env);
    unsigned interval_ms = 1000; /* no ping is ever due: the window only has to span periods */
    snprintf(usec, sizeof usec, "WATCHDOG_USEC=%u", interval_ms * 1000);
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){env, usec, "WATCHDOG_PID=1", NULL});
    assert_non_null(d);
    char msg[256];
    assert_true(recv_within(fd, msg, sizeof msg, itest_scaled(5000)) > 0);
    assert_non_null(strstr(msg, "READY=1"));
    assert_int_equal(count_pings(fd, 3 * interval_ms), 0);
    assert_int_equal(itest_daemon_stop(d), 0);
    close(fd);
}

/* ---- request log, OpenAPI, metrics ---------------------------------------------------------- */

static void test_request_log_has_one_json_line_per_request_and_no_secrets(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"LOG_LEVEL=info", "LOG_FORMAT=json", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_session s;
    itest_login(d, &u, &s);
    struct itest_resp r;
    itest_call(d, "GET", "/auth/me", s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_callf(d, "POST", "/auth/refresh", NULL, &r, "{s:s}", "refreshToken", s.refresh);
    itest_expect_status(&r, 200);
    char next_refresh[128];
    snprintf(next_refresh, sizeof next_refresh, "%s", itest_str(r.json, "refreshToken"));
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);

    char *log = itest_read_file(d->log_path, NULL);
    /* nothing secret, ever */
    assert_null(strstr(log, u.password));
    assert_null(strstr(log, s.access));
    assert_null(strstr(log, s.refresh));
    assert_null(strstr(log, next_refresh));
    assert_null(strstr(log, u.s.refresh));
    assert_null(strstr(log, itest.jwt_secret));
    /* every line is JSON; the request lines carry id, route, status, duration, user */
    bool saw_me = false;
    unsigned requests = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            fail_msg("log line is not JSON: %s", line);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        if (msg && strcmp(msg, "request") == 0) {
            requests++;
            assert_true(json_is_string(json_object_get(j, "requestId")));
            assert_true(json_is_string(json_object_get(j, "route")));
            assert_true(json_is_integer(json_object_get(j, "status")));
            assert_true(json_is_number(json_object_get(j, "durationMs")));
            if (strcmp(json_string_value(json_object_get(j, "route")), "/auth/me") == 0) {
                saw_me = true;
                assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
                assert_string_equal(json_string_value(json_object_get(j, "userId")), u.id);
            }
        }
        json_decref(j);
    }
    assert_true(saw_me);
    assert_true(requests >= 4); /* health probe(s), register, login, me, refresh */
    free(log);
}

static void test_openapi_document_is_served(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_get(D, "/openapi.json", &r);
    itest_expect_status(&r, 200);
    assert_non_null(r.json);
    assert_string_equal(itest_str(r.json, "openapi"), "3.1.0");
    json_t *paths = json_object_get(r.json, "paths");
    assert_non_null(json_object_get(json_object_get(paths, "/auth/login"), "post"));
    assert_non_null(json_object_get(json_object_get(paths, "/api/devices/{id}/commands"), "post"));
    itest_resp_free(&r);
}

static void test_metrics_are_served_to_loopback_in_prometheus_format(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_get(D, "/health", &r);
    itest_resp_free(&r);
    itest_get(D, "/metrics", &r);
    itest_expect_status(&r, 200);
    assert_non_null(strstr(itest_header(&r, "Content-Type"), "text/plain"));
    assert_non_null(strstr(r.body, "inklet_http_requests_total{method=\"GET\",route=\"/health\","
                                   "status=\"2x\"}"));
    assert_non_null(strstr(r.body, "inklet_db_pool_size "));
    assert_non_null(strstr(r.body, "inklet_broker_connected "));
    assert_non_null(strstr(r.body, "inklet_http_request_duration_seconds_bucket{method=\"GET\","
                                   "route=\"/health\",le=\"+Inf\"}"));
    itest_resp_free(&r);
}

/* The whole live page, after traffic on the main routes, is valid by a strict parser of the
 * text format and our naming rules (tests/support/promtext.h), and counts what happened. */
static void test_metrics_page_passes_a_strict_prometheus_parser(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session s;
    itest_login(D, &u, &s);
    unsigned long long ok_before =
        itest_metric(D, "inklet_signins_total{provider=\"password\",result=\"ok\"}");
    unsigned long long failed_before =
        itest_metric(D, "inklet_signins_total{provider=\"password\",result=\"failed\"}");
    struct itest_session s2;
    itest_login(D, &u, &s2);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", "wrong password here");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_call(D, "GET", "/auth/me", s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_call(D, "GET", "/api/devices", s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_get(D, "/no/such/route", &r);
    itest_expect_status(&r, 404);
    itest_resp_free(&r);
    itest_get(D, "/metrics", &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_header(&r, "Content-Type"),
                        "text/plain; version=0.0.4; charset=utf-8");
    struct prom_page page;
    char err[256];
    bool ok = prom_parse(r.body, &page, err, sizeof err);
    if (!ok)
        fprintf(stderr, "  /metrics: %s\n", err);
    assert_true(ok);
    assert_true(prom_has_family(&page, "inklet_http_request_duration_seconds"));
    assert_true(prom_has_family(&page, "inklet_command_delivery_seconds"));
    assert_true(prom_has_family(&page, "process_resident_memory_bytes"));
    prom_page_free(&page);
    assert_non_null(strstr(r.body, "inklet_http_request_duration_seconds_count{method=\"GET\","
                                   "route=\"/api/devices\"} "));
    itest_resp_free(&r);
    assert_int_equal(itest_metric(D, "inklet_signins_total{provider=\"password\",result=\"ok\"}"),
                     ok_before + 1);
    assert_int_equal(
        itest_metric(D, "inklet_signins_total{provider=\"password\",result=\"failed\"}"),
        failed_before + 1);
    assert_true(itest_metric(D, "process_resident_memory_bytes") > 1000000);
    assert_true(itest_metric(D, "process_open_fds") > 3);
}

int itest_group_ops(void)
{
    const struct CMUnitTest tests[] = {
        T(test_concurrent_migrations_on_fresh_db_both_exit_0),
        T(test_check_config_redacts_secrets),
        T(test_invalid_config_exits_with_one_line_naming_the_key),
        T(test_bad_or_missing_secrets_are_named_never_printed),
        T(test_version_exits_0),
        T(test_health_is_ok),
        T(test_ready_reports_database_ok),
        T(test_sigterm_completes_in_flight_request_then_exits_0),
        T(test_sigterm_idle_daemon_exits_0_quickly),
        T(test_systemd_notify_ready_then_stopping),
        T(test_systemd_watchdog_pings_only_while_the_server_answers),
        T(test_systemd_watchdog_for_another_pid_sends_no_pings),
        T(test_request_log_has_one_json_line_per_request_and_no_secrets),
        T(test_openapi_document_is_served),
        T(test_metrics_are_served_to_loopback_in_prometheus_format),
        T(test_metrics_page_passes_a_strict_prometheus_parser),
    };
    return cmocka_run_group_tests_name("ops", tests, itest_group_setup, itest_group_teardown);
}

int itest_group_outage(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_locked_table_fills_the_pool_without_failing_readiness,
                                  itest_teardown),
        cmocka_unit_test_teardown(test_hung_database_answers_503_within_db_timeout_and_recovers,
                                  thaw_pg_then_teardown),
        cmocka_unit_test_teardown(test_database_outage_is_503_then_recovers_without_restart,
                                  restart_pg_then_teardown),
    };
    return cmocka_run_group_tests_name("outage", tests, NULL, NULL);
}
