#include "inklet/migrate.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* Any constant shared by every inkletd; "inkl" in ASCII. */
#define MIGRATION_LOCK_KEY "1768844140"

/* "relation already exists, skipping" notices are noise here */
static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static bool run(PGconn *c, const char *sql, const char *what)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        fprintf(stderr, "migrate: %s failed: %s", what, PQresultErrorMessage(r));
        if (state && strcmp(state, "55P03") == 0) /* lock_not_available: our lock_timeout */
            fprintf(stderr,
                    "migrate: a lock stayed taken longer than MIGRATE_LOCK_TIMEOUT; nothing "
                    "was applied, run it again once the holder is gone\n");
    }
    PQclear(r);
    return ok;
}

static bool applied(PGconn *c, const char *name, bool *out)
{
    const char *params[1] = {name};
    PGresult *r = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE name = $1", 1, NULL,
                               params, NULL, NULL, 0);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok)
        *out = PQntuples(r) > 0;
    else
        fprintf(stderr, "migrate: reading schema_migrations failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* The keys before `dbname` are defaults: anything DATABASE_URL sets wins over them. Keepalives
 * find a peer that stopped answering mid-migration in about 20 s; a busy server still answers
 * them, so a long migration statement is not cut. */
static PGconn *connect_db(const char *conninfo, unsigned connect_timeout_s)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%u", connect_timeout_s < 2 ? 2 : connect_timeout_s);
    const char *keys[] = {
        "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
        "keepalives_count", "application_name", "dbname",          NULL};
    const char *vals[] = {timeout, "1", "10", "3", "3", "inkletd-migrate", conninfo, NULL};
    return PQconnectdbParams(keys, vals, 1);
}

bool ink_migrate_run(const char *conninfo, unsigned connect_timeout_s, unsigned lock_timeout_s)
{
    PGconn *c = connect_db(conninfo, connect_timeout_s);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "migrate: cannot connect to the database: %s", PQerrorMessage(c));
        PQfinish(c);
        return false;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    /* every lock wait of the transaction is bounded, the advisory lock's included: a migrate
     * that holds it and hangs, or an idle transaction on a table a migration alters, makes this
     * one fail with a clear line instead of waiting for ever in a deploy hook */
    char set_lock_timeout[64];
    snprintf(set_lock_timeout, sizeof set_lock_timeout, "SET LOCAL lock_timeout = '%us'",
             lock_timeout_s);
    bool ok = run(c, "BEGIN", "BEGIN") && run(c, set_lock_timeout, "setting lock_timeout") &&
              run(c, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")",
                  "waiting for another migrate (MIGRATE_LOCK_TIMEOUT)") &&
              run(c,
                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                  "creating schema_migrations");
    unsigned count = 0;
    for (size_t i = 0; ok && i < ink_migrations_count; i++) {
        bool done = false;
        ok = applied(c, ink_migrations[i].name, &done);
        if (!ok || done)
            continue;
        ok = run(c, ink_migrations[i].sql, ink_migrations[i].name);
        if (ok) {
            const char *params[1] = {ink_migrations[i].name};
            PGresult *r = PQexecParams(c, "INSERT INTO schema_migrations(name) VALUES ($1)", 1,
                                       NULL, params, NULL, NULL, 0);
            ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (ok) {
                printf("migrate: applied %s\n", ink_migrations[i].name);
                count++;
            }
        }
    }
    ok = ok && run(c, "COMMIT", "COMMIT");
    if (!ok)
        run(c, "ROLLBACK", "ROLLBACK");
    else
        printf("migrate: %u migration(s) applied, schema up to date\n", count);
    PQfinish(c);
    return ok;
}
