/* The database ceilings of bench/limits.sh run bench/sql/<route>.sql, which must hold the very
 * statement the server runs for that route, with only its parameters turned into pgbench
 * expressions. A statement edited in the source and not in bench/sql/ would make the ceiling
 * measure something else (bench/sql/me.sql once had drifted), so each file's statement, with its
 * parameter expressions mapped back to $n, must equal the server's text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/accounts.h"
#include "inklet/auth.h"
#include "inklet/billing.h"
#include "inklet/db.h"
#include "inklet/device_link.h"
#include "inklet/devices.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The index-th statement of the file (from 0): its lines that are neither comments nor pgbench
 * meta-commands, a statement ending at a line that ends in ';' (dropped), BEGIN and COMMIT not
 * counted. NULL when the file has fewer. */
static char *bench_statement_at(const char *name, int index)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench/sql/%s.sql", INKLET_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap), line[1 << 14];
    assert_non_null(out);
    int at = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || strncmp(line, "--", 2) == 0 || line[0] == '\\')
            continue;
        if (strcmp(line, "BEGIN;") == 0 || strcmp(line, "COMMIT;") == 0)
            continue;
        size_t n = strlen(line);
        bool last = line[n - 1] == ';';
        if (at == index) {
            assert_true(len + n + 1 < cap);
            memcpy(out + len, line, n + 1);
            len += n;
            if (last) {
                out[--len] = '\0';
                fclose(f);
                return out;
            }
        }
        at += last;
    }
    fclose(f);
    if (at == index && len) /* a last statement without ';' */
        return out;
    free(out);
    return NULL;
}

/* The file's only statement. */
static char *bench_statement(const char *name)
{
    char *text = bench_statement_at(name, 0), *more = bench_statement_at(name, 1);
    if (!text || more)
        fail_msg("bench/sql/%s.sql: not exactly one statement", name);
    return text;
}

/* s with every `from` replaced by `to` (a new string; s is freed) */
static char *replace_all(char *s, const char *from, const char *to)
{
    size_t nf = strlen(from), nt = strlen(to), count = 0;
    for (const char *p = s; (p = strstr(p, from)); p += nf)
        count++;
    char *out = malloc(strlen(s) + count * nt + 1), *o = out;
    assert_non_null(out);
    const char *p = s, *q;
    while ((q = strstr(p, from))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, nt);
        o += nt;
        p = q + nf;
    }
    strcpy(o, p);
    free(s);
    return out;
}

struct param {
    const char *bench;  /* the pgbench expression in the file */
    const char *server; /* the parameter in the server's text */
};

/* Checks text (freed) against the server's statement, its pgbench expressions mapped back. */
static void check_text(const char *file, char *text, const struct ink_sql *sql,
                       const struct param *params)
{
    for (const struct param *p = params; p->bench; p++) {
        if (!strstr(text, p->bench))
            fail_msg("bench/sql/%s.sql: no %s", file, p->bench);
        text = replace_all(text, p->bench, p->server);
    }
    if (strcmp(text, sql->text) != 0)
        fail_msg("bench/sql/%s.sql is not the server's %s any more:\n  bench:  %s\n  server: %s",
                 file, sql->name, text, sql->text);
    free(text);
}

static void check(const char *file, const struct ink_sql *sql, const struct param *params)
{
    check_text(file, bench_statement(file), sql, params);
}

/* A file of several statements: each in turn, and no more of them. */
static void check_all(const char *file, const struct ink_sql *const *sqls,
                      const struct param *const *params)
{
    int i = 0;
    for (; sqls[i]; i++) {
        char *text = bench_statement_at(file, i);
        if (!text)
            fail_msg("bench/sql/%s.sql: no statement %d (%s)", file, i + 1, sqls[i]->name);
        check_text(file, text, sqls[i], params[i]);
    }
    char *extra = bench_statement_at(file, i);
    if (extra)
        fail_msg("bench/sql/%s.sql: a statement the server does not run: %s", file, extra);
}

static void me_sql_is_account_me(void **state)
{
    (void)state;
    check("me", &ink_account_me_sql, (const struct param[]){{":uid", "$1"}, {NULL, NULL}});
}

static void devices_sql_is_devices_of(void **state)
{
    (void)state;
    check("devices", &ink_devices_of_sql, (const struct param[]){{":uid", "$1"}, {NULL, NULL}});
}

static void refresh_sql_is_session_rotate(void **state)
{
    (void)state;
    check("refresh", &ink_session_rotate_sql,
          (const struct param[]){
              {":run::text || lpad(to_hex(:client_id::bigint), 8, '0') || lpad(to_hex(:k::bigint), "
               "40, '0')",
               "$1"},
              {":run::text || lpad(to_hex(:client_id::bigint), 8, '0') || lpad(to_hex(:k::bigint "
               "+ 1), 40, '0')",
               "$2"},
              {":idle_ttl", "$3"},
              {NULL, NULL}});
}

static void webhook_sql_is_event_insert_then_apply(void **state)
{
    (void)state;
    const char *sub_id = "'sub_' || :run::text || '_' || :client_id::text || '_' || :k::text";
    check_all("webhook",
              (const struct ink_sql *const[]){&ink_billing_event_insert_sql, &ink_billing_apply_sql,
                                              NULL},
              (const struct param *const[]){
                  (const struct param[]){
                      {"'evt_' || :run::text || '_' || :client_id::text || '_' || :k::text", "$1"},
                      {"'customer.subscription.updated'", "$2"},
                      {":created", "$3"},
                      {NULL, NULL}},
                  (const struct param[]){
                      {sub_id, "$1"},
                      {":cus", "$2"},
                      {"'active', 'active', 'price_inklet_monthly', 'monthly'", "$3, $4, $5, $6"},
                      {":pstart", "$7"},
                      {":pend", "$8"},
                      {"'false'", "$9"},
                      {":screated", "$10"},
                      {":created", "$11"},
                      {NULL, NULL}}});
}

static void commands_sql_is_device_by_id_then_cmd_insert(void **state)
{
    (void)state;
    const char *device = "md5(:thing::text || :d::text)::uuid";
    check_all("commands",
              (const struct ink_sql *const[]){&ink_device_by_id_sql, &ink_cmd_insert_sql, NULL},
              (const struct param *const[]){(const struct param[]){{device, "$1"}, {NULL, NULL}},
                                            (const struct param[]){{"gen_random_uuid()", "$1"},
                                                                   {device, "$2"},
                                                                   {"'text'", "$3"},
                                                                   {":payload", "$4"},
                                                                   {":cmd_ttl", "$5"},
                                                                   {"'t'", "$6"},
                                                                   {NULL, NULL}}});
}

static void heartbeat_sql_is_device_heartbeat(void **state)
{
    (void)state;
    check("heartbeat", &ink_device_heartbeat_sql,
          (const struct param[]){{":newid", "$1"},
                                 {"md5(:thing::text || :d::text)::uuid", "$2"},
                                 {":thing::text || :d::text", "$3"},
                                 {":fw", "$4"},
                                 {":d", "$5"},
                                 {NULL, NULL}});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(me_sql_is_account_me),
        cmocka_unit_test(devices_sql_is_devices_of),
        cmocka_unit_test(refresh_sql_is_session_rotate),
        cmocka_unit_test(webhook_sql_is_event_insert_then_apply),
        cmocka_unit_test(commands_sql_is_device_by_id_then_cmd_insert),
        cmocka_unit_test(heartbeat_sql_is_device_heartbeat),
    };
    return cmocka_run_group_tests_name("bench_sql", tests, NULL, NULL);
}
