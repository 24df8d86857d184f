/** Batched routes: requests answered by one statement, such as GET /auth/me and GET /api/devices
 *  (reads of the signed-in user) and POST /auth/refresh (a write: one rotation). Under load the
 *  request lane runs the statements of several such requests in one database round trip
 *  (ink_db_batch): one wake-up of a worker, one send, one poll and one wake-up of PostgreSQL for
 *  the lot instead of one each, and for writes one commit, so one WAL flush. The reads of one
 *  route in a batch go further and share one statement (`shared`). Reads and writes never
 *  share a batch: a read must not wait for a commit. A route marks itself batched in the route
 *  table; its handler is the same statement run alone (ink_batched_run). */
#ifndef INKLET_BATCHED_H
#define INKLET_BATCHED_H
#include "inklet/auth.h"
#include "inklet/db.h"
#include "inklet/http.h"

#define INK_BATCHED_PARAMS 4

/** One request's statement: its parameters, the rows of the result that are its own (all of
 *  them unless the statement was shared), and the route's own state from bind to reply. */
struct ink_batched_call {
    const char *params[INK_BATCHED_PARAMS];
    int nparams;
    int row, nrows;
    union {
        struct ink_rotation rotation; /* POST /auth/refresh */
    } state;
};

struct ink_batched {
    const struct ink_sql *sql;
    /* The statement writes. A batch of writes is one transaction: when any member fails, none
     * of it stays and every member is run again alone. Its members are sent in the order of
     * their $1, which names the row each locks first, so two batches do not lock in a cycle. */
    bool writes;
    /* Fills call->params (strings kept in call->state or in the request); any status but
     * INK_OK answers the request with it and runs nothing. NULL: the one parameter is the
     * signed-in user's id. */
    enum ink_status (*bind)(struct ink_req *req, struct ink_batched_call *call);
    /* builds the response from rows [call->row, call->row + call->nrows) of the statement's
     * result (not cleared by it) */
    enum ink_status (*reply)(struct ink_req *req, struct ink_batched_call *call, const PGresult *r);
    /* Optional, for reads whose one parameter is the signed-in user's id (bind NULL): `sql` for
     * many users at once, $1 a uuid[] of their ids; its rows are those `sql` gives each user, a
     * user's rows adjacent and in `sql`'s order, each with the user's id in `key_column`. Two or
     * more requests of the route in one batch then share this one statement, so PostgreSQL pays
     * a statement's fixed cost (executor start-up, snapshot, result framing) once for them all;
     * each reply sees only its own rows. */
    const struct ink_sql *shared;
    int key_column;
};

/** Requests answered by a shared statement, and those statements (so their mean size). */
struct ink_batched_stats {
    unsigned long long shared_requests, shared_statements;
};
void ink_batched_stats(struct ink_batched_stats *out);

/** Runs one request's statement alone: bind, the statement, reply. */
enum ink_status ink_batched_run(const struct ink_batched *b, struct ink_req *req);
/** Runs the statements of up to INK_DB_BATCH_MAX requests (each req->route->batched, all reads
 *  or all writes; authenticated where the route needs it) in one round trip; out[i] is what
 *  ink_batched_run would have returned for reqs[i]. */
void ink_batched_run_many(struct ink_req **reqs, enum ink_status *out, unsigned n);

#endif
