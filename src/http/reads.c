#include "inklet/reads.h"

enum ink_status ink_read_run(const struct ink_read *rd, struct ink_req *req)
{
    PGresult *r;
    enum ink_status st = ink_db_query(rd->sql, 1, (const char *[]){req->auth.user_id}, &r);
    if (st != INK_OK)
        return st;
    st = rd->reply(req, r);
    PQclear(r);
    return st;
}

void ink_reads_run(struct ink_req **reqs, enum ink_status *out, unsigned n)
{
    struct ink_db_item items[INK_DB_BATCH_MAX];
    const char *params[INK_DB_BATCH_MAX][1];
    if (n > INK_DB_BATCH_MAX)
        n = INK_DB_BATCH_MAX;
    for (unsigned i = 0; i < n; i++) {
        params[i][0] = reqs[i]->auth.user_id;
        items[i] = (struct ink_db_item){
            .sql = reqs[i]->route->read->sql, .nparams = 1, .params = params[i]};
    }
    ink_db_batch(items, n);
    for (unsigned i = 0; i < n; i++) {
        out[i] = items[i].st;
        if (out[i] == INK_OK)
            out[i] = reqs[i]->route->read->reply(reqs[i], items[i].res);
        PQclear(items[i].res);
    }
}
