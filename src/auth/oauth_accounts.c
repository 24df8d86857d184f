/* Accounts from provider identities (contract §2.1 step 4): find, link or create, in one
 * transaction, then start a session in it. */
#include "inklet/accounts.h"

#include "accounts_internal.h"
#include "inklet/ids.h"
#include "inklet/log.h"
#include "inklet/outbox.h"
#include "inklet/validate.h"

#include <stdio.h>
#include <string.h>

/* The identity is known: keep what the provider says now (email, Apple refresh token). */
static const struct ink_sql SQL_BY_IDENTITY = {
    "oauth_by_identity",
    "WITH i AS (UPDATE oauth_identities SET email = COALESCE(NULLIF($3, ''), email),"
    "  refresh_token_sealed = COALESCE($4::bytea, refresh_token_sealed),"
    "  client_id = COALESCE($5, client_id)"
    "  WHERE provider = $1 AND subject = $2 RETURNING user_id)"
    " SELECT " USER_COLUMNS " FROM users JOIN i ON users.id = i.user_id"};

/* The account with that email, locked against a concurrent change; the last column says whether
 * it must lose its password: registered with one, and nobody proved they read this address
 * (§2.1 step 4 as §2.2 amends it). An account whose address we verified keeps it. */
static const struct ink_sql SQL_BY_EMAIL = {
    "oauth_by_email",
    "SELECT " USER_COLUMNS ", password_hash IS NOT NULL AND created_via = 'password'"
    " AND email_verified_at IS NULL FROM users WHERE email = $1 FOR UPDATE"};

/* A provider vouches for the address the account has (§2.2). */
static const struct ink_sql SQL_MARK_VERIFIED = {
    "oauth_mark_verified", "UPDATE users SET email_verified_at = now()"
                           " WHERE id = $1 AND email = $2 AND email_verified_at IS NULL"};

static const struct ink_sql SQL_LINK = {
    "oauth_link", "INSERT INTO oauth_identities"
                  " (provider, subject, user_id, email, refresh_token_sealed, client_id)"
                  " VALUES ($1, $2, $3, NULLIF($4, ''), $5::bytea, $6)"
                  " ON CONFLICT (provider, subject) DO NOTHING"};

static const struct ink_sql SQL_CLEAR_PASSWORD = {
    "oauth_clear_password",
    "UPDATE users SET password_hash = NULL, updated_at = now() WHERE id = $1"};

/* DO NOTHING on either unique index (email, username); the caller tells which from a re-read */
static const struct ink_sql SQL_CREATE = {
    "oauth_create_user", "INSERT INTO users (id, email, username, password_hash, created_via)"
                         " VALUES ($1, $2, $3, NULL, $4) ON CONFLICT DO NOTHING"
                         " RETURNING " USER_COLUMNS};

static const struct ink_sql SQL_EMAIL_TAKEN = {"oauth_email_taken",
                                               "SELECT 1 FROM users WHERE email = $1"};

#define USERNAME_BASE_MAX 20
#define CREATE_TRIES 6

/* A username from the email's local part: only [A-Za-z0-9_.-], 3..20 chars; attempt > 0 adds a
 * random suffix, the last attempts are fully random. */
static void username_candidate(const char *email, unsigned attempt, char out[INK_USERNAME_MAX + 1])
{
    char base[USERNAME_BASE_MAX + 1];
    size_t n = 0;
    for (const char *p = email; *p && *p != '@' && n < USERNAME_BASE_MAX; p++)
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '_' || *p == '.' || *p == '-')
            base[n++] = *p;
    base[n] = '\0';
    if (n < 3 || attempt >= CREATE_TRIES - 2)
        snprintf(base, sizeof base, "user");
    unsigned char rnd[6];
    char hex[13];
    ink_random_bytes(rnd, sizeof rnd);
    ink_hex_encode(rnd, sizeof rnd, hex);
    if (attempt == 0 && n >= 3)
        snprintf(out, INK_USERNAME_MAX + 1, "%s", base);
    else
        snprintf(out, INK_USERNAME_MAX + 1, "%s-%.*s", base, attempt < 3 ? 4 : 12, hex);
}

/* Creates the account; INK_CONFLICT when the email was taken meanwhile (the caller starts
 * over, and then finds it). */
static enum ink_status create_user(struct ink_db *db, const struct ink_oauth_login *in,
                                   PGresult **row)
{
    char id[INK_UUID_STRLEN + 1], name[INK_USERNAME_MAX + 1];
    ink_uuid_v7(id);
    for (unsigned attempt = 0; attempt < CREATE_TRIES; attempt++) {
        username_candidate(in->email, attempt, name);
        PGresult *r;
        enum ink_status st = ink_db_exec(db, &SQL_CREATE, 4,
                                         (const char *[]){id, in->email, name, in->provider}, &r);
        if (st != INK_OK)
            return st;
        if (PQntuples(r) == 1) {
            *row = r;
            return INK_OK;
        }
        PQclear(r);
        if ((st = ink_db_exec(db, &SQL_EMAIL_TAKEN, 1, (const char *[]){in->email}, &r)) != INK_OK)
            return st;
        bool taken = PQntuples(r) > 0;
        PQclear(r);
        if (taken)
            return INK_CONFLICT;
    }
    ink_error("oauth: no free username after %d attempts", CREATE_TRIES);
    return INK_INTERNAL;
}

static enum ink_status link(struct ink_db *db, const struct ink_oauth_login *in,
                            const char *user_id)
{
    return ink_db_exec(db, &SQL_LINK, 6,
                       (const char *[]){in->provider, in->subject, user_id, in->email,
                                        in->refresh_sealed_hex, in->client_id},
                       NULL);
}

/* "google" → "Google", for the notice. */
static const char *provider_display(const char *provider)
{
    return strcmp(provider, "apple") == 0 ? "Apple" : "Google";
}

/* One pass of step 4 inside the transaction. *row gets the user; *cleared whether a password was
 * taken away, *linked whether an existing account got a new identity. INK_CONFLICT: a concurrent
 * sign-in created the account; run the pass again. */
static enum ink_status find_or_create(struct ink_db *db, const struct ink_oauth_login *in,
                                      PGresult **row, bool *cleared, bool *linked,
                                      struct ink_err *err)
{
    PGresult *r;
    enum ink_status st = ink_db_exec(db, &SQL_BY_IDENTITY, 5,
                                     (const char *[]){in->provider, in->subject, in->email,
                                                      in->refresh_sealed_hex, in->client_id},
                                     &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) == 1) {
        *row = r;
        return INK_OK;
    }
    PQclear(r);
    if (!*in->email) {
        *err = (struct ink_err){"email_required",
                                "The identity provider did not share an email address."};
        return INK_FORBIDDEN;
    }
    if (!in->email_verified) {
        *err = (struct ink_err){"email_not_verified",
                                "The identity provider has not verified this email address."};
        return INK_FORBIDDEN;
    }
    if ((st = ink_db_exec(db, &SQL_BY_EMAIL, 1, (const char *[]){in->email}, &r)) != INK_OK)
        return st;
    if (PQntuples(r) == 1) {
        const char *uid = PQgetvalue(r, 0, 0);
        *cleared = PQgetvalue(r, 0, 5)[0] == 't';
        *linked = true;
        if ((st = link(db, in, uid)) == INK_OK && *cleared &&
            (st = ink_db_exec(db, &SQL_CLEAR_PASSWORD, 1, (const char *[]){uid}, NULL)) == INK_OK)
            st = ink_session_revoke_all(db, uid, NULL, NULL);
        if (st == INK_OK)
            st = ink_outbox_queue(db, INK_MAIL_PROVIDER_LINKED, uid, NULL,
                                  provider_display(in->provider), 0, NULL);
        if (st != INK_OK) {
            PQclear(r);
            return st;
        }
        *row = r;
        return INK_OK;
    }
    PQclear(r);
    if ((st = create_user(db, in, &r)) != INK_OK)
        return st;
    if ((st = link(db, in, PQgetvalue(r, 0, 0))) != INK_OK) {
        PQclear(r);
        return st;
    }
    *row = r;
    return INK_OK;
}

enum ink_status ink_account_oauth_signin(const struct ink_oauth_login *in_raw,
                                         const struct ink_client *client, struct ink_tokens *tokens,
                                         json_t **user, struct ink_err *err)
{
    *user = NULL;
    memset(tokens, 0, sizeof *tokens);
    struct ink_oauth_login in = *in_raw;
    char email[INK_EMAIL_MAX + 1] = "";
    /* an address the provider sends but our rules refuse is treated as none */
    if (in.email && *in.email && !ink_email_normalize(in.email, email))
        email[0] = '\0';
    in.email = email;
    struct ink_db *db = NULL;
    PGresult *row = NULL;
    bool cleared = false, linked = false;
    enum ink_status st = ink_db_acquire(&db);
    if (st != INK_OK)
        return st;
    if ((st = ink_db_simple(db, "BEGIN")) != INK_OK)
        goto out;
    /* a lost race to create the same account: the second pass finds the winner's */
    for (int pass = 0; pass < 3; pass++)
        if ((st = find_or_create(db, &in, &row, &cleared, &linked, err)) != INK_CONFLICT)
            break;
    if (st == INK_CONFLICT)
        st = INK_UNAVAILABLE;
    if (st != INK_OK)
        goto out;
    const char *uid = PQgetvalue(row, 0, 0);
    if (in.email_verified && *in.email &&
        (st = ink_db_exec(db, &SQL_MARK_VERIFIED, 2, (const char *[]){uid, in.email}, NULL)) !=
            INK_OK)
        goto out;
    if ((st = ink_session_start(db, uid, client->user_agent, client->ip, tokens)) != INK_OK)
        goto out;
    if ((st = ink_db_simple(db, "COMMIT")) != INK_OK)
        goto out;
    if (linked)
        ink_outbox_kick();
    if (cleared) {
        ink_session_cache_forget_user(uid);
        ink_info("oauth: %s identity linked to user %s by verified email; its password was "
                 "cleared and its sessions revoked",
                 in.provider, uid);
    }
    *user = ink_user_json(row, 0);
out:
    if (st != INK_OK)
        ink_tokens_free(tokens);
    PQclear(row);
    ink_db_release(db);
    return st;
}
