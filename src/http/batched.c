#include "inklet/batched.h"

#include <string.h>

static enum ink_status bind(const struct ink_batched *b, struct ink_req *req,
                            struct ink_batched_call *call)
{
    if (b->bind)
        return b->bind(req, call);
    call->params[0] = req->auth.user_id;
    call->nparams = 1;
    return INK_OK;
}

enum ink_status ink_batched_run(const struct ink_batched *b, struct ink_req *req)
{
    struct ink_batched_call call = {0};
    enum ink_status st = bind(b, req, &call);
    if (st != INK_OK)
        return st;
    PGresult *r;
    st = ink_db_query(b->sql, call.nparams, call.params, &r);
    if (st != INK_OK)
        return st;
    st = b->reply(req, &call, r);
    PQclear(r);
    return st;
}

static const char *first_param(const struct ink_batched_call *call)
{
    return call->nparams > 0 && call->params[0] ? call->params[0] : "";
}

/* Orders the members of a batch of writes by their $1 (insertion sort: at most 16). */
static void sort_by_first_param(unsigned *order, unsigned n, const struct ink_batched_call *calls)
{
    for (unsigned k = 1; k < n; k++) {
        unsigned i = order[k], j = k;
        for (; j > 0 && strcmp(first_param(&calls[order[j - 1]]), first_param(&calls[i])) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
}

void ink_batched_run_many(struct ink_req **reqs, enum ink_status *out, unsigned n)
{
    struct ink_batched_call calls[INK_DB_BATCH_MAX];
    struct ink_db_item items[INK_DB_BATCH_MAX];
    unsigned order[INK_DB_BATCH_MAX], nitems = 0;
    bool writes = false;
    if (n > INK_DB_BATCH_MAX)
        n = INK_DB_BATCH_MAX;
    for (unsigned i = 0; i < n; i++) {
        const struct ink_batched *b = reqs[i]->route->batched;
        memset(&calls[i], 0, sizeof calls[i]);
        out[i] = bind(b, reqs[i], &calls[i]);
        if (out[i] == INK_OK)
            order[nitems++] = i;
        writes |= b->writes;
    }
    if (writes)
        sort_by_first_param(order, nitems, calls);
    for (unsigned k = 0; k < nitems; k++) {
        unsigned i = order[k];
        items[k] = (struct ink_db_item){.sql = reqs[i]->route->batched->sql,
                                        .nparams = calls[i].nparams,
                                        .params = calls[i].params};
    }
    if (nitems)
        ink_db_batch(items, nitems, writes);
    for (unsigned k = 0; k < nitems; k++) {
        unsigned i = order[k];
        out[i] = items[k].st;
        if (out[i] == INK_OK)
            out[i] = reqs[i]->route->batched->reply(reqs[i], &calls[i], items[k].res);
        PQclear(items[k].res);
    }
}
