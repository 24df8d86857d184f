/* Issue 10, the fleet: two inkletd instances on one database and one broker, in one
 * shared-subscription group (MQTT_SHARE_GROUP, each with its own client id), with HTTP load on
 * both while the test runs. What must hold is what holds for one server: each device message is
 * processed once, one refresh token has one winner, concurrent `inkletd migrate` is safe, a
 * revoked session dies everywhere within the contract's 5 s, and the login back-off is one
 * counter. The per-IP buckets are per instance (documented in docs/operations.md), and a test
 * says so. */
#include "harness.h"
#include "mqtt_client.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define LOAD_THREADS 2
#define RACERS 16
#define MIGRATORS 4
#define FLEET_DEVICES 6
#define FLEET_ROUNDS 5 /* heartbeats per device; the last one is sent on its own */
#define PROCESSED "inklet_mqtt_messages_processed_total"

/* ---- background HTTP load ------------------------------------------------------------------- */

/* Threads calling /auth/me (and, with logins, POST /auth/login every 8th request) on both
 * instances in turn with an account of their own, until stopped. They never assert: they count,
 * and the test checks the counts once they are joined. File-scope so the teardown can stop them
 * when an assertion left the test early. */
static struct {
    struct itest_daemon *d[2];
    struct itest_user u;
    bool logins;
    bool running;
    atomic_bool stop;
    atomic_uint ok;
    atomic_uint unexpected;
    atomic_long first_bad; /* the first unexpected status (0: none) */
    pthread_t threads[LOAD_THREADS];
} load;

static void *load_main(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg;
    for (unsigned k = 0; !atomic_load(&load.stop); k++) {
        const struct itest_daemon *d = load.d[(idx + k) % 2];
        struct itest_resp r;
        if (load.logins && k % 8 == 7)
            itest_callf(d, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier",
                        load.u.username, "password", load.u.password);
        else
            itest_call(d, "GET", "/auth/me", load.u.s.access, NULL, &r);
        if (r.status == 200) {
            atomic_fetch_add(&load.ok, 1);
        } else {
            long none = 0;
            atomic_compare_exchange_strong(&load.first_bad, &none, r.status ? r.status : -1);
            atomic_fetch_add(&load.unexpected, 1);
        }
        itest_resp_free(&r);
        itest_sleep_ms(2);
    }
    return NULL;
}

/* Registers the load's account on a and starts the threads against a and b. */
static void load_start(struct itest_daemon *a, struct itest_daemon *b, bool logins)
{
    memset(&load.u, 0, sizeof load.u);
    itest_register(a, &load.u);
    load.d[0] = a;
    load.d[1] = b;
    load.logins = logins;
    atomic_store(&load.stop, false);
    atomic_store(&load.ok, 0);
    atomic_store(&load.unexpected, 0);
    atomic_store(&load.first_bad, 0);
    for (uintptr_t i = 0; i < LOAD_THREADS; i++)
        assert_int_equal(pthread_create(&load.threads[i], NULL, load_main, (void *)i), 0);
    load.running = true;
}

static void load_join(void)
{
    if (!load.running)
        return;
    atomic_store(&load.stop, true);
    for (int i = 0; i < LOAD_THREADS; i++)
        pthread_join(load.threads[i], NULL);
    load.running = false;
}

/* Stops the load and asserts every one of its requests was answered 200. */
static void load_stop_expect_clean(void)
{
    load_join();
    unsigned ok = atomic_load(&load.ok), bad = atomic_load(&load.unexpected);
    fprintf(stderr, "  background load: %u requests answered 200, %u otherwise\n", ok, bad);
    if (bad)
        fail_msg("%u load request(s) were not answered 200; the first got %ld", bad,
                 atomic_load(&load.first_bad));
    assert_true(ok > 0);
}

/* ---- the fleet ------------------------------------------------------------------------------ */

/* Starts instances A and B on the run's database and broker, in share group `name` with
 * distinct client ids, `extra` (NULL-terminated, may be NULL) added to both, and waits until
 * both report the database and the broker ready. */
static void fleet_start(struct itest_daemon *d[2], const char *name, const char *const extra[])
{
    char group[96];
    snprintf(group, sizeof group, "MQTT_SHARE_GROUP=itest-fleet-%s-%s", itest.run_tag, name);
    for (int i = 0; i < 2; i++) {
        char id[128];
        snprintf(id, sizeof id, "MQTT_CLIENT_ID=itest-fleet-%s-%d-%s-%c", itest.run_tag,
                 (int)getpid(), name, 'a' + i);
        const char *env[16] = {id, group};
        size_t n = 2;
        for (size_t k = 0; extra && extra[k] && n < ITEST_ARRAY_LEN(env) - 1; k++)
            env[n++] = extra[k];
        env[n] = NULL;
        d[i] = itest_daemon_start(env);
        assert_non_null(d[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_wait_ready(d[i], 15000), 200);
}

static void fleet_stop(struct itest_daemon *d[2])
{
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_daemon_stop(d[i]), 0);
}

/* ---- the database (what the API does not show) ---------------------------------------------- */

static PGconn *db_connect(const char *url)
{
    PGconn *pg = PQconnectdb(url);
    if (PQstatus(pg) != CONNECTION_OK)
        fprintf(stderr, "  database: %s\n", PQerrorMessage(pg));
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    return pg;
}

/* Runs a query with up to two text parameters on `url`; asserts it worked; caller PQclears. */
static PGresult *db_query(const char *url, const char *sql, int nparams, const char *const p[])
{
    PGconn *pg = db_connect(url);
    PGresult *res = PQexecParams(pg, sql, nparams, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "  database: %s\n", PQresultErrorMessage(res));
    PQfinish(pg);
    assert_true(ok);
    return res;
}

/* ---- a fresh database for the migration race -------------------------------------------- */

static char fresh_db[64];   /* its name while it exists */
static char fresh_url[512]; /* the run's URL with the database name replaced */

static void fresh_db_drop(void)
{
    if (!fresh_db[0])
        return;
    PGconn *pg = PQconnectdb(itest.database_url);
    if (PQstatus(pg) == CONNECTION_OK) {
        char *ident = PQescapeIdentifier(pg, fresh_db, strlen(fresh_db));
        char sql[160];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
        PQfreemem(ident);
        PGresult *res = PQexec(pg, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            fprintf(stderr, "  could not drop %s: %s\n", fresh_db, PQresultErrorMessage(res));
        PQclear(res);
    }
    PQfinish(pg);
    fresh_db[0] = '\0';
}

/* Creates an empty database next to the run's one and fills fresh_url. */
static void fresh_db_create(void)
{
    snprintf(fresh_db, sizeof fresh_db, "inklet_fleet_%s_%d", itest.run_tag, (int)getpid());
    PGconn *pg = db_connect(itest.database_url);
    char *ident = PQescapeIdentifier(pg, fresh_db, strlen(fresh_db));
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", ident);
    PQfreemem(ident);
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "  CREATE DATABASE: %s\n", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(pg);
    assert_true(ok);
    /* postgresql://user@host:port/name[?options]: swap the name */
    const char *url = itest.database_url;
    const char *scheme = strstr(url, "://");
    assert_non_null(scheme);
    const char *slash = strchr(scheme + 3, '/');
    assert_non_null(slash);
    const char *query = strchr(slash, '?');
    snprintf(fresh_url, sizeof fresh_url, "%.*s/%s%s", (int)(slash - url), url, fresh_db,
             query ? query : "");
}

/* ---- per-test teardown ---------------------------------------------------------------------- */

static struct itest_mqtt *mq; /* the test's fake displays, when it has some */

static int fleet_teardown(void **state)
{
    load_join();
    if (mq) {
        itest_mqtt_free(mq);
        mq = NULL;
    }
    fresh_db_drop();
    return itest_teardown(state);
}

/* ---- device messages ------------------------------------------------------------------------ */

struct display {
    char thing[96];
    char hw[37];
};

static void display_new(struct display *f, unsigned n)
{
    itest_random_uuid(f->hw);
    snprintf(f->thing, sizeof f->thing, "itest-fleet-%s-%d-%u-%.8s", itest.run_tag, (int)getpid(),
             n, f->hw);
}

static void mq_connect(const char *name)
{
    char id[96];
    snprintf(id, sizeof id, "itest-fleet-rec-%s-%d-%s", itest.run_tag, (int)getpid(), name);
    mq = itest_mqtt_new(itest.mqtt_url, id);
    assert_non_null(mq);
}

/* The processed-message counters of both instances. */
static void processed_now(struct itest_daemon *d[2], unsigned long long out[2])
{
    for (int i = 0; i < 2; i++)
        out[i] = itest_metric(d[i], PROCESSED);
}

/* Waits (bounded) until A and B together processed `n` messages since `base`; returns the
 * per-instance counts then. */
static void wait_processed(struct itest_daemon *d[2], const unsigned long long base[2],
                           unsigned long long n, unsigned long long got[2])
{
    int64_t until = itest_now_ms() + itest_scaled(20000);
    for (;;) {
        unsigned long long now[2];
        processed_now(d, now);
        got[0] = now[0] - base[0];
        got[1] = now[1] - base[1];
        if (got[0] + got[1] >= n || itest_now_ms() > until)
            return;
        itest_sleep_ms(50);
    }
}

static void test_fleet_each_device_message_is_processed_once(void **state)
{
    (void)state;
    if (!itest.mqtt_url)
        skip();
    struct itest_daemon *d[2];
    fleet_start(d, "msgs", NULL);
    mq_connect("msgs");
    load_start(d[0], d[1], true);

    struct display f[FLEET_DEVICES];
    for (unsigned i = 0; i < FLEET_DEVICES; i++)
        display_new(&f[i], i);
    unsigned long long base[2], got[2];
    processed_now(d, base);
    /* every display but its last heartbeat, interleaved: the group spreads them over A and B */
    for (int k = 0; k < FLEET_ROUNDS - 1; k++)
        for (unsigned i = 0; i < FLEET_DEVICES; i++)
            assert_true(itest_mqtt_heartbeat(mq, f[i].thing, f[i].hw, "fleet-1.0.0", k));
    const unsigned long long early = (FLEET_ROUNDS - 1) * FLEET_DEVICES;
    wait_processed(d, base, early, got);
    if (got[0] + got[1] != early)
        fail_msg("A processed %llu and B %llu of the first %llu device messages", got[0], got[1],
                 early);
    /* then the last heartbeat of each, alone, so its values are the ones that must be stored */
    for (unsigned i = 0; i < FLEET_DEVICES; i++)
        assert_true(itest_mqtt_heartbeat(mq, f[i].thing, f[i].hw, "fleet-2.0.0", 50 + (int)i));
    const unsigned long long n = FLEET_ROUNDS * FLEET_DEVICES;
    wait_processed(d, base, n, got);
    itest_sleep_ms(itest_window(500)); /* a duplicate would show up now */
    unsigned long long now[2];
    processed_now(d, now);
    got[0] = now[0] - base[0];
    got[1] = now[1] - base[1];
    fprintf(stderr, "  A processed %llu, B %llu of %llu device messages\n", got[0], got[1], n);
    if (got[0] + got[1] != n)
        fail_msg("A processed %llu and B %llu of %llu device messages", got[0], got[1], n);
    assert_true(got[0] > 0);
    assert_true(got[1] > 0);

    /* each display's effect once: one device row with its last heartbeat, one claim code */
    for (unsigned i = 0; i < FLEET_DEVICES; i++) {
        const char *p[] = {f[i].thing};
        PGresult *res =
            db_query(itest.database_url,
                     "SELECT count(*), min(firmware), min(battery),"
                     " (SELECT count(*) FROM device_commands c JOIN devices x ON x.id = c.device_id"
                     "  WHERE x.thing_name = $1 AND c.kind = 'claim_code')"
                     " FROM devices WHERE thing_name = $1",
                     1, p);
        char battery[8];
        snprintf(battery, sizeof battery, "%u", 50 + i);
        assert_string_equal(PQgetvalue(res, 0, 0), "1");
        assert_string_equal(PQgetvalue(res, 0, 1), "fleet-2.0.0");
        assert_string_equal(PQgetvalue(res, 0, 2), battery);
        assert_string_equal(PQgetvalue(res, 0, 3), "1");
        PQclear(res);
    }
    load_stop_expect_clean();
    fleet_stop(d);
}

/* A display bound through A gets a text command sent through A once, whichever instance its
 * messages reach, and its report (processed by A or B) marks the command delivered, as B shows. */
static void test_fleet_command_sent_through_one_instance_is_delivered_once(void **state)
{
    (void)state;
    if (!itest.mqtt_url)
        skip();
    struct itest_daemon *d[2];
    fleet_start(d, "cmd", NULL);
    mq_connect("cmd");
    load_start(d[0], d[1], true);

    struct itest_user u = {0};
    itest_register(d[0], &u);
    struct display f;
    display_new(&f, 100);
    assert_true(itest_mqtt_heartbeat(mq, f.thing, f.hw, "fleet-1.0.0", 80));
    json_t *cmd = itest_mqtt_take(mq, f.thing, "claim_code", itest_scaled(10000));
    assert_non_null(cmd);
    struct itest_resp r;
    itest_callf(d[0], "POST", "/api/devices/bind/code", u.s.access, &r, "{s:s}", "claimCode",
                itest_str(cmd, "code"));
    json_decref(cmd);
    itest_expect_status(&r, 200);
    char dev[37];
    snprintf(dev, sizeof dev, "%s", itest_str(r.json, "id"));
    itest_resp_free(&r);
    cmd = itest_mqtt_take(mq, f.thing, "bound", itest_scaled(10000));
    assert_non_null(cmd);
    json_decref(cmd);

    char path[128];
    snprintf(path, sizeof path, "/api/devices/%s/commands", dev);
    itest_callf(d[0], "POST", path, u.s.access, &r, "{s:s,s:s}", "kind", "text", "text",
                "to the fleet");
    itest_expect_status(&r, 202);
    char id[37];
    snprintf(id, sizeof id, "%s", itest_str(r.json, "id"));
    itest_resp_free(&r);
    assert_int_equal(itest_mqtt_wait_count_id(mq, f.thing, id, 1, itest_scaled(10000)), 1);

    assert_true(itest_mqtt_publish_up(mq, f.thing, "state",
                                      json_pack("{s:s,s:s}", "screen", "text", "lastCmd", id)));
    int64_t until = itest_now_ms() + itest_scaled(10000);
    const char *status = NULL;
    for (;;) {
        itest_call(d[1], "GET", path, u.s.access, NULL, &r);
        itest_expect_status(&r, 200);
        json_t *c = json_array_get(r.json, 0);
        assert_string_equal(itest_str(c, "id"), id);
        status = itest_str(c, "status");
        bool delivered = strcmp(status, "delivered") == 0;
        if (!delivered)
            fprintf(stderr, "  command %s is %s on B\n", id, status);
        itest_resp_free(&r);
        if (delivered)
            break;
        assert_true(itest_now_ms() < until);
        itest_sleep_ms(50);
    }
    itest_sleep_ms(itest_window(500)); /* a second publish would show up now */
    assert_int_equal(itest_mqtt_count_id(mq, f.thing, id), 1);
    load_stop_expect_clean();
    fleet_stop(d);
}

/* ---- refresh rotation across the fleet ------------------------------------------------------ */

/* RACERS refreshes of one token, half to A and half to B, released together: exactly one 200
 * and every other one 401 refresh_token_rotated (a lost race within REFRESH_REUSE_GRACE, not
 * theft). Nothing is revoked: the winner's pair works on both once the liveness caches have
 * expired, the old token is still only "rotated" on both, and the winner's refresh token
 * rotates on the other instance. */
static void test_fleet_concurrent_refresh_has_exactly_one_winner(void **state)
{
    (void)state;
    /* the grace must outlast the whole race, also under a slow wrapper */
    char grace[40];
    snprintf(grace, sizeof grace, "REFRESH_REUSE_GRACE=%u", itest_scaled(10000) / 1000);
    struct itest_daemon *d[2];
    fleet_start(d, "refresh", (const char *const[]){grace, NULL});
    load_start(d[0], d[1], true);

    struct itest_user u = {0};
    itest_register(d[0], &u);
    char body[256], urls[2][96];
    snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", u.s.refresh);
    for (int i = 0; i < 2; i++)
        snprintf(urls[i], sizeof urls[i], "%s/auth/refresh", d[i]->url);
    struct itest_race racers[RACERS];
    for (size_t i = 0; i < RACERS; i++)
        racers[i] = (struct itest_race){.url = urls[i % 2], .body = body};
    itest_race_posts(racers, RACERS);

    int won = 0, rotated = 0;
    const struct itest_race *winner = NULL;
    size_t winner_idx = 0;
    for (size_t i = 0; i < RACERS; i++) {
        if (racers[i].status == 200) {
            won++;
            winner = &racers[i];
            winner_idx = i;
        } else if (racers[i].status == 401 &&
                   strcmp(racers[i].code, "refresh_token_rotated") == 0) {
            rotated++;
        } else {
            fprintf(stderr, "  racer %zu (%s) got %ld %s\n", i, i % 2 ? "B" : "A", racers[i].status,
                    racers[i].code);
        }
    }
    fprintf(stderr, "  %d winner(s) of %d refreshes across A and B\n", won, RACERS);
    assert_int_equal(won, 1);
    assert_int_equal(rotated, RACERS - 1);
    const char *access = itest_race_str(winner, "accessToken");
    const char *refresh = itest_race_str(winner, "refreshToken");
    assert_true(access[0] != '\0' && refresh[0] != '\0');

    /* the family lives on: the losers revoked nothing, on either instance */
    itest_sleep_ms(6000); /* longer than any instance's ≤ 5 s session cache */
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], access), 200);
    itest_refresh_expect(d[0], u.s.refresh, 401, "refresh_token_rotated", NULL);
    itest_refresh_expect(d[1], u.s.refresh, 401, "refresh_token_rotated", NULL);
    struct itest_session next;
    itest_refresh_expect(d[(winner_idx + 1) % 2], refresh, 200, NULL, &next);
    assert_string_equal(next.sid, u.s.sid);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], next.access), 200);
    itest_race_free(racers, RACERS);
    load_stop_expect_clean();
    fleet_stop(d);
}

/* Past REFRESH_REUSE_GRACE, a token rotated on A and presented on B is theft: B answers 401
 * refresh_token_reused and every session of the user dies on both instances within 5 s. */
static void test_fleet_refresh_reuse_after_the_grace_revokes_on_both(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "reuse", (const char *const[]){"REFRESH_REUSE_GRACE=1", NULL});
    load_start(d[0], d[1], true);

    struct itest_user u = {0};
    itest_register(d[0], &u);
    struct itest_session other, rotated;
    itest_login(d[1], &u, &other);
    itest_refresh_expect(d[0], u.s.refresh, 200, NULL, &rotated);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(itest_me_status(d[i], rotated.access), 200);
        assert_int_equal(itest_me_status(d[i], other.access), 200);
    }
    itest_sleep_ms(2100); /* past the 1 s grace */
    itest_refresh_expect(d[1], u.s.refresh, 401, "refresh_token_reused", NULL);
    int64_t t0 = itest_now_ms();
    for (int i = 0; i < 2; i++) {
        itest_expect_token_dies(d[i], rotated.access, t0, itest_scaled(5000));
        itest_expect_token_dies(d[i], other.access, t0, itest_scaled(5000));
    }
    /* the family is gone: the winner's refresh token is refused too */
    itest_refresh_expect(d[0], rotated.refresh, 401, "invalid_refresh_token", NULL);
    load_stop_expect_clean();
    fleet_stop(d);
}

/* ---- migrations ----------------------------------------------------------------------------- */

/* The names in schema_migrations of the database at `url`, one per line, sorted (malloc'd). */
static char *migration_names(const char *url, int *rows)
{
    PGresult *res = db_query(url, "SELECT name FROM schema_migrations ORDER BY name", 0, NULL);
    *rows = PQntuples(res);
    size_t cap = 1;
    for (int i = 0; i < *rows; i++)
        cap += strlen(PQgetvalue(res, i, 0)) + 1;
    char *out = malloc(cap);
    assert_non_null(out);
    size_t n = 0;
    for (int i = 0; i < *rows; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s\n", PQgetvalue(res, i, 0));
    out[n] = '\0';
    PQclear(res);
    return out;
}

/* How many of the outputs say "migrate: applied <name>". */
static int applied_by(char *const outs[MIGRATORS], const char *name)
{
    char line[192];
    snprintf(line, sizeof line, "migrate: applied %s\n", name);
    int n = 0;
    for (int i = 0; i < MIGRATORS; i++)
        for (const char *p = outs[i]; (p = strstr(p, line)) != NULL; p += strlen(line))
            n++;
    return n;
}

/* Four `inkletd migrate` at once on an empty database: all exit 0, each migration is applied
 * by exactly one of them and recorded once, and the result is the schema the suite's own
 * database has. */
static void
test_fleet_concurrent_migrate_on_a_fresh_database_applies_each_migration_once(void **state)
{
    (void)state;
    fresh_db_create();
    char db_kv[560];
    snprintf(db_kv, sizeof db_kv, "DATABASE_URL=%s", fresh_url);
    pid_t pid[MIGRATORS];
    char path[MIGRATORS][192];
    for (int i = 0; i < MIGRATORS; i++) {
        snprintf(path[i], sizeof path[i], "%s/fleet-migrate-%d.log", itest.tmpdir, i);
        pid[i] = itest_spawn((const char *const[]){"migrate", NULL},
                             (const char *const[]){db_kv, NULL}, path[i], path[i]);
        assert_true(pid[i] > 0);
    }
    int status[MIGRATORS];
    for (int i = 0; i < MIGRATORS; i++)
        status[i] = itest_wait_pid(pid[i], 60000);
    char *outs[MIGRATORS];
    for (int i = 0; i < MIGRATORS; i++) {
        outs[i] = itest_read_file(path[i], NULL);
        if (status[i] != 0)
            fprintf(stderr, "  migrate #%d exited with %d:\n%s\n", i, status[i], outs[i]);
    }
    for (int i = 0; i < MIGRATORS; i++) {
        assert_int_equal(status[i], 0);
        assert_non_null(strstr(outs[i], "schema up to date"));
    }

    int rows = 0, expected_rows = 0;
    char *names = migration_names(fresh_url, &rows);
    char *expected = migration_names(itest.database_url, &expected_rows);
    assert_string_equal(names, expected);
    assert_true(rows > 0);
    for (char *line = names; *line;) {
        char *end = strchr(line, '\n');
        *end = '\0';
        if (applied_by(outs, line) != 1)
            fprintf(stderr, "  %s was applied %d times\n", line, applied_by(outs, line));
        assert_int_equal(applied_by(outs, line), 1);
        line = end + 1;
    }
    free(names);
    free(expected);
    for (int i = 0; i < MIGRATORS; i++)
        free(outs[i]);
    /* the schema is usable: an instance serves on it */
    const char *env[] = {db_kv, NULL};
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* `inkletd migrate` in a deploy hook must never hang. A lock held by someone else (here the
 * advisory lock of a migrate that would never finish) makes it give up after
 * MIGRATE_LOCK_TIMEOUT with exit 1 and a line saying why; once the holder is gone it succeeds.
 * A "database" that accepts the connection and never answers is given up within DB_TIMEOUT.
 * Without these bounds both runs below would wait until itest_run_inkletd killed them (-1). */
static void test_fleet_migrate_gives_up_on_a_held_lock_and_a_silent_database(void **state)
{
    (void)state;
    PGconn *holder = db_connect(itest.database_url);
    PGresult *res = PQexec(holder, "BEGIN; SELECT pg_advisory_xact_lock(1768844140)");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    struct itest_proc p;
    itest_run_inkletd((const char *const[]){"migrate", NULL},
                      (const char *const[]){"MIGRATE_LOCK_TIMEOUT=2", NULL}, 30000, &p);
    if (p.status != 1)
        fprintf(stderr, "  migrate exited with %d:\n%s%s\n", p.status, p.out, p.err);
    assert_int_equal(p.status, 1);
    assert_non_null(strstr(p.err, "MIGRATE_LOCK_TIMEOUT"));
    assert_null(strstr(p.out, "schema up to date"));
    itest_proc_free(&p);
    res = PQexec(holder, "COMMIT");
    PQclear(res);
    PQfinish(holder);
    itest_run_inkletd((const char *const[]){"migrate", NULL},
                      (const char *const[]){"MIGRATE_LOCK_TIMEOUT=2", NULL}, 30000, &p);
    assert_int_equal(p.status, 0);
    assert_non_null(strstr(p.out, "schema up to date"));
    itest_proc_free(&p);

    /* a listening socket nobody accepts on: the kernel completes the handshake, libpq sends
     * its first packet, and no answer ever comes */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[160];
    snprintf(url, sizeof url, "DATABASE_URL=postgresql://inklet@127.0.0.1:%u/inklet",
             (unsigned)ntohs(a.sin_port));
    itest_run_inkletd((const char *const[]){"migrate", NULL},
                      (const char *const[]){url, "DB_TIMEOUT=2", NULL}, 30000, &p);
    close(fd);
    if (p.status != 1)
        fprintf(stderr, "  migrate exited with %d:\n%s%s\n", p.status, p.out, p.err);
    assert_int_equal(p.status, 1);
    assert_non_null(strstr(p.err, "cannot connect to the database"));
    itest_proc_free(&p);
}

/* ---- session revocation --------------------------------------------------------------------- */

/* A session deleted through A (DELETE /auth/sessions/{id}) stops working on A and on B within
 * 5 s, although both had just seen it alive; the user's other session keeps working. */
static void test_fleet_session_deleted_on_one_instance_dies_on_both_within_5s(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "revoke", NULL);
    load_start(d[0], d[1], true);

    struct itest_user u = {0};
    itest_register(d[0], &u);
    struct itest_session victim;
    itest_login(d[1], &u, &victim);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], victim.access), 200);
    char path[96];
    snprintf(path, sizeof path, "/auth/sessions/%s", victim.sid);
    struct itest_resp r;
    itest_call(d[0], "DELETE", path, u.s.access, NULL, &r);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    for (int i = 0; i < 2; i++) {
        int64_t ms = itest_expect_token_dies(d[i], victim.access, t0, itest_scaled(5000));
        fprintf(stderr, "  %s rejected the deleted session after %lld ms\n", i ? "B" : "A",
                (long long)ms);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], u.s.access), 200);
    load_stop_expect_clean();
    fleet_stop(d);
}

/* Logging out through B ends the session on A and on B within 5 s. */
static void test_fleet_logout_on_one_instance_ends_the_session_on_both_within_5s(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "logout", NULL);
    load_start(d[0], d[1], true);

    struct itest_user u = {0};
    itest_register(d[0], &u);
    struct itest_session s;
    itest_login(d[0], &u, &s);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], s.access), 200);
    struct itest_resp r;
    itest_call(d[1], "POST", "/auth/logout", s.access, NULL, &r);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    for (int i = 0; i < 2; i++)
        itest_expect_token_dies(d[i], s.access, t0, itest_scaled(5000));
    /* nor does its refresh token work anywhere */
    itest_refresh_expect(d[0], s.refresh, 401, "invalid_refresh_token", NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_me_status(d[i], u.s.access), 200);
    load_stop_expect_clean();
    fleet_stop(d);
}

/* ---- login throttling ----------------------------------------------------------------------- */

static void login_expect(const struct itest_daemon *d, const char *identifier, const char *password,
                         long status, const char *code)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", identifier,
                "password", password);
    if (code)
        itest_expect_error(&r, status, code);
    else
        itest_expect_status(&r, status);
    if (status == 429)
        itest_expect_retry_after(&r);
    itest_resp_free(&r);
}

/* LOGIN_BACKOFF_AFTER=3 wrong passwords, alternating A, B, A (no instance saw three), start
 * the account's back-off: the right password is then refused on B and on A alike, with
 * Retry-After. The per-IP bucket is out of the way (100000/s). */
static void test_fleet_login_backoff_counts_failures_on_both_instances(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "backoff",
                (const char *const[]){"LOGIN_BACKOFF_AFTER=3", "RATE_LIMIT_LOGIN=100000/1", NULL});
    struct itest_user u = {0};
    itest_register(d[0], &u);
    login_expect(d[0], u.username, "Wrong-password-1", 401, "invalid_credentials");
    login_expect(d[1], u.username, "Wrong-password-2", 401, "invalid_credentials");
    login_expect(d[0], u.username, "Wrong-password-3", 401, "invalid_credentials");
    /* the first block lasts 1 s: each instance is asked right after the failure that set it */
    login_expect(d[1], u.username, u.password, 429, "login_backoff");
    login_expect(d[0], u.email, u.password, 429, "login_backoff");
    fleet_stop(d);
}

/* A successful login on B (once the block is over) resets the counter A uses too: after one
 * more wrong password on A the right one works at once (an unreset counter would block it). */
static void test_fleet_login_success_on_one_instance_resets_the_backoff_on_both(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "reset",
                (const char *const[]){"LOGIN_BACKOFF_AFTER=2", "RATE_LIMIT_LOGIN=100000/1", NULL});
    struct itest_user u = {0};
    itest_register(d[0], &u);
    login_expect(d[0], u.username, "Wrong-password-1", 401, "invalid_credentials");
    login_expect(d[1], u.username, "Wrong-password-2", 401, "invalid_credentials");
    struct itest_resp r;
    itest_callf(d[0], "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", u.password);
    itest_expect_error(&r, 429, "login_backoff");
    unsigned wait = itest_expect_retry_after(&r);
    itest_resp_free(&r);
    itest_sleep_ms(wait * 1000 + 200);
    login_expect(d[1], u.username, u.password, 200, NULL);
    login_expect(d[0], u.username, "Wrong-password-3", 401, "invalid_credentials");
    login_expect(d[0], u.username, u.password, 200, NULL);
    fleet_stop(d);
}

/* The per-IP token buckets live in each instance's memory: with RATE_LIMIT_LOGIN=3/60 one
 * address gets 3 logins from A and 3 more from B (N instances allow N times the limit; see
 * docs/operations.md). Fresh unknown names, so the shared back-off plays no part. */
static void test_fleet_per_ip_login_bucket_is_per_instance(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    fleet_start(d, "bucket", (const char *const[]){"RATE_LIMIT_LOGIN=3/60", NULL});
    static unsigned seq;
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 4; k++) {
            char name[64];
            snprintf(name, sizeof name, "nobody-%s-%d-%u", itest.run_tag, (int)getpid(), ++seq);
            if (k < 3)
                login_expect(d[i], name, "Some-password-1", 401, "invalid_credentials");
            else
                login_expect(d[i], name, "Some-password-1", 429, "rate_limited");
        }
    }
    fleet_stop(d);
}

/* ---- the group ------------------------------------------------------------------------------ */

#define T(f) cmocka_unit_test_teardown(f, fleet_teardown)

int itest_group_fleet(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fleet_each_device_message_is_processed_once),
        T(test_fleet_command_sent_through_one_instance_is_delivered_once),
        T(test_fleet_concurrent_refresh_has_exactly_one_winner),
        T(test_fleet_refresh_reuse_after_the_grace_revokes_on_both),
        T(test_fleet_concurrent_migrate_on_a_fresh_database_applies_each_migration_once),
        T(test_fleet_migrate_gives_up_on_a_held_lock_and_a_silent_database),
        T(test_fleet_session_deleted_on_one_instance_dies_on_both_within_5s),
        T(test_fleet_logout_on_one_instance_ends_the_session_on_both_within_5s),
        T(test_fleet_login_backoff_counts_failures_on_both_instances),
        T(test_fleet_login_success_on_one_instance_resets_the_backoff_on_both),
        T(test_fleet_per_ip_login_bucket_is_per_instance),
    };
    /* every test starts its own pair of instances */
    return cmocka_run_group_tests_name("fleet", tests, NULL, NULL);
}
