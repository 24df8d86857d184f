/* Contract §0, §2, §6 hardening: refresh-token lifetimes, rehash on login, login back-off
 * doubling, opaque 500s, the default rate limits, and who may read /metrics. Every test starts
 * its own inkletd with the configuration it is about. */
#include "harness.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The production rate limits (§6); the harness's base environment lifts them. */
#define DEFAULT_RATES                                                                              \
    "RATE_LIMIT_REGISTER=10/60", "RATE_LIMIT_REFRESH=60/60", "RATE_LIMIT_LOGIN=20/60"
/* Hashing is not what these tests are about: the cheapest hash the configuration accepts keeps a
 * burst of requests, or a session's start, within a few milliseconds of where the test puts
 * it, even under valgrind. */
#define CHEAP_HASH "ARGON2_MEMORY_KIB=8", "ARGON2_ITERATIONS=1"

#define METRICS_TOKEN "s3cr3t-token-for-itest-metrics-0123456789"
#define OLD_PHC_PREFIX "$argon2id$v=19$m=8192,t=1,p=1$"
#define NEW_PHC_PREFIX "$argon2id$v=19$m=19456,t=2,p=1$"

/* ---- requests ----------------------------------------------------------------------------- */

/* POST `path` on `d` with a body built by json_pack(fmt, ...). `h` may be NULL or a handle the
 * caller keeps, to reuse one connection for a burst. */
static void post_packed(CURL *h, const struct itest_daemon *d, const char *path,
                        struct itest_resp *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t err;
    json_t *v = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (!v)
        fprintf(stderr, "  json_pack(%s): %s\n", fmt, err.text);
    assert_non_null(v);
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char url[160];
    snprintf(url, sizeof url, "%s%s", d->url, path);
    const char *headers[] = {"Content-Type: application/json", "User-Agent: " ITEST_USER_AGENT,
                             NULL};
    itest_request(h, "POST", url, headers, text, strlen(text), r);
    free(text);
}

/* Rotates `token`, asserts 200 with a new pair in the same session, and returns the pair. */
static void refresh_ok(CURL *h, const struct itest_daemon *d, const char *token,
                       struct itest_session *out)
{
    struct itest_resp r;
    post_packed(h, d, "/auth/refresh", &r, "{s:s}", "refreshToken", token);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"accessToken", "refreshToken", NULL});
    char sid[sizeof out->sid];
    snprintf(sid, sizeof sid, "%s", out->sid);
    itest_session_from(r.json, out);
    itest_resp_free(&r);
    if (sid[0])
        assert_string_equal(out->sid, sid);
}

static void login_with(CURL *h, const struct itest_daemon *d, const char *identifier,
                       const char *password, struct itest_resp *r)
{
    post_packed(h, d, "/auth/login", r, "{s:s,s:s}", "identifier", identifier, "password",
                password);
}

static void register_fresh(CURL *h, const struct itest_daemon *d, struct itest_user *u,
                           struct itest_resp *r)
{
    itest_user_new(u);
    post_packed(h, d, "/auth/register", r, "{s:s,s:s,s:s}", "email", u->email, "username",
                u->username, "password", u->password);
}

/* A sign-in name nobody has, new on every call: only the per-IP bucket can refuse it (a repeated
 * name would meet its own back-off). */
static const char *unknown_name(void)
{
    static char name[64];
    static unsigned n;
    snprintf(name, sizeof name, "nobody-%s-hard-%u", itest.run_tag, ++n);
    return name;
}

/* A burst that took longer than a refill interval cannot be judged exactly (a token may have
 * come back in the meantime): say so, stop the daemon and skip. */
static void skip_when_too_slow(struct itest_daemon *d, int64_t elapsed_ms, unsigned limit_ms,
                               const char *what)
{
    if (elapsed_ms < (int64_t)limit_ms)
        return;
    fprintf(stderr,
            "  %s took %lld ms, longer than the %u ms a bucket token takes to refill; "
            "this machine is too slow to check it exactly\n",
            what, (long long)elapsed_ms, limit_ms);
    assert_int_equal(itest_daemon_stop(d), 0);
    skip();
}

/* A refused take from a bucket that refills one token every `interval_s` seconds and was full
 * `elapsed_ms` ago: 429 rate_limited and a Retry-After of the time to the next token, rounded
 * up, i.e. ceil(interval - refilled time). */
static void expect_bucket_refusal(const struct itest_resp *r, unsigned interval_s,
                                  int64_t elapsed_ms)
{
    itest_expect_error(r, 429, "rate_limited");
    unsigned ra = itest_expect_retry_after(r);
    unsigned whole = (unsigned)(elapsed_ms / 1000);
    unsigned lo = whole < interval_s ? interval_s - whole : 1;
    if (ra < lo || ra > interval_s)
        fprintf(stderr, "  Retry-After %u, expected %u..%u (%lld ms after the bucket was full)\n",
                ra, lo, interval_s, (long long)elapsed_ms);
    assert_in_range(ra, lo, interval_s);
}

/* ---- database ----------------------------------------------------------------------------- */

static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "database ... does not exist, skipping" is expected */
}

static PGconn *db_connect(const char *conninfo)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK)
        fprintf(stderr, "  database: %s\n", PQerrorMessage(pg));
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PQsetNoticeProcessor(pg, notice_ignore, NULL);
    return pg;
}

static void db_run(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "  database: %s: %s\n", sql, PQresultErrorMessage(res));
    PQclear(res);
    assert_true(ok);
}

/* users.password_hash of `user_id` in the test database; malloc'd. */
static char *stored_hash(const char *user_id)
{
    PGconn *pg = db_connect(itest.database_url);
    PGresult *res = PQexecParams(pg, "SELECT password_hash FROM users WHERE id = $1::uuid", 1, NULL,
                                 (const char *const[]){user_id}, NULL, NULL, 0);
    bool ok =
        PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0);
    if (!ok)
        fprintf(stderr, "  no password hash for user %s: %s\n", user_id, PQresultErrorMessage(res));
    char *v = ok ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    PQfinish(pg);
    assert_non_null(v);
    return v;
}

/* Appends `s` to out[*off..cap), asserting it fits. */
static void put(char *out, size_t cap, size_t *off, const char *s)
{
    size_t n = strlen(s);
    assert_true(*off + n < cap);
    memcpy(out + *off, s, n + 1);
    *off += n;
}

/* The test database's connection settings with another database name, as a key='value'
 * conninfo string. */
static void conninfo_for(const char *dbname, char *out, size_t cap)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(itest.database_url, &err);
    if (!opts)
        fprintf(stderr, "  cannot parse the database URL: %s\n", err ? err : "?");
    assert_non_null(opts);
    size_t off = 0;
    out[0] = '\0';
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        bool is_db = strcmp(o->keyword, "dbname") == 0;
        const char *v = is_db ? dbname : o->val;
        if (!v)
            continue;
        put(out, cap, &off, off ? " " : "");
        put(out, cap, &off, o->keyword);
        put(out, cap, &off, "='");
        for (const char *c = v; *c; c++) {
            char ch[3] = {'\\', *c, '\0'};
            put(out, cap, &off, *c == '\'' || *c == '\\' ? ch : ch + 1);
        }
        put(out, cap, &off, "'");
    }
    PQconninfoFree(opts);
    PQfreemem(err);
}

/* ---- 1. refresh-token lifetimes ----------------------------------------------------------- */

static void test_hardening_refresh_token_unused_past_idle_ttl_is_expired(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start((const char *const[]){"REFRESH_IDLE_TTL=2", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    /* used well inside its 2 s window, a token rotates */
    itest_sleep_ms(500);
    struct itest_session next = u.s;
    refresh_ok(NULL, d, u.s.refresh, &next);
    /* the new token was stored before its response arrived: 2 s + a wide margin later it is
     * past its idle lifetime */
    itest_sleep_ms(2000 + 1500);
    struct itest_resp r;
    post_packed(NULL, d, "/auth/refresh", &r, "{s:s}", "refreshToken", next.refresh);
    itest_expect_error(&r, 401, "refresh_token_expired");
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_refresh_rotation_renews_the_idle_ttl(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start((const char *const[]){"REFRESH_IDLE_TTL=3", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    int64_t t0 = itest_now_ms();
    struct itest_session cur = u.s;
    /* each token is used ~1.5 s after it was issued, half its idle lifetime */
    for (int i = 0; i < 4; i++) {
        itest_sleep_ms(1500);
        refresh_ok(NULL, d, cur.refresh, &cur);
    }
    /* the session has outlived its idle lifetime twice over and is still alive */
    assert_true(itest_now_ms() - t0 >= 2 * 3000);
    assert_int_equal(itest_me_status(d, cur.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_session_max_ttl_ends_a_rotating_session(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"REFRESH_IDLE_TTL=3", "SESSION_MAX_TTL=4", CHEAP_HASH, NULL});
    assert_non_null(d);
    enum { IDLE_MS = 3000, MAX_MS = 4000 };
    struct itest_user u = {0};
    int64_t before = itest_now_ms();
    itest_register(d, &u);
    int64_t after = itest_now_ms();
    /* The session started somewhere in [before, after] (server time). A rotation answered before
     * before + 4 s must succeed; one sent after after + 4 s must be refused; in the few
     * milliseconds between, either answer is right. */
    struct itest_session cur = u.s;
    int64_t issued_from = before; /* the current token was issued no earlier than this */
    int rotations = 0;
    for (;;) {
        itest_sleep_ms(1000);
        int64_t sent = itest_now_ms();
        struct itest_resp r;
        post_packed(NULL, d, "/auth/refresh", &r, "{s:s}", "refreshToken", cur.refresh);
        int64_t got = itest_now_ms();
        /* the precondition: the token was used within its idle window */
        if (got - issued_from >= IDLE_MS)
            fprintf(stderr,
                    "  a token was used %lld ms after it was issued; the test needs "
                    "< %d ms\n",
                    (long long)(got - issued_from), IDLE_MS);
        assert_true(got - issued_from < IDLE_MS);
        bool must_live = got < before + MAX_MS;
        bool must_die = sent > after + MAX_MS;
        if (must_live || (!must_die && r.status == 200)) {
            itest_expect_status(&r, 200);
            itest_session_from(r.json, &cur);
            itest_resp_free(&r);
            assert_string_equal(cur.sid, u.s.sid);
            issued_from = sent;
            rotations++;
            continue;
        }
        itest_expect_error(&r, 401, "refresh_token_expired");
        itest_resp_free(&r);
        break;
    }
    /* the session lived through several renewals of its idle window before the cap ended it */
    assert_true(rotations >= 2);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 2. rehash on login ------------------------------------------------------------------- */

/* Registers `u` on a daemon that hashes with m=8192, t=1 and stops it; returns the stored hash
 * (malloc'd), asserted to carry those parameters. */
static char *register_with_old_parameters(struct itest_user *u)
{
    struct itest_daemon *old = itest_daemon_start(
        (const char *const[]){"ARGON2_MEMORY_KIB=8192", "ARGON2_ITERATIONS=1", NULL});
    assert_non_null(old);
    itest_register(old, u);
    assert_int_equal(itest_daemon_stop(old), 0);
    char *phc = stored_hash(u->id);
    if (strncmp(phc, OLD_PHC_PREFIX, strlen(OLD_PHC_PREFIX)) != 0)
        fprintf(stderr, "  stored hash %s\n", phc);
    assert_true(strncmp(phc, OLD_PHC_PREFIX, strlen(OLD_PHC_PREFIX)) == 0);
    return phc;
}

static void test_hardening_login_rehashes_old_parameters(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char *old_phc = register_with_old_parameters(&u);
    /* the production parameters (19456 KiB, 2 passes, 1 lane), named because the harness
     * lowers the memory under valgrind */
    struct itest_daemon *d = itest_daemon_start((const char *const[]){
        "ARGON2_MEMORY_KIB=19456", "ARGON2_ITERATIONS=2", "ARGON2_PARALLELISM=1", NULL});
    assert_non_null(d);
    struct itest_session s;
    itest_login(d, &u, &s);
    char *new_phc = stored_hash(u.id);
    if (strncmp(new_phc, NEW_PHC_PREFIX, strlen(NEW_PHC_PREFIX)) != 0)
        fprintf(stderr, "  stored hash after login %s\n", new_phc);
    assert_true(strncmp(new_phc, NEW_PHC_PREFIX, strlen(NEW_PHC_PREFIX)) == 0);
    assert_string_not_equal(new_phc, old_phc);
    /* the password still works against the new hash, and a current hash is left alone */
    itest_login(d, &u, &s);
    char *again = stored_hash(u.id);
    assert_string_equal(again, new_phc);
    assert_int_equal(itest_me_status(d, s.access), 200);
    free(again);
    free(new_phc);
    free(old_phc);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_wrong_password_does_not_rehash(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char *old_phc = register_with_old_parameters(&u);
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    struct itest_resp r;
    login_with(NULL, d, u.username, "Wrong-password-1", &r);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    char *phc = stored_hash(u.id);
    assert_string_equal(phc, old_phc);
    free(phc);
    free(old_phc);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 3. login back-off -------------------------------------------------------------------- */

static void test_hardening_login_backoff_doubles_up_to_its_cap(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"LOGIN_BACKOFF_AFTER=2", "LOGIN_BACKOFF_MAX=4", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_resp r;
    login_with(NULL, d, u.username, "Wrong-password-1", &r);
    itest_expect_error(&r, 401, "invalid_credentials"); /* failure 1: below the threshold */
    itest_resp_free(&r);
    /* failure n >= after blocks for min(max, 2^(n - after)) s: 1, 2, 4, then capped at 4.
     * Retry-After is the rest of the block rounded up, so right after the failure it is the
     * whole block. Each failure is made once the previous block is over. */
    static const unsigned expected[] = {1, 2, 4, 4};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(expected); i++) {
        login_with(NULL, d, u.username, "Wrong-password-1", &r);
        itest_expect_error(&r, 401, "invalid_credentials");
        itest_resp_free(&r);
        /* even the right password is held back */
        login_with(NULL, d, u.username, u.password, &r);
        itest_expect_error(&r, 429, "login_backoff");
        unsigned ra = itest_expect_retry_after(&r);
        itest_resp_free(&r);
        if (ra != expected[i])
            fprintf(stderr, "  after failure %zu: Retry-After %u, expected %u\n", i + 2, ra,
                    expected[i]);
        assert_int_equal(ra, expected[i]);
        itest_sleep_ms(ra * 1000 + 500);
    }
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 4. opaque 500s ----------------------------------------------------------------------- */

static char broken_db[64];

/* Always runs: kills the test's daemons (they hold connections), then drops the database. */
static int teardown_broken_db(void **state)
{
    itest_teardown(state);
    if (!broken_db[0])
        return 0;
    PGconn *pg = PQconnectdb(itest.database_url);
    int rc = 0;
    if (PQstatus(pg) == CONNECTION_OK) {
        PQsetNoticeProcessor(pg, notice_ignore, NULL);
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", broken_db);
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "inklet-itest: %s: %s\n", sql, PQresultErrorMessage(res));
            rc = -1;
        }
        PQclear(res);
    } else {
        fprintf(stderr, "inklet-itest: cannot drop %s: %s\n", broken_db, PQerrorMessage(pg));
        rc = -1;
    }
    PQfinish(pg);
    broken_db[0] = '\0';
    return rc;
}

/* A 500 says nothing about where it came from: exactly {"message","code":"internal_error"} and
 * no word of the SQL, the schema or the library. */
static void expect_opaque_500(const struct itest_resp *r)
{
    itest_expect_error(r, 500, "internal_error");
    const char *msg = itest_str(r->json, "message");
    static const char *const words[] = {"sessions", "users",   "constraint",   "violates",
                                        "SQL",      "pq",      "itest_broken", "check",
                                        "relation", "postgres"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(words); i++) {
        if (strcasestr(msg, words[i]))
            fprintf(stderr, "  the 500 message \"%s\" contains \"%s\"\n", msg, words[i]);
        assert_null(strcasestr(msg, words[i]));
    }
    /* upper-case ERROR is libpq's prefix; "error" in a plain sentence is fine */
    assert_null(strstr(msg, "ERROR"));
}

static void test_hardening_database_errors_answer_opaque_500(void **state)
{
    (void)state;
    snprintf(broken_db, sizeof broken_db, "itest_broken_%s", itest.run_tag);
    char sql[160];
    PGconn *admin = db_connect(itest.database_url);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", broken_db);
    db_run(admin, sql);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", broken_db);
    db_run(admin, sql);
    PQfinish(admin);

    char conninfo[1024], db_kv[1100];
    conninfo_for(broken_db, conninfo, sizeof conninfo);
    snprintf(db_kv, sizeof db_kv, "DATABASE_URL=%s", conninfo);
    struct itest_proc p;
    int st = itest_run_inkletd((const char *const[]){"migrate", NULL},
                               (const char *const[]){db_kv, NULL}, 60000, &p);
    if (st != 0)
        fprintf(stderr, "  migrate: stdout: %s\n  stderr: %s\n", p.out, p.err);
    itest_proc_free(&p);
    assert_int_equal(st, 0);

    /* the production log format, and everything it can say */
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){db_kv, "LOG_LEVEL=debug", "LOG_FORMAT=json", NULL});
    assert_non_null(d);
    struct itest_user u = {0}, v;
    itest_register(d, &u);

    /* login's session INSERT now fails inside PostgreSQL with a check violation (23514) */
    PGconn *pg = db_connect(conninfo);
    db_run(pg, "ALTER TABLE sessions ADD CONSTRAINT itest_broken CHECK (false) NOT VALID");
    struct itest_resp r;
    login_with(NULL, d, u.username, u.password, &r);
    expect_opaque_500(&r);
    itest_resp_free(&r);

    /* and register's user INSERT */
    db_run(pg, "ALTER TABLE users ADD CONSTRAINT itest_broken_u CHECK (false) NOT VALID");
    PQfinish(pg);
    register_fresh(NULL, d, &v, &r);
    expect_opaque_500(&r);
    itest_resp_free(&r);

    assert_int_equal(itest_daemon_stop(d), 0);
    char *log = itest_read_file(d->log_path, NULL);
    const char *secrets[] = {u.password, u.email, v.password, v.email};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(secrets); i++) {
        if (strstr(log, secrets[i]))
            itest_daemon_dump_log(d, "the log holds a password or an email address");
        assert_null(strstr(log, secrets[i]));
    }
    free(log);
}

/* ---- 5. rate limits at their defaults ----------------------------------------------------- */

/* Spends the default register bucket of 127.0.0.1 (10 per 60 s, one token back every 6 s) from
 * full: ten registrations succeed (into users[]) and the eleventh is refused. Skips when the
 * burst took longer than a token takes to come back. */
static void spend_register_bucket(struct itest_daemon *d, struct itest_user users[10])
{
    CURL *h = curl_easy_init();
    assert_non_null(h);
    struct itest_resp r;
    int64_t t0 = itest_now_ms();
    for (int i = 0; i < 10; i++) {
        register_fresh(h, d, &users[i], &r);
        itest_expect_status(&r, 201);
        snprintf(users[i].id, sizeof users[i].id, "%s",
                 itest_str(json_object_get(r.json, "user"), "id"));
        itest_resp_free(&r);
    }
    struct itest_user extra;
    register_fresh(h, d, &extra, &r);
    int64_t elapsed = itest_now_ms() - t0;
    curl_easy_cleanup(h);
    if (elapsed >= 6000)
        itest_resp_free(&r);
    skip_when_too_slow(d, elapsed, 6000, "11 registrations");
    expect_bucket_refusal(&r, 6, elapsed);
    itest_resp_free(&r);
}

static void test_hardening_register_default_limit_is_10_per_minute(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){DEFAULT_RATES, CHEAP_HASH, NULL});
    assert_non_null(d);
    struct itest_user users[10];
    spend_register_bucket(d, users);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_refresh_default_limit_is_60_per_minute(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){DEFAULT_RATES, CHEAP_HASH, NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    /* one token back every second: the chain runs on one kept-alive connection to be fast */
    CURL *h = curl_easy_init();
    assert_non_null(h);
    struct itest_session cur = u.s;
    int64_t t0 = itest_now_ms();
    for (int i = 0; i < 60; i++)
        refresh_ok(h, d, cur.refresh, &cur);
    struct itest_resp r;
    post_packed(h, d, "/auth/refresh", &r, "{s:s}", "refreshToken", cur.refresh);
    int64_t elapsed = itest_now_ms() - t0;
    curl_easy_cleanup(h);
    if (elapsed >= 1000)
        itest_resp_free(&r);
    skip_when_too_slow(d, elapsed, 1000, "61 refreshes");
    expect_bucket_refusal(&r, 1, elapsed);
    itest_resp_free(&r);
    /* the refused request never reached the token: it still rotates once a token is back */
    itest_sleep_ms(1500);
    refresh_ok(NULL, d, cur.refresh, &cur);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_empty_login_bucket_leaves_register_open(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){DEFAULT_RATES, CHEAP_HASH, NULL});
    assert_non_null(d);
    /* 20 per 60 s: one token back every 3 s */
    CURL *h = curl_easy_init();
    assert_non_null(h);
    struct itest_resp r;
    int64_t t0 = itest_now_ms();
    for (int i = 0; i < 20; i++) {
        login_with(h, d, unknown_name(), "Some-password-1", &r);
        itest_expect_error(&r, 401, "invalid_credentials");
        itest_resp_free(&r);
    }
    login_with(h, d, unknown_name(), "Some-password-1", &r);
    int64_t elapsed = itest_now_ms() - t0;
    curl_easy_cleanup(h);
    if (elapsed >= 3000)
        itest_resp_free(&r);
    skip_when_too_slow(d, elapsed, 3000, "21 logins");
    expect_bucket_refusal(&r, 3, elapsed);
    itest_resp_free(&r);
    /* the register class has its own bucket */
    struct itest_user u = {0};
    itest_register(d, &u);
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_empty_register_bucket_leaves_login_open(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){DEFAULT_RATES, CHEAP_HASH, NULL});
    assert_non_null(d);
    struct itest_user users[10];
    spend_register_bucket(d, users);
    /* the login class has its own bucket: its normal answers, not 429 */
    struct itest_resp r;
    login_with(NULL, d, users[0].username, "Wrong-password-1", &r);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    struct itest_session s;
    itest_login(d, &users[1], &s);
    assert_int_equal(itest_me_status(d, s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 6. who may read /metrics ------------------------------------------------------------- */

/* Starts a daemon listening on every address, reachable at base (http://<non-loopback>:port);
 * skips when this machine has no such address. */
static struct itest_daemon *start_on_all_addresses(const char *metrics_token, char *base,
                                                   size_t base_len)
{
    char ip[64];
    if (!itest_non_loopback_ipv4(ip)) {
        fprintf(stderr, "  no up non-loopback IPv4 address on this machine; cannot test a "
                        "non-loopback peer\n");
        skip();
    }
    char token_kv[128];
    snprintf(token_kv, sizeof token_kv, "METRICS_TOKEN=%s", metrics_token ? metrics_token : "");
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){"LISTEN_ADDR=0.0.0.0", metrics_token ? token_kv : NULL, NULL});
    assert_non_null(d);
    snprintf(base, base_len, "http://%s:%u", ip, d->port);
    return d;
}

/* GET base+path with up to two extra header lines (NULL to leave out). */
static void get_from(const char *base, const char *path, const char *h1, const char *h2,
                     struct itest_resp *r)
{
    char url[160];
    snprintf(url, sizeof url, "%s%s", base, path);
    const char *headers[4] = {"User-Agent: " ITEST_USER_AGENT, NULL, NULL, NULL};
    size_t n = 1;
    if (h1)
        headers[n++] = h1;
    if (h2)
        headers[n++] = h2;
    itest_request(NULL, "GET", url, headers, NULL, 0, r);
}

/* The answer for a route that does not exist: /metrics must be indistinguishable from it. */
static void expect_hidden(const char *base, const struct itest_resp *r)
{
    itest_expect_error(r, 404, "not_found");
    struct itest_resp none;
    get_from(base, "/no-such-route", NULL, NULL, &none);
    itest_expect_error(&none, 404, "not_found");
    assert_string_equal(r->body, none.body);
    itest_resp_free(&none);
}

static void expect_prometheus(const struct itest_resp *r)
{
    itest_expect_status(r, 200);
    const char *ct = itest_header(r, "Content-Type");
    assert_non_null(ct);
    assert_true(strncasecmp(ct, "text/plain", 10) == 0);
    bool sample = strncmp(r->body, "inklet_", 7) == 0 || strstr(r->body, "\ninklet_") != NULL;
    if (!sample)
        fprintf(stderr, "  no inklet_ sample line in: %.500s\n", r->body);
    assert_true(sample);
}

static void test_hardening_metrics_is_404_for_non_loopback_peer(void **state)
{
    (void)state;
    char base[96];
    struct itest_daemon *d = start_on_all_addresses(NULL, base, sizeof base);
    struct itest_resp r;
    get_from(base, "/metrics", NULL, NULL, &r);
    expect_hidden(base, &r);
    itest_resp_free(&r);
    /* no token configured: an empty Bearer value is no key */
    get_from(base, "/metrics", "Authorization: Bearer ", NULL, &r);
    expect_hidden(base, &r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_metrics_bearer_token_admits_non_loopback_peer(void **state)
{
    (void)state;
    char base[96];
    struct itest_daemon *d = start_on_all_addresses(METRICS_TOKEN, base, sizeof base);
    struct itest_resp r;
    get_from(base, "/metrics", "Authorization: Bearer " METRICS_TOKEN, NULL, &r);
    expect_prometheus(&r);
    itest_resp_free(&r);
    /* the token is what opens it: without it the same peer sees nothing */
    get_from(base, "/metrics", NULL, NULL, &r);
    expect_hidden(base, &r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_metrics_wrong_token_is_404(void **state)
{
    (void)state;
    char base[96];
    struct itest_daemon *d = start_on_all_addresses(METRICS_TOKEN, base, sizeof base);
    static const char *const wrong[] = {
        "Authorization: Bearer s3cr3t-token-for-itest-metrics-012345678X", /* last byte */
        "Authorization: Bearer " METRICS_TOKEN "0",                        /* longer */
        "Authorization: Bearer s3cr3t-token",                              /* a prefix */
        "Authorization: Basic " METRICS_TOKEN,                             /* not Bearer */
    };
    for (size_t i = 0; i < ITEST_ARRAY_LEN(wrong); i++) {
        struct itest_resp r;
        get_from(base, "/metrics", wrong[i], NULL, &r);
        expect_hidden(base, &r);
        itest_resp_free(&r);
    }
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_metrics_is_open_to_loopback_peer(void **state)
{
    (void)state;
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    struct itest_resp r;
    get_from(d->url, "/metrics", NULL, NULL, &r);
    expect_prometheus(&r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_metrics_is_404_for_client_behind_trusted_proxy(void **state)
{
    (void)state;
    /* a local reverse proxy (nginx on the same host) forwards an internet client: the peer is
     * loopback, the client is not */
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"TRUSTED_PROXIES=127.0.0.1", NULL});
    assert_non_null(d);
    struct itest_resp r;
    get_from(d->url, "/metrics", "X-Forwarded-For: 203.0.113.7", NULL, &r);
    expect_hidden(d->url, &r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_hardening_metrics_is_open_to_trusted_proxy_itself(void **state)
{
    (void)state;
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"TRUSTED_PROXIES=127.0.0.1", NULL});
    assert_non_null(d);
    struct itest_resp r;
    get_from(d->url, "/metrics", NULL, NULL, &r);
    expect_prometheus(&r);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

int itest_group_hardening(void)
{
    const struct CMUnitTest tests[] = {
        T(test_hardening_refresh_token_unused_past_idle_ttl_is_expired),
        T(test_hardening_refresh_rotation_renews_the_idle_ttl),
        T(test_hardening_session_max_ttl_ends_a_rotating_session),
        T(test_hardening_login_rehashes_old_parameters),
        T(test_hardening_wrong_password_does_not_rehash),
        T(test_hardening_login_backoff_doubles_up_to_its_cap),
        cmocka_unit_test_teardown(test_hardening_database_errors_answer_opaque_500,
                                  teardown_broken_db),
        T(test_hardening_register_default_limit_is_10_per_minute),
        T(test_hardening_refresh_default_limit_is_60_per_minute),
        T(test_hardening_empty_login_bucket_leaves_register_open),
        T(test_hardening_empty_register_bucket_leaves_login_open),
        T(test_hardening_metrics_is_404_for_non_loopback_peer),
        T(test_hardening_metrics_bearer_token_admits_non_loopback_peer),
        T(test_hardening_metrics_wrong_token_is_404),
        T(test_hardening_metrics_is_open_to_loopback_peer),
        T(test_hardening_metrics_is_404_for_client_behind_trusted_proxy),
        T(test_hardening_metrics_is_open_to_trusted_proxy_itself),
    };
    /* every test starts its own daemon: no shared one */
    return cmocka_run_group_tests_name("hardening", tests, NULL, NULL);
}
