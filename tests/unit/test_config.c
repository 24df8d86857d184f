/* config: defaults, required keys, validators, file + environment layering, redacted printing
 * (contract §6). The environment is replaced by a lookup over a small array. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DB_URL "postgresql://inklet:db-pass-Q7x9@db.internal:5432/inklet"
#define JWT "jwt-secret-for-tests-0123456789ABCDEF"
#define FACTORY "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char *const REQUIRED[] = {"DATABASE_URL",   DB_URL,  "JWT_SECRET", JWT,
                                       "FACTORY_SECRET", FACTORY, NULL};

/* `extra` overrides `base`; a pair whose value is NULL hides the key. */
struct env {
    const char *const *base;
    const char *const *extra;
};

static const char *lookup(const char *key, void *ctx)
{
    const struct env *e = ctx;
    for (const char *const *p = e->extra; p && *p; p += 2)
        if (strcmp(p[0], key) == 0)
            return p[1];
    for (const char *const *p = e->base; p && *p; p += 2)
        if (strcmp(p[0], key) == 0)
            return p[1];
    return NULL;
}

struct result {
    bool ok;
    struct ink_config cfg;
    char *err; /* everything written to the error stream */
    size_t err_len;
};

static void load(struct result *r, const char *file, enum ink_config_mode mode,
                 const char *const *base, const char *const *extra)
{
    struct env e = {base, extra};
    FILE *f = open_memstream(&r->err, &r->err_len);
    assert_non_null(f);
    r->ok = ink_config_load_from(&r->cfg, file, mode, lookup, &e, f);
    fclose(f);
}

static void release(struct result *r)
{
    ink_config_free(&r->cfg);
    free(r->err);
    r->err = NULL;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Serve mode with the required keys plus `extra`; asserts the outcome. */
static void expect_serve(const char *const *extra, bool ok, const char *key_in_error)
{
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    if (r.ok != ok)
        fail_msg("expected %s, got %s; errors: %s", ok ? "success" : "failure",
                 r.ok ? "success" : "failure", r.err);
    if (ok) {
        assert_string_equal(r.err, "");
    } else {
        assert_int_equal(count_lines(r.err), 1);
        if (key_in_error && !strstr(r.err, key_in_error))
            fail_msg("error does not name %s: %s", key_in_error, r.err);
    }
    release(&r);
}

static void expect_key_rejected(const char *key, const char *value)
{
    const char *extra[] = {key, value, NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    if (r.ok)
        fail_msg("%s=\"%s\" was accepted", key, value);
    assert_true(count_lines(r.err) >= 1);
    /* every line is about this key (the one-line rule is checked separately) */
    for (const char *line = r.err; *line; line = strchr(line, '\n') + 1) {
        const char *nl = strchr(line, '\n');
        if (!memmem(line, (size_t)(nl - line), key, strlen(key)))
            fail_msg("error line does not name %s: %s", key, r.err);
    }
    release(&r);
}

static void expect_key_accepted(const char *key, const char *value)
{
    const char *extra[] = {key, value, NULL};
    expect_serve(extra, true, NULL);
}

/* ---- defaults and required keys --------------------------------------------------------- */

static void defaults_match_the_contract(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_true(r.ok);
    assert_string_equal(r.err, "");
    const struct ink_config *c = &r.cfg;
    assert_int_equal(c->port, 4000);
    assert_string_equal(c->listen_addr, "0.0.0.0");
    assert_int_equal(c->access_token_ttl, 900);
    assert_int_equal(c->refresh_idle_ttl, 2592000);
    assert_int_equal(c->session_max_ttl, 7776000);
    assert_int_equal(c->refresh_reuse_grace, 10);
    assert_int_equal(c->db_timeout, 3);
    assert_int_equal(c->migrate_lock_timeout, 60);
    assert_int_equal(c->claim_code_ttl, 600);
    assert_string_equal(c->mqtt_url, "mqtt://127.0.0.1:1883");
    assert_string_equal(c->mqtt_client_id, "inklet-backend");
    assert_string_equal(c->cors_origins, "https://portal.iminklet.com");
    assert_int_equal(c->rate_login.requests, 20);
    assert_int_equal(c->rate_login.seconds, 60);
    assert_int_equal(c->rate_register.requests, 10);
    assert_int_equal(c->rate_register.seconds, 60);
    assert_int_equal(c->rate_refresh.requests, 60);
    assert_int_equal(c->rate_refresh.seconds, 60);
    assert_int_equal(c->rate_bind.requests, 10);
    assert_int_equal(c->rate_bind.seconds, 60);
    assert_int_equal(c->login_backoff_after, 5);
    assert_int_equal(c->login_backoff_max, 900);
    assert_string_equal(c->oauth_desktop_redirect, "inklet://auth/callback");
    assert_string_equal(c->oauth_web_redirect, "https://portal.iminklet.com/auth/callback");
    assert_string_equal(c->stripe_api_base, "https://api.stripe.com");
    assert_string_equal(c->log_format, "json");
    assert_true(c->trusted_proxies == NULL || *c->trusted_proxies == '\0');
    assert_true(c->mqtt_share_group == NULL || *c->mqtt_share_group == '\0');
    assert_null(c->stripe_secret_key);
    assert_null(c->metrics_token);
    /* argon2id defaults: the OWASP minimum from §2 */
    assert_int_equal(c->argon2_memory_kib, 19456);
    assert_int_equal(c->argon2_iterations, 2);
    assert_int_equal(c->argon2_parallelism, 1);
    /* the required values are stored as given */
    assert_string_equal(c->database_url, DB_URL);
    assert_string_equal(c->jwt_secret, JWT);
    assert_string_equal(c->factory_secret, FACTORY);
    release(&r);
}

static void thread_count_defaults_to_cores_and_pool_to_twice_that(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_true(r.ok);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(r.cfg.http_threads >= 1);
    assert_true(r.cfg.http_threads >= (unsigned)(cores < 1 ? 1 : cores));
    assert_int_equal(r.cfg.db_pool_size, 2 * r.cfg.http_threads);
    assert_true(r.cfg.hash_concurrency >= 1);
    release(&r);

    const char *threads[] = {"HTTP_THREADS", "3", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, threads);
    assert_true(r.ok);
    assert_int_equal(r.cfg.http_threads, 3);
    assert_int_equal(r.cfg.db_pool_size, 6);
    release(&r);

    const char *both[] = {"HTTP_THREADS", "3", "DB_POOL_SIZE", "7", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, both);
    assert_true(r.ok);
    assert_int_equal(r.cfg.db_pool_size, 7);
    release(&r);
}

static void missing_required_keys_each_produce_one_line_naming_the_key(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, NULL, NULL);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 3);
    assert_non_null(strstr(r.err, "DATABASE_URL"));
    assert_non_null(strstr(r.err, "JWT_SECRET"));
    assert_non_null(strstr(r.err, "FACTORY_SECRET"));
    release(&r);

    static const char *const keys[] = {"DATABASE_URL", "JWT_SECRET", "FACTORY_SECRET"};
    for (size_t i = 0; i < 3; i++) {
        const char *hide[] = {keys[i], NULL, NULL};
        load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, hide);
        assert_false(r.ok);
        assert_int_equal(count_lines(r.err), 1);
        assert_non_null(strstr(r.err, keys[i]));
        for (size_t j = 0; j < 3; j++)
            if (j != i)
                assert_null(strstr(r.err, keys[j]));
        release(&r);
    }
}

static void empty_required_value_counts_as_missing(void **state)
{
    (void)state;
    const char *extra[] = {"DATABASE_URL", "", NULL};
    expect_serve(extra, false, "DATABASE_URL");
}

static void migrate_mode_needs_only_the_database(void **state)
{
    (void)state;
    const char *db_only[] = {"DATABASE_URL", DB_URL, NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_MIGRATE, db_only, NULL);
    assert_true(r.ok);
    assert_string_equal(r.err, "");
    assert_string_equal(r.cfg.database_url, DB_URL);
    release(&r);

    load(&r, NULL, INK_CONFIG_MIGRATE, NULL, NULL);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "DATABASE_URL"));
    release(&r);
}

/* ---- validators ------------------------------------------------------------------------- */

static void jwt_secret_needs_32_bytes(void **state)
{
    (void)state;
    char s[40];
    memset(s, 'k', 31);
    s[31] = '\0';
    expect_key_rejected("JWT_SECRET", s);
    s[31] = 'k';
    s[32] = '\0';
    expect_key_accepted("JWT_SECRET", s);
}

static void factory_secret_must_be_64_hex(void **state)
{
    (void)state;
    expect_key_accepted("FACTORY_SECRET", FACTORY);
    expect_key_accepted("FACTORY_SECRET",
                        "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF");
    expect_key_rejected("FACTORY_SECRET", FACTORY "0");
    expect_key_rejected("FACTORY_SECRET",
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde");
    expect_key_rejected("FACTORY_SECRET",
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg");
    expect_key_rejected("FACTORY_SECRET", "0123456789abcdef0123456789abcdef"); /* 32 chars */
    expect_key_rejected("FACTORY_SECRET",
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd f");
}

static void port_must_be_1_to_65535(void **state)
{
    (void)state;
    static const char *const bad[] = {"0",   "70000", "65536",      "abc",
                                      "-1",  "12x",   " 80",        "80 ",
                                      "+80", "0x50",  "4294967296", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_key_rejected("PORT", bad[i]);
    const char *one[] = {"PORT", "1", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, one);
    assert_true(r.ok);
    assert_int_equal(r.cfg.port, 1);
    release(&r);
    const char *max[] = {"PORT", "65535", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, max);
    assert_true(r.ok);
    assert_int_equal(r.cfg.port, 65535);
    release(&r);
}

static void claim_code_ttl_accepts_one_second(void **state)
{
    (void)state;
    const char *one[] = {"CLAIM_CODE_TTL", "1", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, one);
    assert_true(r.ok);
    assert_int_equal(r.cfg.claim_code_ttl, 1);
    release(&r);
    expect_key_rejected("CLAIM_CODE_TTL", "0");
}

static void token_lifetimes_accept_one_second_for_tests(void **state)
{
    (void)state;
    const char *short_ttls[] = {"REFRESH_IDLE_TTL", "1", "SESSION_MAX_TTL", "1", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, short_ttls);
    assert_true(r.ok);
    assert_int_equal(r.cfg.refresh_idle_ttl, 1);
    assert_int_equal(r.cfg.session_max_ttl, 1);
    release(&r);
    expect_key_rejected("REFRESH_IDLE_TTL", "0");
    expect_key_rejected("SESSION_MAX_TTL", "0");
}

static void db_timeout_and_reuse_grace_are_bounded_seconds(void **state)
{
    (void)state;
    expect_key_accepted("DB_TIMEOUT", "1");
    expect_key_accepted("DB_TIMEOUT", "600");
    expect_key_rejected("DB_TIMEOUT", "0");
    expect_key_rejected("DB_TIMEOUT", "601");
    expect_key_rejected("DB_TIMEOUT", "2.5");
    expect_key_accepted("MIGRATE_LOCK_TIMEOUT", "1");
    expect_key_accepted("MIGRATE_LOCK_TIMEOUT", "86400");
    expect_key_rejected("MIGRATE_LOCK_TIMEOUT", "0");
    expect_key_rejected("MIGRATE_LOCK_TIMEOUT", "86401");
    expect_key_accepted("REFRESH_REUSE_GRACE", "0"); /* 0: every reuse revokes at once */
    expect_key_accepted("REFRESH_REUSE_GRACE", "3600");
    expect_key_rejected("REFRESH_REUSE_GRACE", "3601");
    expect_key_rejected("REFRESH_REUSE_GRACE", "-1");
}

/* Values that would silently disable a defence are refused at start, one line naming the key:
 * argon2 cannot hash with less than 8 KiB per lane (no dummy hash: fast unknown-user logins),
 * and a memory cost above the PHC read-back bound would make every stored hash unreadable. */
static void argon2_parameters_that_cannot_work_are_refused(void **state)
{
    (void)state;
    const char *too_little[] = {"ARGON2_MEMORY_KIB", "8", "ARGON2_PARALLELISM", "2", NULL};
    expect_serve(too_little, false, "ARGON2_MEMORY_KIB");
    const char *just_enough[] = {"ARGON2_MEMORY_KIB", "16", "ARGON2_PARALLELISM", "2", NULL};
    expect_serve(just_enough, true, NULL);
    const char *default_memory_many_lanes[] = {"ARGON2_PARALLELISM", "64", NULL};
    expect_serve(default_memory_many_lanes, true, NULL);
    char max[16], over[16];
    snprintf(max, sizeof max, "%u", INK_ARGON2_MAX_M_KIB);
    snprintf(over, sizeof over, "%u", INK_ARGON2_MAX_M_KIB + 1);
    expect_key_accepted("ARGON2_MEMORY_KIB", max);
    expect_key_rejected("ARGON2_MEMORY_KIB", over);
    expect_key_rejected("ARGON2_MEMORY_KIB", "4194304"); /* the old, unreadable maximum */
    expect_key_rejected("ARGON2_ITERATIONS", "65");
    expect_key_rejected("ARGON2_PARALLELISM", "65");
}

static void parse_rate_accepts_requests_per_seconds(void **state)
{
    (void)state;
    struct ink_rate r = {0, 0};
    assert_true(ink_config_parse_rate("20/60", &r));
    assert_int_equal(r.requests, 20);
    assert_int_equal(r.seconds, 60);
    assert_true(ink_config_parse_rate("1/1", &r));
    assert_int_equal(r.requests, 1);
    assert_int_equal(r.seconds, 1);
}

static void parse_rate_rejects_everything_else(void **state)
{
    (void)state;
    static const char *const bad[] = {"20",
                                      "0/60",
                                      "20/0",
                                      "a/b",
                                      "20/60x",
                                      "",
                                      "/60",
                                      "20/",
                                      "/",
                                      "-1/60",
                                      "20/-60",
                                      "+20/60",
                                      "20/+60",
                                      " 20/60",
                                      "20 /60",
                                      "20/ 60",
                                      "20/60/60",
                                      "20.5/60",
                                      "99999999999999999999/60",
                                      "20/99999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ink_rate r = {7, 7};
        if (ink_config_parse_rate(bad[i], &r))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(r.requests, 7); /* untouched on failure */
        assert_int_equal(r.seconds, 7);
    }
}

static void rate_keys_are_validated_and_stored(void **state)
{
    (void)state;
    const char *extra[] = {"RATE_LIMIT_LOGIN", "5/10", "RATE_LIMIT_BIND", "3/120", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    assert_true(r.ok);
    assert_int_equal(r.cfg.rate_login.requests, 5);
    assert_int_equal(r.cfg.rate_login.seconds, 10);
    assert_int_equal(r.cfg.rate_bind.requests, 3);
    assert_int_equal(r.cfg.rate_bind.seconds, 120);
    assert_int_equal(r.cfg.rate_register.requests, 10); /* untouched default */
    release(&r);
    static const char *const bad[] = {"20", "0/60", "20/0", "a/b", "20/60x"};
    static const char *const keys[] = {"RATE_LIMIT_LOGIN", "RATE_LIMIT_REGISTER",
                                       "RATE_LIMIT_REFRESH", "RATE_LIMIT_BIND"};
    for (size_t k = 0; k < 4; k++)
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
            expect_key_rejected(keys[k], bad[i]);
}

static void log_format_is_json_or_text(void **state)
{
    (void)state;
    expect_key_accepted("LOG_FORMAT", "json");
    expect_key_accepted("LOG_FORMAT", "text");
    expect_key_rejected("LOG_FORMAT", "JSON");
    expect_key_rejected("LOG_FORMAT", "xml");
    expect_key_rejected("LOG_FORMAT", "json ");
    expect_key_rejected("LOG_LEVEL", "verbose");
}

/* Contract §6: invalid configuration gives "one precise line naming the key". A required key
 * that is present but invalid must not also be reported as missing. Found by this test; see the
 * report. */
static void invalid_required_value_gives_one_line_not_also_missing(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"JWT_SECRET", "0123456789012345678901234567890"}, /* 31 bytes */
        {"FACTORY_SECRET", "abc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *extra[] = {cases[i][0], cases[i][1], NULL};
        struct result r;
        load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
        bool rejected = !r.ok;
        size_t lines = count_lines(r.err);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s=\"%s\" gave %zu lines:\n%s", cases[i][0], cases[i][1], lines,
                 r.err);
        release(&r);
        assert_true(rejected);
        if (lines != 1)
            fail_msg("%s", msg);
    }
}

/* An empty value must not slip past a validator and replace a valid default. Found by this
 * test; see the report. */
static void empty_value_does_not_bypass_validation(void **state)
{
    (void)state;
    static const char *const keys[] = {"LOG_FORMAT", "LOG_LEVEL", "MQTT_URL", "STRIPE_API_BASE"};
    char msg[2048] = "";
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        struct result dflt, r;
        load(&dflt, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
        const char *extra[] = {keys[i], "", NULL};
        load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
        if (r.ok) {
            /* accepted only if treated as unset, i.e. the default still applies */
            FILE *a = tmpfile(), *b = tmpfile();
            assert_non_null(a);
            assert_non_null(b);
            ink_config_print(&dflt.cfg, a);
            ink_config_print(&r.cfg, b);
            char la[512], lb[512];
            rewind(a);
            rewind(b);
            while (fgets(la, sizeof la, a) && fgets(lb, sizeof lb, b))
                if (strncmp(la, keys[i], strlen(keys[i])) == 0 && la[strlen(keys[i])] == '=' &&
                    strcmp(la, lb) != 0)
                    snprintf(msg + strlen(msg), sizeof msg - strlen(msg),
                             "%s=\"\" accepted: %s became %s", keys[i], strtok(la, "\n"), lb);
            fclose(a);
            fclose(b);
        } else if (!strstr(r.err, keys[i])) {
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg),
                     "%s=\"\" rejected without naming it: %s", keys[i], r.err);
        }
        release(&dflt);
        release(&r);
    }
    if (*msg)
        fail_msg("%s", msg);
}

static void mqtt_url_needs_an_mqtt_scheme(void **state)
{
    (void)state;
    expect_key_accepted("MQTT_URL", "mqtt://broker.local:1883");
    expect_key_rejected("MQTT_URL", "http://broker.local");
    expect_key_rejected("MQTT_URL", "tcp://broker.local:1883");
    expect_key_rejected("MQTT_URL", "broker.local:1883");
    expect_key_rejected("MQTT_URL", "MQTT://broker.local");
}

static char *write_temp(const char *text);
static void remove_temp(char *path);

/* TLS to the broker is checked at start: mqtts:// needs the CA file (libmosquitto has no default
 * store and would fail only when the link is set up), the client certificate is both or neither,
 * every file must be readable, and certificate files beside a plain mqtt:// URL are refused. */
static void mqtt_tls_setup_is_checked_at_start(void **state)
{
    (void)state;
    char *ca = write_temp("-----BEGIN CERTIFICATE-----\n"), *crt = write_temp("crt\n"),
         *key = write_temp("key\n");
    const char *aws = "mqtts://a1b2c3-ats.iot.eu-west-1.amazonaws.com:8883";
    expect_serve((const char *[]){"MQTT_URL", aws, "MQTT_CA_FILE", ca, "MQTT_CERT_FILE", crt,
                                  "MQTT_KEY_FILE", key, NULL},
                 true, NULL);
    expect_serve((const char *[]){"MQTT_URL", aws, "MQTT_CA_FILE", ca, NULL}, true, NULL);
    expect_serve((const char *[]){"MQTT_URL", aws, NULL}, false,
                 "MQTT_CA_FILE is required for an mqtts:// MQTT_URL");
    expect_serve((const char *[]){"MQTT_URL", aws, "MQTT_CA_FILE", ca, "MQTT_CERT_FILE", crt, NULL},
                 false, "MQTT_KEY_FILE is required when MQTT_CERT_FILE is set");
    expect_serve((const char *[]){"MQTT_URL", aws, "MQTT_CA_FILE", ca, "MQTT_KEY_FILE", key, NULL},
                 false, "MQTT_CERT_FILE is required when MQTT_KEY_FILE is set");
    /* an unreadable file: one line, about that file, not also "required" */
    expect_serve((const char *[]){"MQTT_URL", aws, "MQTT_CA_FILE", "/nonexistent/ca.pem", NULL},
                 false, "MQTT_CA_FILE must name a readable file");
    expect_key_rejected("MQTT_CERT_FILE", "/nonexistent/client.crt");
    expect_key_rejected("MQTT_KEY_FILE", "/nonexistent/client.key");
    expect_serve((const char *[]){"MQTT_CA_FILE", ca, NULL}, false,
                 "MQTT_CA_FILE is set but MQTT_URL is plain mqtt://");
    expect_serve((const char *[]){"MQTT_URL", "mqtt://broker.local:1883", "MQTT_CERT_FILE", crt,
                                  "MQTT_KEY_FILE", key, NULL},
                 false, "MQTT_CERT_FILE is set but MQTT_URL is plain mqtt://");
    /* migrate never talks to the broker */
    struct result r;
    load(&r, NULL, INK_CONFIG_MIGRATE, (const char *[]){"DATABASE_URL", DB_URL, NULL},
         (const char *[]){"MQTT_URL", aws, NULL});
    assert_true(r.ok);
    release(&r);
    remove_temp(ca);
    remove_temp(crt);
    remove_temp(key);
}

static void cors_origins_must_be_bare_origins(void **state)
{
    (void)state;
    const char *two[] = {"CORS_ORIGINS", "https://portal.iminklet.com, http://localhost:5173",
                         NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, two);
    assert_true(r.ok);
    assert_non_null(strstr(r.cfg.cors_origins, "http://localhost:5173"));
    release(&r);
    expect_key_rejected("CORS_ORIGINS", "https://portal.iminklet.com/app");
    expect_key_rejected("CORS_ORIGINS", "https://portal.iminklet.com/");
    expect_key_rejected("CORS_ORIGINS", "*");
    expect_key_rejected("CORS_ORIGINS", "https://*.iminklet.com");
    expect_key_rejected("CORS_ORIGINS", "https://portal.iminklet.com, *");
    expect_key_rejected("CORS_ORIGINS", "portal.iminklet.com");
    expect_key_rejected("CORS_ORIGINS", "ftp://portal.iminklet.com");
    expect_key_rejected("CORS_ORIGINS", "https://");
}

static void trusted_proxies_are_cidrs(void **state)
{
    (void)state;
    const char *ok[] = {"TRUSTED_PROXIES", "10.0.0.0/8, ::1", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, ok);
    assert_true(r.ok);
    assert_string_equal(r.cfg.trusted_proxies, "10.0.0.0/8, ::1");
    release(&r);
    expect_key_rejected("TRUSTED_PROXIES", "10.0.0.0/33");
    expect_key_rejected("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local");
    expect_key_rejected("TRUSTED_PROXIES", "*");
}

static void redirect_and_url_keys_are_checked(void **state)
{
    (void)state;
    expect_key_accepted("OAUTH_DESKTOP_REDIRECT", "inklet-dev://auth/callback");
    expect_key_rejected("OAUTH_DESKTOP_REDIRECT", "auth/callback");
    expect_key_rejected("OAUTH_WEB_REDIRECT", "://nothing");
    expect_key_rejected("STRIPE_API_BASE", "api.stripe.com");
    expect_key_rejected("BILLING_SUCCESS_URL", "javascript:alert(1)");
}

static void stripe_api_base_is_https_or_loopback_http(void **state)
{
    (void)state;
    expect_key_accepted("STRIPE_API_BASE", "https://api.stripe.com");
    expect_key_accepted("STRIPE_API_BASE", "http://127.0.0.1:12111");
    expect_key_accepted("STRIPE_API_BASE", "http://localhost:12111");
    expect_key_accepted("STRIPE_API_BASE", "http://[::1]:12111");
    /* the secret key travels in every request: never in clear text over a network */
    expect_key_rejected("STRIPE_API_BASE", "http://api.stripe.com");
    expect_key_rejected("STRIPE_API_BASE", "http://127.0.0.1.evil.example");
    expect_key_rejected("STRIPE_API_BASE", "http://localhost.evil.example");
    expect_key_accepted("STRIPE_TIMEOUT", "1");
    expect_key_accepted("STRIPE_TIMEOUT", "120");
    expect_key_rejected("STRIPE_TIMEOUT", "0");
    expect_key_rejected("STRIPE_TIMEOUT", "121");
    /* values that end up in a header or a form field as they are */
    expect_key_rejected("STRIPE_SECRET_KEY", "sk_test_a\r\nX-Evil: 1");
    expect_key_rejected("STRIPE_PRICE_MONTHLY", "price 1");
}

static void oauth_provider_urls_are_https_or_loopback_http(void **state)
{
    (void)state;
    /* client secrets and codes go to the token endpoints; the JWKS decides which tokens are
     * genuine: a network attacker must never see or change either */
    static const char *const keys[] = {"GOOGLE_AUTH_URL", "GOOGLE_TOKEN_URL", "GOOGLE_JWKS_URL",
                                       "APPLE_AUTH_URL",  "APPLE_TOKEN_URL",  "APPLE_JWKS_URL",
                                       "APPLE_REVOKE_URL"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        expect_key_accepted(keys[i], "https://provider.example/x");
        expect_key_accepted(keys[i], "http://127.0.0.1:9000/x");
        expect_key_rejected(keys[i], "http://provider.example/x");
        expect_key_rejected(keys[i], "http://127.0.0.1.evil.example/x");
    }
    expect_key_accepted("OAUTH_TIMEOUT", "1");
    expect_key_accepted("OAUTH_TIMEOUT", "60");
    expect_key_rejected("OAUTH_TIMEOUT", "0");
    expect_key_rejected("OAUTH_TIMEOUT", "61");
    expect_key_rejected("TOKEN_ENCRYPTION_KEY", "too-short");
    expect_key_rejected("GOOGLE_CLIENT_IDS", "a b");
}

static void oauth_browser_setups_are_all_or_nothing(void **state)
{
    (void)state;
    /* client ids alone serve the native ID-token route: nothing else is needed */
    const char *ids[] = {"GOOGLE_CLIENT_IDS", "g", "APPLE_CLIENT_IDS", "a", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, ids);
    assert_true(r.ok);
    release(&r);
    const char *google[] = {"GOOGLE_CLIENT_SECRET", "s", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, google);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 2);
    assert_non_null(strstr(r.err, "GOOGLE_CLIENT_IDS is required when GOOGLE_CLIENT_SECRET"));
    assert_non_null(strstr(r.err, "GOOGLE_REDIRECT_URL is required when GOOGLE_CLIENT_SECRET"));
    release(&r);
    const char *apple[] = {"APPLE_CLIENT_IDS",
                           "a",
                           "APPLE_TEAM_ID",
                           "T",
                           "APPLE_KEY_ID",
                           "K",
                           "APPLE_PRIVATE_KEY_FILE",
                           "/k.p8",
                           "APPLE_REDIRECT_URL",
                           "https://x.example/cb",
                           NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, apple);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "TOKEN_ENCRYPTION_KEY is required when APPLE_TEAM_ID"));
    release(&r);
}

static void billing_keys_are_all_or_nothing(void **state)
{
    (void)state;
    /* without a secret key nothing else is needed (billing answers 503) */
    const char *none[] = {"STRIPE_PRICE_MONTHLY", "price_m", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, none);
    assert_true(r.ok);
    release(&r);
    /* with it, every missing piece is named, one line each */
    const char *half[] = {"STRIPE_SECRET_KEY", "sk_test_x", "STRIPE_PRICE_MONTHLY", "price_m",
                          NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, half);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 5);
    static const char *const missing[] = {"STRIPE_WEBHOOK_SECRET", "STRIPE_PRICE_YEARLY",
                                          "BILLING_SUCCESS_URL", "BILLING_CANCEL_URL",
                                          "BILLING_PORTAL_RETURN_URL"};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++)
        if (!strstr(r.err, missing[i]))
            fail_msg("%s not named in:\n%s", missing[i], r.err);
    assert_null(strstr(r.err, "STRIPE_PRICE_MONTHLY"));
    release(&r);
    /* migrate needs none of it */
    load(&r, NULL, INK_CONFIG_MIGRATE, REQUIRED, half);
    assert_true(r.ok);
    release(&r);
}

/* The broker login is both or neither: a username without its password would only surface as
 * "not authorised" reconnects at run time. */
static void mqtt_login_with_one_half_missing_is_refused_naming_the_other(void **state)
{
    (void)state;
    const char *user_only[] = {"MQTT_USERNAME", "inklet-backend", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, user_only);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "MQTT_PASSWORD is required when MQTT_USERNAME is set"));
    release(&r);
    const char *password_only[] = {"MQTT_PASSWORD", "pw-Q7x9", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, password_only);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "MQTT_USERNAME is required when MQTT_PASSWORD is set"));
    release(&r);
}

static void mqtt_login_is_unset_by_default_and_stored_when_both_are_given(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_true(r.ok);
    assert_null(r.cfg.mqtt_username);
    assert_null(r.cfg.mqtt_password);
    release(&r);
    const char *both[] = {"MQTT_USERNAME", "inklet-backend", "MQTT_PASSWORD", "p@ss w0rd!#$%",
                          NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, both);
    assert_true(r.ok);
    assert_string_equal(r.err, "");
    assert_string_equal(r.cfg.mqtt_username, "inklet-backend");
    assert_string_equal(r.cfg.mqtt_password, "p@ss w0rd!#$%");
    release(&r);
}

static void mqtt_login_must_be_printable_ascii(void **state)
{
    (void)state;
    static const char *const keys[] = {"MQTT_USERNAME", "MQTT_PASSWORD"};
    static const char *const bad[] = {"tab\there", "new\nline", "bell\a", "del\x7f", "caf\xc3\xa9"};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
            expect_key_rejected(keys[k], bad[i]);
}

static char *print_config(const struct ink_config *cfg);

/* Mail (contract §2.2): off without SMTP_URL, the documented defaults otherwise. */
static void mail_keys_default_to_the_contract(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_true(r.ok);
    assert_null(r.cfg.smtp_url);
    assert_null(r.cfg.smtp_user);
    assert_null(r.cfg.smtp_password);
    assert_null(r.cfg.smtp_ca_file);
    assert_string_equal(r.cfg.mail_from, "Inklet <no-reply@iminklet.com>");
    assert_string_equal(r.cfg.portal_url, "https://portal.iminklet.com");
    assert_int_equal(r.cfg.password_reset_ttl, 1800);
    assert_int_equal(r.cfg.email_verify_ttl, 86400);
    assert_int_equal(r.cfg.mail_retry_base, 60);
    assert_int_equal(r.cfg.smtp_timeout, 30);
    assert_int_equal(r.cfg.rate_mail.requests, 5);
    assert_int_equal(r.cfg.rate_mail.seconds, 3600);
    release(&r);
}

static void mail_keys_refuse_what_would_fail_or_leak_later(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "http://mail.example.com",         "smtp://",
        "smtp://user:pw@mail.example.com", "smtp://mail.example.com/x",
        "smtp://mail.example.com?x=1",     "smtp://mail example.com"};
    for (size_t i = 0; i < sizeof urls / sizeof *urls; i++)
        expect_key_rejected("SMTP_URL", urls[i]);
    expect_key_accepted("SMTP_URL", "smtp://mail.example.com:587");
    expect_key_accepted("SMTP_URL", "smtps://mail.example.com");
    expect_key_accepted("SMTP_URL", "smtp://127.0.0.1:2525");
    static const char *const froms[] = {"no-reply@iminklet.com\r\nBcc: x@evil.test",
                                        "Inklet <no-reply@iminklet.com", "not an address",
                                        "a@@b.com"};
    for (size_t i = 0; i < sizeof froms / sizeof *froms; i++)
        expect_key_rejected("MAIL_FROM", froms[i]);
    expect_key_accepted("MAIL_FROM", "Inklet <no-reply@iminklet.com>");
    expect_key_accepted("MAIL_FROM", "no-reply@iminklet.com");
    expect_key_rejected("PORTAL_URL", "ftp://portal.iminklet.com");
    expect_key_rejected("PORTAL_URL", "https://portal.iminklet.com/a b");
    expect_key_rejected("SMTP_CA_FILE", "/nonexistent/inklet-ca.pem");
    expect_key_rejected("SMTP_TIMEOUT", "0");
    expect_key_rejected("PASSWORD_RESET_TTL", "0");
    expect_key_rejected("MAIL_RETRY_BASE", "3601");
    expect_key_rejected("RATE_LIMIT_MAIL", "5");
}

static void smtp_login_with_one_half_missing_is_refused_naming_the_other(void **state)
{
    (void)state;
    const char *user_only[] = {"SMTP_USER", "mailer", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, user_only);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "SMTP_PASSWORD is required when SMTP_USER is set"));
    release(&r);
    const char *both[] = {"SMTP_USER", "mailer", "SMTP_PASSWORD", "smtp-pass-W4v", NULL};
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, both);
    assert_true(r.ok);
    char *out = print_config(&r.cfg);
    if (strstr(out, "smtp-pass-W4v"))
        fail_msg("SMTP password printed:\n%s", out);
    assert_non_null(strstr(out, "SMTP_PASSWORD=<redacted>\n"));
    free(out);
    release(&r);
}

static void several_bad_keys_give_one_line_each(void **state)
{
    (void)state;
    const char *extra[] = {"PORT", "0", "LOG_FORMAT", "xml", "RATE_LIMIT_LOGIN", "20", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 3);
    assert_non_null(strstr(r.err, "PORT"));
    assert_non_null(strstr(r.err, "LOG_FORMAT"));
    assert_non_null(strstr(r.err, "RATE_LIMIT_LOGIN"));
    release(&r);
}

static void legacy_singular_client_id_keys_are_accepted(void **state)
{
    (void)state;
    const char *extra[] = {"GOOGLE_CLIENT_ID", "g-client", "APPLE_CLIENT_ID", "a-client", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    assert_true(r.ok);
    assert_string_equal(r.cfg.google_client_ids, "g-client");
    assert_string_equal(r.cfg.apple_client_ids, "a-client");
    release(&r);
}

/* ---- config file ------------------------------------------------------------------------ */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/inklet-test-config-XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static void file_sets_keys_and_environment_wins(void **state)
{
    (void)state;
    char *path = write_temp("# Inklet configuration\n"
                            "\n"
                            "   \n"
                            "  # indented comment\n"
                            "PORT=5000\n"
                            "LISTEN_ADDR = \"127.0.0.1\"\n"
                            "MQTT_CLIENT_ID='from-file'\n"
                            "export LOG_FORMAT=text\n"
                            "MQTT_SHARE_GROUP=\"\"\n"
                            "CLAIM_CODE_TTL=30\r\n"
                            "DATABASE_URL=postgres://from-file/db\n"
                            "CORS_ORIGINS=\"https://a.example, https://b.example\"\n");
    const char *env[] = {"PORT", "6000", "DATABASE_URL", DB_URL, NULL};
    struct result r;
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, env);
    if (!r.ok)
        fail_msg("errors: %s", r.err);
    assert_string_equal(r.err, "");
    assert_int_equal(r.cfg.port, 6000);                     /* environment wins */
    assert_string_equal(r.cfg.database_url, DB_URL);        /* environment wins */
    assert_string_equal(r.cfg.listen_addr, "127.0.0.1");    /* quotes stripped */
    assert_string_equal(r.cfg.mqtt_client_id, "from-file"); /* single quotes too */
    assert_string_equal(r.cfg.log_format, "text");          /* export prefix */
    assert_string_equal(r.cfg.mqtt_share_group, "");
    assert_int_equal(r.cfg.claim_code_ttl, 30); /* CRLF line ending */
    assert_string_equal(r.cfg.cors_origins, "https://a.example, https://b.example");
    release(&r);

    /* without the environment the file's values stand */
    const char *no_env[] = {"PORT", NULL, "DATABASE_URL", NULL, NULL};
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, no_env);
    assert_true(r.ok);
    assert_int_equal(r.cfg.port, 5000);
    assert_string_equal(r.cfg.database_url, "postgres://from-file/db");
    release(&r);
    remove_temp(path);
}

static void file_can_supply_the_required_keys(void **state)
{
    (void)state;
    char *path =
        write_temp("DATABASE_URL=" DB_URL "\nJWT_SECRET=" JWT "\nFACTORY_SECRET=" FACTORY "\n");
    struct result r;
    load(&r, path, INK_CONFIG_SERVE, NULL, NULL);
    assert_true(r.ok);
    assert_string_equal(r.cfg.jwt_secret, JWT);
    release(&r);
    remove_temp(path);
}

static void unknown_key_in_file_is_an_error_naming_it(void **state)
{
    (void)state;
    char *path = write_temp("PORT=5000\nPROT=5001\n");
    struct result r;
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "PROT"));
    release(&r);
    remove_temp(path);
}

static void malformed_file_lines_are_errors(void **state)
{
    (void)state;
    char *path = write_temp("PORT 5000\n");
    struct result r;
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    release(&r);
    remove_temp(path);

    path = write_temp("\n\nPORT=99999\n");
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_false(r.ok);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "PORT"));
    assert_non_null(strstr(r.err, ":3")); /* names the line */
    release(&r);
    remove_temp(path);
}

static void missing_file_is_an_error(void **state)
{
    (void)state;
    struct result r;
    load(&r, "/nonexistent/inklet.conf", INK_CONFIG_SERVE, REQUIRED, NULL);
    assert_false(r.ok);
    assert_non_null(strstr(r.err, "/nonexistent/inklet.conf"));
    release(&r);
}

static void overlong_file_line_is_never_silently_truncated(void **state)
{
    (void)state;
    size_t vlen = 6000;
    char *text = malloc(vlen + 64);
    assert_non_null(text);
    int n = snprintf(text, 64, "METRICS_TOKEN=");
    memset(text + n, 't', vlen);
    memcpy(text + n + vlen, "\n", 2);
    char *path = write_temp(text);
    free(text);
    struct result r;
    load(&r, path, INK_CONFIG_SERVE, REQUIRED, NULL);
    if (r.ok) {
        assert_non_null(r.cfg.metrics_token);
        assert_int_equal(strlen(r.cfg.metrics_token), vlen);
    } else {
        assert_true(count_lines(r.err) >= 1);
    }
    release(&r);
    remove_temp(path);
}

/* ---- printing ---------------------------------------------------------------------------- */

static char *print_config(const struct ink_config *cfg)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    ink_config_print(cfg, f);
    fclose(f);
    return out;
}

static void print_redacts_secrets_and_shows_the_rest(void **state)
{
    (void)state;
    const char *extra[] = {"STRIPE_SECRET_KEY",
                           "sk_live_51HzSECRETvalue",
                           "STRIPE_WEBHOOK_SECRET",
                           "whsec_SECRETwebhook",
                           "STRIPE_PRICE_MONTHLY",
                           "price_m",
                           "STRIPE_PRICE_YEARLY",
                           "price_y",
                           "BILLING_SUCCESS_URL",
                           "https://portal.example/ok",
                           "BILLING_CANCEL_URL",
                           "https://portal.example/cancel",
                           "BILLING_PORTAL_RETURN_URL",
                           "https://portal.example/account",
                           "GOOGLE_CLIENT_SECRET",
                           "GOCSPX-SECRETgoogle",
                           "GOOGLE_CLIENT_IDS",
                           "g-client",
                           "GOOGLE_REDIRECT_URL",
                           "https://api.example/auth/oauth/google/callback",
                           "METRICS_TOKEN",
                           "metrics-SECRET-token",
                           "MQTT_CLIENT_ID",
                           "inklet-backend-7",
                           NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    assert_true(r.ok);
    char *out = print_config(&r.cfg);
    static const char *const secrets[] = {DB_URL,   "db-pass-Q7x9",  JWT,
                                          FACTORY,  "sk_live_51Hz",  "whsec_SECRET",
                                          "GOCSPX", "metrics-SECRET"};
    for (size_t i = 0; i < sizeof secrets / sizeof *secrets; i++)
        if (strstr(out, secrets[i]))
            fail_msg("secret \"%s\" printed:\n%s", secrets[i], out);
    assert_non_null(strstr(out, "JWT_SECRET=<redacted>\n"));
    assert_non_null(strstr(out, "DATABASE_URL=<redacted>\n"));
    assert_non_null(strstr(out, "FACTORY_SECRET=<redacted>\n"));
    assert_non_null(strstr(out, "STRIPE_SECRET_KEY=<redacted>\n"));
    assert_non_null(strstr(out, "STRIPE_WEBHOOK_SECRET=<redacted>\n"));
    assert_non_null(strstr(out, "METRICS_TOKEN=<redacted>\n"));
    assert_non_null(strstr(out, "PORT=4000\n"));
    assert_non_null(strstr(out, "LISTEN_ADDR=0.0.0.0\n"));
    assert_non_null(strstr(out, "MQTT_CLIENT_ID=inklet-backend-7\n"));
    assert_non_null(strstr(out, "RATE_LIMIT_LOGIN=20/60\n"));
    assert_non_null(strstr(out, "CORS_ORIGINS=https://portal.iminklet.com\n"));
    free(out);
    release(&r);
}

static void print_redacts_the_mqtt_login(void **state)
{
    (void)state;
    const char *both[] = {"MQTT_USERNAME", "backend-user-K3y", "MQTT_PASSWORD", "broker-pass-Z8q",
                          NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, both);
    assert_true(r.ok);
    char *out = print_config(&r.cfg);
    if (strstr(out, "backend-user-K3y") || strstr(out, "broker-pass-Z8q"))
        fail_msg("MQTT login printed:\n%s", out);
    assert_non_null(strstr(out, "MQTT_USERNAME=<redacted>\n"));
    assert_non_null(strstr(out, "MQTT_PASSWORD=<redacted>\n"));
    free(out);
    release(&r);
}

static void print_marks_unset_secrets_as_unset(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    char *out = print_config(&r.cfg);
    assert_non_null(strstr(out, "STRIPE_SECRET_KEY=<unset>\n"));
    assert_non_null(strstr(out, "METRICS_TOKEN=<unset>\n"));
    free(out);
    release(&r);
}

static void print_output_reloads_to_the_same_non_secret_values(void **state)
{
    (void)state;
    /* every printed line is KEY=value for a known key, so check-config output is a valid file
     * once the redacted and unset lines are dropped */
    const char *extra[] = {"PORT", "4321", "RATE_LIMIT_BIND", "4/40", NULL};
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, extra);
    char *out = print_config(&r.cfg);
    char *filtered = malloc(strlen(out) + 1), *w = filtered;
    assert_non_null(filtered);
    for (char *line = out, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        size_t len = (size_t)(nl - line) + 1;
        if (!memmem(line, len, "=<redacted>", 11) && !memmem(line, len, "=<unset>", 8)) {
            memcpy(w, line, len);
            w += len;
        }
    }
    *w = '\0';
    char *path = write_temp(filtered);
    struct result again;
    load(&again, path, INK_CONFIG_SERVE, REQUIRED, NULL);
    if (!again.ok)
        fail_msg("printed config does not reload: %s", again.err);
    char *out2 = print_config(&again.cfg);
    assert_string_equal(out, out2);
    free(out2);
    release(&again);
    remove_temp(path);
    free(filtered);
    free(out);
    release(&r);
}

/* config/inkletd.env.example documents every key the table knows. */
static void env_example_documents_every_key(void **state)
{
    (void)state;
    struct result r;
    load(&r, NULL, INK_CONFIG_SERVE, REQUIRED, NULL);
    char *printed = NULL;
    size_t plen = 0;
    FILE *out = open_memstream(&printed, &plen);
    ink_config_print(&r.cfg, out);
    fclose(out);
    FILE *f = fopen(INKLET_SOURCE_DIR "/config/inkletd.env.example", "r");
    assert_non_null(f);
    char example[32768];
    size_t n = fread(example, 1, sizeof example - 1, f);
    example[n] = '\0';
    fclose(f);
    for (char *line = strtok(printed, "\n"); line; line = strtok(NULL, "\n")) {
        char key[128];
        size_t k = strcspn(line, "=");
        assert_true(k < sizeof key - 2);
        memcpy(key, line, k);
        key[k] = '=';
        key[k + 1] = '\0';
        if (!strstr(example, key))
            fail_msg("config/inkletd.env.example does not mention %.*s", (int)k, key);
    }
    free(printed);
    release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_the_contract),
        cmocka_unit_test(thread_count_defaults_to_cores_and_pool_to_twice_that),
        cmocka_unit_test(missing_required_keys_each_produce_one_line_naming_the_key),
        cmocka_unit_test(empty_required_value_counts_as_missing),
        cmocka_unit_test(env_example_documents_every_key),
        cmocka_unit_test(migrate_mode_needs_only_the_database),
        cmocka_unit_test(jwt_secret_needs_32_bytes),
        cmocka_unit_test(factory_secret_must_be_64_hex),
        cmocka_unit_test(port_must_be_1_to_65535),
        cmocka_unit_test(claim_code_ttl_accepts_one_second),
        cmocka_unit_test(token_lifetimes_accept_one_second_for_tests),
        cmocka_unit_test(db_timeout_and_reuse_grace_are_bounded_seconds),
        cmocka_unit_test(argon2_parameters_that_cannot_work_are_refused),
        cmocka_unit_test(parse_rate_accepts_requests_per_seconds),
        cmocka_unit_test(parse_rate_rejects_everything_else),
        cmocka_unit_test(rate_keys_are_validated_and_stored),
        cmocka_unit_test(log_format_is_json_or_text),
        cmocka_unit_test(invalid_required_value_gives_one_line_not_also_missing),
        cmocka_unit_test(empty_value_does_not_bypass_validation),
        cmocka_unit_test(mqtt_url_needs_an_mqtt_scheme),
        cmocka_unit_test(mqtt_tls_setup_is_checked_at_start),
        cmocka_unit_test(cors_origins_must_be_bare_origins),
        cmocka_unit_test(trusted_proxies_are_cidrs),
        cmocka_unit_test(redirect_and_url_keys_are_checked),
        cmocka_unit_test(stripe_api_base_is_https_or_loopback_http),
        cmocka_unit_test(billing_keys_are_all_or_nothing),
        cmocka_unit_test(mqtt_login_with_one_half_missing_is_refused_naming_the_other),
        cmocka_unit_test(mqtt_login_is_unset_by_default_and_stored_when_both_are_given),
        cmocka_unit_test(mqtt_login_must_be_printable_ascii),
        cmocka_unit_test(several_bad_keys_give_one_line_each),
        cmocka_unit_test(legacy_singular_client_id_keys_are_accepted),
        cmocka_unit_test(oauth_provider_urls_are_https_or_loopback_http),
        cmocka_unit_test(oauth_browser_setups_are_all_or_nothing),
        cmocka_unit_test(file_sets_keys_and_environment_wins),
        cmocka_unit_test(file_can_supply_the_required_keys),
        cmocka_unit_test(unknown_key_in_file_is_an_error_naming_it),
        cmocka_unit_test(malformed_file_lines_are_errors),
        cmocka_unit_test(missing_file_is_an_error),
        cmocka_unit_test(overlong_file_line_is_never_silently_truncated),
        cmocka_unit_test(print_redacts_secrets_and_shows_the_rest),
        cmocka_unit_test(print_redacts_the_mqtt_login),
        cmocka_unit_test(mail_keys_default_to_the_contract),
        cmocka_unit_test(mail_keys_refuse_what_would_fail_or_leak_later),
        cmocka_unit_test(smtp_login_with_one_half_missing_is_refused_naming_the_other),
        cmocka_unit_test(print_marks_unset_secrets_as_unset),
        cmocka_unit_test(print_output_reloads_to_the_same_non_secret_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
