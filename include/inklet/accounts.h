/** The account service: registration, login with back-off, profile, password and deletion.
 *  Functions that hash passwords are meant for the worker pool (INK_ROUTE_SLOW). */
#ifndef INKLET_ACCOUNTS_H
#define INKLET_ACCOUNTS_H
#include "inklet/auth.h"
#include "inklet/db.h"

#include <jansson.h>
#include <stdbool.h>

struct ink_client {
    const char *user_agent;
    const char *ip;
};

/** The contract's auth response {accessToken, refreshToken, user}; frees the tokens and takes
 *  the user reference. */
json_t *ink_auth_response(struct ink_tokens *t, json_t *user);

/** Creates an account and its first session. *user receives the user object (new ref). */
enum ink_status ink_account_register(const char *email, const char *username, const char *password,
                                     const struct ink_client *client, struct ink_tokens *tokens,
                                     json_t **user, struct ink_err *err);
/** identifier is an email (contains '@') or a username. INK_RATE_LIMITED sets *retry_after. */
enum ink_status ink_account_login(const char *identifier, const char *password,
                                  const struct ink_client *client, struct ink_tokens *tokens,
                                  json_t **user, unsigned *retry_after, struct ink_err *err);
/** Password sign-ins by outcome, for /metrics. */
enum ink_login_result {
    INK_LOGIN_OK,
    INK_LOGIN_FAILED,  /* wrong password, unknown or OAuth-only account */
    INK_LOGIN_BACKOFF, /* refused by the per-account back-off */
    INK_LOGIN_ERROR,   /* database or hashing unavailable */
    INK_LOGIN_RESULTS
};
void ink_account_login_stats(unsigned long long out[INK_LOGIN_RESULTS]);
/** The GET /auth/me object as JSON text (malloc'd). INK_UNAUTHORIZED if the user no longer
 *  exists. */
enum ink_status ink_account_me(const char *user_id, char **out);
/** The same in two halves, for GET /auth/me batched (inklet/batched.h): the statement ($1 the
 *  user id) and the object from its rows [row, row + count) (INK_UNAUTHORIZED unless one). */
extern const struct ink_sql ink_account_me_sql;
enum ink_status ink_account_me_from(const PGresult *r, int row, int count, char **out);
/** ink_account_me_sql for many users at once ($1 a uuid[]): a row per user that exists, the id
 *  in column INK_ACCOUNT_ME_ID_COLUMN. */
extern const struct ink_sql ink_account_me_many_sql;
#define INK_ACCOUNT_ME_ID_COLUMN 0
/* The three below re-authenticate with the account's password (when it has one). A wrong one
 * counts against the account's login back-off; while it lasts they answer INK_RATE_LIMITED
 * (login_backoff) with *retry_after, as login does. */
/** PATCH /auth/me; *out is the updated GET /auth/me object. Any of username/email may be NULL. */
enum ink_status ink_account_update(const char *user_id, const char *username, const char *email,
                                   const char *current_password, char **out, unsigned *retry_after,
                                   struct ink_err *err);
/** POST /auth/password: revokes every other session on success. */
enum ink_status ink_account_change_password(const char *user_id, const char *session_id,
                                            const char *current_password, const char *new_password,
                                            unsigned *retry_after, struct ink_err *err);
/** DELETE /auth/me. */
enum ink_status ink_account_delete(const char *user_id, const char *password, unsigned *retry_after,
                                   struct ink_err *err);

/* ---- recovery by email (contract §2.2; src/auth/recovery.c) ---- */
/** POST /auth/password/forgot: the same INK_OK (202) for every well-formed address, known or
 *  not; INK_RATE_LIMITED with *retry_after for the fourth request to one address in an hour;
 *  INK_UNAVAILABLE mail_not_configured without SMTP_URL. */
enum ink_status ink_account_forgot_password(const char *email, unsigned *retry_after,
                                            struct ink_err *err);
/** POST /auth/password/reset: sets the password, revokes every session, verifies the address. */
enum ink_status ink_account_reset_password(const char *token, const char *new_password,
                                           struct ink_err *err);
/** POST /auth/email/verify: *user is the user object with emailVerified. */
enum ink_status ink_account_verify_email(const char *token, json_t **user, struct ink_err *err);
/** POST /auth/email/verify/resend: queues a verification mail unless already verified. */
enum ink_status ink_account_resend_verification(const char *user_id, unsigned *retry_after,
                                                struct ink_err *err);
/** Deletes expired reset and verification links (housekeeping). */
enum ink_status ink_account_prune_links(long long *count);

/** Who a provider says signed in: a verified ID token's subject and email. */
struct ink_oauth_login {
    const char *provider; /* "google" or "apple" */
    const char *subject;  /* the token's `sub` */
    const char *email;    /* "" when the provider shared none */
    bool email_verified;
    const char *client_id;          /* the audience the token was issued to (kept for revocation) */
    const char *refresh_sealed_hex; /* Apple's refresh token sealed, as bytea hex, or NULL */
};

/** Signs in with a provider identity (contract §2.1 step 4) and starts a session:
 *  - the identity (provider, subject) is known: its user;
 *  - else an account with that email, if the provider verified it: the identity is linked, and
 *    an account that was registered with a password loses the password and every session
 *    (whoever registered the address first cannot keep a way in);
 *  - else a new account with that email, no password and a generated unique username.
 *  An unverified email neither links nor creates (INK_FORBIDDEN `email_not_verified`): an account
 *  made from an unverified address would be linked later to whoever really owns it. No email at
 *  all: INK_FORBIDDEN `email_required`. */
enum ink_status ink_account_oauth_signin(const struct ink_oauth_login *login,
                                         const struct ink_client *client, struct ink_tokens *tokens,
                                         json_t **user, struct ink_err *err);

/** Hooks other areas register for account deletion (devices unbound, billing cancellations
 *  recorded). `in_tx` runs inside the deletion's transaction before the user row is removed; a
 *  failure aborts the deletion (nothing half-done). `after` (may be NULL) runs once it
 *  committed, without a connection: wake a worker, never wait on anything. */
typedef enum ink_status (*ink_account_delete_hook)(struct ink_db *db, const char *user_id);
typedef void (*ink_account_deleted_hook)(const char *user_id);
void ink_account_on_delete(ink_account_delete_hook in_tx, ink_account_deleted_hook after);

#endif
