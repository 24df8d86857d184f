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
#include "inklet/db.h"
#include "inklet/devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The file's statement: its lines that are neither comments nor pgbench meta-commands, joined,
 * without the final ';'. */
static char *bench_statement(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bench/sql/%s.sql", INKLET_SOURCE_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(1, cap), line[1 << 14];
    assert_non_null(out);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || strncmp(line, "--", 2) == 0 || line[0] == '\\')
            continue;
        size_t n = strlen(line);
        assert_true(len + n + 1 < cap);
        memcpy(out + len, line, n + 1);
        len += n;
    }
    fclose(f);
    if (len && out[len - 1] == ';')
        out[--len] = '\0';
    return out;
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

static void check(const char *file, const struct ink_sql *sql, const struct param *params)
{
    char *text = bench_statement(file);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(me_sql_is_account_me),
        cmocka_unit_test(devices_sql_is_devices_of),
        cmocka_unit_test(refresh_sql_is_session_rotate),
    };
    return cmocka_run_group_tests_name("bench_sql", tests, NULL, NULL);
}
