/** Sessions and tokens: issuing a token pair, single-use refresh rotation with reuse detection,
 *  revocation, and authenticating a Bearer access token (signature, claims, session liveness). */
#ifndef INKLET_AUTH_H
#define INKLET_AUTH_H
#include "inklet/db.h"
#include "inklet/ids.h"
#include "inklet/status.h"

#include <jansson.h>

/** Who a Bearer access token speaks for. */
struct ink_auth {
    char user_id[INK_UUID_STRLEN + 1];
    char session_id[INK_UUID_STRLEN + 1];
};

struct ink_tokens {
    char *access; /* malloc'd */
    char refresh[44];
    char session_id[INK_UUID_STRLEN + 1];
};

void ink_tokens_free(struct ink_tokens *t);

/** Process-wide setup: secret and lifetimes from ink_app.cfg. */
void ink_auth_init(void);

/** Authenticates "Bearer <jwt>": INK_OK fills *out; INK_UNAUTHORIZED; INK_UNAVAILABLE when the
 *  session store cannot be reached. Session liveness is cached per instance for ≤ 2 s. */
enum ink_status ink_auth_authenticate(const char *authorization, struct ink_auth *out);

/** Starts a session for user_id on `db` (inside the caller's transaction, if any). */
enum ink_status ink_session_start(struct ink_db *db, const char *user_id, const char *user_agent,
                                  const char *ip, struct ink_tokens *out);
/** Rotating a refresh token, in two halves around its one statement (ink_session_rotate_sql),
 *  so that the request lane can batch rotations (inklet/batched.h). */
struct ink_rotation {
    char old_hash[65], new_hash[65], idle_ttl[16];
    char refresh[44]; /* the new refresh token */
};
extern const struct ink_sql ink_session_rotate_sql;
/** Checks the token's form, draws the new one, and fills the statement's three parameters ($1
 *  is the old token's hash, the row the statement locks first; the strings live in *rot).
 *  INK_UNAUTHORIZED with err->code invalid_refresh_token when the token is malformed. */
enum ink_status ink_session_rotation_bind(struct ink_rotation *rot, const char *refresh_token,
                                          const char *params[3], struct ink_err *err);
/** The new token pair from the statement's result, or why it matched nothing (looked up once
 *  the rotation's transaction has committed): INK_UNAUTHORIZED with err->code
 *  invalid_refresh_token, refresh_token_expired, refresh_token_rotated (presented again within
 *  REFRESH_REUSE_GRACE of its rotation: a lost race, nothing revoked) or refresh_token_reused
 *  (later: every session of the token's user is revoked). */
enum ink_status ink_session_rotation_finish(const struct ink_rotation *rot, const PGresult *r,
                                            struct ink_tokens *out, struct ink_err *err);
/** Revokes one session of user_id. INK_NOT_FOUND if it is not a live session of that user. */
enum ink_status ink_session_revoke(const char *user_id, const char *session_id);
/** Revokes the session the refresh token belongs to if it is user_id's; INK_NOT_FOUND if not. */
enum ink_status ink_session_revoke_by_refresh(const char *user_id, const char *refresh_token);
/** Revokes all sessions of user_id except `keep` (may be NULL); *count receives the number.
 *  `db` is the caller's connection (to join its transaction) or NULL. */
enum ink_status ink_session_revoke_all(struct ink_db *db, const char *user_id, const char *keep,
                                       long long *count);
/** Lists live sessions newest first as the contract's JSON array (new reference in *out). */
enum ink_status ink_session_list(const char *user_id, const char *current_sid, json_t **out);

/** Deletes sessions that ended more than a week ago, refresh tokens past their idle expiry
 *  (both would be refused anyway) and login-failure counters idle for a day. Safe to run from
 * several instances; *count gets the rows. */
enum ink_status ink_session_prune(long long *count);

/** Drops cached liveness so revocations take effect at once on this instance. */
void ink_session_cache_forget_user(const char *user_id);

#endif
