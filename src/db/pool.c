/* The connection pool. Every connection runs in libpq's non-blocking mode and every wait on it
 * (pool wait, connect, sending, reading a result) is a poll() bounded by the deadline of the work
 * it serves: a hung database (a stopped host, a lost network, a lock nobody releases) costs a
 * request DB_TIMEOUT, never a thread forever. A connection that missed its deadline is in an
 * unknown protocol state and is closed; its server side is bounded by statement_timeout and
 * idle_in_transaction_session_timeout, set on every connection. See docs/database.md. */
#include "inklet/db.h"

#include "inklet/alloc.h"
#include "inklet/deadline.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PREPARED 128
#define IDLE_CHECK_MS 2000
/* the readiness monitor pings this often, and calls the database unavailable when no ping has
 * succeeded for READY_STALE_MS (or the last one failed) */
#define MONITOR_INTERVAL_MS 500
#define READY_STALE_MS 1000 /* contract §1: the database status is at most 1 s old */

struct ink_db {
    PGconn *conn;
    bool in_use;
    bool broken;         /* close at release / before the next use */
    bool check_first;    /* a sibling failed: verify before use */
    int64_t released_ms; /* when it was last handed back */
    int64_t deadline_ms; /* every wait on this connection ends here (monotonic) */
    const struct ink_sql *prepared[MAX_PREPARED];
    unsigned nprepared;
    char conflict[64];
    char *session_sql; /* private connections only */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct ink_db *conns;
    unsigned size;
    unsigned in_use;
    unsigned waiting;
    unsigned timeout_ms;
    char *conninfo;
    atomic_ullong timeouts;
    atomic_ullong batches, batched; /* pipelines sent, and the statements in them */
    atomic_ullong batch_retries;    /* batches of writes run again statement by statement */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .timeout_ms = 3000};

static struct {
    pthread_t thread;
    bool started;
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool last_ok;
    atomic_llong ok_ms; /* when a ping last succeeded */
} monitor = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void monotonic_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
}

static struct timespec mono_timespec(int64_t ms)
{
    return (struct timespec){.tv_sec = (time_t)(ms / 1000),
                             .tv_nsec = (long)(ms % 1000) * 1000000L};
}

void ink_db_pool_init(const char *conninfo, unsigned size, unsigned timeout_ms)
{
    pool.conns = ink_calloc(size, sizeof *pool.conns);
    pool.size = size;
    pool.timeout_ms = timeout_ms ? timeout_ms : 3000;
    pool.conninfo = ink_strdup(conninfo);
    monotonic_cond_init(&pool.cond);
}

static void disconnect(struct ink_db *db)
{
    if (db->conn)
        PQfinish(db->conn); /* non-blocking: sends Terminate if it can, never waits */
    db->conn = NULL;
    db->nprepared = 0;
    db->broken = false;
    db->check_first = false;
}

void ink_db_pool_close(void)
{
    pthread_mutex_lock(&pool.lock);
    for (unsigned i = 0; i < pool.size; i++)
        disconnect(&pool.conns[i]);
    free(pool.conns);
    pool.conns = NULL;
    pool.size = 0;
    free(pool.conninfo);
    pool.conninfo = NULL;
    pthread_mutex_unlock(&pool.lock);
}

static void notice_discard(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* The deadline for work starting now: the request's, or DB_TIMEOUT from now. */
static int64_t deadline_from_now(void)
{
    int64_t d = ink_deadline_get();
    return d ? d : ink_now_mono_ms() + pool.timeout_ms;
}

/* ---- waiting on the socket ------------------------------------------------------------------ */

/* Waits until the socket shows one of `events`; false when the deadline passes first. */
static bool wait_socket(struct ink_db *db, short events)
{
    for (;;) {
        int64_t left = db->deadline_ms - ink_now_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = PQsocket(db->conn), .events = events};
        int rc = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (rc > 0)
            return true; /* POLLERR/POLLHUP too: libpq's next call reports the error */
        if (rc == 0 || errno != EINTR)
            return false;
    }
}

static void mark_siblings_suspect(void)
{
    pthread_mutex_lock(&pool.lock);
    for (unsigned i = 0; i < pool.size; i++)
        if (pool.conns[i].conn && !pool.conns[i].in_use)
            pool.conns[i].check_first = true;
    pthread_mutex_unlock(&pool.lock);
}

static enum ink_status lost(struct ink_db *db, const char *what)
{
    db->broken = true;
    mark_siblings_suspect();
    ink_warn("database connection lost during %s", what);
    return INK_UNAVAILABLE;
}

static enum ink_status timed_out(struct ink_db *db, const char *what)
{
    db->broken = true; /* a reply may still come: the connection is in an unknown state */
    atomic_fetch_add(&pool.timeouts, 1);
    ink_warn("database did not answer within DB_TIMEOUT during %s; closing that connection", what);
    return INK_UNAVAILABLE;
}

/* Sends what libpq has queued and collects the statement's results within the deadline. On
 * INK_OK *out holds the first failed result, else the last one (caller PQclear). */
static enum ink_status await_result(struct ink_db *db, const char *what, PGresult **out)
{
    PGconn *c = db->conn;
    *out = NULL;
    for (;;) {
        int f = PQflush(c);
        if (f == 0)
            break;
        if (f < 0)
            return lost(db, what);
        if (!wait_socket(db, POLLIN | POLLOUT))
            return timed_out(db, what);
        if (!PQconsumeInput(c))
            return lost(db, what);
    }
    /* with TLS, decrypted bytes may wait inside OpenSSL where poll() cannot see them: drain
     * them before every poll */
    bool tls = PQsslInUse(c);
    PGresult *keep = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (tls && (!PQconsumeInput(c) || !PQisBusy(c)))
                break;
            if (!wait_socket(db, POLLIN)) {
                PQclear(keep);
                return timed_out(db, what);
            }
            if (!PQconsumeInput(c))
                break;
        }
        /* PQgetResult blocks while busy, even in non-blocking mode: never call it then */
        if (PQisBusy(c) || PQstatus(c) != CONNECTION_OK) {
            PQclear(keep);
            return lost(db, what);
        }
        PGresult *r = PQgetResult(c);
        if (!r)
            break;
        ExecStatusType ks = keep ? PQresultStatus(keep) : PGRES_COMMAND_OK;
        if (keep && ks != PGRES_COMMAND_OK && ks != PGRES_TUPLES_OK) {
            PQclear(r); /* keep the first failure */
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    *out = keep;
    return INK_OK;
}

/* ---- connecting ----------------------------------------------------------------------------- */

static enum ink_status run_simple(struct ink_db *db, const char *sql, const char *what);

/* Opens the connection within db->deadline_ms, outside the pool lock. The keys before `dbname`
 * are defaults: anything DATABASE_URL sets wins over them. */
static enum ink_status connect_db(struct ink_db *db)
{
    char connect_timeout[16], user_timeout[16], session[160];
    unsigned secs = (pool.timeout_ms + 999) / 1000;
    snprintf(connect_timeout, sizeof connect_timeout, "%u", secs < 2 ? 2 : secs);
    snprintf(user_timeout, sizeof user_timeout, "%u", pool.timeout_ms);
    const char *keys[] = {"connect_timeout",     "keepalives",       "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                          "application_name",    "dbname",           NULL};
    const char *vals[] = {connect_timeout, "1",       "10",          "3", "3",
                          user_timeout,    "inkletd", pool.conninfo, NULL};
    db->conn = PQconnectStartParams(keys, vals, 1);
    if (!db->conn || PQstatus(db->conn) == CONNECTION_BAD) {
        ink_warn("database connection failed");
        disconnect(db);
        return INK_UNAVAILABLE;
    }
    /* libpq's documented loop: before the first poll, behave as if WRITING was returned */
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (ps != PGRES_POLLING_OK) {
        if (ps == PGRES_POLLING_FAILED) {
            ink_warn("database connection failed");
            disconnect(db);
            return INK_UNAVAILABLE;
        }
        if (!wait_socket(db, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT)) {
            atomic_fetch_add(&pool.timeouts, 1);
            ink_warn("database connection not established within DB_TIMEOUT");
            disconnect(db);
            return INK_UNAVAILABLE;
        }
        ps = PQconnectPoll(db->conn);
    }
    if (PQsetnonblocking(db->conn, 1) != 0) {
        disconnect(db);
        return INK_UNAVAILABLE;
    }
    PQsetNoticeProcessor(db->conn, notice_discard, NULL);
    /* the server-side backstops for a connection this side abandoned at its deadline */
    snprintf(session, sizeof session,
             "SET statement_timeout = %u; SET idle_in_transaction_session_timeout = %u",
             pool.timeout_ms, 2 * pool.timeout_ms);
    enum ink_status st = run_simple(db, session, "session setup");
    if (st == INK_OK && db->session_sql)
        st = run_simple(db, db->session_sql, "session setup");
    if (st != INK_OK) {
        disconnect(db);
        return INK_UNAVAILABLE;
    }
    return INK_OK;
}

/* ---- private connections -------------------------------------------------------------------- */

struct ink_db *ink_db_private_new(const char *session_sql)
{
    struct ink_db *db = ink_calloc(1, sizeof *db);
    db->in_use = true;
    db->session_sql = session_sql ? ink_strdup(session_sql) : NULL;
    return db;
}

enum ink_status ink_db_private_ready(struct ink_db *db)
{
    if (db->conn && (db->broken || PQstatus(db->conn) != CONNECTION_OK))
        disconnect(db);
    db->conflict[0] = '\0';
    db->deadline_ms = deadline_from_now();
    return db->conn ? INK_OK : connect_db(db);
}

void ink_db_private_free(struct ink_db *db)
{
    if (!db)
        return;
    disconnect(db);
    free(db->session_sql);
    free(db);
}

/* ---- the pool ------------------------------------------------------------------------------- */

enum ink_status ink_db_acquire(struct ink_db **out)
{
    *out = NULL;
    int64_t deadline = deadline_from_now();
    struct timespec until = mono_timespec(deadline);

    struct ink_db *db = NULL;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        /* prefer a connection that is already open */
        for (unsigned i = 0; i < pool.size && !db; i++)
            if (!pool.conns[i].in_use && pool.conns[i].conn)
                db = &pool.conns[i];
        for (unsigned i = 0; i < pool.size && !db; i++)
            if (!pool.conns[i].in_use)
                db = &pool.conns[i];
        if (db)
            break;
        pool.waiting++;
        int rc = pthread_cond_timedwait(&pool.cond, &pool.lock, &until);
        pool.waiting--;
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&pool.lock);
            atomic_fetch_add(&pool.timeouts, 1);
            ink_warn("no database connection free within DB_TIMEOUT");
            return INK_UNAVAILABLE;
        }
    }
    db->in_use = true;
    pool.in_use++;
    pthread_mutex_unlock(&pool.lock);

    db->deadline_ms = deadline;
    db->conflict[0] = '\0';
    if (db->conn && (db->broken || PQstatus(db->conn) != CONNECTION_OK))
        disconnect(db);
    /* A connection that sat idle may have been closed by a database restart that nobody has
     * noticed yet; a cheap round trip now saves the caller's statement from failing. Busy
     * connections skip this, so it costs nothing under load. */
    if (db->conn && (db->check_first || ink_now_mono_ms() - db->released_ms > IDLE_CHECK_MS)) {
        db->check_first = false;
        if (run_simple(db, "SELECT 1", "liveness check") != INK_OK)
            disconnect(db);
    }
    if (!db->conn && connect_db(db) != INK_OK) {
        ink_db_release(db);
        return INK_UNAVAILABLE;
    }
    *out = db;
    return INK_OK;
}

void ink_db_release(struct ink_db *db)
{
    if (!db)
        return;
    if (db->conn && !db->broken && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        /* a caller bailed out mid-transaction: never hand that state to the next user. The
         * ROLLBACK gets a short budget of its own, the request's may be spent. */
        int64_t now = ink_now_mono_ms(),
                limit = now + (pool.timeout_ms < 1000 ? pool.timeout_ms : 1000);
        if (db->deadline_ms < limit)
            db->deadline_ms = limit;
        if (run_simple(db, "ROLLBACK", "rollback") != INK_OK ||
            PQtransactionStatus(db->conn) != PQTRANS_IDLE)
            db->broken = true;
    }
    if (db->broken)
        disconnect(db);
    db->released_ms = ink_now_mono_ms();
    pthread_mutex_lock(&pool.lock);
    db->in_use = false;
    pool.in_use--;
    pthread_cond_signal(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
}

/* ---- statements ----------------------------------------------------------------------------- */

static bool is_prepared(struct ink_db *db, const struct ink_sql *sql)
{
    for (unsigned i = 0; i < db->nprepared; i++)
        if (db->prepared[i] == sql)
            return true;
    return false;
}

/* Classifies a failed result; marks the connection broken when it is gone. */
static enum ink_status classify(struct ink_db *db, PGresult *r, const char *what)
{
    if (PQstatus(db->conn) != CONNECTION_OK)
        return lost(db, what);
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "23505") == 0) {
        const char *c = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
        snprintf(db->conflict, sizeof db->conflict, "%s", c ? c : "");
        return INK_CONFLICT;
    }
    /* admin shutdown, cannot connect now, too many connections, serialization/deadlock, and
     * the server's own statement/lock timeouts (the server-side half of DB_TIMEOUT) */
    if (state && (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0 ||
                  strcmp(state, "53300") == 0 || strcmp(state, "40001") == 0 ||
                  strcmp(state, "40P01") == 0 || strcmp(state, "57014") == 0 ||
                  strcmp(state, "55P03") == 0)) {
        db->broken = strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0;
        if (strcmp(state, "57014") == 0)
            atomic_fetch_add(&pool.timeouts, 1);
        ink_warn("database unavailable during %s (sqlstate %s)", what, state);
        return INK_UNAVAILABLE;
    }
    ink_error("database error in %s: sqlstate %s", what, state ? state : "?");
    return INK_INTERNAL;
}

/* Sends nothing when the deadline has already passed (the connection stays usable). */
static bool deadline_passed(struct ink_db *db, const char *what)
{
    if (ink_now_mono_ms() < db->deadline_ms)
        return false;
    atomic_fetch_add(&pool.timeouts, 1);
    ink_warn("database deadline passed before %s", what);
    return true;
}

/* Classifies a statement's collected result; hands it to `res` (or clears it) on success. */
static enum ink_status take_result(struct ink_db *db, PGresult *r, const char *what, PGresult **res)
{
    ExecStatusType es = PQresultStatus(r);
    if (!r || (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)) {
        enum ink_status st = classify(db, r, what);
        PQclear(r);
        return st;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return INK_OK;
}

/* Runs a statement already sent; classifies the outcome. */
static enum ink_status finish_statement(struct ink_db *db, const char *what, PGresult **res)
{
    PGresult *r;
    enum ink_status st = await_result(db, what, &r);
    if (st != INK_OK)
        return st;
    return take_result(db, r, what, res);
}

static enum ink_status run_simple(struct ink_db *db, const char *sql, const char *what)
{
    if (deadline_passed(db, what))
        return INK_UNAVAILABLE;
    if (!PQsendQuery(db->conn, sql))
        return lost(db, what);
    return finish_statement(db, what, NULL);
}

static enum ink_status ensure_prepared(struct ink_db *db, const struct ink_sql *sql)
{
    if (is_prepared(db, sql))
        return INK_OK;
    if (!PQsendPrepare(db->conn, sql->name, sql->text, 0, NULL))
        return lost(db, sql->name);
    enum ink_status st = finish_statement(db, sql->name, NULL);
    if (st == INK_OK && db->nprepared < MAX_PREPARED)
        db->prepared[db->nprepared++] = sql;
    return st;
}

enum ink_status ink_db_exec(struct ink_db *db, const struct ink_sql *sql, int nparams,
                            const char *const *params, PGresult **res)
{
    if (res)
        *res = NULL;
    if (deadline_passed(db, sql->name))
        return INK_UNAVAILABLE;
    enum ink_status st = ensure_prepared(db, sql);
    if (st != INK_OK)
        return st;
    if (!PQsendQueryPrepared(db->conn, sql->name, nparams, params, NULL, NULL, 0))
        return lost(db, sql->name);
    return finish_statement(db, sql->name, res);
}

const char *ink_db_conflict_constraint(struct ink_db *db)
{
    return db->conflict;
}

enum ink_status ink_db_simple(struct ink_db *db, const char *sql)
{
    return run_simple(db, sql, "simple statement");
}

enum ink_status ink_db_query(const struct ink_sql *sql, int nparams, const char *const *params,
                             PGresult **res)
{
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    st = ink_db_exec(db, sql, nparams, params, res);
    ink_db_release(db);
    return st;
}

/* ---- batches -------------------------------------------------------------------------------- */

/* Sends every item, then one Sync, and collects the results in order. Items it could not settle
 * keep st INK_UNAVAILABLE; `skipped` marks those the server aborted after an earlier failure
 * (PGRES_PIPELINE_ABORTED: nothing ran, they may be run again). INK_OK when the connection is
 * back out of pipeline mode and usable. */
static enum ink_status run_pipeline(struct ink_db *db, struct ink_db_item *items, unsigned n,
                                    bool *skipped)
{
    PGconn *c = db->conn;
    if (!PQenterPipelineMode(c))
        return lost(db, "batch");
    for (unsigned i = 0; i < n; i++)
        if (!PQsendQueryPrepared(c, items[i].sql->name, items[i].nparams, items[i].params, NULL,
                                 NULL, 0))
            return lost(db, items[i].sql->name);
    if (!PQpipelineSync(c))
        return lost(db, "batch");
    for (unsigned i = 0; i < n; i++) {
        PGresult *r;
        enum ink_status st = await_result(db, items[i].sql->name, &r);
        if (st != INK_OK)
            return st;
        if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
            skipped[i] = true;
            PQclear(r);
            continue;
        }
        items[i].st = take_result(db, r, items[i].sql->name, &items[i].res);
        if (db->broken)
            return INK_UNAVAILABLE;
    }
    PGresult *sync;
    enum ink_status st = await_result(db, "batch", &sync);
    if (st != INK_OK)
        return st;
    bool synced = PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
    PQclear(sync);
    if (!synced || !PQexitPipelineMode(c))
        return lost(db, "batch");
    return INK_OK;
}

/* Every item again on its own connection turn, as ink_db_query would run it. */
static void run_alone(struct ink_db *db, struct ink_db_item *items, unsigned n, const bool *which)
{
    for (unsigned i = 0; i < n; i++) {
        if (which && !which[i])
            continue;
        PQclear(items[i].res);
        items[i].res = NULL;
        items[i].st =
            ink_db_exec(db, items[i].sql, items[i].nparams, items[i].params, &items[i].res);
    }
}

static bool any_failed(const struct ink_db_item *items, unsigned n, const bool *skipped)
{
    for (unsigned i = 0; i < n; i++)
        if (skipped[i] || items[i].st != INK_OK)
            return true;
    return false;
}

void ink_db_batch(struct ink_db_item *items, unsigned n, bool writes)
{
    bool skipped[INK_DB_BATCH_MAX] = {false};
    if (n > INK_DB_BATCH_MAX)
        n = INK_DB_BATCH_MAX;
    struct ink_db *db;
    enum ink_status st = ink_db_acquire(&db);
    for (unsigned i = 0; i < n; i++) {
        items[i].st = st == INK_OK ? INK_UNAVAILABLE : st;
        items[i].res = NULL;
    }
    if (st != INK_OK)
        return;
    /* statements new to this connection are prepared first, each on its own */
    for (unsigned i = 0; i < n && st == INK_OK; i++)
        st = ensure_prepared(db, items[i].sql);
    if (st == INK_OK && deadline_passed(db, "batch"))
        st = INK_UNAVAILABLE;
    if (st != INK_OK) {
        for (unsigned i = 0; i < n; i++)
            items[i].st = st;
        ink_db_release(db);
        return;
    }
    atomic_fetch_add(&pool.batches, 1);
    atomic_fetch_add(&pool.batched, n);
    if (run_pipeline(db, items, n, skipped) != INK_OK) {
        /* the connection failed midway: what was not settled stays INK_UNAVAILABLE, and no
         * write was settled, since its commit was not confirmed */
        for (unsigned i = 0; i < n && writes; i++) {
            PQclear(items[i].res);
            items[i].res = NULL;
            items[i].st = INK_UNAVAILABLE;
        }
    } else if (!writes) {
        run_alone(db, items, n, skipped);
    } else if (any_failed(items, n, skipped)) {
        atomic_fetch_add(&pool.batch_retries, 1);
        run_alone(db, items, n, NULL);
    }
    ink_db_release(db);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static const struct ink_sql READY_PING = {"ready_ping", "SELECT 1"};

static void monitor_ping(struct ink_db *db)
{
    bool ok =
        ink_db_private_ready(db) == INK_OK && ink_db_exec(db, &READY_PING, 0, NULL, NULL) == INK_OK;
    if (ok)
        atomic_store(&monitor.ok_ms, ink_now_mono_ms());
    atomic_store(&monitor.last_ok, ok);
}

static void *monitor_main(void *arg)
{
    struct ink_db *db = arg;
    pthread_mutex_lock(&monitor.lock);
    while (!monitor.stopping) {
        struct timespec next = mono_timespec(ink_now_mono_ms() + MONITOR_INTERVAL_MS);
        pthread_cond_timedwait(&monitor.cond, &monitor.lock, &next);
        if (monitor.stopping)
            break;
        pthread_mutex_unlock(&monitor.lock);
        monitor_ping(db);
        pthread_mutex_lock(&monitor.lock);
    }
    pthread_mutex_unlock(&monitor.lock);
    ink_db_private_free(db);
    return NULL;
}

bool ink_db_monitor_start(void)
{
    monotonic_cond_init(&monitor.cond);
    monitor.stopping = false;
    /* the first answer before the server listens, so readiness is right from the first probe
     * (bounded by DB_TIMEOUT: a database that is down does not stop the start) */
    struct ink_db *db = ink_db_private_new(NULL);
    monitor_ping(db);
    if (pthread_create(&monitor.thread, NULL, monitor_main, db) != 0) {
        ink_db_private_free(db);
        return false;
    }
    monitor.started = true;
    return true;
}

void ink_db_monitor_stop(void)
{
    if (!monitor.started)
        return;
    pthread_mutex_lock(&monitor.lock);
    monitor.stopping = true;
    pthread_cond_signal(&monitor.cond);
    pthread_mutex_unlock(&monitor.lock);
    pthread_join(monitor.thread, NULL);
    pthread_cond_destroy(&monitor.cond);
    monitor.started = false;
}

bool ink_db_ready(void)
{
    return atomic_load(&monitor.last_ok) &&
           ink_now_mono_ms() - atomic_load(&monitor.ok_ms) <= READY_STALE_MS;
}

/* ---- introspection -------------------------------------------------------------------------- */

void ink_db_pool_stats(struct ink_db_stats *out)
{
    pthread_mutex_lock(&pool.lock);
    out->in_use = pool.in_use;
    out->waiting = pool.waiting;
    out->size = pool.size;
    pthread_mutex_unlock(&pool.lock);
    out->timeouts = atomic_load(&pool.timeouts);
    out->batches = atomic_load(&pool.batches);
    out->batched = atomic_load(&pool.batched);
    out->batch_retries = atomic_load(&pool.batch_retries);
}

long long ink_db_ll(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

long ink_db_seconds_until(const struct ink_sql *sql, long max)
{
    PGresult *r;
    long wait = max;
    if (ink_db_query(sql, 0, NULL, &r) != INK_OK)
        return wait;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && ink_db_ll(r, 0, 0) < wait)
        wait = ink_db_ll(r, 0, 0) < 1 ? 1 : (long)ink_db_ll(r, 0, 0);
    PQclear(r);
    return wait;
}

enum ink_status ink_db_affected(const struct ink_sql *sql, long long *count)
{
    PGresult *r;
    enum ink_status st = ink_db_query(sql, 0, NULL, &r);
    if (st == INK_OK) {
        *count = strtoll(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    return st;
}
