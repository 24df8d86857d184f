#include "inklet/batched.h"

#include "inklet/ids.h"

#include <stdatomic.h>
#include <string.h>
#include <strings.h>

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
    call.nrows = PQntuples(r);
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

/* One statement of a batch: one request's, or (`shared`) that of every request of a route with
 * a shared statement; `members` index the batch's requests, in the batch's order (writes: in the
 * order of their $1). */
struct stmt {
    const struct ink_batched *route;
    bool shared;
    bool split; /* shared, failed: its members are to run again one statement each */
    unsigned members[INK_DB_BATCH_MAX], nmembers;
    char ids[INK_DB_BATCH_MAX * (INK_UUID_STRLEN + 1) + 3]; /* the shared statement's uuid[] */
    const char *ids_param;
};

static atomic_ullong shared_requests, shared_statements;

void ink_batched_stats(struct ink_batched_stats *out)
{
    out->shared_requests = atomic_load(&shared_requests);
    out->shared_statements = atomic_load(&shared_statements);
}

static bool may_share(const struct ink_batched *b, const struct ink_batched_call *call)
{
    return b->shared && !b->writes && !b->bind && call->nparams == 1 &&
           ink_uuid_valid(call->params[0]);
}

/* Groups the bound requests (in `order`) into statements: the requests of a route with a shared
 * statement share one when there are two or more of them. Gives the number of statements. */
static unsigned plan(struct ink_req **reqs, const struct ink_batched_call *calls,
                     const unsigned *order, unsigned nbound, struct stmt *stmts)
{
    unsigned n = 0;
    for (unsigned k = 0; k < nbound; k++) {
        unsigned i = order[k];
        const struct ink_batched *b = reqs[i]->route->batched;
        struct stmt *s = NULL;
        if (may_share(b, &calls[i]))
            for (unsigned j = 0; j < n && !s; j++)
                if (stmts[j].route == b && stmts[j].shared)
                    s = &stmts[j];
        if (!s) {
            s = &stmts[n++];
            s->route = b;
            s->shared = may_share(b, &calls[i]);
            s->split = false;
            s->nmembers = 0;
        }
        s->members[s->nmembers++] = i;
    }
    for (unsigned j = 0; j < n; j++) {
        struct stmt *s = &stmts[j];
        s->shared = s->shared && s->nmembers > 1;
        if (!s->shared)
            continue;
        size_t len = 0;
        s->ids[len++] = '{';
        for (unsigned m = 0; m < s->nmembers; m++) {
            const char *id = calls[s->members[m]].params[0];
            size_t idlen = strlen(id);
            if (m)
                s->ids[len++] = ',';
            memcpy(s->ids + len, id, idlen); /* a UUID: INK_UUID_STRLEN bytes (may_share) */
            len += idlen;
        }
        s->ids[len++] = '}';
        s->ids[len] = '\0';
        s->ids_param = s->ids;
    }
    return n;
}

/* The rows of `r` whose key_column is `id`: [*row, *row + *nrows), adjacent by contract. */
static void find_rows(const PGresult *r, int key_column, const char *id, int *row, int *nrows)
{
    int n = PQntuples(r), i = 0;
    while (i < n && strcasecmp(PQgetvalue(r, i, key_column), id) != 0)
        i++;
    *row = i;
    while (i < n && strcasecmp(PQgetvalue(r, i, key_column), id) == 0)
        i++;
    *nrows = i - *row;
}

/* Settles the members of statement `s` from its outcome: each reply from its own rows. A shared
 * statement that failed for any reason but the database being unavailable (a row PostgreSQL
 * could not compute, say) is not its members' answer: they are left unsettled (false), to run
 * again one statement each, so only the one whose row fails fails. */
static bool settle(const struct stmt *s, const struct ink_db_item *item, struct ink_req **reqs,
                   struct ink_batched_call *calls, enum ink_status *out)
{
    if (s->shared && item->st != INK_OK && item->st != INK_UNAVAILABLE)
        return false;
    if (s->shared) {
        atomic_fetch_add(&shared_statements, 1);
        atomic_fetch_add(&shared_requests, s->nmembers);
    }
    for (unsigned m = 0; m < s->nmembers; m++) {
        unsigned i = s->members[m];
        out[i] = item->st;
        if (out[i] != INK_OK)
            continue;
        calls[i].row = 0;
        calls[i].nrows = PQntuples(item->res);
        if (s->shared)
            find_rows(item->res, s->route->key_column, calls[i].params[0], &calls[i].row,
                      &calls[i].nrows);
        out[i] = s->route->reply(reqs[i], &calls[i], item->res);
    }
    return true;
}

/* The statements in one round trip (or alone when there is one), each settled; false when a
 * shared one has to be split. */
static bool run_stmts(struct stmt *stmts, unsigned n, bool writes, struct ink_req **reqs,
                      struct ink_batched_call *calls, enum ink_status *out)
{
    struct ink_db_item items[INK_DB_BATCH_MAX];
    for (unsigned j = 0; j < n; j++) {
        const struct stmt *s = &stmts[j];
        const struct ink_batched_call *first = &calls[s->members[0]];
        items[j] = s->shared ? (struct ink_db_item){.sql = s->route->shared,
                                                    .nparams = 1,
                                                    .params = &s->ids_param}
                             : (struct ink_db_item){.sql = s->route->sql,
                                                    .nparams = first->nparams,
                                                    .params = first->params};
    }
    if (n == 1)
        items[0].st = ink_db_query(items[0].sql, items[0].nparams, items[0].params, &items[0].res);
    else
        ink_db_batch(items, n, writes);
    bool settled = true;
    for (unsigned j = 0; j < n; j++) {
        stmts[j].split = !settle(&stmts[j], &items[j], reqs, calls, out);
        settled = settled && !stmts[j].split;
        PQclear(items[j].res);
    }
    return settled;
}

void ink_batched_run_many(struct ink_req **reqs, enum ink_status *out, unsigned n)
{
    struct ink_batched_call calls[INK_DB_BATCH_MAX];
    unsigned order[INK_DB_BATCH_MAX], nbound = 0;
    bool writes = false;
    if (n > INK_DB_BATCH_MAX)
        n = INK_DB_BATCH_MAX;
    for (unsigned i = 0; i < n; i++) {
        const struct ink_batched *b = reqs[i]->route->batched;
        memset(&calls[i], 0, sizeof calls[i]);
        out[i] = bind(b, reqs[i], &calls[i]);
        if (out[i] == INK_OK)
            order[nbound++] = i;
        writes |= b->writes;
    }
    if (!nbound)
        return;
    if (writes)
        sort_by_first_param(order, nbound, calls);
    struct stmt stmts[INK_DB_BATCH_MAX];
    unsigned nstmts = plan(reqs, calls, order, nbound, stmts);
    if (run_stmts(stmts, nstmts, writes, reqs, calls, out))
        return;
    /* a shared statement failed: its members again, one statement each, in one round trip */
    nbound = 0;
    for (unsigned j = 0; j < nstmts; j++)
        if (stmts[j].split)
            for (unsigned m = 0; m < stmts[j].nmembers; m++)
                order[nbound++] = stmts[j].members[m];
    for (unsigned k = 0; k < nbound; k++)
        stmts[k] = (struct stmt){
            .route = reqs[order[k]]->route->batched, .members = {order[k]}, .nmembers = 1};
    run_stmts(stmts, nbound, writes, reqs, calls, out);
}
