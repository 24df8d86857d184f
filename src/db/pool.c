#include "inklet/db.h"

#include "inklet/alloc.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PREPARED 128
#define ACQUIRE_WAIT_MS 2000
#define IDLE_CHECK_MS 2000

struct ink_db {
    PGconn *conn;
    bool in_use;
    bool broken;      /* close and reconnect on next acquire */
    bool check_first; /* a sibling failed: verify before use */
    int64_t released_ms; /* when it was last handed back */
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
    char *conninfo;
    atomic_llong healthy_checked_ms;
    atomic_bool healthy;
    pthread_mutex_t health_lock;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .cond = PTHREAD_COND_INITIALIZER,
          .health_lock = PTHREAD_MUTEX_INITIALIZER};

void ink_db_pool_init(const char *conninfo, unsigned size)
{
    pool.conns = ink_calloc(size, sizeof *pool.conns);
    pool.size = size;
    pool.conninfo = ink_strdup(conninfo);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool.cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void disconnect(struct ink_db *db)
{
    if (db->conn)
        PQfinish(db->conn);
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

/* Opens the connection outside the pool lock. */
static enum ink_status connect_db(struct ink_db *db)
{
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {pool.conninfo, "3", "inkletd", NULL};
    db->conn = PQconnectdbParams(keys, vals, 1);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        ink_warn("database connection failed");
        disconnect(db);
        return INK_UNAVAILABLE;
    }
    PQsetNoticeProcessor(db->conn, notice_discard, NULL);
    if (db->session_sql) {
        PGresult *r = PQexec(db->conn, db->session_sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            disconnect(db);
            return INK_UNAVAILABLE;
        }
    }
    return INK_OK;
}

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

static void mark_siblings_suspect(void)
{
    pthread_mutex_lock(&pool.lock);
    for (unsigned i = 0; i < pool.size; i++)
        if (pool.conns[i].conn && !pool.conns[i].in_use)
            pool.conns[i].check_first = true;
    pthread_mutex_unlock(&pool.lock);
}

enum ink_status ink_db_acquire(struct ink_db **out)
{
    *out = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ACQUIRE_WAIT_MS / 1000;

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
        int rc = pthread_cond_timedwait(&pool.cond, &pool.lock, &deadline);
        pool.waiting--;
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&pool.lock);
            ink_warn("database pool exhausted");
            return INK_UNAVAILABLE;
        }
    }
    db->in_use = true;
    pool.in_use++;
    pthread_mutex_unlock(&pool.lock);

    if (db->conn && (db->broken || PQstatus(db->conn) != CONNECTION_OK))
        disconnect(db);
    /* A connection that sat idle may have been closed by a database restart that nobody has
     * noticed yet; a cheap round trip now saves the caller's statement from failing. Busy
     * connections skip this, so it costs nothing under load. */
    if (db->conn && (db->check_first || ink_now_mono_ms() - db->released_ms > IDLE_CHECK_MS)) {
        db->check_first = false;
        PGresult *r = PQexec(db->conn, "SELECT 1");
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        if (!ok)
            disconnect(db);
    }
    if (!db->conn && connect_db(db) != INK_OK) {
        ink_db_release(db);
        return INK_UNAVAILABLE;
    }
    db->conflict[0] = '\0';
    *out = db;
    return INK_OK;
}

void ink_db_release(struct ink_db *db)
{
    if (!db)
        return;
    if (db->conn && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        /* a caller bailed out mid-transaction: never hand that state to the next user */
        PGresult *r = PQexec(db->conn, "ROLLBACK");
        PQclear(r);
        if (PQtransactionStatus(db->conn) != PQTRANS_IDLE)
            db->broken = true;
    }
    db->released_ms = ink_now_mono_ms();
    pthread_mutex_lock(&pool.lock);
    db->in_use = false;
    pool.in_use--;
    pthread_cond_signal(&pool.cond);
    pthread_mutex_unlock(&pool.lock);
}

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
    if (PQstatus(db->conn) != CONNECTION_OK) {
        db->broken = true;
        mark_siblings_suspect();
        atomic_store(&pool.healthy, false);
        ink_warn("database connection lost during %s", what);
        return INK_UNAVAILABLE;
    }
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "23505") == 0) {
        const char *c = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
        snprintf(db->conflict, sizeof db->conflict, "%s", c ? c : "");
        return INK_CONFLICT;
    }
    /* admin shutdown, cannot connect now, too many connections, serialization/deadlock */
    if (state && (strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0 ||
                  strcmp(state, "53300") == 0 || strcmp(state, "40001") == 0 ||
                  strcmp(state, "40P01") == 0)) {
        db->broken = strncmp(state, "57P", 3) == 0 || strncmp(state, "08", 2) == 0;
        ink_warn("database unavailable during %s (sqlstate %s)", what, state);
        return INK_UNAVAILABLE;
    }
    ink_error("database error in %s: sqlstate %s", what, state ? state : "?");
    return INK_INTERNAL;
}

enum ink_status ink_db_exec(struct ink_db *db, const struct ink_sql *sql, int nparams,
                            const char *const *params, PGresult **res)
{
    if (res)
        *res = NULL;
    if (!is_prepared(db, sql)) {
        PGresult *p = PQprepare(db->conn, sql->name, sql->text, 0, NULL);
        if (PQresultStatus(p) != PGRES_COMMAND_OK) {
            enum ink_status st = classify(db, p, sql->name);
            PQclear(p);
            return st;
        }
        PQclear(p);
        if (db->nprepared < MAX_PREPARED)
            db->prepared[db->nprepared++] = sql;
    }
    PGresult *r = PQexecPrepared(db->conn, sql->name, nparams, params, NULL, NULL, 0);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        enum ink_status st = classify(db, r, sql->name);
        PQclear(r);
        return st;
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return INK_OK;
}

const char *ink_db_conflict_constraint(struct ink_db *db)
{
    return db->conflict;
}

enum ink_status ink_db_simple(struct ink_db *db, const char *sql)
{
    PGresult *r = PQexec(db->conn, sql);
    ExecStatusType es = PQresultStatus(r);
    enum ink_status st = INK_OK;
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
        st = classify(db, r, "simple statement");
    PQclear(r);
    return st;
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

bool ink_db_healthy(void)
{
    long long now = ink_now_mono_ms();
    if (now - atomic_load(&pool.healthy_checked_ms) < 1000)
        return atomic_load(&pool.healthy);
    /* one checker at a time; the others use the cached answer */
    if (pthread_mutex_trylock(&pool.health_lock) != 0)
        return atomic_load(&pool.healthy);
    static const struct ink_sql ping = {"health_ping", "SELECT 1"};
    bool ok = ink_db_query(&ping, 0, NULL, NULL) == INK_OK;
    atomic_store(&pool.healthy, ok);
    atomic_store(&pool.healthy_checked_ms, ink_now_mono_ms());
    pthread_mutex_unlock(&pool.health_lock);
    return ok;
}

void ink_db_pool_stats(unsigned *in_use, unsigned *waiting, unsigned *size)
{
    pthread_mutex_lock(&pool.lock);
    *in_use = pool.in_use;
    *waiting = pool.waiting;
    *size = pool.size;
    pthread_mutex_unlock(&pool.lock);
}

long long ink_db_ll(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}
