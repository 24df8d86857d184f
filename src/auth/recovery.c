/* Account recovery by email (contract §2.2, docs/email.md): verification links, password reset
 * links and the mails that carry them. A link token is 32 CSPRNG bytes in base64url, stored only
 * as its SHA-256, and spent by one DELETE ... RETURNING, so two requests with one token never
 * both succeed, whichever instances they reach. */
#include "inklet/accounts.h"

#include "accounts_internal.h"

#include "inklet/app.h"
#include "inklet/ids.h"
#include "inklet/outbox.h"
#include "inklet/password.h"
#include "inklet/token.h"
#include "inklet/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct ink_err MAIL_NOT_CONFIGURED = {"mail_not_configured",
                                                   "Mail is not configured on this server."};
static const struct ink_err MAIL_THROTTLED = {
    "rate_limited", "Too many mails were requested for this address; retry later."};

/* A new link token: raw (for the mail) and the hex of its SHA-256 (for the database). */
struct link_token {
    char raw[44];
    char hash_hex[65];
};

static void link_token_new(struct link_token *t)
{
    unsigned char h[32];
    ink_refresh_token_new(t->raw);
    ink_refresh_token_hash(t->raw, h);
    ink_hex_encode(h, sizeof h, t->hash_hex);
}

/* The stored form of a presented token; false when it cannot be one of ours. */
static bool link_token_hash(const char *raw, char hash_hex[65])
{
    if (!raw || !ink_refresh_token_wellformed(raw))
        return false;
    unsigned char h[32];
    ink_refresh_token_hash(raw, h);
    ink_hex_encode(h, sizeof h, hash_hex);
    return true;
}

static void uint_str(unsigned v, char out[16])
{
    snprintf(out, 16, "%u", v);
}

/* ---- verification ------------------------------------------------------------------------- */

static const struct ink_sql SQL_VERIFY_TOKEN = {
    "email_verify_token",
    "INSERT INTO email_tokens (token_hash, user_id, purpose, email, expires_at)"
    " SELECT decode($2, 'hex'), id, 'verify', email, now() + make_interval(secs => $3::int)"
    " FROM users WHERE id = $1::uuid"};

enum ink_status ink_account_queue_verification(struct ink_db *db, const char *user_id)
{
    if (!ink_mail_configured())
        return INK_OK;
    struct link_token t;
    link_token_new(&t);
    char ttl[16];
    uint_str(ink_app.cfg.email_verify_ttl, ttl);
    enum ink_status st =
        ink_db_exec(db, &SQL_VERIFY_TOKEN, 3, (const char *[]){user_id, t.hash_hex, ttl}, NULL);
    if (st == INK_OK)
        st = ink_outbox_queue(db, INK_MAIL_VERIFY_EMAIL, user_id, t.raw, NULL,
                              ink_app.cfg.email_verify_ttl, NULL);
    return st;
}

/* Spends the token; marks the address verified if it is still the account's. One row: whether
 * the token was alive, then the user (NULL columns when it was not alive, or the account's
 * address has changed since the mail). */
static const struct ink_sql SQL_VERIFY = {
    "email_verify",
    "WITH tok AS (DELETE FROM email_tokens WHERE token_hash = decode($1, 'hex')"
    "  AND purpose = 'verify' RETURNING user_id, email, expires_at > now() AS live),"
    " upd AS (UPDATE users u SET email_verified_at = COALESCE(u.email_verified_at, now()),"
    "  updated_at = now() FROM tok WHERE u.id = tok.user_id AND tok.live AND u.email = tok.email"
    "  RETURNING u.id, u.email, u.username, extract(epoch FROM u.created_at)::bigint,"
    "  extract(epoch FROM u.updated_at)::bigint)"
    " SELECT upd.*, tok.live FROM tok LEFT JOIN upd ON upd.id = tok.user_id"};

enum ink_status ink_account_verify_email(const char *token, json_t **user, struct ink_err *err)
{
    *user = NULL;
    char hash[65];
    static const struct ink_err invalid = {"invalid_verification_token",
                                           "This verification link is not valid."};
    if (!ink_mail_configured()) {
        *err = MAIL_NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    if (!link_token_hash(token, hash)) {
        *err = invalid;
        return INK_INVALID;
    }
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_VERIFY, 1, (const char *[]){hash}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) != 1 || ink_db_str(r, 0, 5) == NULL) {
        st = INK_INVALID;
        *err = invalid;
    } else if (PQgetvalue(r, 0, 5)[0] != 't') {
        st = INK_GONE;
        *err = (struct ink_err){"verification_token_expired",
                                "This verification link has expired; ask for a new one."};
    } else if (ink_db_str(r, 0, 0) == NULL) {
        st = INK_INVALID; /* sent to an address the account no longer has */
        *err = invalid;
    } else {
        *user = ink_user_json(r, 0);
        json_object_set_new(*user, "emailVerified", json_true());
    }
    PQclear(r);
    return st;
}

static const struct ink_sql SQL_RESEND_LOOK = {
    "email_resend_look",
    "SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE"};

enum ink_status ink_account_resend_verification(const char *user_id, unsigned *retry_after,
                                                struct ink_err *err)
{
    if (!ink_mail_configured()) {
        *err = MAIL_NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    struct ink_db *db;
    PGresult *r = NULL;
    bool queued = false;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK ||
        (st = ink_db_exec(db, &SQL_RESEND_LOOK, 1, (const char *[]){user_id}, &r)) != INK_OK)
        goto out;
    if (PQntuples(r) != 1) {
        st = INK_UNAUTHORIZED; /* the token outlived the account */
        goto out;
    }
    if (PQgetvalue(r, 0, 1)[0] == 't')
        goto out; /* already verified: nothing to send, the same answer */
    if ((st = ink_mail_throttle_take(db, PQgetvalue(r, 0, 0), retry_after)) != INK_OK)
        goto out;
    if (*retry_after) {
        *err = MAIL_THROTTLED;
        st = INK_RATE_LIMITED;
        goto out;
    }
    if ((st = ink_account_queue_verification(db, user_id)) == INK_OK &&
        (st = ink_db_simple(db, "COMMIT")) == INK_OK)
        queued = true;
out:
    PQclear(r);
    ink_db_release(db); /* rolls back what did not commit */
    if (queued)
        ink_outbox_kick();
    return st;
}

/* ---- password reset ----------------------------------------------------------------------- */

/* Always one row: the account with that address, if any (NULL columns otherwise), whether it has
 * a password, its providers. An account with a password gets a new reset token, and its older
 * ones are void. */
static const struct ink_sql SQL_FORGOT = {
    "password_forgot",
    "WITH u AS (SELECT id, password_hash IS NOT NULL AS has_password,"
    "  (SELECT string_agg(provider, ',' ORDER BY provider DESC) FROM oauth_identities o"
    "   WHERE o.user_id = users.id) AS providers FROM users WHERE email = $1),"
    " old AS (DELETE FROM email_tokens e USING u WHERE e.user_id = u.id"
    "  AND e.purpose = 'reset' AND u.has_password),"
    " tok AS (INSERT INTO email_tokens (token_hash, user_id, purpose, email, expires_at)"
    "  SELECT decode($2, 'hex'), id, 'reset', $1, now() + make_interval(secs => $3::int)"
    "  FROM u WHERE has_password)"
    " SELECT u.id, u.has_password, u.providers FROM (SELECT 1) one LEFT JOIN u ON true"};

/* "google,apple" → "Google or Apple" (DESC order above puts Google first). */
static void provider_names(const char *list, char *out, size_t n)
{
    out[0] = '\0';
    size_t len = 0;
    while (list && *list && len < n) {
        size_t k = strcspn(list, ",");
        const char *name = k == 6 && strncmp(list, "google", 6) == 0  ? "Google"
                           : k == 5 && strncmp(list, "apple", 5) == 0 ? "Apple"
                                                                      : NULL;
        if (name)
            len += (size_t)snprintf(out + len, n - len, "%s%s", len ? " or " : "", name);
        list += k + (list[k] == ',');
    }
}

enum ink_status ink_account_forgot_password(const char *email_in, unsigned *retry_after,
                                            struct ink_err *err)
{
    char email[INK_EMAIL_MAX + 1];
    if (!email_in || !ink_email_normalize(email_in, email)) {
        *err = (struct ink_err){"invalid_email", "A valid email address is required."};
        return INK_INVALID;
    }
    if (!ink_mail_configured()) {
        *err = MAIL_NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    /* the same statements, in the same order, whether or not the address has an account, so
     * neither the answer nor its timing tells */
    struct link_token t;
    link_token_new(&t);
    char ttl[16], providers[32];
    uint_str(ink_app.cfg.password_reset_ttl, ttl);
    struct ink_db *db;
    PGresult *r = NULL;
    bool queued = false;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK ||
        (st = ink_mail_throttle_take(db, email, retry_after)) != INK_OK)
        goto out;
    if (*retry_after) {
        *err = MAIL_THROTTLED;
        st = INK_RATE_LIMITED;
        goto out;
    }
    if ((st = ink_db_exec(db, &SQL_FORGOT, 3, (const char *[]){email, t.hash_hex, ttl}, &r)) !=
        INK_OK)
        goto out;
    bool has_password = PQgetvalue(r, 0, 1)[0] == 't';
    provider_names(ink_db_str(r, 0, 2), providers, sizeof providers);
    st = ink_outbox_queue(db, has_password ? INK_MAIL_PASSWORD_RESET : INK_MAIL_RESET_OAUTH_ONLY,
                          ink_db_str(r, 0, 0), has_password ? t.raw : NULL,
                          has_password ? NULL : providers,
                          has_password ? ink_app.cfg.password_reset_ttl : 0, &queued);
    if (st == INK_OK)
        st = ink_db_simple(db, "COMMIT");
out:
    PQclear(r);
    ink_db_release(db);
    if (st == INK_OK && queued)
        ink_outbox_kick();
    return st;
}

/* Whether the token is there and alive, before the password is hashed (a made-up token costs
 * no hash). */
static const struct ink_sql SQL_RESET_PEEK = {
    "password_reset_peek", "SELECT expires_at > now() FROM email_tokens"
                           " WHERE token_hash = decode($1, 'hex') AND purpose = 'reset'"};

/* Spends the token and sets the password; the link reached the inbox, so the address is
 * verified if it is still the one the link was sent to. */
static const struct ink_sql SQL_RESET = {
    "password_reset",
    "WITH tok AS (DELETE FROM email_tokens WHERE token_hash = decode($1, 'hex')"
    "  AND purpose = 'reset' AND expires_at > now() RETURNING user_id, email),"
    " others AS (DELETE FROM email_tokens e USING tok WHERE e.user_id = tok.user_id"
    "  AND e.purpose = 'reset' AND e.token_hash <> decode($1, 'hex')),"
    " failures AS (DELETE FROM login_failures f USING tok WHERE f.key = 'user:' || tok.user_id)"
    " UPDATE users u SET password_hash = $2, updated_at = now(),"
    "  email_verified_at = CASE WHEN u.email = tok.email"
    "   THEN COALESCE(u.email_verified_at, now()) ELSE u.email_verified_at END"
    " FROM tok WHERE u.id = tok.user_id RETURNING u.id"};

enum ink_status ink_account_reset_password(const char *token, const char *new_password,
                                           struct ink_err *err)
{
    static const struct ink_err invalid = {"invalid_reset_token",
                                           "This password reset link is not valid."};
    static const struct ink_err expired = {"reset_token_expired",
                                           "This password reset link has expired."};
    if (!ink_mail_configured()) {
        *err = MAIL_NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    if (!new_password || !ink_password_policy_ok(new_password)) {
        *err = (struct ink_err){"invalid_password", "Password must be 8-1024 bytes long."};
        return INK_INVALID;
    }
    char hash[65];
    if (!link_token_hash(token, hash)) {
        *err = invalid;
        return INK_INVALID;
    }
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_RESET_PEEK, 1, (const char *[]){hash}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) != 1 || PQgetvalue(r, 0, 0)[0] != 't') {
        *err = PQntuples(r) == 1 ? expired : invalid;
        st = PQntuples(r) == 1 ? INK_GONE : INK_INVALID;
        PQclear(r);
        return st;
    }
    PQclear(r);
    char *phc = NULL;
    if ((st = ink_password_hash(new_password, &phc)) != INK_OK)
        return st;
    struct ink_db *db;
    char uid[INK_UUID_STRLEN + 1] = "";
    r = NULL;
    if ((st = ink_db_acquire(&db)) != INK_OK)
        goto out_free;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK ||
        (st = ink_db_exec(db, &SQL_RESET, 2, (const char *[]){hash, phc}, &r)) != INK_OK)
        goto out;
    if (PQntuples(r) != 1) {
        *err = invalid; /* a concurrent reset spent it first (or it expired just now) */
        st = INK_INVALID;
        goto out;
    }
    snprintf(uid, sizeof uid, "%s", PQgetvalue(r, 0, 0));
    if ((st = ink_session_revoke_all(db, uid, NULL, NULL)) == INK_OK &&
        (st = ink_outbox_queue(db, INK_MAIL_PASSWORD_WAS_RESET, uid, NULL, NULL, 0, NULL)) ==
            INK_OK)
        st = ink_db_simple(db, "COMMIT");
out:
    PQclear(r);
    ink_db_release(db);
    if (st == INK_OK) {
        ink_session_cache_forget_user(uid);
        ink_outbox_kick();
    }
out_free:
    free(phc);
    return st;
}

static const struct ink_sql SQL_PRUNE_LINKS = {
    "email_tokens_prune", "DELETE FROM email_tokens WHERE expires_at < now() - interval '1 day'"};

enum ink_status ink_account_prune_links(long long *count)
{
    return ink_db_affected(&SQL_PRUNE_LINKS, count);
}
