/** Reads: requests answered by one statement whose only parameter is the signed-in user's id,
 *  such as GET /auth/me and GET /api/devices. Under load the request lane runs the statements of
 *  several such requests in one database round trip (ink_db_batch): one wake-up of a worker, one
 *  send, one poll and one wake-up of PostgreSQL for the lot instead of one each. A route marks
 *  itself a read in the route table; its handler is the same read run alone. */
#ifndef INKLET_READS_H
#define INKLET_READS_H
#include "inklet/db.h"
#include "inklet/http.h"

struct ink_read {
    const struct ink_sql *sql; /* $1 is req->auth.user_id */
    /* builds the response from the statement's result (not cleared by it) */
    enum ink_status (*reply)(struct ink_req *req, const PGresult *r);
};

/** Runs one read: the statement, then its reply. */
enum ink_status ink_read_run(const struct ink_read *rd, struct ink_req *req);
/** Runs the reads of up to INK_DB_BATCH_MAX authenticated requests (each req->route->read) in
 *  one round trip; out[i] is what ink_read_run would have returned for reqs[i]. */
void ink_reads_run(struct ink_req **reqs, enum ink_status *out, unsigned n);

#endif
