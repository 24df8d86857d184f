/** The account service: registration, login with back-off, profile, password and deletion.
 *  Functions that hash passwords are meant for the worker pool (INK_ROUTE_SLOW). */
#ifndef INKLET_ACCOUNTS_H
#define INKLET_ACCOUNTS_H
#include "inklet/auth.h"

#include <jansson.h>

struct ink_client {
    const char *user_agent;
    const char *ip;
};

/** Creates an account and its first session. *user receives the user object (new ref). */
enum ink_status ink_account_register(const char *email, const char *username, const char *password,
                                     const struct ink_client *client, struct ink_tokens *tokens,
                                     json_t **user, struct ink_err *err);
/** identifier is an email (contains '@') or a username. INK_RATE_LIMITED sets *retry_after. */
enum ink_status ink_account_login(const char *identifier, const char *password,
                                  const struct ink_client *client, struct ink_tokens *tokens,
                                  json_t **user, unsigned *retry_after, struct ink_err *err);
/** The GET /auth/me object (new ref). INK_UNAUTHORIZED if the user no longer exists. */
enum ink_status ink_account_me(const char *user_id, json_t **out);
/** PATCH /auth/me. Any of username/email may be NULL. */
enum ink_status ink_account_update(const char *user_id, const char *username, const char *email,
                                   const char *current_password, json_t **out, struct ink_err *err);
/** POST /auth/password: revokes every other session on success. */
enum ink_status ink_account_change_password(const char *user_id, const char *session_id,
                                            const char *current_password, const char *new_password,
                                            struct ink_err *err);
/** DELETE /auth/me. */
enum ink_status ink_account_delete(const char *user_id, const char *password, struct ink_err *err);

/** Hooks other areas register for account deletion (devices unbound, billing cancellations
 *  recorded). `in_tx` runs inside the deletion's transaction before the user row is removed; a
 *  failure aborts the deletion (nothing half-done). `after` (may be NULL) runs once it
 *  committed, without a connection: wake a worker, never wait on anything. */
typedef enum ink_status (*ink_account_delete_hook)(struct ink_db *db, const char *user_id);
typedef void (*ink_account_deleted_hook)(const char *user_id);
void ink_account_on_delete(ink_account_delete_hook in_tx, ink_account_deleted_hook after);

#endif
