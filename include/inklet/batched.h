/** Batched routes: requests answered by one statement, such as GET /auth/me and GET /api/devices
 *  (reads of the signed-in user) and POST /auth/refresh (a write: one rotation). Under load the
 *  request lane runs the statements of several such requests in one database round trip
 *  (ink_db_batch): one wake-up of a worker, one send, one poll and one wake-up of PostgreSQL for
 *  the lot instead of one each, and for writes one commit, so one WAL flush. Reads and writes
 *  never share a batch: a read must not wait for a commit. A route marks itself batched in the
 *  route table; its handler is the same statement run alone (ink_batched_run). */
#ifndef INKLET_BATCHED_H
#define INKLET_BATCHED_H
#include "inklet/auth.h"
#include "inklet/db.h"
#include "inklet/http.h"

#define INK_BATCHED_PARAMS 4

/** One request's statement: its parameters, and the route's own state from bind to reply. */
struct ink_batched_call {
    const char *params[INK_BATCHED_PARAMS];
    int nparams;
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
    /* builds the response from the statement's result (not cleared by it) */
    enum ink_status (*reply)(struct ink_req *req, struct ink_batched_call *call, const PGresult *r);
};

/** Runs one request's statement alone: bind, the statement, reply. */
enum ink_status ink_batched_run(const struct ink_batched *b, struct ink_req *req);
/** Runs the statements of up to INK_DB_BATCH_MAX requests (each req->route->batched, all reads
 *  or all writes; authenticated where the route needs it) in one round trip; out[i] is what
 *  ink_batched_run would have returned for reqs[i]. */
void ink_batched_run_many(struct ink_req **reqs, enum ink_status *out, unsigned n);

#endif
