/** The daemon's configuration: one table of keys (src/core/config.c), loaded from an optional
 *  KEY=VALUE file and then the environment (the environment wins), validated at start. */
#ifndef INKLET_CONFIG_H
#define INKLET_CONFIG_H
#include <stdbool.h>
#include <stdio.h>

/** Bounds of the ARGON2_* keys; the PHC read-back bounds of inklet/password.h are the same. */
#define INK_ARGON2_MAX_M_KIB (1024u * 1024u)
#define INK_ARGON2_MAX_T 64u
#define INK_ARGON2_MAX_P 64u

struct ink_rate {
    unsigned requests;
    unsigned seconds;
};

struct ink_config {
    /* HTTP */
    unsigned port;
    char *listen_addr;
    unsigned http_threads;
    unsigned http_conn_timeout;     /* idle seconds before a connection is closed */
    unsigned http_max_conns;        /* total connections */
    unsigned http_max_conns_per_ip; /* connections from one peer address */
    char *cors_origins;             /* comma-separated allowlist */
    char *trusted_proxies;          /* comma-separated CIDRs */
    /* database */
    char *database_url;
    unsigned db_pool_size;
    unsigned db_timeout;           /* seconds: the longest a request waits for the database */
    unsigned migrate_lock_timeout; /* seconds: the longest `migrate` waits for any one lock */
    /* tokens */
    char *jwt_secret;
    char *jwt_previous_secret; /* NULL unless a key rotation is under way */
    unsigned access_token_ttl;
    unsigned refresh_idle_ttl;
    unsigned session_max_ttl;
    unsigned refresh_reuse_grace; /* seconds a rotated token is a lost race, not reuse */
    /* devices */
    char *factory_secret;
    unsigned claim_code_ttl;
    unsigned command_ttl; /* seconds an undelivered command is kept trying */
    char *mqtt_url;
    char *mqtt_ca_file, *mqtt_cert_file, *mqtt_key_file;
    char *mqtt_client_id;
    char *mqtt_share_group;
    char *mqtt_username, *mqtt_password; /* broker login (both or neither); NULL: none */
    bool mqtt_client_id_unique; /* derived: a share group and no explicit id → add a suffix */
    /* billing */
    char *stripe_secret_key, *stripe_webhook_secret;
    char *stripe_price_monthly, *stripe_price_yearly, *stripe_api_base;
    char *billing_success_url, *billing_cancel_url, *billing_portal_return_url;
    unsigned stripe_timeout; /* seconds: the budget of one Stripe operation, retries included */
    /* OAuth */
    char *google_client_ids, *google_client_secret, *google_redirect_url;
    char *google_auth_url, *google_token_url, *google_jwks_url;
    char *apple_client_ids, *apple_team_id, *apple_key_id, *apple_private_key_file;
    char *apple_redirect_url, *apple_auth_url, *apple_token_url, *apple_jwks_url;
    char *apple_revoke_url;
    char *token_encryption_key; /* 64 hex: the key Apple refresh tokens are encrypted under */
    unsigned oauth_timeout;     /* seconds: one provider exchange (token endpoint, JWKS) */
    char *oauth_web_redirect, *oauth_desktop_redirect;
    /* mail (contract §2.2); smtp_url NULL: the mail routes answer 503 and nothing is queued */
    char *smtp_url, *smtp_user, *smtp_password, *smtp_ca_file;
    char *mail_from, *portal_url;
    unsigned smtp_timeout;       /* seconds: one message handed to the SMTP server */
    unsigned password_reset_ttl; /* seconds a reset link works */
    unsigned email_verify_ttl;   /* seconds a verification link works */
    unsigned mail_retry_base;    /* seconds before the first retry; doubles up to 60 x */
    /* throttling */
    struct ink_rate rate_login, rate_register, rate_refresh, rate_bind, rate_mail;
    unsigned login_backoff_after;
    unsigned login_backoff_max;
    /* password hashing (argon2id) */
    unsigned argon2_memory_kib, argon2_iterations, argon2_parallelism;
    unsigned hash_concurrency;
    /* operations */
    char *metrics_token;
    char *log_level;
    char *log_format;
    unsigned shutdown_grace; /* seconds in-flight requests get after SIGTERM */
};

/** Which keys must be present: the server needs everything, `migrate` only the database. */
enum ink_config_mode { INK_CONFIG_SERVE, INK_CONFIG_MIGRATE };

/** Loads defaults, then `file` (may be NULL), then the environment. On error writes one line per
 *  bad key to `err` and returns false. The struct owns its strings (ink_config_free). */
bool ink_config_load(struct ink_config *cfg, const char *file, enum ink_config_mode mode,
                     FILE *err);
/** Loads from an explicit lookup function instead of the environment (for tests). */
bool ink_config_load_from(struct ink_config *cfg, const char *file, enum ink_config_mode mode,
                          const char *(*lookup)(const char *key, void *ctx), void *ctx, FILE *err);
/** Prints KEY=value for every key, secrets replaced by "<redacted>" (or "<unset>"). */
void ink_config_print(const struct ink_config *cfg, FILE *out);
void ink_config_free(struct ink_config *cfg);
/** Parses "N/S" into r; false on anything else. */
bool ink_config_parse_rate(const char *s, struct ink_rate *r);

#endif
