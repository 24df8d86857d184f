#include "inklet/accounts.h"

#include "accounts_internal.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/json.h"
#include "inklet/json_text.h"
#include "inklet/log.h"
#include "inklet/outbox.h"
#include "inklet/password.h"
#include "inklet/plan.h"
#include "inklet/validate.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DELETE_HOOKS 8

static struct {
    ink_account_delete_hook in_tx;
    ink_account_deleted_hook after;
} delete_hooks[MAX_DELETE_HOOKS];
static size_t delete_hook_count;

void ink_account_on_delete(ink_account_delete_hook in_tx, ink_account_deleted_hook after)
{
    if (delete_hook_count < MAX_DELETE_HOOKS) {
        delete_hooks[delete_hook_count].in_tx = in_tx;
        delete_hooks[delete_hook_count].after = after;
        delete_hook_count++;
    }
}

json_t *ink_user_json(const PGresult *r, int row)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:o}", "id", PQgetvalue(r, row, 0), "email",
                     PQgetvalue(r, row, 1), "username", PQgetvalue(r, row, 2), "createdAt",
                     ink_json_time(ink_db_ll(r, row, 3)), "updatedAt",
                     ink_json_time(ink_db_ll(r, row, 4)));
}

json_t *ink_auth_response(struct ink_tokens *t, json_t *user)
{
    json_t *body = json_pack("{s:s,s:s,s:o}", "accessToken", t->access, "refreshToken", t->refresh,
                             "user", user);
    ink_tokens_free(t);
    return body;
}

static enum ink_status conflict_err(struct ink_db *db, struct ink_err *err)
{
    if (strcmp(ink_db_conflict_constraint(db), "users_email_key") == 0)
        *err = (struct ink_err){"email_taken", "That email address is already registered."};
    else
        *err = (struct ink_err){"username_taken", "That username is already taken."};
    return INK_CONFLICT;
}

/* ---- register ----------------------------------------------------------------------------- */

static const struct ink_sql SQL_TAKEN = {
    "account_taken", "SELECT (SELECT count(*) FROM users WHERE email = $1),"
                     " (SELECT count(*) FROM users WHERE lower(username) = lower($2))"};

static const struct ink_sql SQL_INSERT_USER = {
    "account_insert",
    "INSERT INTO users (id, email, username, password_hash) VALUES ($1, $2, $3, $4)"
    " RETURNING " USER_COLUMNS};

enum ink_status ink_account_register(const char *email_in, const char *username,
                                     const char *password, const struct ink_client *client,
                                     struct ink_tokens *tokens, json_t **user, struct ink_err *err)
{
    char email[INK_EMAIL_MAX + 1];
    *user = NULL;
    memset(tokens, 0, sizeof *tokens);
    if (!email_in || !ink_email_normalize(email_in, email)) {
        *err = (struct ink_err){"invalid_email", "A valid email address is required."};
        return INK_INVALID;
    }
    if (!username || !ink_username_valid(username)) {
        *err = (struct ink_err){"invalid_username",
                                "Username must be 3-32 characters of letters, digits, _ . or -."};
        return INK_INVALID;
    }
    if (!password || !ink_password_policy_ok(password)) {
        *err = (struct ink_err){"invalid_password", "Password must be 8-1024 bytes long."};
        return INK_INVALID;
    }
    /* cheap duplicate check first, so taken names do not cost a hash; the unique indexes
     * below remain the real guarantee */
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_TAKEN, 2, (const char *[]){email, username}, &r);
    if (st != INK_OK)
        return st;
    bool email_taken = strcmp(PQgetvalue(r, 0, 0), "0") != 0;
    bool name_taken = strcmp(PQgetvalue(r, 0, 1), "0") != 0;
    PQclear(r);
    if (email_taken) {
        *err = (struct ink_err){"email_taken", "That email address is already registered."};
        return INK_CONFLICT;
    }
    if (name_taken) {
        *err = (struct ink_err){"username_taken", "That username is already taken."};
        return INK_CONFLICT;
    }
    char *phc = NULL;
    st = ink_password_hash(password, &phc);
    if (st != INK_OK)
        return st;

    struct ink_db *db = NULL;
    char id[INK_UUID_STRLEN + 1];
    ink_uuid_v7(id);
    r = NULL;
    st = ink_db_acquire(&db);
    if (st != INK_OK)
        goto out;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK)
        goto out;
    st = ink_db_exec(db, &SQL_INSERT_USER, 4, (const char *[]){id, email, username, phc}, &r);
    if (st == INK_CONFLICT) {
        st = conflict_err(db, err);
        goto out;
    }
    if (st != INK_OK)
        goto out;
    if ((st = ink_session_start(db, id, client->user_agent, client->ip, tokens)) != INK_OK)
        goto out;
    if ((st = ink_account_queue_verification(db, id)) != INK_OK)
        goto out;
    if ((st = ink_db_simple(db, "COMMIT")) != INK_OK)
        goto out;
    ink_outbox_kick();
    *user = ink_user_json(r, 0);
out:
    if (st != INK_OK)
        ink_tokens_free(tokens);
    PQclear(r);
    ink_db_release(db); /* rolls back an open transaction */
    free(phc);
    return st;
}

/* ---- login -------------------------------------------------------------------------------- */

/* Always one row: the account (NULL columns when none), the seconds its sign-in name is still
 * blocked, and the back-off key. */
#define LOGIN_SELECT                                                                               \
    "SELECT u.id, u.email, u.username, extract(epoch FROM u.created_at)::bigint,"                  \
    " extract(epoch FROM u.updated_at)::bigint, u.password_hash,"                                  \
    " COALESCE(GREATEST(0, ceil(extract(epoch FROM f.blocked_until - now()))), 0)::bigint, k.key"

static const struct ink_sql SQL_LOGIN_BY_EMAIL = {
    "login_by_email",
    LOGIN_SELECT " FROM (SELECT $1::text AS ident) i LEFT JOIN users u ON u.email = i.ident"
                 " CROSS JOIN LATERAL (SELECT COALESCE('user:' || u.id::text, 'name:' || i.ident)"
                 " AS key) k LEFT JOIN login_failures f ON f.key = k.key"};

static const struct ink_sql SQL_LOGIN_BY_NAME = {
    "login_by_name",
    LOGIN_SELECT " FROM (SELECT lower($1::text) AS ident) i"
                 " LEFT JOIN users u ON lower(u.username) = i.ident"
                 " CROSS JOIN LATERAL (SELECT COALESCE('user:' || u.id::text, 'name:' || i.ident)"
                 " AS key) k LEFT JOIN login_failures f ON f.key = k.key"};

/* Doubling back-off from 1 s once `after` consecutive failures are reached, capped at `max`;
 * never a permanent lock-out. */
static const struct ink_sql SQL_LOGIN_FAILED = {
    "login_failed",
    "INSERT INTO login_failures AS f (key, failures, blocked_until)"
    " VALUES ($1, 1, CASE WHEN 1 >= $2::int THEN now() + make_interval(secs => LEAST($3::int, 1))"
    "  END)"
    " ON CONFLICT (key) DO UPDATE SET failures = f.failures + 1, updated_at = now(),"
    "  blocked_until = CASE WHEN f.failures + 1 >= $2::int"
    "   THEN now() + make_interval(secs => LEAST($3::int,"
    "    power(2, LEAST(f.failures + 1 - $2::int, 30))::int))"
    "   ELSE f.blocked_until END"};

/* Writes nothing in the common case (no failures on record, no rehash), so its commit needs no
 * WAL flush: the login's one durable write is the session. */
static const struct ink_sql SQL_LOGIN_OK = {
    "login_ok", "WITH d AS (DELETE FROM login_failures WHERE key = 'user:' || $1::text)"
                " UPDATE users SET password_hash = $2"
                " WHERE id = $1::text::uuid AND $2::text IS NOT NULL"};

static atomic_ullong logins[INK_LOGIN_RESULTS];

void ink_account_login_stats(unsigned long long out[INK_LOGIN_RESULTS])
{
    for (int i = 0; i < INK_LOGIN_RESULTS; i++)
        out[i] = atomic_load(&logins[i]);
}

enum ink_status ink_account_login(const char *identifier, const char *password,
                                  const struct ink_client *client, struct ink_tokens *tokens,
                                  json_t **user, unsigned *retry_after, struct ink_err *err)
{
    *user = NULL;
    memset(tokens, 0, sizeof *tokens);
    *err = (struct ink_err){"invalid_credentials", "Invalid credentials."};
    char email[INK_EMAIL_MAX + 1];
    bool by_email = strchr(identifier, '@') != NULL;
    const char *key = identifier;
    if (by_email) {
        if (!ink_email_normalize(identifier, email))
            email[0] = '\0';
        key = email;
    }
    PGresult *r = NULL;
    char *new_phc = NULL;
    struct ink_db *db = NULL;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        goto out;
    st = ink_db_exec(db, by_email ? &SQL_LOGIN_BY_EMAIL : &SQL_LOGIN_BY_NAME, 1,
                     (const char *[]){key}, &r);
    if (st != INK_OK)
        goto out;
    if (ink_db_ll(r, 0, 6) > 0) {
        *retry_after = (unsigned)ink_db_ll(r, 0, 6);
        *err = (struct ink_err){"login_backoff", "Too many failed sign-in attempts; retry later."};
        st = INK_RATE_LIMITED;
        goto out;
    }
    /* the database connection is not needed while hashing */
    ink_db_release(db);
    db = NULL;
    const char *uid = ink_db_str(r, 0, 0), *phc = ink_db_str(r, 0, 5);
    bool match = false, rehash = false;
    /* unknown user or OAuth-only account: same hashing work, same counter, same answer */
    st = phc ? ink_password_verify(phc, password, &match, &rehash)
             : ink_password_verify_dummy(password);
    if (st != INK_OK)
        goto out;
    if (!match) {
        char after[16], max[16];
        snprintf(after, sizeof after, "%u", ink_app.cfg.login_backoff_after);
        snprintf(max, sizeof max, "%u", ink_app.cfg.login_backoff_max);
        st = ink_db_query(&SQL_LOGIN_FAILED, 3, (const char *[]){PQgetvalue(r, 0, 7), after, max},
                          NULL);
        if (st == INK_OK)
            st = INK_UNAUTHORIZED;
        goto out;
    }
    if (rehash && ink_password_hash(password, &new_phc) != INK_OK)
        new_phc = NULL; /* try again on the next login */
    if ((st = ink_db_acquire(&db)) != INK_OK)
        goto out;
    if ((st = ink_db_exec(db, &SQL_LOGIN_OK, 2, (const char *[]){uid, new_phc}, NULL)) != INK_OK)
        goto out;
    if ((st = ink_session_start(db, uid, client->user_agent, client->ip, tokens)) != INK_OK)
        goto out;
    *user = ink_user_json(r, 0);
out:
    if (st == INK_UNAVAILABLE || st == INK_INTERNAL)
        *err = (struct ink_err){0}; /* an outage is not a credentials problem */
    if (st != INK_OK)
        ink_tokens_free(tokens);
    atomic_fetch_add(&logins[st == INK_OK             ? INK_LOGIN_OK
                             : st == INK_UNAUTHORIZED ? INK_LOGIN_FAILED
                             : st == INK_RATE_LIMITED ? INK_LOGIN_BACKOFF
                                                      : INK_LOGIN_ERROR],
                     1);
    PQclear(r);
    ink_db_release(db);
    free(new_phc);
    return st;
}

/* ---- profile ------------------------------------------------------------------------------ */

#define ME_SELECT                                                                                  \
    "SELECT " USER_COLUMNS ", password_hash IS NOT NULL,"                                          \
    " (SELECT string_agg(provider, ',' ORDER BY provider) FROM oauth_identities"                   \
    "  WHERE user_id = users.id),"                                                                 \
    " sub.status, sub.interval, extract(epoch FROM sub.current_period_end)::bigint,"               \
    " sub.cancel_at_period_end, email_verified_at IS NOT NULL"                                     \
    " FROM users" INK_SQL_JOIN_CURRENT_SUBSCRIPTION("users.id")

const struct ink_sql ink_account_me_sql = {"account_me", ME_SELECT " WHERE id = $1"};
const struct ink_sql ink_account_me_many_sql = {"account_me_many",
                                                ME_SELECT " WHERE id = ANY($1::uuid[])"};

enum ink_status ink_account_me(const char *user_id, char **out)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&ink_account_me_sql, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    st = ink_account_me_from(r, 0, PQntuples(r), out);
    PQclear(r);
    return st;
}

/* The columns of ink_account_me_sql */
enum {
    ME_ID,
    ME_EMAIL,
    ME_USERNAME,
    ME_CREATED,
    ME_UPDATED,
    ME_HAS_PASSWORD,
    ME_PROVIDERS,
    ME_SUB_STATUS,
    ME_SUB_INTERVAL,
    ME_SUB_END,
    ME_SUB_CANCEL,
    ME_VERIFIED
};
_Static_assert(ME_ID == INK_ACCOUNT_ME_ID_COLUMN, "the id's column in ink_account_me_sql");

/* The object is written as text straight from the row, like the device objects (GET /auth/me
 * is the hottest route after them; the jansson tree was about a tenth of its CPU). The buffer
 * is sized from the row first, so nothing is ever cut. */
#define ME_FIXED_BYTES 512 /* the keys, punctuation, timestamps, booleans and the plan */

static const int ME_TEXT_COLUMNS[] = {ME_ID,        ME_EMAIL,      ME_USERNAME,
                                      ME_PROVIDERS, ME_SUB_STATUS, ME_SUB_INTERVAL};

static void put_providers(struct ink_sb *sb, const char *list)
{
    ink_jt_key(sb, "providers");
    ink_sb_puts(sb, "[");
    for (bool first = true; list && *list; first = false) {
        size_t n = strcspn(list, ",");
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)n, list);
        ink_sb_puts(sb, first ? "\"" : ",\"");
        ink_sb_escaped(sb, INK_ESC_JSON, name, ink_sb_room(sb));
        ink_sb_puts(sb, "\"");
        list += n + (list[n] == ',');
    }
    ink_sb_puts(sb, "]");
}

enum ink_status ink_account_me_from(const PGresult *r, int row, int count, char **out)
{
    *out = NULL;
    if (count != 1)
        return INK_UNAUTHORIZED;
    size_t cap = ME_FIXED_BYTES;
    for (size_t i = 0; i < sizeof ME_TEXT_COLUMNS / sizeof ME_TEXT_COLUMNS[0]; i++)
        cap += INK_JT_ESCAPED_MAX((size_t)PQgetlength(r, row, ME_TEXT_COLUMNS[i]));
    char *text = ink_malloc(cap);
    struct ink_sb sb;
    ink_sb_init(&sb, text, cap);
    const char *status = ink_db_str(r, row, ME_SUB_STATUS);
    ink_sb_puts(&sb, "{");
    ink_jt_str(&sb, "id", PQgetvalue(r, row, ME_ID));
    ink_jt_str(&sb, "email", PQgetvalue(r, row, ME_EMAIL));
    ink_jt_str(&sb, "username", PQgetvalue(r, row, ME_USERNAME));
    ink_jt_time(&sb, "createdAt", ink_db_ll(r, row, ME_CREATED));
    ink_jt_time(&sb, "updatedAt", ink_db_ll(r, row, ME_UPDATED));
    ink_jt_bool(&sb, "emailVerified", PQgetvalue(r, row, ME_VERIFIED)[0] == 't');
    ink_jt_bool(&sb, "hasPassword", PQgetvalue(r, row, ME_HAS_PASSWORD)[0] == 't');
    put_providers(&sb, ink_db_str(r, row, ME_PROVIDERS));
    ink_jt_str(&sb, "plan", ink_plan_name(status));
    ink_jt_key(&sb, "subscription");
    ink_plan_write_me_subscription(&sb, status, ink_db_str(r, row, ME_SUB_INTERVAL),
                                   ink_db_str(r, row, ME_SUB_END) ? ink_db_ll(r, row, ME_SUB_END)
                                                                  : 0,
                                   status && PQgetvalue(r, row, ME_SUB_CANCEL)[0] == 't');
    ink_sb_puts(&sb, "}");
    if (sb.truncated)
        abort(); /* the bound above is wrong: a bug, never input */
    *out = text;
    return INK_OK;
}

/* The password, the address, and the seconds the account's sign-in is still backed off: the
 * back-off of login (key 'user:<id>') guards re-authentication too. */
static const struct ink_sql SQL_CREDENTIALS = {
    "account_credentials",
    "SELECT u.password_hash, u.email,"
    " COALESCE(GREATEST(0, ceil(extract(epoch FROM f.blocked_until - now()))), 0)::bigint"
    " FROM users u LEFT JOIN login_failures f ON f.key = 'user:' || u.id::text WHERE u.id = $1"};

struct credentials {
    const char *user_id;
    char *phc; /* NULL for an account without a password */
    char *email;
    unsigned blocked; /* seconds of login back-off left */
};

static void credentials_free(struct credentials *c)
{
    free(c->phc);
    free(c->email);
}

/* INK_UNAUTHORIZED when the user is gone (the token outlived the account). */
static enum ink_status load_credentials(const char *user_id, struct credentials *out)
{
    memset(out, 0, sizeof *out);
    out->user_id = user_id;
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_CREDENTIALS, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) == 1) {
        out->phc = ink_db_str(r, 0, 0) ? ink_strdup(ink_db_str(r, 0, 0)) : NULL;
        out->email = ink_strdup(PQgetvalue(r, 0, 1));
        long long blocked = ink_db_ll(r, 0, 2);
        out->blocked = blocked > 0 ? (unsigned)(blocked < 86400 ? blocked : 86400) : 0;
    } else {
        st = INK_UNAUTHORIZED;
    }
    PQclear(r);
    return st;
}

/* Re-authentication for sensitive changes: accounts without a password pass; otherwise the
 * password must be given (400) and right (401). A wrong one counts as a failed sign-in of the
 * account, and while the account is backed off even the right one waits (429): a stolen session
 * must not become a way around login's back-off to guess the password. */
static enum ink_status check_password(const struct credentials *c, const char *password,
                                      unsigned *retry_after, struct ink_err *err)
{
    if (!c->phc)
        return INK_OK;
    if (!password) {
        *err = (struct ink_err){"current_password_required", "Your current password is required."};
        return INK_INVALID;
    }
    if (c->blocked) {
        *retry_after = c->blocked;
        *err = (struct ink_err){"login_backoff", "Too many failed sign-in attempts; retry later."};
        return INK_RATE_LIMITED;
    }
    bool match = false, rehash = false;
    enum ink_status st = ink_password_verify(c->phc, password, &match, &rehash);
    if (st == INK_OK && !match) {
        char key[64], after[16], max[16];
        snprintf(key, sizeof key, "user:%s", c->user_id);
        snprintf(after, sizeof after, "%u", ink_app.cfg.login_backoff_after);
        snprintf(max, sizeof max, "%u", ink_app.cfg.login_backoff_max);
        st = ink_db_query(&SQL_LOGIN_FAILED, 3, (const char *[]){key, after, max}, NULL);
        if (st == INK_OK) {
            *err = (struct ink_err){"invalid_credentials", "The current password is wrong."};
            st = INK_UNAUTHORIZED;
        }
    }
    return st;
}

/* Loads the account and checks `password` against it. */
static enum ink_status reauthenticate(const char *user_id, const char *password,
                                      unsigned *retry_after, struct ink_err *err)
{
    struct credentials c;
    enum ink_status st = load_credentials(user_id, &c);
    if (st == INK_OK)
        st = check_password(&c, password, retry_after, err);
    credentials_free(&c);
    return st;
}

/* A new address is unverified, and links sent to the old one stop working; the columns say
 * whether the address changed, and what it was. */
static const struct ink_sql SQL_UPDATE_PROFILE = {
    "account_update",
    "WITH old AS (SELECT email FROM users WHERE id = $1 FOR UPDATE),"
    " links AS (DELETE FROM email_tokens e USING old WHERE e.user_id = $1"
    "  AND $3::text IS NOT NULL AND $3::text <> old.email)"
    " UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, users.email),"
    " email_verified_at = CASE WHEN $3::text IS NOT NULL AND $3::text <> old.email THEN NULL"
    "  ELSE email_verified_at END, updated_at = now()"
    " FROM old WHERE id = $1 RETURNING $3::text IS NOT NULL AND $3::text <> old.email, old.email"};

enum ink_status ink_account_update(const char *user_id, const char *username, const char *email_in,
                                   const char *current_password, char **out, unsigned *retry_after,
                                   struct ink_err *err)
{
    char email[INK_EMAIL_MAX + 1];
    *out = NULL;
    if (!username && !email_in) {
        *err = (struct ink_err){"invalid_request", "Nothing to update: send username or email."};
        return INK_INVALID;
    }
    if (username && !ink_username_valid(username)) {
        *err = (struct ink_err){"invalid_username",
                                "Username must be 3-32 characters of letters, digits, _ . or -."};
        return INK_INVALID;
    }
    if (email_in && !ink_email_normalize(email_in, email)) {
        *err = (struct ink_err){"invalid_email", "A valid email address is required."};
        return INK_INVALID;
    }
    enum ink_status st;
    if (email_in) {
        /* only a real change of address needs the password */
        struct credentials c;
        st = load_credentials(user_id, &c);
        if (st == INK_OK && strcmp(c.email, email) != 0)
            st = check_password(&c, current_password, retry_after, err);
        credentials_free(&c);
        if (st != INK_OK)
            return st;
    }
    struct ink_db *db;
    if ((st = ink_db_acquire(&db)) != INK_OK)
        return st;
    PGresult *r = NULL;
    bool changed = false;
    if ((st = ink_db_simple(db, "BEGIN")) == INK_OK)
        st = ink_db_exec(db, &SQL_UPDATE_PROFILE, 3,
                         (const char *[]){user_id, username, email_in ? email : NULL}, &r);
    if (st == INK_CONFLICT)
        st = conflict_err(db, err);
    if (st == INK_OK && PQntuples(r) != 1)
        st = INK_UNAUTHORIZED; /* the token outlived the account */
    if (st == INK_OK && (changed = PQgetvalue(r, 0, 0)[0] == 't'))
        st = ink_account_queue_verification(db, user_id);
    /* and the address it leaves hears of it: links to it stop, so its owner must know */
    if (st == INK_OK && changed)
        st = ink_outbox_queue_to(db, INK_MAIL_EMAIL_CHANGED, user_id, PQgetvalue(r, 0, 1));
    if (st == INK_OK)
        st = ink_db_simple(db, "COMMIT");
    PQclear(r);
    ink_db_release(db);
    if (st != INK_OK)
        return st;
    if (changed)
        ink_outbox_kick();
    return ink_account_me(user_id, out);
}

static const struct ink_sql SQL_SET_PASSWORD = {
    "account_set_password",
    "WITH d AS (DELETE FROM login_failures WHERE key = 'user:' || $1::text)"
    " UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1::text::uuid"};

enum ink_status ink_account_change_password(const char *user_id, const char *session_id,
                                            const char *current_password, const char *new_password,
                                            unsigned *retry_after, struct ink_err *err)
{
    if (!new_password || !ink_password_policy_ok(new_password)) {
        *err = (struct ink_err){"invalid_password", "Password must be 8-1024 bytes long."};
        return INK_INVALID;
    }
    enum ink_status st = reauthenticate(user_id, current_password, retry_after, err);
    if (st != INK_OK)
        return st;
    char *phc = NULL;
    if ((st = ink_password_hash(new_password, &phc)) != INK_OK)
        return st;
    struct ink_db *db;
    if ((st = ink_db_acquire(&db)) == INK_OK) {
        if ((st = ink_db_simple(db, "BEGIN")) == INK_OK &&
            (st = ink_db_exec(db, &SQL_SET_PASSWORD, 2, (const char *[]){user_id, phc}, NULL)) ==
                INK_OK &&
            (st = ink_session_revoke_all(db, user_id, session_id, NULL)) == INK_OK &&
            (st = ink_outbox_queue(db, INK_MAIL_PASSWORD_CHANGED, user_id, NULL, NULL, 0, NULL)) ==
                INK_OK)
            st = ink_db_simple(db, "COMMIT");
        ink_db_release(db);
    }
    free(phc);
    if (st == INK_OK)
        ink_outbox_kick();
    return st;
}

static const struct ink_sql SQL_DELETE_USER = {"account_delete", "DELETE FROM users WHERE id = $1"};

enum ink_status ink_account_delete(const char *user_id, const char *password, unsigned *retry_after,
                                   struct ink_err *err)
{
    enum ink_status st = reauthenticate(user_id, password, retry_after, err);
    if (st != INK_OK)
        return st;
    struct ink_db *db;
    if ((st = ink_db_acquire(&db)) != INK_OK)
        return st;
    st = ink_db_simple(db, "BEGIN");
    /* queued before the row goes: the notice reads the address from it */
    if (st == INK_OK)
        st = ink_outbox_queue(db, INK_MAIL_ACCOUNT_DELETED, user_id, NULL, NULL, 0, NULL);
    for (size_t i = 0; st == INK_OK && i < delete_hook_count; i++)
        st = delete_hooks[i].in_tx(db, user_id);
    if (st == INK_OK)
        st = ink_db_exec(db, &SQL_DELETE_USER, 1, (const char *[]){user_id}, NULL);
    if (st == INK_OK)
        st = ink_db_simple(db, "COMMIT");
    ink_db_release(db); /* rolls back what did not commit */
    if (st != INK_OK)
        return st;
    ink_session_cache_forget_user(user_id);
    ink_outbox_kick();
    for (size_t i = 0; i < delete_hook_count; i++)
        if (delete_hooks[i].after)
            delete_hooks[i].after(user_id);
    return INK_OK;
}
