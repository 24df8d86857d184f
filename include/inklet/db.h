/** PostgreSQL connection pool with per-connection prepared statements.
 *
 *  No wait on the database is unbounded: every connection runs in libpq's non-blocking mode and
 *  every wait (pool, connect, statement) ends at a deadline — the calling thread's request
 *  deadline (inklet/deadline.h) or DB_TIMEOUT from the call. Missing it gives INK_UNAVAILABLE and
 *  closes that connection. A connection that fails is reopened on a later acquire, and a failure
 *  discovered on one connection marks every idle one for a liveness check, so a database restart
 *  or hang costs the requests of that moment a 503 each and then heals without a restart. */
#ifndef INKLET_DB_H
#define INKLET_DB_H
#include "inklet/status.h"

#include <libpq-fe.h>
#include <stdbool.h>

/** A statement with a stable name; define them as static const in the repository files. */
struct ink_sql {
    const char *name;
    const char *text;
};

struct ink_db;

/** Creates the pool (connections open lazily); `timeout_ms` is DB_TIMEOUT. */
void ink_db_pool_init(const char *conninfo, unsigned size, unsigned timeout_ms);
void ink_db_pool_close(void);
/** Takes a connection, open and checked, for work that must finish by the thread's deadline (or
 *  DB_TIMEOUT from now): every statement on it until release shares that deadline.
 *  INK_UNAVAILABLE when no connection is free in time or the database cannot be reached. */
enum ink_status ink_db_acquire(struct ink_db **out);
void ink_db_release(struct ink_db *db);

/** A connection outside the pool for a long-lived worker (e.g. MQTT ingest). `session_sql` runs
 *  after every (re)connect, e.g. "SET synchronous_commit = off". Connects lazily. */
struct ink_db *ink_db_private_new(const char *session_sql);
/** Makes sure the private connection is open and starts its deadline for the work that follows
 *  (as ink_db_acquire does); INK_UNAVAILABLE if the database is unreachable in time. */
enum ink_status ink_db_private_ready(struct ink_db *db);
void ink_db_private_free(struct ink_db *db);

/** Runs a prepared statement (prepared on first use on this connection). On INK_OK *res holds the
 *  result (caller PQclear; res may be NULL to discard). Errors: INK_UNAVAILABLE (connection
 *  lost, deadline missed, statement timeout, serialization failure; retryable), INK_CONFLICT
 * (unique violation; ink_db_conflict_constraint() names it), INK_INTERNAL (anything else; logged
 * without parameters). */
enum ink_status ink_db_exec(struct ink_db *db, const struct ink_sql *sql, int nparams,
                            const char *const *params, PGresult **res);
/** The constraint named by the last unique violation on this connection, or "". */
const char *ink_db_conflict_constraint(struct ink_db *db);
/** Plain SQL without parameters (BEGIN, COMMIT, ROLLBACK, SET ...). */
enum ink_status ink_db_simple(struct ink_db *db, const char *sql);

/** Acquire + exec + release in one call for single statements. */
enum ink_status ink_db_query(const struct ink_sql *sql, int nparams, const char *const *params,
                             PGresult **res);

/** The most statements ink_db_batch takes at once. */
#define INK_DB_BATCH_MAX 16

/** One statement of a batch: in `sql`, `nparams`, `params`; out `st` and, on INK_OK, `res`
 *  (the caller PQclears it). */
struct ink_db_item {
    const struct ink_sql *sql;
    int nparams;
    const char *const *params;
    enum ink_status st;
    PGresult *res;
};

/** Runs up to INK_DB_BATCH_MAX independent statements on one pooled connection in one round trip
 *  (libpq pipeline mode, one Sync: one implicit transaction, one commit, each statement with its
 *  own snapshot under READ COMMITTED). Each item ends as ink_db_query would have left it.
 *  Reads (`writes` false): a statement the server skipped because an earlier one failed is run
 *  again on its own. Writes: when any statement fails the transaction keeps none of them, so
 *  then every item is run again on its own; a connection lost before the commit was confirmed
 *  leaves every item INK_UNAVAILABLE, as it would leave a single statement. */
void ink_db_batch(struct ink_db_item *items, unsigned n, bool writes);

/** Runs a parameterless statement (a periodic DELETE) and gives the rows it affected. */
enum ink_status ink_db_affected(const struct ink_sql *sql, long long *count);

/** For background jobs: runs `sql` (no parameters; one row with a nullable count of seconds,
 *  NULL when nothing is queued) and answers how long to sleep: that many seconds, at least 1, at
 *  most `max` (also when nothing is queued or the database failed). */
long ink_db_seconds_until(const struct ink_sql *sql, long max);

/** Readiness: a thread with its own connection pings the database every 500 ms, so a busy pool
 *  is never mistaken for a dead database. */
bool ink_db_monitor_start(void);
void ink_db_monitor_stop(void);
/** True when the last ping succeeded and one succeeded within the last second. Never blocks. */
bool ink_db_ready(void);

struct ink_db_stats {
    unsigned in_use, waiting, size;
    unsigned long long timeouts; /* waits that hit their deadline, statement timeouts included */
    unsigned long long batches, batched; /* ink_db_batch round trips, and their statements */
    unsigned long long batch_retries;    /* batches of writes that failed and ran alone */
};
/** For /metrics. */
void ink_db_pool_stats(struct ink_db_stats *out);

/** Helpers to read result columns. */
static inline const char *ink_db_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
long long ink_db_ll(const PGresult *r, int row, int col);

#endif
