/** Sign in with Google and Apple (contract §2.1): the browser flow (start, provider callback,
 *  hand-off redirect) and the native ID-token route. Providers come from ink_app.cfg. */
#ifndef INKLET_OAUTH_H
#define INKLET_OAUTH_H
#include "inklet/accounts.h"
#include "inklet/status.h"

#include <stdbool.h>

/** Loads the configured providers (the Apple key file, the JWKS caches). False, with one error
 *  line naming the key, when a configured piece cannot be used. */
bool ink_oauth_init(void);
void ink_oauth_shutdown(void);

/** Step 1: a new single-use state and the provider's authorize URL (*location, malloc'd).
 *  INK_NOT_FOUND unknown provider; INK_INVALID unknown client; INK_UNAVAILABLE
 *  `provider_not_configured` or the database. */
enum ink_status ink_oauth_begin(const char *provider, const char *client, char **location,
                                struct ink_err *err);

/** What the provider sent back to the callback (each may be NULL). */
struct ink_oauth_reply {
    const char *code, *state, *error;
};

/** Steps 2–5: consumes the state, exchanges the code, verifies the ID token, signs in, and
 *  returns where to send the browser (*location, malloc'd): the configured target with the
 *  tokens, or with error=oauth_failed. Always sets *location. */
void ink_oauth_callback(const char *provider, const struct ink_oauth_reply *reply,
                        const struct ink_client *client, char **location);

/** The native route: verifies `id_token` (and `nonce` when given) and signs in. INK_NOT_FOUND
 *  unknown provider; INK_UNAVAILABLE `provider_not_configured`; INK_UNAUTHORIZED
 *  `invalid_id_token`; what ink_account_oauth_signin answers. */
enum ink_status ink_oauth_native(const char *provider, const char *id_token, const char *nonce,
                                 const struct ink_client *client, struct ink_tokens *tokens,
                                 json_t **user, struct ink_err *err);

/** Account deletion hooks: the Apple tokens of the user are queued for revocation in the
 *  deletion's transaction, and the revoker is woken once it committed. */
enum ink_status ink_oauth_on_account_delete(struct ink_db *db, const char *user_id);
void ink_oauth_after_account_delete(const char *user_id);

/** Starts / stops the background job that revokes queued Apple tokens. */
bool ink_oauth_revoker_start(void);
void ink_oauth_revoker_stop(void);

/** Counters for /metrics. Index 0 is Google, 1 Apple. */
struct ink_oauth_stats {
    unsigned long long signin_ok[2], signin_failed[2]; /* both routes */
    unsigned long long jwks_fetches[2];
    unsigned long long revoked, revoke_failed;
};
void ink_oauth_get_stats(struct ink_oauth_stats *out);

/** Deletes expired states; safe from several instances. */
enum ink_status ink_oauth_prune(long long *count);

#endif
