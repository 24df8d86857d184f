/** PostgreSQL connection pool with per-connection prepared statements.
 *
 *  A connection that fails is closed and reopened on a later acquire, and a failure discovered on
 *  one connection marks every idle one for a liveness check, so a database restart costs a
 *  handful of 503s and then heals without restarting the daemon. */
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

/** Creates the pool (connections open lazily). */
void ink_db_pool_init(const char *conninfo, unsigned size);
void ink_db_pool_close(void);
/** Waits up to 2 s for a connection. INK_UNAVAILABLE when the database cannot be reached or the
 *  pool stays exhausted. */
enum ink_status ink_db_acquire(struct ink_db **out);
void ink_db_release(struct ink_db *db);

/** A connection outside the pool for a long-lived worker (e.g. MQTT ingest). `session_sql` runs
 *  after every (re)connect, e.g. "SET synchronous_commit = off". Connects lazily. */
struct ink_db *ink_db_private_new(const char *session_sql);
/** Makes sure the private connection is open; INK_UNAVAILABLE if the database is unreachable. */
enum ink_status ink_db_private_ready(struct ink_db *db);
void ink_db_private_free(struct ink_db *db);

/** Runs a prepared statement (prepared on first use on this connection). On INK_OK *res holds the
 *  result (caller PQclear; res may be NULL to discard). Errors: INK_UNAVAILABLE (connection
 *  lost; retryable), INK_CONFLICT (unique violation; ink_db_conflict_constraint() names it),
 *  INK_INTERNAL (anything else; logged without parameters). */
enum ink_status ink_db_exec(struct ink_db *db, const struct ink_sql *sql, int nparams,
                            const char *const *params, PGresult **res);
/** The constraint named by the last unique violation on this connection, or "". */
const char *ink_db_conflict_constraint(struct ink_db *db);
/** Plain SQL without parameters (BEGIN, COMMIT, ROLLBACK, SET ...). */
enum ink_status ink_db_simple(struct ink_db *db, const char *sql);

/** Acquire + exec + release in one call for single statements. */
enum ink_status ink_db_query(const struct ink_sql *sql, int nparams, const char *const *params,
                             PGresult **res);

/** True when the database answered a trivial query within the last second (cached ≤ 1 s). */
bool ink_db_healthy(void);
/** Connections in use / waiters, for /metrics. */
void ink_db_pool_stats(unsigned *in_use, unsigned *waiting, unsigned *size);

/** Helpers to read result columns. */
static inline const char *ink_db_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
long long ink_db_ll(const PGresult *r, int row, int col);

#endif
