/* The configuration table: every key the daemon reads, its type, default and validator. Adding a
 * key is adding a line to CONFIG_KEYS. */
#include "inklet/config.h"

#include "inklet/alloc.h"
#include "inklet/ids.h"
#include "inklet/mailaddr.h"
#include "inklet/netaddr.h"
#include "inklet/text.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum key_type { T_STR, T_UINT, T_RATE };

enum key_flags {
    F_SECRET = 1,      /* redacted by check-config */
    F_REQ_SERVE = 2,   /* required to serve */
    F_REQ_MIGRATE = 4, /* required to migrate */
    /* all-or-nothing groups (GROUPS below): half a setup would fail at a customer's checkout or
     * sign-in instead of at start */
    F_BILLING = 8,
    F_GOOGLE_WEB = 16,
    F_APPLE_WEB = 32,
    F_MQTT_AUTH = 64,
    F_SMTP_AUTH = 128,
    F_MQTT_CERT = 256,
};

struct config_key {
    const char *key;
    enum key_type type;
    const char *def; /* NULL: unset; "" for UINT: computed after load */
    size_t offset;
    unsigned flags;
    unsigned min, max; /* T_UINT bounds */
    /* returns NULL if valid, else a short reason */
    const char *(*validate)(const char *value);
};

static const char *v_jwt_secret(const char *v)
{
    return strlen(v) >= 32 ? NULL : "must be at least 32 bytes";
}

static const char *v_hex64(const char *v)
{
    unsigned char tmp[32];
    return ink_hex_decode(v, strlen(v), tmp, sizeof tmp) ? NULL
                                                         : "must be exactly 64 hex characters";
}

static const char *v_mqtt_url(const char *v)
{
    if (strncmp(v, "mqtt://", 7) != 0 && strncmp(v, "mqtts://", 8) != 0)
        return "must start with mqtt:// or mqtts://";
    return NULL;
}

static const char *v_log_format(const char *v)
{
    return strcmp(v, "json") == 0 || strcmp(v, "text") == 0 ? NULL : "must be json or text";
}

static const char *v_log_level(const char *v)
{
    static const char *const ok[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (strcmp(v, ok[i]) == 0)
            return NULL;
    return "must be one of debug, info, warn, error";
}

static const char *v_http_url(const char *v)
{
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
        return "must be an http:// or https:// URL";
    return NULL;
}

/* An upstream that receives secrets (Stripe's key, an OAuth client secret or code) or hands out
 * what must not be forged (signing keys): https, or plain http only to this machine (the fakes
 * in tests). */
static const char *v_secure_url(const char *v)
{
    if (strncmp(v, "https://", 8) == 0)
        return v[8] && !strpbrk(v, " \t\r\n") ? NULL : "must be an https:// URL";
    static const char *const loopback[] = {"http://127.0.0.1", "http://localhost", "http://[::1]"};
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++) {
        size_t n = strlen(loopback[i]);
        if (strncmp(v, loopback[i], n) == 0 && (v[n] == '\0' || v[n] == ':' || v[n] == '/'))
            return NULL;
    }
    return "must be an https:// URL (http:// only for 127.0.0.1, localhost or [::1])";
}

/* A value that goes into an HTTP header or form field as it is: visible ASCII, no spaces. */
static const char *v_token(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return "must be printable ASCII without spaces";
    return NULL;
}

/* The broker login goes into MQTT CONNECT as it is: no control characters, no bytes that a
 * broker could read differently from what the operator typed. */
static const char *v_printable(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            return "must be printable ASCII";
    return NULL;
}

static const char *v_smtp_url(const char *v)
{
    return ink_smtp_url_problem(v);
}

static const char *v_mail_from(const char *v)
{
    char addr[INK_MAIL_ADDRESS_MAX + 1];
    return ink_mail_address_of(v, addr) ? NULL
                                        : "must be an address, or a name and <address>, without "
                                          "control characters";
}

/* Checked at start, so a wrong path fails there and not as a retried mail an hour later. */
static const char *v_readable_file(const char *v)
{
    return access(v, R_OK) == 0 ? NULL : "must name a readable file";
}

/* The portal's base URL goes into every mail link as it is. */
static const char *v_portal_url(const char *v)
{
    const char *why = v_http_url(v);
    return why ? why : v_token(v);
}

static const char *v_redirect(const char *v)
{
    /* the desktop hand-off uses a custom scheme such as inklet:// */
    const char *colon = strstr(v, "://");
    if (!colon || colon == v)
        return "must be an absolute URL";
    for (const char *p = v; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '+' && *p != '-' && *p != '.')
            return "must be an absolute URL";
    return NULL;
}

/* An origin is scheme://host[:port] with nothing after it. */
static const char *v_origins(const char *v)
{
    char *copy = ink_strdup(v), *save = NULL;
    const char *err = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && !err; tok = strtok_r(NULL, ",", &save)) {
        tok = ink_trim(tok);
        const char *rest = NULL;
        if (strncmp(tok, "https://", 8) == 0)
            rest = tok + 8;
        else if (strncmp(tok, "http://", 7) == 0)
            rest = tok + 7;
        if (!rest || !*rest || strchr(rest, '/') || strchr(rest, '*'))
            err = "must be comma-separated origins like https://portal.iminklet.com";
    }
    free(copy);
    return err;
}

static const char *v_cidrs(const char *v)
{
    struct ink_cidr_list list;
    if (!ink_cidr_list_parse(&list, v))
        return "must be comma-separated IPv4/IPv6 addresses or CIDRs";
    ink_cidr_list_free(&list);
    return NULL;
}

#define OFF(field) offsetof(struct ink_config, field)
#define S(k, d, f, flags, val)                                                                     \
    {                                                                                              \
        k, T_STR, d, OFF(f), flags, 0, 0, val                                                      \
    }
#define U(k, d, f, lo, hi)                                                                         \
    {                                                                                              \
        k, T_UINT, d, OFF(f), 0, lo, hi, NULL                                                      \
    }
#define R(k, d, f)                                                                                 \
    {                                                                                              \
        k, T_RATE, d, OFF(f), 0, 0, 0, NULL                                                        \
    }

static const struct config_key CONFIG_KEYS[] = {
    U("PORT", "4000", port, 1, 65535),
    S("LISTEN_ADDR", "0.0.0.0", listen_addr, 0, NULL),
    U("HTTP_THREADS", "", http_threads, 1, 256),
    U("HTTP_CONNECTION_TIMEOUT", "30", http_conn_timeout, 1, 3600),
    U("HTTP_MAX_CONNECTIONS", "4096", http_max_conns, 1, 1000000),
    U("HTTP_MAX_CONNECTIONS_PER_IP", "512", http_max_conns_per_ip, 1, 1000000),
    S("CORS_ORIGINS", "https://portal.iminklet.com", cors_origins, 0, v_origins),
    S("TRUSTED_PROXIES", "", trusted_proxies, 0, v_cidrs),
    S("DATABASE_URL", NULL, database_url, F_SECRET | F_REQ_SERVE | F_REQ_MIGRATE, NULL),
    U("DB_POOL_SIZE", "", db_pool_size, 1, 1024),
    U("DB_TIMEOUT", "3", db_timeout, 1, 600),
    U("MIGRATE_LOCK_TIMEOUT", "60", migrate_lock_timeout, 1, 86400),
    S("JWT_SECRET", NULL, jwt_secret, F_SECRET | F_REQ_SERVE, v_jwt_secret),
    S("JWT_PREVIOUS_SECRET", NULL, jwt_previous_secret, F_SECRET, v_jwt_secret),
    U("ACCESS_TOKEN_TTL", "900", access_token_ttl, 10, 86400),
    U("REFRESH_IDLE_TTL", "2592000", refresh_idle_ttl, 1, 31536000),
    U("SESSION_MAX_TTL", "7776000", session_max_ttl, 1, 315360000),
    U("REFRESH_REUSE_GRACE", "10", refresh_reuse_grace, 0, 3600),
    S("FACTORY_SECRET", NULL, factory_secret, F_SECRET | F_REQ_SERVE, v_hex64),
    U("CLAIM_CODE_TTL", "600", claim_code_ttl, 1, 86400),
    U("COMMAND_TTL", "86400", command_ttl, 1, 31536000),
    S("MQTT_URL", "mqtt://127.0.0.1:1883", mqtt_url, 0, v_mqtt_url),
    S("MQTT_CA_FILE", NULL, mqtt_ca_file, 0, v_readable_file),
    S("MQTT_CERT_FILE", NULL, mqtt_cert_file, F_MQTT_CERT, v_readable_file),
    S("MQTT_KEY_FILE", NULL, mqtt_key_file, F_MQTT_CERT, v_readable_file),
    S("MQTT_CLIENT_ID", "inklet-backend", mqtt_client_id, 0, NULL),
    S("MQTT_SHARE_GROUP", "", mqtt_share_group, 0, NULL),
    S("MQTT_USERNAME", NULL, mqtt_username, F_SECRET | F_MQTT_AUTH, v_printable),
    S("MQTT_PASSWORD", NULL, mqtt_password, F_SECRET | F_MQTT_AUTH, v_printable),
    S("STRIPE_SECRET_KEY", NULL, stripe_secret_key, F_SECRET | F_BILLING, v_token),
    S("STRIPE_WEBHOOK_SECRET", NULL, stripe_webhook_secret, F_SECRET | F_BILLING, v_token),
    S("STRIPE_PRICE_MONTHLY", NULL, stripe_price_monthly, F_BILLING, v_token),
    S("STRIPE_PRICE_YEARLY", NULL, stripe_price_yearly, F_BILLING, v_token),
    S("STRIPE_API_BASE", "https://api.stripe.com", stripe_api_base, 0, v_secure_url),
    U("STRIPE_TIMEOUT", "10", stripe_timeout, 1, 120),
    S("BILLING_SUCCESS_URL", NULL, billing_success_url, F_BILLING, v_http_url),
    S("BILLING_CANCEL_URL", NULL, billing_cancel_url, F_BILLING, v_http_url),
    S("BILLING_PORTAL_RETURN_URL", NULL, billing_portal_return_url, F_BILLING, v_http_url),
    S("GOOGLE_CLIENT_IDS", NULL, google_client_ids, F_GOOGLE_WEB, v_token),
    S("GOOGLE_CLIENT_SECRET", NULL, google_client_secret, F_SECRET | F_GOOGLE_WEB, v_token),
    S("GOOGLE_REDIRECT_URL", NULL, google_redirect_url, F_GOOGLE_WEB, v_http_url),
    S("GOOGLE_AUTH_URL", "https://accounts.google.com/o/oauth2/v2/auth", google_auth_url, 0,
      v_secure_url),
    S("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token", google_token_url, 0, v_secure_url),
    S("GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs", google_jwks_url, 0,
      v_secure_url),
    S("APPLE_CLIENT_IDS", NULL, apple_client_ids, F_APPLE_WEB, v_token),
    S("APPLE_TEAM_ID", NULL, apple_team_id, F_APPLE_WEB, v_token),
    S("APPLE_KEY_ID", NULL, apple_key_id, F_APPLE_WEB, v_token),
    S("APPLE_PRIVATE_KEY_FILE", NULL, apple_private_key_file, F_APPLE_WEB, NULL),
    S("APPLE_REDIRECT_URL", NULL, apple_redirect_url, F_APPLE_WEB, v_http_url),
    S("APPLE_AUTH_URL", "https://appleid.apple.com/auth/authorize", apple_auth_url, 0,
      v_secure_url),
    S("APPLE_TOKEN_URL", "https://appleid.apple.com/auth/token", apple_token_url, 0, v_secure_url),
    S("APPLE_JWKS_URL", "https://appleid.apple.com/auth/keys", apple_jwks_url, 0, v_secure_url),
    S("APPLE_REVOKE_URL", "https://appleid.apple.com/auth/revoke", apple_revoke_url, 0,
      v_secure_url),
    S("TOKEN_ENCRYPTION_KEY", NULL, token_encryption_key, F_SECRET | F_APPLE_WEB, v_hex64),
    U("OAUTH_TIMEOUT", "10", oauth_timeout, 1, 60),
    S("OAUTH_WEB_REDIRECT", "https://portal.iminklet.com/auth/callback", oauth_web_redirect, 0,
      v_redirect),
    S("OAUTH_DESKTOP_REDIRECT", "inklet://auth/callback", oauth_desktop_redirect, 0, v_redirect),
    S("SMTP_URL", NULL, smtp_url, 0, v_smtp_url),
    S("SMTP_USER", NULL, smtp_user, F_SMTP_AUTH, v_printable),
    S("SMTP_PASSWORD", NULL, smtp_password, F_SECRET | F_SMTP_AUTH, v_printable),
    S("SMTP_CA_FILE", NULL, smtp_ca_file, 0, v_readable_file),
    U("SMTP_TIMEOUT", "30", smtp_timeout, 1, 120),
    S("MAIL_FROM", "Inklet <no-reply@iminklet.com>", mail_from, 0, v_mail_from),
    S("PORTAL_URL", "https://portal.iminklet.com", portal_url, 0, v_portal_url),
    U("PASSWORD_RESET_TTL", "1800", password_reset_ttl, 1, 86400),
    U("EMAIL_VERIFY_TTL", "86400", email_verify_ttl, 1, 2592000),
    U("MAIL_RETRY_BASE", "60", mail_retry_base, 1, 3600),
    R("RATE_LIMIT_LOGIN", "20/60", rate_login),
    R("RATE_LIMIT_REGISTER", "10/60", rate_register),
    R("RATE_LIMIT_REFRESH", "60/60", rate_refresh),
    R("RATE_LIMIT_BIND", "10/60", rate_bind),
    R("RATE_LIMIT_MAIL", "5/3600", rate_mail),
    U("LOGIN_BACKOFF_AFTER", "5", login_backoff_after, 1, 1000000),
    U("LOGIN_BACKOFF_MAX", "900", login_backoff_max, 1, 86400),
    U("ARGON2_MEMORY_KIB", "19456", argon2_memory_kib, 8, INK_ARGON2_MAX_M_KIB),
    U("ARGON2_ITERATIONS", "2", argon2_iterations, 1, INK_ARGON2_MAX_T),
    U("ARGON2_PARALLELISM", "1", argon2_parallelism, 1, INK_ARGON2_MAX_P),
    U("HASH_CONCURRENCY", "", hash_concurrency, 1, 256),
    S("METRICS_TOKEN", NULL, metrics_token, F_SECRET, NULL),
    S("LOG_LEVEL", "info", log_level, 0, v_log_level),
    S("LOG_FORMAT", "json", log_format, 0, v_log_format),
    U("SHUTDOWN_GRACE", "10", shutdown_grace, 0, 3600),
};

#define NKEYS (sizeof CONFIG_KEYS / sizeof *CONFIG_KEYS)

/* Legacy singular spellings accepted for the multi-valued client id keys. */
static const struct {
    const char *alias, *key;
} ALIASES[] = {{"GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_IDS"}, {"APPLE_CLIENT_ID", "APPLE_CLIENT_IDS"}};

static const struct config_key *find_key(const char *name)
{
    for (size_t i = 0; i < sizeof ALIASES / sizeof *ALIASES; i++)
        if (strcmp(name, ALIASES[i].alias) == 0)
            name = ALIASES[i].key;
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(CONFIG_KEYS[i].key, name) == 0)
            return &CONFIG_KEYS[i];
    return NULL;
}

/* Setups that are all or nothing: setting any trigger requires every key with the flag. The
 * browser sign-in flows need their secret and redirect; the native ID-token route needs only the
 * client ids, so those alone trigger nothing. */
#define GROUP_TRIGGERS 4
static const struct {
    unsigned flag;
    const char *triggers[GROUP_TRIGGERS];
    const char *what;
} GROUPS[] = {
    {F_BILLING, {"STRIPE_SECRET_KEY"}, "billing is all or nothing"},
    {F_GOOGLE_WEB, {"GOOGLE_CLIENT_SECRET", "GOOGLE_REDIRECT_URL"}, "Google browser sign-in"},
    {F_APPLE_WEB,
     {"APPLE_TEAM_ID", "APPLE_KEY_ID", "APPLE_PRIVATE_KEY_FILE", "APPLE_REDIRECT_URL"},
     "Apple browser sign-in; TOKEN_ENCRYPTION_KEY protects the stored Apple tokens"},
    {F_MQTT_AUTH, {"MQTT_USERNAME", "MQTT_PASSWORD"}, "broker login is both or neither"},
    {F_MQTT_CERT,
     {"MQTT_CERT_FILE", "MQTT_KEY_FILE"},
     "the broker client certificate is both or neither"},
    {F_SMTP_AUTH, {"SMTP_USER", "SMTP_PASSWORD"}, "the SMTP login is both or neither"},
};

/* TLS to the broker is all or nothing too. mqtts:// without MQTT_CA_FILE would fail only when
 * libmosquitto is set up (it has no default CA store); certificate files beside an mqtt:// URL
 * mean the operator meant TLS and would get plain text. */
static bool mqtt_tls_consistent(const struct ink_config *cfg, const bool rejected[], FILE *err)
{
    bool tls = cfg->mqtt_url && strncmp(cfg->mqtt_url, "mqtts://", 8) == 0;
    if (rejected[find_key("MQTT_URL") - CONFIG_KEYS])
        return true; /* its own line already */
    if (tls && !cfg->mqtt_ca_file && !rejected[find_key("MQTT_CA_FILE") - CONFIG_KEYS]) {
        fprintf(err, "config: MQTT_CA_FILE is required for an mqtts:// MQTT_URL (the CAs that sign "
                     "the broker's certificate; AWS IoT Core: AmazonRootCA1.pem)\n");
        return false;
    }
    static const char *const tls_keys[] = {"MQTT_CA_FILE", "MQTT_CERT_FILE", "MQTT_KEY_FILE"};
    for (size_t i = 0; !tls && i < sizeof tls_keys / sizeof *tls_keys; i++) {
        const struct config_key *k = find_key(tls_keys[i]);
        if (*(char **)((char *)cfg + k->offset)) {
            fprintf(err, "config: %s is set but MQTT_URL is plain mqtt://; use mqtts://\n", k->key);
            return false;
        }
    }
    return true;
}

bool ink_config_parse_rate(const char *s, struct ink_rate *r)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    unsigned long req = strtoul(s, &end, 10);
    if (errno || *end != '/' || req == 0 || req > UINT_MAX)
        return false;
    const char *p = end + 1;
    if (!isdigit((unsigned char)*p))
        return false;
    unsigned long sec = strtoul(p, &end, 10);
    if (errno || *end != '\0' || sec == 0 || sec > 86400 * 365)
        return false;
    r->requests = (unsigned)req;
    r->seconds = (unsigned)sec;
    return true;
}

static bool parse_uint(const char *s, unsigned *out)
{
    if (!isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end != '\0' || v > UINT_MAX)
        return false;
    *out = (unsigned)v;
    return true;
}

/* Stores one raw value into the struct; reports a precise line on failure. */
static bool set_value(struct ink_config *cfg, const struct config_key *k, const char *value,
                      const char *origin, FILE *err)
{
    char *base = (char *)cfg + k->offset;
    switch (k->type) {
    case T_STR: {
        char **slot = (char **)base;
        /* KEY= means unset: the default (or nothing) stays, validation is not bypassed */
        if (!*value) {
            free(*slot);
            *slot = k->def ? ink_strdup(k->def) : NULL;
            return true;
        }
        const char *why = k->validate ? k->validate(value) : NULL;
        if (why) {
            fprintf(err, "config: %s %s (from %s)\n", k->key, why, origin);
            return false;
        }
        free(*slot);
        *slot = ink_strdup(value);
        return true;
    }
    case T_UINT: {
        unsigned v;
        if (!parse_uint(value, &v) || v < k->min || v > k->max) {
            fprintf(err, "config: %s must be an integer from %u to %u (from %s)\n", k->key, k->min,
                    k->max, origin);
            return false;
        }
        *(unsigned *)base = v;
        return true;
    }
    case T_RATE:
        if (!ink_config_parse_rate(value, (struct ink_rate *)base)) {
            fprintf(err, "config: %s must look like requests/seconds, e.g. 20/60 (from %s)\n",
                    k->key, origin);
            return false;
        }
        return true;
    }
    return false;
}

static bool load_file(struct ink_config *cfg, const char *path, bool seen[], bool rejected[],
                      FILE *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(err, "config: cannot open config file %s\n", path);
        return false;
    }
    bool ok = true;
    char line[4096];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = ink_trim(line);
        if (!*s || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = ink_trim(s + 7);
        char *eq = strchr(s, '=');
        if (!eq) {
            fprintf(err, "config: %s:%u: expected KEY=VALUE\n", path, lineno);
            ok = false;
            continue;
        }
        *eq = '\0';
        char *key = ink_trim(s), *value = ink_trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        const struct config_key *k = find_key(key);
        if (!k) {
            fprintf(err, "config: %s:%u: unknown key %s\n", path, lineno, key);
            ok = false;
            continue;
        }
        char origin[300];
        snprintf(origin, sizeof origin, "%s:%u", path, lineno);
        if (!set_value(cfg, k, value, origin, err)) {
            ok = false;
            rejected[k - CONFIG_KEYS] = true;
        }
        seen[k - CONFIG_KEYS] = *value != '\0';
    }
    fclose(f);
    return ok;
}

static const char *env_lookup(const char *key, void *ctx)
{
    (void)ctx;
    return getenv(key);
}

bool ink_config_load(struct ink_config *cfg, const char *file, enum ink_config_mode mode, FILE *err)
{
    return ink_config_load_from(cfg, file, mode, env_lookup, NULL, err);
}

bool ink_config_load_from(struct ink_config *cfg, const char *file, enum ink_config_mode mode,
                          const char *(*lookup)(const char *key, void *ctx), void *ctx, FILE *err)
{
    memset(cfg, 0, sizeof *cfg);
    /* seen: set to a non-empty value by the file or the environment */
    bool seen[NKEYS] = {false}, rejected[NKEYS] = {false};
    bool ok = true;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &CONFIG_KEYS[i];
        if (k->def && !(k->type == T_UINT && !*k->def))
            ok &= set_value(cfg, k, k->def, "default", err);
    }
    if (file)
        ok &= load_file(cfg, file, seen, rejected, err);
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &CONFIG_KEYS[i];
        const char *v = lookup(k->key, ctx);
        for (size_t a = 0; !v && a < sizeof ALIASES / sizeof *ALIASES; a++)
            if (strcmp(ALIASES[a].key, k->key) == 0)
                v = lookup(ALIASES[a].alias, ctx);
        if (v) {
            if (!set_value(cfg, k, v, "environment", err)) {
                ok = false;
                rejected[i] = true;
            }
            seen[i] = *v != '\0';
        }
    }
    unsigned required = mode == INK_CONFIG_SERVE ? F_REQ_SERVE : F_REQ_MIGRATE;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &CONFIG_KEYS[i];
        if (!(k->flags & required) || k->type != T_STR)
            continue;
        char *v = *(char **)((char *)cfg + k->offset);
        if ((!v || !*v) && !rejected[i]) { /* a rejected value already has its line */
            fprintf(err, "config: %s is required\n", k->key);
            ok = false;
        }
    }
    /* all-or-nothing groups: once one trigger key is set, every key of the group is required */
    for (size_t g = 0; mode == INK_CONFIG_SERVE && g < sizeof GROUPS / sizeof *GROUPS; g++) {
        const char *trigger = NULL;
        for (size_t t = 0; !trigger && t < GROUP_TRIGGERS && GROUPS[g].triggers[t]; t++) {
            const struct config_key *k = find_key(GROUPS[g].triggers[t]);
            char *v = *(char **)((char *)cfg + k->offset);
            if (v && *v)
                trigger = k->key;
        }
        for (size_t i = 0; trigger && i < NKEYS; i++) {
            const struct config_key *k = &CONFIG_KEYS[i];
            if (!(k->flags & GROUPS[g].flag) || rejected[i])
                continue;
            char *v = *(char **)((char *)cfg + k->offset);
            if (!v || !*v) {
                fprintf(err, "config: %s is required when %s is set (%s)\n", k->key, trigger,
                        GROUPS[g].what);
                ok = false;
            }
        }
    }
    if (mode == INK_CONFIG_SERVE && !mqtt_tls_consistent(cfg, rejected, err))
        ok = false;
    /* instances of one share group must not share a client id, or the broker keeps kicking
     * one off for the other: left at its default, the id gets a per-process suffix */
    cfg->mqtt_client_id_unique = cfg->mqtt_share_group && *cfg->mqtt_share_group &&
                                 !seen[find_key("MQTT_CLIENT_ID") - CONFIG_KEYS];
    /* argon2 needs 8 KiB per lane: below that no hash (and no timing-equalizing dummy) works */
    if (cfg->argon2_memory_kib < 8 * cfg->argon2_parallelism) {
        fprintf(err, "config: ARGON2_MEMORY_KIB must be at least 8 x ARGON2_PARALLELISM (%u KiB)\n",
                8 * cfg->argon2_parallelism);
        ok = false;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (!cfg->http_threads)
        cfg->http_threads = (unsigned)(cores < 2 ? 2 : cores);
    if (!cfg->db_pool_size)
        cfg->db_pool_size = 2 * cfg->http_threads;
    if (!cfg->hash_concurrency)
        cfg->hash_concurrency = (unsigned)cores;
    return ok;
}

void ink_config_print(const struct ink_config *cfg, FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &CONFIG_KEYS[i];
        const char *base = (const char *)cfg + k->offset;
        switch (k->type) {
        case T_STR: {
            const char *v = *(char *const *)base;
            if (!v || !*v)
                fprintf(out, "%s=<unset>\n", k->key);
            else if (k->flags & F_SECRET)
                fprintf(out, "%s=<redacted>\n", k->key);
            else if (k->offset == OFF(mqtt_client_id) && cfg->mqtt_client_id_unique)
                fprintf(out,
                        "%s=<%s-HOST-PID-RANDOM: unique per process, as MQTT_SHARE_GROUP is set>\n",
                        k->key, v);
            else
                fprintf(out, "%s=%s\n", k->key, v);
            break;
        }
        case T_UINT:
            fprintf(out, "%s=%u\n", k->key, *(const unsigned *)base);
            break;
        case T_RATE: {
            const struct ink_rate *r = (const struct ink_rate *)base;
            fprintf(out, "%s=%u/%u\n", k->key, r->requests, r->seconds);
            break;
        }
        }
    }
}

void ink_config_free(struct ink_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (CONFIG_KEYS[i].type != T_STR)
            continue;
        char **slot = (char **)((char *)cfg + CONFIG_KEYS[i].offset);
        free(*slot);
        *slot = NULL;
    }
}
