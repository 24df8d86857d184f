/* Issue 10, the fault runs: each test is a real load run (several client threads for the whole
 * run) against an inkletd with the production defaults, while something it depends on fails:
 * PostgreSQL restarted, the broker restarted, 2,000 idle connections, a slowloris attack
 * (slowhttptest), Stripe, Google and Apple hung at once. The group runs next to `outage`, at the
 * end: it stops PostgreSQL and the broker, and its per-test teardowns start them again even when
 * a test fails.
 *
 * Load threads never call cmocka: they count what they saw (per phase of the run) and keep the
 * first answer that broke the contract as text; the main thread asserts on the counts. */
#include "harness.h"
#include "itest_browser.h"
#include "mqtt_client.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The daemon's own database connections besides the pool (src/db/pool.c ink_db_private_new):
 * the readiness monitor, the two ingest workers (src/iot/ingest.c, INGEST_WORKERS in main.c)
 * and the acknowledgement writer (src/devices/acks.c). */
#define PRIVATE_DB_CONNS 4
/* How many more descriptors than before a fault the daemon may hold once it is over: sockets
 * the server has not reaped yet, a curl connection cache entry. A leak per failed database or
 * broker connection would exceed it within one outage. */
#define FD_MARGIN 3
#define MAX_LOADERS 12
#define MAX_DEVS 4
#define MAX_OUTAGE_CMDS 256

enum phase { PH_WARM, PH_FAULT, PH_BACK, PH_AFTER, PH_COUNT };
static const char *const PHASE_NAMES[PH_COUNT] = {"warm-up", "fault", "coming back", "after"};

static atomic_int phase;
static atomic_bool stop_load;

/* ---- service control (restored by the teardowns) ------------------------------------------ */

static bool pg_stopped, broker_stopped;
static struct itest_mqtt *mq; /* the displays' side of the broker test */
static int *idle_fds;         /* the idle connections test's sockets */
static unsigned idle_n;

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int faults_teardown(void **state)
{
    atomic_store(&stop_load, true);
    if (pg_stopped && itest.pg_start && itest_sh(itest.pg_start, 120000) != 0)
        fprintf(stderr, "inklet-itest: INKLET_ITEST_PG_START failed: PostgreSQL may be down\n");
    pg_stopped = false;
    const char *mq_start = env_or_null("INKLET_ITEST_MQTT_START");
    if (broker_stopped && mq_start && itest_sh(mq_start, 60000) != 0)
        fprintf(stderr, "inklet-itest: INKLET_ITEST_MQTT_START failed: the broker may be down\n");
    broker_stopped = false;
    if (mq)
        itest_mqtt_free(mq);
    mq = NULL;
    for (unsigned i = 0; i < idle_n; i++)
        if (idle_fds[i] >= 0)
            close(idle_fds[i]);
    free(idle_fds);
    idle_fds = NULL;
    idle_n = 0;
    return itest_teardown(state);
}

/* ---- the daemon's descriptors and database connections ------------------------------------ */

/* The TCP port of DATABASE_URL (postgresql://user@127.0.0.1:PORT/NAME), 0 if none. */
static unsigned pg_port(void)
{
    const char *at = strrchr(itest.database_url, '@');
    const char *colon = strchr(at ? at : itest.database_url, ':');
    return colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
}

struct fd_census {
    unsigned total;     /* open descriptors */
    unsigned pg;        /* TCP sockets whose peer is the PostgreSQL port, any state */
    unsigned others;    /* total - pg */
    unsigned ports[64]; /* local ports of the pg sockets */
};

/* The sockets connected to PostgreSQL in the process's network namespace: inode and local
 * port, from /proc/<pid>/net/tcp (read once per census: it lists every socket of the host). */
struct pg_socks {
    unsigned long inode[256];
    unsigned local[256];
    unsigned n;
};

static void pg_sockets(pid_t pid, unsigned port, struct pg_socks *ps)
{
    ps->n = 0;
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/net/tcp", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    while (fgets(line, sizeof line, f) && ps->n < ITEST_ARRAY_LEN(ps->inode)) {
        unsigned lport, rport, st;
        unsigned long ino;
        char laddr[16], raddr[16];
        if (sscanf(line, " %*u: %15[0-9A-Fa-f]:%x %15[0-9A-Fa-f]:%x %x %*s %*s %*s %*u %*u %lu",
                   laddr, &lport, raddr, &rport, &st, &ino) == 6 &&
            rport == port) {
            ps->inode[ps->n] = ino;
            ps->local[ps->n++] = lport;
        }
    }
    fclose(f);
}

static void fd_census(pid_t pid, struct fd_census *c)
{
    memset(c, 0, sizeof *c);
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct pg_socks ps;
    pg_sockets(pid, pg_port(), &ps);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        c->total++;
        char link[320], target[128];
        snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        unsigned long inode;
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (unsigned i = 0; i < ps.n; i++) {
            if (ps.inode[i] != inode)
                continue;
            if (c->pg < ITEST_ARRAY_LEN(c->ports))
                c->ports[c->pg] = ps.local[i];
            c->pg++;
        }
    }
    closedir(d);
    c->others = c->total - c->pg;
}

/* Backends in pg_stat_activity that serve one of the daemon's sockets (client_port), -1 when
 * the database cannot be asked. */
static int pg_backends_of(const struct fd_census *c)
{
    PGconn *pg = PQconnectdb(itest.database_url);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "  database: %s\n", PQerrorMessage(pg));
        PQfinish(pg);
        return -1;
    }
    char list[64 * 8] = "{";
    for (unsigned i = 0; i < c->pg && i < ITEST_ARRAY_LEN(c->ports); i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%u", i ? "," : "", c->ports[i]);
    }
    size_t len = strlen(list);
    snprintf(list + len, sizeof list - len, "}");
    PGresult *res = PQexecParams(pg,
                                 "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND application_name = 'inkletd' AND "
                                 "client_port = ANY($1::int[])",
                                 1, NULL, (const char *const[]){list}, NULL, NULL, 0);
    int n = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (n < 0)
        fprintf(stderr, "  database: %s\n", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(pg);
    return n;
}

/* Waits (bounded) until the daemon holds at most `limit` descriptors other than its database
 * sockets; returns the last census. The server reaps closed client sockets asynchronously. */
static void wait_others_at_most(pid_t pid, unsigned limit, unsigned timeout_ms, struct fd_census *c)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        fd_census(pid, c);
        if (c->others <= limit || itest_now_ms() > deadline)
            return;
        itest_sleep_ms(100);
    }
}

/* A census once the count stops moving (closed client sockets are reaped asynchronously). */
static void settled_census(pid_t pid, struct fd_census *c)
{
    struct fd_census prev;
    fd_census(pid, &prev);
    for (int i = 0; i < 20; i++) {
        itest_sleep_ms(itest_scaled(200));
        fd_census(pid, c);
        if (c->total == prev.total)
            return;
        prev = *c;
    }
}

/* ---- answers a load thread accepts --------------------------------------------------------- */

/* The contract's error body: JSON content type, exactly {"message": non-empty, "code"}. */
static bool error_body_ok(const struct itest_resp *r, const char *code)
{
    const char *ct = itest_header(r, "Content-Type");
    if (!ct || strcmp(ct, "application/json; charset=utf-8") != 0 || !json_is_object(r->json) ||
        json_object_size(r->json) != 2)
        return false;
    const char *msg = json_string_value(json_object_get(r->json, "message"));
    const char *c = json_string_value(json_object_get(r->json, "code"));
    return msg && *msg && c && *c && (!code || strcmp(c, code) == 0);
}

/* 503 + the error body + Retry-After (digits, >= 1). */
static bool unavailable_ok(const struct itest_resp *r)
{
    const char *ra = itest_header(r, "Retry-After");
    if (r->status != 503 || !error_body_ok(r, NULL) || !ra || !*ra ||
        strspn(ra, "0123456789") != strlen(ra) || strtoul(ra, NULL, 10) < 1)
        return false;
    return true;
}

/* ---- load threads -------------------------------------------------------------------------- */

enum load_kind {
    LOAD_ME,      /* GET /auth/me: 200 */
    LOAD_DEVICES, /* GET /api/devices: 200 */
    LOAD_LOGIN,   /* POST /auth/login: 200 */
    LOAD_REFRESH, /* POST /auth/refresh chain (one user per chain): 200 */
    LOAD_COMMAND, /* POST /api/devices/{id}/commands: 202 */
    LOAD_HEALTH,  /* GET /health: 200 */
};

struct outage_cmd {
    unsigned dev;
    char id[37];
};

struct loader {
    const struct itest_daemon *d;
    enum load_kind kind;
    const char *name;
    struct itest_user *u;
    bool allow_503;    /* the database may be down in this run */
    unsigned pause_ms; /* between requests */
    /* LOAD_REFRESH */
    char refresh[128];
    bool ambiguous; /* the last refresh got no answer it can trust: its token may be rotated */
    bool need_login;
    /* LOAD_COMMAND */
    char (*dev_ids)[37];
    unsigned ndev;
    struct outage_cmd *outage; /* commands answered 202 during the fault phase */
    unsigned noutage;
    /* results */
    atomic_uint ok[PH_COUNT], unavailable[PH_COUNT];
    unsigned rotated_401, relogins, requests;
    int64_t max_ms;
    unsigned nbad;
    char bad[384];
};

static void loader_bad(struct loader *l, const struct itest_resp *r, const char *what)
{
    if (l->nbad++ == 0)
        snprintf(l->bad, sizeof l->bad, "%s in phase %s: %s status %ld (curl %d) body %.200s",
                 l->name, PHASE_NAMES[atomic_load(&phase)], what, r->status, (int)r->curl_code,
                 r->body ? r->body : "");
}

static void loader_call(struct loader *l, CURL *h, const char *method, const char *path,
                        const char *token, const char *body, struct itest_resp *r)
{
    char url[256], auth[1100];
    snprintf(url, sizeof url, "%s%s", l->d->url, path);
    const char *headers[4] = {"User-Agent: " ITEST_USER_AGENT, NULL, NULL, NULL};
    size_t n = 1;
    if (body)
        headers[n++] = "Content-Type: application/json";
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    int64_t t0 = itest_now_ms();
    itest_request(h, method, url, headers, body, body ? strlen(body) : 0, r);
    int64_t ms = itest_now_ms() - t0;
    if (ms > l->max_ms)
        l->max_ms = ms;
    l->requests++;
}

/* Counts r: the expected success, a contract 503 (when allowed), or a defect. */
static void loader_count(struct loader *l, const struct itest_resp *r, long want, const char *what)
{
    int ph = atomic_load(&phase);
    if (r->status == want)
        atomic_fetch_add(&l->ok[ph], 1);
    else if (l->allow_503 && r->status == 503 && unavailable_ok(r))
        atomic_fetch_add(&l->unavailable[ph], 1);
    else
        loader_bad(l, r, what);
}

static void login_body(const struct itest_user *u, char *buf, size_t size)
{
    snprintf(buf, size, "{\"identifier\":\"%s\",\"password\":\"%s\"}", u->username, u->password);
}

/* One step of a refresh chain. A refresh that answered 503 may still have rotated the token
 * (the commit can land as the connection breaks); presenting it again is then a lost race or a
 * reuse (contract §2: 401 refresh_token_rotated / refresh_token_reused, the latter revoking the
 * user's sessions). That 401 is the one exception this run accepts, and only right after a 503;
 * the chain then signs in again. */
static void refresh_step(struct loader *l, CURL *h)
{
    struct itest_resp r;
    char body[256];
    if (l->need_login) {
        login_body(l->u, body, sizeof body);
        loader_call(l, h, "POST", "/auth/login", NULL, body, &r);
        loader_count(l, &r, 200, "re-login");
        if (r.status == 200) {
            snprintf(l->refresh, sizeof l->refresh, "%s",
                     json_string_value(json_object_get(r.json, "refreshToken")));
            l->need_login = false;
            l->ambiguous = false;
            l->relogins++;
        }
        itest_resp_free(&r);
        return;
    }
    snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", l->refresh);
    loader_call(l, h, "POST", "/auth/refresh", NULL, body, &r);
    int ph = atomic_load(&phase);
    if (r.status == 200 && json_is_string(json_object_get(r.json, "refreshToken"))) {
        snprintf(l->refresh, sizeof l->refresh, "%s",
                 json_string_value(json_object_get(r.json, "refreshToken")));
        l->ambiguous = false;
        atomic_fetch_add(&l->ok[ph], 1);
    } else if (r.status == 503 && unavailable_ok(&r)) {
        l->ambiguous = true;
        atomic_fetch_add(&l->unavailable[ph], 1);
    } else if (r.status == 401 && l->ambiguous &&
               (error_body_ok(&r, "refresh_token_rotated") ||
                error_body_ok(&r, "refresh_token_reused"))) {
        l->rotated_401++;
        l->need_login = true;
    } else {
        loader_bad(l, &r, "refresh");
        l->need_login = true; /* go on loading with a fresh chain */
    }
    itest_resp_free(&r);
}

static void command_step(struct loader *l, CURL *h, unsigned i)
{
    unsigned dev = i % l->ndev;
    char path[128], body[96];
    snprintf(path, sizeof path, "/api/devices/%s/commands", l->dev_ids[dev]);
    snprintf(body, sizeof body, "{\"kind\":\"text\",\"text\":\"load %s %u\"}", l->name, i);
    int ph = atomic_load(&phase);
    struct itest_resp r;
    loader_call(l, h, "POST", path, l->u->s.access, body, &r);
    loader_count(l, &r, 202, "command");
    const char *id = json_string_value(json_object_get(r.json, "id"));
    if (r.status == 202 && ph == PH_FAULT && id && l->noutage < MAX_OUTAGE_CMDS) {
        l->outage[l->noutage].dev = dev;
        snprintf(l->outage[l->noutage].id, sizeof l->outage[l->noutage].id, "%s", id);
        l->noutage++;
    }
    itest_resp_free(&r);
}

static void *loader_run(void *arg)
{
    struct loader *l = arg;
    CURL *h = curl_easy_init(); /* one keep-alive connection per thread, as a client has */
    char body[256];
    for (unsigned i = 0; !atomic_load(&stop_load); i++) {
        struct itest_resp r;
        switch (l->kind) {
        case LOAD_ME:
            loader_call(l, h, "GET", "/auth/me", l->u->s.access, NULL, &r);
            loader_count(l, &r, 200, "GET /auth/me");
            itest_resp_free(&r);
            break;
        case LOAD_DEVICES:
            loader_call(l, h, "GET", "/api/devices", l->u->s.access, NULL, &r);
            loader_count(l, &r, 200, "GET /api/devices");
            if (r.status == 200 && !json_is_array(r.json))
                loader_bad(l, &r, "GET /api/devices (not an array)");
            itest_resp_free(&r);
            break;
        case LOAD_LOGIN:
            login_body(l->u, body, sizeof body);
            loader_call(l, h, "POST", "/auth/login", NULL, body, &r);
            loader_count(l, &r, 200, "POST /auth/login");
            itest_resp_free(&r);
            break;
        case LOAD_REFRESH:
            refresh_step(l, h);
            break;
        case LOAD_COMMAND:
            command_step(l, h, i);
            break;
        case LOAD_HEALTH:
            loader_call(l, h, "GET", "/health", NULL, NULL, &r);
            loader_count(l, &r, 200, "GET /health");
            itest_resp_free(&r);
            break;
        }
        if (l->pause_ms)
            itest_sleep_ms(l->pause_ms);
    }
    curl_easy_cleanup(h);
    return NULL;
}

struct load_run {
    struct loader l[MAX_LOADERS];
    pthread_t th[MAX_LOADERS];
    size_t n;
    bool started;
};

static struct loader *load_add(struct load_run *run, const struct itest_daemon *d,
                               enum load_kind kind, const char *name, struct itest_user *u)
{
    assert_true(run->n < MAX_LOADERS);
    struct loader *l = &run->l[run->n++];
    memset(l, 0, sizeof *l);
    l->d = d;
    l->kind = kind;
    l->name = name;
    l->u = u;
    l->pause_ms = itest.slow > 1 ? 50 : 5; /* a valgrind daemon is ~20x slower */
    for (int p = 0; p < PH_COUNT; p++) {
        atomic_init(&l->ok[p], 0);
        atomic_init(&l->unavailable[p], 0);
    }
    if (kind == LOAD_REFRESH)
        snprintf(l->refresh, sizeof l->refresh, "%s", u->s.refresh);
    return l;
}

static void load_start(struct load_run *run)
{
    atomic_store(&stop_load, false);
    atomic_store(&phase, PH_WARM);
    for (size_t i = 0; i < run->n; i++)
        assert_int_equal(pthread_create(&run->th[i], NULL, loader_run, &run->l[i]), 0);
    run->started = true;
}

static void load_stop(struct load_run *run)
{
    atomic_store(&stop_load, true);
    if (!run->started)
        return;
    for (size_t i = 0; i < run->n; i++)
        pthread_join(run->th[i], NULL);
    run->started = false;
}

/* True once every loader counted at least one `ok` (or `unavailable`) answer in a phase >= ph. */
static bool all_saw(struct load_run *run, int from_ph, bool unavailable)
{
    for (size_t i = 0; i < run->n; i++) {
        unsigned n = 0;
        for (int p = from_ph; p < PH_COUNT; p++)
            n += atomic_load(unavailable ? &run->l[i].unavailable[p] : &run->l[i].ok[p]);
        if (!n)
            return false;
    }
    return true;
}

static bool wait_all_saw(struct load_run *run, int from_ph, bool unavailable, unsigned limit_ms)
{
    int64_t deadline = itest_now_ms() + limit_ms;
    while (!all_saw(run, from_ph, unavailable)) {
        if (itest_now_ms() > deadline)
            return false;
        itest_sleep_ms(50);
    }
    return true;
}

static void load_report(struct load_run *run)
{
    for (size_t i = 0; i < run->n; i++) {
        struct loader *l = &run->l[i];
        fprintf(stderr, "  %-10s %5u requests, max %5lld ms; 2xx/503 by phase:", l->name,
                l->requests, (long long)l->max_ms);
        for (int p = 0; p < PH_COUNT; p++)
            fprintf(stderr, " %u/%u", atomic_load(&l->ok[p]), atomic_load(&l->unavailable[p]));
        if (l->kind == LOAD_REFRESH)
            fprintf(stderr, "; 401 after a 503: %u, new sign-ins %u", l->rotated_401, l->relogins);
        fprintf(stderr, "%s%s\n", l->nbad ? "; FIRST DEFECT: " : "", l->nbad ? l->bad : "");
    }
}

/* Every answer of every loader was one the run accepts. */
static void expect_no_defects(struct load_run *run)
{
    unsigned bad = 0;
    for (size_t i = 0; i < run->n; i++)
        bad += run->l[i].nbad;
    if (bad)
        load_report(run);
    assert_int_equal(bad, 0);
}

/* ---- 1. PostgreSQL restarted during a load run --------------------------------------------- */

static void expect_route_ok(const struct itest_daemon *d, const char *method, const char *path,
                            const char *token, const char *body, long status)
{
    struct itest_resp r;
    itest_call(d, method, path, token, body, &r);
    itest_expect_status(&r, status);
    itest_resp_free(&r);
}

/* Production defaults (DB_POOL_SIZE = 2 x HTTP threads, DB_TIMEOUT 3 s). Loaders for the whole
 * run: 2 x /auth/me, /api/devices, login, 2 refresh chains. */
static void test_faults_postgres_restart_under_load_is_2xx_or_503_and_recovers(void **state)
{
    (void)state;
    if (!itest.pg_stop || !itest.pg_start) {
        fprintf(stderr, "  INKLET_ITEST_PG_STOP/START not set: skipped\n");
        skip();
    }
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    pid_t pid = d->pid;
    unsigned pool = (unsigned)itest_metric(d, "inklet_db_pool_size");
    struct itest_user reader = {0}, signer = {0}, chain[2];
    itest_register(d, &reader);
    itest_register(d, &signer);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(chain); i++) {
        memset(&chain[i], 0, sizeof chain[i]);
        itest_register(d, &chain[i]);
    }

    struct load_run *run = calloc(1, sizeof *run);
    assert_non_null(run);
    load_add(run, d, LOAD_ME, "me-1", &reader);
    load_add(run, d, LOAD_ME, "me-2", &reader);
    load_add(run, d, LOAD_DEVICES, "devices", &reader);
    load_add(run, d, LOAD_LOGIN, "login", &signer);
    load_add(run, d, LOAD_REFRESH, "refresh-1", &chain[0]);
    load_add(run, d, LOAD_REFRESH, "refresh-2", &chain[1]);
    for (size_t i = 0; i < run->n; i++)
        run->l[i].allow_503 = true;
    /* a warm-up opens what the daemon keeps open (pool, keep-alive); the census is taken once
     * the clients have gone, and again at the end once they have gone again */
    load_start(run);
    assert_true(wait_all_saw(run, PH_WARM, false, itest_scaled(10000)));
    itest_sleep_ms(500);
    load_stop(run);
    struct fd_census before;
    settled_census(pid, &before);
    load_start(run);
    itest_sleep_ms(500);

    atomic_store(&phase, PH_FAULT);
    pg_stopped = true;
    assert_int_equal(itest_sh(itest.pg_stop, 120000), 0);
    /* the outage really met the load: every loader was answered 503 at least once */
    bool all_503 = wait_all_saw(run, PH_FAULT, true, itest_scaled(15000));
    itest_sleep_ms(1000);
    assert_int_equal(itest_sh(itest.pg_start, 120000), 0);
    pg_stopped = false;
    atomic_store(&phase, PH_BACK);
    int64_t t0 = itest_now_ms();
    bool back = wait_all_saw(run, PH_BACK, false, itest_scaled(20000));
    int64_t recovered_ms = itest_now_ms() - t0;
    /* recovered stays recovered: a further stretch of load, all 2xx */
    atomic_store(&phase, PH_AFTER);
    itest_sleep_ms(1500);
    struct fd_census loaded_after;
    fd_census(pid, &loaded_after);
    load_stop(run);
    fprintf(stderr, "  every loader answered 2xx again %lld ms after PostgreSQL was back\n",
            (long long)recovered_ms);
    load_report(run);
    expect_no_defects(run);
    assert_true(all_503);
    assert_true(back);
    for (size_t i = 0; i < run->n; i++) {
        assert_true(atomic_load(&run->l[i].ok[PH_AFTER]) > 0);
        assert_int_equal(atomic_load(&run->l[i].unavailable[PH_AFTER]), 0);
    }
    free(run);

    /* every route works again, same process */
    expect_route_ok(d, "GET", "/auth/me", reader.s.access, NULL, 200);
    expect_route_ok(d, "GET", "/api/devices", reader.s.access, NULL, 200);
    struct itest_session s;
    itest_login(d, &signer, &s);
    char body[256];
    snprintf(body, sizeof body, "{\"refreshToken\":\"%s\"}", s.refresh);
    expect_route_ok(d, "POST", "/auth/refresh", NULL, body, 200);
    struct itest_resp r;
    itest_get(d, "/health/ready", &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(json_object_get(r.json, "checks"), "database"), "ok");
    itest_resp_free(&r);
    assert_true(itest_daemon_alive(d));
    assert_int_equal(d->pid, pid);

    /* no leaked connections or descriptors */
    struct fd_census after;
    wait_others_at_most(pid, before.others + FD_MARGIN, itest_scaled(5000), &after);
    int backends = pg_backends_of(&after);
    fprintf(stderr,
            "  descriptors: before %u (%u database), loaded after %u (%u database), settled "
            "%u (%u database, %d backends); pool %u + %u private\n",
            before.total, before.pg, loaded_after.total, loaded_after.pg, after.total, after.pg,
            backends, pool, PRIVATE_DB_CONNS);
    assert_true(after.pg <= pool + PRIVATE_DB_CONNS);
    assert_true(backends >= 0);
    assert_true((unsigned)backends <= pool + PRIVATE_DB_CONNS);
    assert_true(after.others <= before.others + FD_MARGIN);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 2. the broker restarted during a load run --------------------------------------------- */

static unsigned msg_wait(void)
{
    return itest_scaled(10000);
}

struct fdev {
    char thing[96];
    char hw[37];
    char id[37];
};

/* A display that has said hello and is bound to u by its claim code. */
static void fdev_bind(const struct itest_daemon *d, struct fdev *f, const struct itest_user *u,
                      unsigned n)
{
    itest_random_uuid(f->hw);
    snprintf(f->thing, sizeof f->thing, "itest-faults-%s-%d-%u-%.8s", itest.run_tag, (int)getpid(),
             n, f->hw);
    assert_true(itest_mqtt_heartbeat(mq, f->thing, f->hw, "fake-1.0.0", 80));
    json_t *cmd = itest_mqtt_take(mq, f->thing, "claim_code", msg_wait());
    assert_non_null(cmd);
    struct itest_resp r;
    itest_callf(d, "POST", "/api/devices/bind/code", u->s.access, &r, "{s:s}", "claimCode",
                itest_str(cmd, "code"));
    json_decref(cmd);
    itest_expect_status(&r, 200);
    snprintf(f->id, sizeof f->id, "%s", itest_str(r.json, "id"));
    itest_resp_free(&r);
    cmd = itest_mqtt_take(mq, f->thing, "bound", msg_wait());
    assert_non_null(cmd);
    json_decref(cmd);
}

/* The simulated displays: a heartbeat each, all the time (a real one sends one every 30 s;
 * these are many displays waking at once). Publishing fails while the broker is down. */
struct heartbeats {
    struct fdev *devs;
    unsigned ndev;
    unsigned published[PH_COUNT], failed[PH_COUNT];
};

static void *heartbeats_run(void *arg)
{
    struct heartbeats *hb = arg;
    while (!atomic_load(&stop_load)) {
        for (unsigned i = 0; i < hb->ndev; i++) {
            int ph = atomic_load(&phase);
            if (itest_mqtt_heartbeat(mq, hb->devs[i].thing, hb->devs[i].hw, "fake-1.0.0", 80))
                hb->published[ph]++;
            else
                hb->failed[ph]++;
        }
        itest_sleep_ms(200);
    }
    return NULL;
}

/* Polls /health/ready until its broker check reads ok (want_ok) or not; true if it did. */
static bool ready_broker_becomes(const struct itest_daemon *d, bool want_ok, unsigned limit_ms)
{
    int64_t deadline = itest_now_ms() + limit_ms;
    for (;;) {
        struct itest_resp r;
        itest_get(d, "/health/ready", &r);
        const char *b =
            json_string_value(json_object_get(json_object_get(r.json, "checks"), "broker"));
        bool ok = r.status == 200 && b && strcmp(b, "ok") == 0;
        bool down = r.status == 503 && b && strcmp(b, "ok") != 0;
        itest_resp_free(&r);
        if (want_ok ? ok : down)
            return true;
        if (itest_now_ms() > deadline)
            return false;
        itest_sleep_ms(50);
    }
}

static json_t *device_get(const struct itest_daemon *d, const struct itest_user *u, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/api/devices/%s", id);
    struct itest_resp r;
    itest_call(d, "GET", path, u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    json_t *dev = json_incref(r.json);
    itest_resp_free(&r);
    return dev;
}

/* The status of command `cmd` of device `dev` in its log (the newest 100), malloc'd or NULL. */
static char *command_status(const struct itest_daemon *d, const struct itest_user *u,
                            const char *dev, const char *cmd)
{
    char path[160];
    snprintf(path, sizeof path, "/api/devices/%s/commands?limit=100", dev);
    struct itest_resp r;
    itest_call(d, "GET", path, u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    char *status = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(r.json, i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (id && strcmp(id, cmd) == 0)
            status = strdup(json_string_value(json_object_get(c, "status")));
    }
    itest_resp_free(&r);
    return status;
}

/* Production defaults. Loaders for the whole run: 2 command senders (round-robin over 3 bound
 * displays), /auth/me; a thread publishes heartbeats of the 3 displays. HTTP answers are only
 * 202 / 200 (contract §4: commands are durable, 202 also while the broker is down). */
static void test_faults_broker_restart_under_load_keeps_http_2xx_and_delivers_after(void **state)
{
    (void)state;
    const char *stop = env_or_null("INKLET_ITEST_MQTT_STOP");
    const char *start = env_or_null("INKLET_ITEST_MQTT_START");
    if (!itest.mqtt_url || !stop || !start) {
        fprintf(stderr, "  INKLET_ITEST_MQTT_URL/STOP/START not set: skipped\n");
        skip();
    }
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    pid_t pid = d->pid;
    assert_true(ready_broker_becomes(d, true, itest_scaled(10000)));
    char client[64];
    snprintf(client, sizeof client, "itest-faults-%s-%d", itest.run_tag, (int)getpid());
    mq = itest_mqtt_new(itest.mqtt_url, client);
    assert_non_null(mq);
    struct itest_user owner = {0};
    itest_register(d, &owner);
    struct fdev devs[3];
    char dev_ids[3][37];
    for (unsigned i = 0; i < 3; i++) {
        fdev_bind(d, &devs[i], &owner, i);
        snprintf(dev_ids[i], sizeof dev_ids[i], "%s", devs[i].id);
    }

    struct load_run *run = calloc(1, sizeof *run);
    assert_non_null(run);
    struct outage_cmd *outage = calloc(2 * MAX_OUTAGE_CMDS, sizeof *outage);
    assert_non_null(outage);
    for (unsigned i = 0; i < 2; i++) {
        struct loader *l = load_add(run, d, LOAD_COMMAND, i ? "command-2" : "command-1", &owner);
        l->dev_ids = dev_ids;
        l->ndev = 3;
        l->outage = outage + i * MAX_OUTAGE_CMDS;
        l->pause_ms = 150; /* the log keeps 200 commands a display; stay well below */
    }
    load_add(run, d, LOAD_ME, "me", &owner);
    struct heartbeats hb = {.devs = devs, .ndev = 3};
    pthread_t hb_thread;

    load_start(run);
    assert_true(wait_all_saw(run, PH_WARM, false, itest_scaled(10000)));
    itest_sleep_ms(500);
    load_stop(run);
    struct fd_census before;
    settled_census(pid, &before);
    load_start(run);
    assert_int_equal(pthread_create(&hb_thread, NULL, heartbeats_run, &hb), 0);
    itest_sleep_ms(500);

    atomic_store(&phase, PH_FAULT);
    broker_stopped = true;
    assert_int_equal(itest_sh(stop, 30000), 0);
    bool seen_down = ready_broker_becomes(d, false, itest_scaled(15000));
    /* some commands were accepted while the daemon knew the broker was gone */
    int64_t deadline = itest_now_ms() + itest_scaled(10000);
    while (run->l[0].noutage + run->l[1].noutage < 6 && itest_now_ms() < deadline)
        itest_sleep_ms(50);
    itest_sleep_ms(1000);
    atomic_store(&phase, PH_BACK);
    assert_int_equal(itest_sh(start, 60000), 0);
    broker_stopped = false;
    int64_t t0 = itest_now_ms();
    /* the daemon reconnects by itself, with back-off (1-30 s) */
    bool reconnected = ready_broker_becomes(d, true, itest_scaled(35000));
    int64_t reconnect_ms = itest_now_ms() - t0;
    bool client_back = itest_mqtt_wait_ready(mq, itest_scaled(15000));
    atomic_store(&phase, PH_AFTER);
    itest_sleep_ms(1500);
    load_stop(run);
    pthread_join(hb_thread, NULL);
    fprintf(stderr, "  the daemon was subscribed again %lld ms after the broker restarted\n",
            (long long)reconnect_ms);
    fprintf(stderr, "  heartbeats published/failed by phase:");
    for (int p = 0; p < PH_COUNT; p++)
        fprintf(stderr, " %u/%u", hb.published[p], hb.failed[p]);
    fprintf(stderr, "\n");
    load_report(run);
    expect_no_defects(run);
    assert_true(seen_down);
    assert_true(reconnected);
    assert_true(client_back);
    unsigned queued = run->l[0].noutage + run->l[1].noutage;
    fprintf(stderr, "  %u commands accepted during the outage\n", queued);
    assert_true(queued >= 6);
    assert_true(hb.failed[PH_FAULT] > 0); /* the displays really lost the broker */

    /* a message published after the reconnect is processed */
    assert_true(itest_mqtt_heartbeat(mq, devs[0].thing, devs[0].hw, "fake-after-restart", 61));
    deadline = itest_now_ms() + msg_wait();
    bool processed = false;
    while (!processed && itest_now_ms() < deadline) {
        json_t *dev = device_get(d, &owner, devs[0].id);
        const char *fw = json_string_value(json_object_get(dev, "firmware"));
        processed = fw && strcmp(fw, "fake-after-restart") == 0;
        json_decref(dev);
        if (!processed)
            itest_sleep_ms(100);
    }
    assert_true(processed);

    /* what was queued during the outage reaches the displays (they keep sending heartbeats) */
    deadline = itest_now_ms() + itest_scaled(20000);
    size_t missing;
    do {
        missing = 0;
        for (unsigned k = 0; k < 2; k++)
            for (unsigned i = 0; i < run->l[k].noutage; i++) {
                const struct outage_cmd *c = &run->l[k].outage[i];
                missing += itest_mqtt_count_id(mq, devs[c->dev].thing, c->id) == 0;
            }
        if (missing) {
            for (unsigned i = 0; i < 3; i++)
                itest_mqtt_heartbeat(mq, devs[i].thing, devs[i].hw, "fake-after-restart", 61);
            itest_sleep_ms(1000);
        }
    } while (missing && itest_now_ms() < deadline);
    if (missing)
        fprintf(stderr, "  %zu of the %u commands queued during the outage never arrived\n",
                missing, queued);
    assert_int_equal(missing, 0);
    /* and a display's report marks what it got delivered */
    const struct loader *sender = run->l[0].noutage ? &run->l[0] : &run->l[1];
    const struct outage_cmd *last = &sender->outage[sender->noutage - 1];
    assert_true(
        itest_mqtt_publish_up(mq, devs[last->dev].thing, "state",
                              json_pack("{s:s,s:s}", "screen", "text", "lastCmd", last->id)));
    deadline = itest_now_ms() + msg_wait();
    char *st = NULL;
    for (;;) {
        free(st);
        st = command_status(d, &owner, devs[last->dev].id, last->id);
        if ((st && strcmp(st, "delivered") == 0) || itest_now_ms() > deadline)
            break;
        itest_sleep_ms(100);
    }
    assert_non_null(st);
    assert_string_equal(st, "delivered");
    free(st);
    free(outage);
    free(run);

    struct fd_census after;
    wait_others_at_most(pid, before.others + FD_MARGIN, itest_scaled(5000), &after);
    fprintf(stderr, "  descriptors: before %u, after %u\n", before.total, after.total);
    assert_true(after.others <= before.others + FD_MARGIN);
    assert_int_equal(d->pid, pid);
    itest_mqtt_free(mq);
    mq = NULL;
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 3. 2,000 idle connections ----------------------------------------------------------------
 */

/* Raises RLIMIT_NOFILE to its hard limit; the soft limit after. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

/* A TCP connection from 127.0.0.<src> to the daemon that sends nothing; -1 on failure. */
static int idle_connect(unsigned src, unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = 0};
    from.sin_addr.s_addr = htonl(0x7f000000u | src);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* How many of fds[0..n) the peer has closed (readable with read() == 0 or an error); waits up
 * to timeout_ms for all of them. */
static size_t wait_closed_by_peer(const int *fds, size_t n, unsigned timeout_ms)
{
    struct pollfd *p = calloc(n, sizeof *p);
    assert_non_null(p);
    bool *closed = calloc(n, sizeof *closed);
    assert_non_null(closed);
    size_t nclosed = 0;
    int64_t deadline = itest_now_ms() + timeout_ms;
    do {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!closed[i])
                p[k++] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        int64_t left = deadline - itest_now_ms();
        if (left < 0)
            left = 0;
        int rc = poll(p, k, (int)(left < 1000 ? left : 1000));
        if (rc < 0 && errno != EINTR)
            break;
        for (size_t j = 0; j < k && rc > 0; j++) {
            if (!p[j].revents)
                continue;
            char c;
            ssize_t got = read(p[j].fd, &c, 1);
            if (got <= 0) {
                for (size_t i = 0; i < n; i++)
                    if (fds[i] == p[j].fd)
                        closed[i] = true;
                nclosed++;
            }
        }
    } while (nclosed < n && itest_now_ms() < deadline);
    free(p);
    free(closed);
    return nclosed;
}

/* The production limits hold 2,000 idle connections: HTTP_MAX_CONNECTIONS 4096 and
 * HTTP_MAX_CONNECTIONS_PER_IP 512 (src/core/config.c), so they come from 40 source addresses,
 * 50 each. Only HTTP_CONNECTION_TIMEOUT is shortened (5 s, production 30 s) so the test can
 * watch the server close them. */
static void test_faults_2000_idle_connections_leave_health_answering_then_time_out(void **state)
{
    (void)state;
    const unsigned n = itest.slow > 1 ? 400 : 2000;
    const unsigned timeout_s = itest.slow > 1 ? 30 : 5;
    rlim_t lim = raise_nofile();
    if (lim < n + 256) {
        fprintf(stderr, "  RLIMIT_NOFILE hard limit %llu is below %u: skipped\n",
                (unsigned long long)lim, n + 256);
        skip();
    }
    char timeout_kv[48];
    snprintf(timeout_kv, sizeof timeout_kv, "HTTP_CONNECTION_TIMEOUT=%u", timeout_s);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){timeout_kv, NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct fd_census before;
    settled_census(d->pid, &before);

    int *fds = idle_fds = calloc(n, sizeof *fds);
    assert_non_null(fds);
    int64_t t_open = itest_now_ms();
    unsigned opened = 0;
    for (unsigned i = 0; i < n; i++) {
        fds[i] = idle_connect(2 + i % 40, d->port); /* 127.0.0.2 ... 127.0.0.41 */
        opened += fds[i] >= 0;
        idle_n = i + 1;
    }
    int64_t open_ms = itest_now_ms() - t_open;
    assert_int_equal(opened, n);
    /* the server has accepted them all (not merely the kernel's backlog) */
    int64_t deadline = itest_now_ms() + itest_scaled(3000);
    struct fd_census held;
    do {
        fd_census(d->pid, &held);
        if (held.total >= before.total + n)
            break;
        itest_sleep_ms(20);
    } while (itest_now_ms() < deadline);
    fprintf(stderr,
            "  %u connections opened in %lld ms; the daemon holds %u descriptors (%u before)\n", n,
            (long long)open_ms, held.total, before.total);
    if (held.total < before.total + n) {
        char path[64], *limits;
        snprintf(path, sizeof path, "/proc/%d/limits", (int)d->pid);
        limits = itest_read_file(path, NULL);
        const char *line = strstr(limits, "Max open files");
        fprintf(stderr, "  the daemon accepted only %u of them; %.60s\n", held.total - before.total,
                line ? line : "(no limits)");
        free(limits);
    }
    assert_true(held.total >= before.total + n);

    /* with all of them open: /health within 1 s (a liveness bound, far above the usual
     * microseconds and far below anything a load balancer would give up at), /auth/me works */
    for (int i = 0; i < 5; i++) {
        struct itest_resp r;
        itest_get(d, "/health", &r);
        itest_expect_status(&r, 200);
        if (r.seconds * 1000 >= itest_scaled(1000))
            fail_msg("/health took %.0f ms with %u idle connections open", r.seconds * 1000, n);
        itest_resp_free(&r);
    }
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    /* and not one was closed yet: they are idle, not refused */
    assert_int_equal(wait_closed_by_peer(fds, n, 0), 0);
    assert_true(itest_now_ms() - t_open < (int64_t)timeout_s * 1000);

    /* after the idle timeout the server closes every one of them */
    size_t closed = wait_closed_by_peer(fds, n, timeout_s * 1000 + itest_scaled(10000));
    fprintf(stderr, "  %zu of %u closed by the server after the %u s idle timeout\n", closed, n,
            timeout_s);
    assert_int_equal(closed, n);
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    idle_fds = NULL;
    idle_n = 0;
    struct fd_census after;
    wait_others_at_most(d->pid, before.others + FD_MARGIN, itest_scaled(5000), &after);
    assert_true(after.others <= before.others + FD_MARGIN);
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 4. slowloris and slow bodies (slowhttptest) ------------------------------------------- */

static const char *slowhttptest_path(void)
{
    static const char *const candidates[] = {"/usr/bin/slowhttptest",
                                             "/usr/local/bin/slowhttptest"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(candidates); i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    return NULL;
}

/* The highest "Connected" count in a slowhttptest CSV (Seconds,Closed,Pending,Connected,...). */
static unsigned max_connected(const char *csv_path)
{
    char *csv = itest_read_file(csv_path, NULL);
    unsigned best = 0;
    for (char *line = strtok(csv, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned secs, closed, pending, connected;
        if (sscanf(line, "%u,%u,%u,%u", &secs, &closed, &pending, &connected) == 4 &&
            connected > best)
            best = connected;
    }
    free(csv);
    return best;
}

struct health_probe {
    const struct itest_daemon *d;
    atomic_bool stop;
    unsigned n, not_ok;
    double max_s;
    long bad_status;
};

/* GET /health every 100 ms, each on a new connection (what a load balancer's check does). */
static void *health_probe_run(void *arg)
{
    struct health_probe *p = arg;
    char url[96];
    snprintf(url, sizeof url, "%s/health", p->d->url);
    while (!atomic_load(&p->stop)) {
        struct itest_resp r;
        itest_request(NULL, "GET", url, NULL, NULL, 0, &r);
        p->n++;
        if (r.status != 200) {
            p->not_ok++;
            p->bad_status = r.status;
        }
        if (r.seconds > p->max_s)
            p->max_s = r.seconds;
        itest_resp_free(&r);
        itest_sleep_ms(100);
    }
    return NULL;
}

/* 1,000 slowloris connections (-H: headers trickle in every 10 s, inside the 30 s production
 * HTTP_CONNECTION_TIMEOUT, so the server must hold them) and 300 slow-body POST /auth/login
 * (-B) for 20 s, all from 127.0.0.1: HTTP_MAX_CONNECTIONS_PER_IP is raised to 4096 for this test
 * (production 512 would cap one address and hide the attack). /health, probed every 100 ms
 * from its own connection, answers 200 every time, each within 2 s. */
static void test_faults_slowloris_and_slow_bodies_leave_health_answering(void **state)
{
    (void)state;
    const char *tool = slowhttptest_path();
    if (!tool) {
        fprintf(stderr, "  slowhttptest is not installed (Debian package slowhttptest): skipped\n");
        skip();
    }
    if (itest.slow > 1) {
        fprintf(stderr, "  1,300 attack connections are not feasible under valgrind: skipped\n");
        skip();
    }
    if (raise_nofile() < 4096) {
        fprintf(stderr, "  RLIMIT_NOFILE hard limit below 4096: skipped\n");
        skip();
    }
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){"HTTP_MAX_CONNECTIONS_PER_IP=4096", NULL});
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct fd_census before, mid;
    settled_census(d->pid, &before);

    char h_url[96], b_url[96], h_out[160], b_out[160], h_prefix[160], b_prefix[160];
    snprintf(h_url, sizeof h_url, "%s/health", d->url);
    snprintf(b_url, sizeof b_url, "%s/auth/login", d->url);
    snprintf(h_out, sizeof h_out, "%s/slowloris.out", itest.tmpdir);
    snprintf(b_out, sizeof b_out, "%s/slowbody.out", itest.tmpdir);
    snprintf(h_prefix, sizeof h_prefix, "%s/slowloris", itest.tmpdir);
    snprintf(b_prefix, sizeof b_prefix, "%s/slowbody", itest.tmpdir);
    const char *h_argv[] = {tool, "-H", "-c", "1000", "-r",  "250", "-i", "10",     "-l",
                            "20", "-p", "3",  "-u",   h_url, "-g",  "-o", h_prefix, NULL};
    const char *b_argv[] = {
        tool, "-B", "-c",   "300", "-r", "100", "-i",     "5",  "-l",
        "20", "-s", "8192", "-x",  "10", "-t",  "POST",   "-f", "application/json",
        "-p", "3",  "-u",   b_url, "-g", "-o",  b_prefix, NULL};
    struct health_probe probe = {.d = d};
    atomic_init(&probe.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, health_probe_run, &probe), 0);
    pid_t hp = itest_spawn_program(h_argv, NULL, h_out, h_out);
    pid_t bp = itest_spawn_program(b_argv, NULL, b_out, b_out);
    assert_true(hp > 0);
    assert_true(bp > 0);
    /* mid-attack, a signed-in route still works */
    itest_sleep_ms(10000);
    long me_mid = itest_me_status(d, u.s.access);
    fd_census(d->pid, &mid); /* what the server itself holds, not only the kernel's queue */
    int hs = itest_wait_pid(hp, 60000), bs = itest_wait_pid(bp, 60000);
    atomic_store(&probe.stop, true);
    pthread_join(th, NULL);

    char csv[192];
    snprintf(csv, sizeof csv, "%s.csv", h_prefix);
    unsigned h_conn = max_connected(csv);
    snprintf(csv, sizeof csv, "%s.csv", b_prefix);
    unsigned b_conn = max_connected(csv);
    fprintf(stderr,
            "  slowloris held up to %u connections, slow bodies %u; /health: %u probes, %u not "
            "200, max %.0f ms; the daemon held %u descriptors mid-attack (%u before)\n",
            h_conn, b_conn, probe.n, probe.not_ok, probe.max_s * 1000, mid.total, before.total);
    if (hs != 0 || bs != 0 || h_conn < 900 || b_conn < 270) {
        char *out = itest_read_file(h_out, NULL);
        fprintf(stderr, "  slowhttptest -H (exit %d):\n%s\n", hs, out);
        free(out);
        out = itest_read_file(b_out, NULL);
        fprintf(stderr, "  slowhttptest -B (exit %d):\n%s\n", bs, out);
        free(out);
    }
    assert_int_equal(hs, 0);
    assert_int_equal(bs, 0);
    /* the attack really happened: the server held (nearly) all of its connections */
    assert_true(h_conn >= 900);
    assert_true(b_conn >= 270);
    assert_true(mid.total >= before.total + 1170);
    assert_int_equal(me_mid, 200);
    assert_true(probe.n >= 100);
    assert_int_equal(probe.not_ok, 0);
    assert_true(probe.max_s < 2.0);
    assert_true(itest_daemon_alive(d));
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- 5. Stripe, Google and Apple hung at once ------------------------------------------------ */

#define STRIPE_KEY "sk_test_inklet_fake"
#define WEBHOOK_SECRET "whsec_inklet_fake"
/* the production STRIPE_TIMEOUT and OAUTH_TIMEOUT (src/core/config.c); the fakes hang longer */
#define PROVIDER_TIMEOUT_MS 10000
#define HANG_MS 15000

static struct itest_fake stripe_fake, oidc_fake;

static int providers_teardown(void **state)
{
    if (stripe_fake.pid > 0)
        itest_fake_stop(&stripe_fake);
    if (oidc_fake.pid > 0)
        itest_fake_stop(&oidc_fake);
    memset(&stripe_fake, 0, sizeof stripe_fake);
    memset(&oidc_fake, 0, sizeof oidc_fake);
    return faults_teardown(state);
}

/* The browser's part of a sign-in on `d` (no cmocka: runs in threads too): start, the fake's
 * authorize page, our callback. Writes the callback's final Location (or why there is none)
 * into `final`; returns the milliseconds the callback itself took, -1 when it did not answer
 * with a redirect. */
static int64_t browser_sign_in(const struct itest_daemon *d, const char *provider, char *final,
                               size_t size)
{
    char url[256];
    snprintf(url, sizeof url, "%s/auth/oauth/%s?client=web", d->url, provider);
    struct itest_resp r;
    itest_fetch("GET", url, NULL, &r);
    const char *loc = itest_header(&r, "Location");
    if (r.status != 302 || !loc) {
        snprintf(final, size, "start answered %ld", r.status);
        itest_resp_free(&r);
        return -1;
    }
    char *authorize = strdup(loc);
    itest_resp_free(&r);
    itest_fetch("GET", authorize, NULL, &r);
    free(authorize);
    char cb[4096], form[8192] = "";
    bool apple = strcmp(provider, "apple") == 0;
    loc = itest_header(&r, "Location");
    if (!apple && r.status == 302 && loc && strncmp(loc, API_BASE, strlen(API_BASE)) == 0) {
        snprintf(cb, sizeof cb, "%s%s", d->url, loc + strlen(API_BASE));
    } else if (apple && r.status == 200 && strstr(r.body, "<form")) {
        const char *tag = strstr(r.body, "<form");
        char *action = itest_html_attr(tag, "action");
        snprintf(cb, sizeof cb, "%s%s", d->url,
                 action && strlen(action) > strlen(API_BASE) ? action + strlen(API_BASE) : "/");
        free(action);
        if (!itest_html_form_body(tag, form, sizeof form))
            form[0] = '\0'; /* the callback then refuses it: reported as no redirect */
    } else {
        snprintf(final, size, "the fake's authorize answered %ld", r.status);
        itest_resp_free(&r);
        return -1;
    }
    itest_resp_free(&r);
    int64_t t0 = itest_now_ms();
    itest_fetch(apple ? "POST" : "GET", cb, apple ? form : NULL, &r);
    int64_t ms = itest_now_ms() - t0;
    loc = itest_header(&r, "Location");
    snprintf(final, size, "%s", r.status == 302 && loc ? loc : "(no redirect)");
    bool redirected = r.status == 302 && loc;
    itest_resp_free(&r);
    return redirected ? ms : -1;
}

/* An ID token the fake signs with its current key for a fresh identity of `provider`. */
static char *fake_id_token(const char *provider, unsigned n)
{
    long long now = (long long)time(NULL);
    char sub[96], email[128];
    snprintf(sub, sizeof sub, "%s-faults-%s-%u", provider, itest.run_tag, n);
    snprintf(email, sizeof email, "faults-%s-%s-%u@example.com", provider, itest.run_tag, n);
    bool google = strcmp(provider, "google") == 0;
    json_t *claims =
        json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:I}", "iss",
                  google ? "https://accounts.google.com" : "https://appleid.apple.com", "aud",
                  google ? GOOGLE_ID : APPLE_ID, "sub", sub, "email", email, "email_verified",
                  google ? json_true() : json_string("true"), "iat", now, "exp", now + 3600);
    json_t *body =
        json_pack("{s:s,s:o,s:s}", "provider", provider, "claims", claims, "key", "current");
    json_t *v = itest_fake_call(&oidc_fake, "POST", "/_fake/sign", body);
    json_decref(body);
    char *t = strdup(json_string_value(json_object_get(v, "token")));
    json_decref(v);
    return t;
}

enum provider_route {
    PR_CHECKOUT,
    PR_GOOGLE_CALLBACK,
    PR_APPLE_CALLBACK,
    PR_GOOGLE_NATIVE,
    PR_APPLE_NATIVE
};

struct provider_job {
    const struct itest_daemon *d;
    enum provider_route route;
    const char *name;
    struct itest_user *u;
    char *id_token; /* the native routes */
    atomic_uint done;
    unsigned nbad;
    int64_t max_ms;
    char bad[384];
};

/* One provider-bound call while the providers hang: it must fail the contract's way (checkout
 * 502 stripe_error; a browser callback 302 to the web target with ?error=oauth_failed; the
 * native route 401 invalid_id_token, as it does for a JWKS it cannot fetch) within its timeout. */
static void provider_call(struct provider_job *j)
{
    struct itest_resp r;
    char final[4096];
    int64_t t0 = itest_now_ms(), ms = 0;
    bool ok = false;
    switch (j->route) {
    case PR_CHECKOUT:
        itest_call(j->d, "POST", "/auth/subscription/checkout", j->u->s.access,
                   "{\"interval\":\"monthly\"}", &r);
        ms = itest_now_ms() - t0;
        ok = r.status == 502 && error_body_ok(&r, "stripe_error");
        snprintf(final, sizeof final, "%ld %.200s", r.status, r.body ? r.body : "");
        itest_resp_free(&r);
        break;
    case PR_GOOGLE_CALLBACK:
    case PR_APPLE_CALLBACK:
        ms = browser_sign_in(j->d, j->route == PR_GOOGLE_CALLBACK ? "google" : "apple", final,
                             sizeof final);
        ok = ms >= 0 && strcmp(final, WEB_TARGET "?error=oauth_failed") == 0;
        break;
    case PR_GOOGLE_NATIVE:
    case PR_APPLE_NATIVE:
        itest_callf(j->d, "POST",
                    j->route == PR_GOOGLE_NATIVE ? "/auth/oauth/google/token"
                                                 : "/auth/oauth/apple/token",
                    NULL, &r, "{s:s}", "idToken", j->id_token);
        ms = itest_now_ms() - t0;
        ok = r.status == 401 && error_body_ok(&r, "invalid_id_token");
        snprintf(final, sizeof final, "%ld %.200s", r.status, r.body ? r.body : "");
        itest_resp_free(&r);
        break;
    }
    if (ms > j->max_ms)
        j->max_ms = ms;
    /* within the provider's timeout, plus the work around it */
    if (ok && ms > PROVIDER_TIMEOUT_MS + (int64_t)itest_scaled(2000))
        ok = false;
    if (!ok && j->nbad++ == 0)
        snprintf(j->bad, sizeof j->bad, "%s: %.300s after %lld ms", j->name, final, (long long)ms);
    atomic_fetch_add(&j->done, 1);
}

static void *provider_run(void *arg)
{
    struct provider_job *j = arg;
    while (!atomic_load(&stop_load))
        provider_call(j);
    return NULL;
}

static void fake_hang(const struct itest_fake *f, const char *path_prefix)
{
    json_decref(itest_fake_callf(f, "POST", "/_fake/faults", "{s:s,s:i}", "path_prefix",
                                 path_prefix, "delay_ms", HANG_MS));
}

static void fake_unhang(const struct itest_fake *f)
{
    json_decref(itest_fake_call(f, "DELETE", "/_fake/faults", NULL));
}

/* Retries a sign-in (the key cache refetches a failed JWKS after a few seconds) until it ends
 * at the web target with tokens; true if it did within limit_ms. */
static bool sign_in_works_again(const struct itest_daemon *d, const char *provider,
                                unsigned limit_ms)
{
    int64_t deadline = itest_now_ms() + limit_ms;
    char final[4096];
    for (;;) {
        browser_sign_in(d, provider, final, sizeof final);
        if (strncmp(final, WEB_TARGET "?accessToken=", strlen(WEB_TARGET "?accessToken=")) == 0)
            return true;
        if (itest_now_ms() > deadline) {
            fprintf(stderr, "  %s sign-in after the hang: %s\n", provider, final);
            return false;
        }
        itest_sleep_ms(500);
    }
}

static bool native_works_again(const struct itest_daemon *d, const char *provider, unsigned n,
                               unsigned limit_ms)
{
    int64_t deadline = itest_now_ms() + limit_ms;
    char *tok = fake_id_token(provider, n);
    char path[64];
    snprintf(path, sizeof path, "/auth/oauth/%s/token", provider);
    bool ok = false;
    for (;;) {
        struct itest_resp r;
        itest_callf(d, "POST", path, NULL, &r, "{s:s}", "idToken", tok);
        ok = r.status == 200 && json_is_string(json_object_get(r.json, "accessToken"));
        if (!ok && itest_now_ms() > deadline)
            fprintf(stderr, "  native %s after the hang: %ld %s\n", provider, r.status, r.body);
        itest_resp_free(&r);
        if (ok || itest_now_ms() > deadline)
            break;
        itest_sleep_ms(500);
    }
    free(tok);
    return ok;
}

/* Production STRIPE_TIMEOUT and OAUTH_TIMEOUT (10 s); the fakes hang the provider calls for
 * 15 s: Stripe's whole API, Google's and Apple's token and key endpoints (the authorize pages
 * are the browser's, not ours). Threads call checkout, both browser callbacks and both native
 * token routes, while /health, /auth/me and /api/devices loaders must keep answering 200, each
 * well under DB_TIMEOUT (3 s): within 1 s (3 s under valgrind). */
static void test_faults_hung_stripe_google_apple_stall_nothing_else(void **state)
{
    (void)state;
    if (!itest.fake_stripe || !itest.fake_oidc) {
        fprintf(stderr, "  INKLET_ITEST_FAKE_STRIPE/OIDC not set: skipped\n");
        skip();
    }
    char key_path[160], pub_path[160], cmd[1024];
    snprintf(key_path, sizeof key_path, "%s/faults-apple.p8", itest.tmpdir);
    snprintf(pub_path, sizeof pub_path, "%s/faults-apple.pub.pem", itest.tmpdir);
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '%s' 2>/dev/null"
             " && openssl pkey -in '%s' -pubout -out '%s' 2>/dev/null",
             key_path, key_path, pub_path);
    assert_int_equal(itest_sh(cmd, 20000), 0);
    assert_true(itest_fake_start(&stripe_fake, "fake-stripe", itest.fake_stripe,
                                 (const char *const[]){"--secret-key", STRIPE_KEY,
                                                       "--webhook-secret", WEBHOOK_SECRET, NULL}));
    assert_true(itest_fake_start(
        &oidc_fake, "fake-oidc", itest.fake_oidc,
        (const char *const[]){"--google-client-id", GOOGLE_ID, "--google-client-secret",
                              GOOGLE_SECRET, "--apple-client-id", APPLE_ID, "--apple-team-id",
                              TEAM_ID, "--apple-key-id", KEY_ID, "--apple-public-key-file",
                              pub_path, NULL}));
    char kv[10][220];
    unsigned s = stripe_fake.port, o = oidc_fake.port;
    snprintf(kv[0], sizeof kv[0], "STRIPE_API_BASE=http://127.0.0.1:%u", s);
    snprintf(kv[1], sizeof kv[1], "GOOGLE_AUTH_URL=http://127.0.0.1:%u/google/o/oauth2/v2/auth", o);
    snprintf(kv[2], sizeof kv[2], "GOOGLE_TOKEN_URL=http://127.0.0.1:%u/google/token", o);
    snprintf(kv[3], sizeof kv[3], "GOOGLE_JWKS_URL=http://127.0.0.1:%u/google/oauth2/v3/certs", o);
    snprintf(kv[4], sizeof kv[4], "APPLE_AUTH_URL=http://127.0.0.1:%u/apple/auth/authorize", o);
    snprintf(kv[5], sizeof kv[5], "APPLE_TOKEN_URL=http://127.0.0.1:%u/apple/auth/token", o);
    snprintf(kv[6], sizeof kv[6], "APPLE_JWKS_URL=http://127.0.0.1:%u/apple/auth/keys", o);
    snprintf(kv[7], sizeof kv[7], "APPLE_REVOKE_URL=http://127.0.0.1:%u/apple/auth/revoke", o);
    snprintf(kv[8], sizeof kv[8], "APPLE_PRIVATE_KEY_FILE=%s", key_path);
    const char *env[] = {kv[0],
                         kv[1],
                         kv[2],
                         kv[3],
                         kv[4],
                         kv[5],
                         kv[6],
                         kv[7],
                         kv[8],
                         "STRIPE_SECRET_KEY=" STRIPE_KEY,
                         "STRIPE_WEBHOOK_SECRET=" WEBHOOK_SECRET,
                         "STRIPE_PRICE_MONTHLY=price_inklet_monthly",
                         "STRIPE_PRICE_YEARLY=price_inklet_yearly",
                         "BILLING_SUCCESS_URL=https://portal.example.test/billing/success",
                         "BILLING_CANCEL_URL=https://portal.example.test/billing/cancel",
                         "BILLING_PORTAL_RETURN_URL=https://portal.example.test/account/billing",
                         "OAUTH_WEB_REDIRECT=" WEB_TARGET,
                         "GOOGLE_CLIENT_IDS=" GOOGLE_ID,
                         "GOOGLE_CLIENT_SECRET=" GOOGLE_SECRET,
                         "GOOGLE_REDIRECT_URL=" API_BASE "/auth/oauth/google/callback",
                         "APPLE_CLIENT_IDS=" APPLE_ID,
                         "APPLE_TEAM_ID=" TEAM_ID,
                         "APPLE_KEY_ID=" KEY_ID,
                         "APPLE_REDIRECT_URL=" API_BASE "/auth/oauth/apple/callback",
                         "TOKEN_ENCRYPTION_KEY=" ENC_KEY,
                         NULL};
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);
    struct itest_user reader = {0}, buyers[2], after_buyer = {0};
    itest_register(d, &reader);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(buyers); i++) {
        memset(&buyers[i], 0, sizeof buyers[i]);
        itest_register(d, &buyers[i]);
    }
    itest_register(d, &after_buyer);

    struct load_run *run = calloc(1, sizeof *run);
    assert_non_null(run);
    load_add(run, d, LOAD_HEALTH, "health", NULL);
    load_add(run, d, LOAD_ME, "me", &reader);
    load_add(run, d, LOAD_DEVICES, "devices", &reader);
    struct provider_job jobs[] = {
        {.route = PR_CHECKOUT, .name = "checkout-1", .u = &buyers[0]},
        {.route = PR_CHECKOUT, .name = "checkout-2", .u = &buyers[1]},
        {.route = PR_GOOGLE_CALLBACK, .name = "google-callback"},
        {.route = PR_APPLE_CALLBACK, .name = "apple-callback"},
        {.route = PR_GOOGLE_NATIVE, .name = "google-native"},
        {.route = PR_APPLE_NATIVE, .name = "apple-native"},
    };
    pthread_t jt[ITEST_ARRAY_LEN(jobs)];
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++) {
        jobs[i].d = d;
        atomic_init(&jobs[i].done, 0);
        if (jobs[i].route == PR_GOOGLE_NATIVE || jobs[i].route == PR_APPLE_NATIVE)
            jobs[i].id_token =
                fake_id_token(jobs[i].route == PR_GOOGLE_NATIVE ? "google" : "apple", (unsigned)i);
    }

    fake_hang(&stripe_fake, "/v1/");
    fake_hang(&oidc_fake, "/google/token");
    fake_hang(&oidc_fake, "/google/oauth2/v3/certs");
    fake_hang(&oidc_fake, "/apple/auth/token");
    fake_hang(&oidc_fake, "/apple/auth/keys");
    load_start(run);
    atomic_store(&phase, PH_FAULT);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++)
        assert_int_equal(pthread_create(&jt[i], NULL, provider_run, &jobs[i]), 0);
    /* every provider route finished at least one call (each waits out its timeout) */
    int64_t deadline = itest_now_ms() + PROVIDER_TIMEOUT_MS + itest_scaled(10000);
    bool all_done;
    do {
        all_done = true;
        for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++)
            all_done = all_done && atomic_load(&jobs[i].done) > 0;
        if (!all_done)
            itest_sleep_ms(100);
    } while (!all_done && itest_now_ms() < deadline);
    atomic_store(&stop_load, true);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++)
        pthread_join(jt[i], NULL);
    load_stop(run);
    fake_unhang(&stripe_fake);
    fake_unhang(&oidc_fake);

    load_report(run);
    unsigned bad = 0;
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++) {
        fprintf(stderr, "  %-16s %u calls, max %lld ms%s%s\n", jobs[i].name,
                atomic_load(&jobs[i].done), (long long)jobs[i].max_ms,
                jobs[i].nbad ? "; FIRST DEFECT: " : "", jobs[i].nbad ? jobs[i].bad : "");
        bad += jobs[i].nbad;
        free(jobs[i].id_token);
    }
    expect_no_defects(run);
    const int64_t liveness_ms = itest.slow > 1 ? 3000 : 1000;
    for (size_t i = 0; i < run->n; i++) {
        assert_true(atomic_load(&run->l[i].ok[PH_FAULT]) >= 10);
        if (run->l[i].max_ms >= liveness_ms)
            fail_msg("%s took %lld ms while the providers hung", run->l[i].name,
                     (long long)run->l[i].max_ms);
    }
    free(run);
    assert_true(all_done);
    assert_int_equal(bad, 0);

    /* un-hung: everything works again (a fresh buyer: the hung customer create still holds its
     * idempotency key at the fake until its delay ends) */
    struct itest_resp r;
    itest_call(d, "POST", "/auth/subscription/checkout", after_buyer.s.access,
               "{\"interval\":\"monthly\"}", &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_string(json_object_get(r.json, "url")));
    itest_resp_free(&r);
    assert_true(sign_in_works_again(d, "google", itest_scaled(15000)));
    assert_true(sign_in_works_again(d, "apple", itest_scaled(15000)));
    assert_true(native_works_again(d, "google", 100, itest_scaled(15000)));
    assert_true(native_works_again(d, "apple", 101, itest_scaled(15000)));
    assert_int_equal(itest_me_status(d, reader.s.access), 200);
    assert_int_equal(itest_daemon_stop(d), 0);
    assert_int_equal(itest_fake_stop(&stripe_fake), 0);
    assert_int_equal(itest_fake_stop(&oidc_fake), 0);
    memset(&stripe_fake, 0, sizeof stripe_fake);
    memset(&oidc_fake, 0, sizeof oidc_fake);
}

/* ---- group ---------------------------------------------------------------------------------- */

int itest_group_faults(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_faults_2000_idle_connections_leave_health_answering_then_time_out,
            faults_teardown),
        cmocka_unit_test_teardown(test_faults_slowloris_and_slow_bodies_leave_health_answering,
                                  faults_teardown),
        cmocka_unit_test_teardown(test_faults_hung_stripe_google_apple_stall_nothing_else,
                                  providers_teardown),
        cmocka_unit_test_teardown(
            test_faults_broker_restart_under_load_keeps_http_2xx_and_delivers_after,
            faults_teardown),
        cmocka_unit_test_teardown(
            test_faults_postgres_restart_under_load_is_2xx_or_503_and_recovers, faults_teardown),
    };
    return cmocka_run_group_tests_name("faults", tests, NULL, NULL);
}
