/* What the OAuth module's files share: the providers, the states, the small pure helpers the
 * unit tests reach. */
#ifndef INKLET_OAUTH_INTERNAL_H
#define INKLET_OAUTH_INTERNAL_H
#include "inklet/idtoken.h"
#include "inklet/jwks.h"
#include "inklet/secretbox.h"
#include "inklet/status.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- providers (provider.c) --------------------------------------------------------------- */

struct ink_oauth_provider {
    const char *name;       /* "google" or "apple" */
    bool native;            /* client ids are configured: the ID-token route works */
    bool browser;           /* the whole browser setup is configured */
    const char *client_ids; /* accepted audiences, comma-separated */
    char *web_client_id;    /* the first of them: the one the browser flow uses */
    const char *const *issuers;
    size_t issuer_count;
    const char *auth_url, *token_url, *redirect_url, *revoke_url;
    const char *scope;
    bool pkce;      /* Google: S256 */
    bool form_post; /* Apple: response_mode=form_post */
    struct ink_jwks *jwks;
    /* Google */
    const char *client_secret;
    /* Apple: the client secret is an ES256 JWT signed here, cached until near its expiry */
    EVP_PKEY *apple_key;
    const char *team_id, *key_id;
    pthread_mutex_t secret_lock;
    char *secret_cache;
    long long secret_expires; /* unix seconds */
};

/** Counts one finished sign-in of provider p (either route). */
void ink_oauth_count_signin(const struct ink_oauth_provider *p, bool ok);
/** Counts one revocation attempt. */
void ink_oauth_count_revocation(bool ok);

struct ink_form;
struct ink_http_response;
/** POSTs a form to a provider endpoint within OAUTH_TIMEOUT, outside the request's database
 *  deadline; at most `max_response` bytes of answer are kept. */
void ink_oauth_post_form(const char *url, const struct ink_form *form, size_t max_response,
                         struct ink_http_response *out);

/** The provider by name, or NULL when there is no such provider (configured or not). */
struct ink_oauth_provider *ink_oauth_provider(const char *name);
/** The client secret for the token and revoke endpoints (malloc'd), or NULL on failure. */
char *ink_oauth_client_secret(struct ink_oauth_provider *p);
/** The box Apple refresh tokens are sealed with; NULL when no TOKEN_ENCRYPTION_KEY is set. */
const struct ink_secretbox *ink_oauth_token_box(void);

/** Lifetime of the Apple client secret we sign, and how long before its end a new one is made. */
#define INK_APPLE_SECRET_TTL 86400
#define INK_APPLE_SECRET_RENEW 600

/* ---- states (state.c) --------------------------------------------------------------------- */

#define INK_OAUTH_STATE_TTL 600 /* seconds */
#define INK_OAUTH_SECRET_LEN 43 /* base64url of 32 random bytes */

struct ink_oauth_state {
    char provider[8];
    char client[8];
    char verifier[INK_OAUTH_SECRET_LEN + 1]; /* "" without PKCE */
    char nonce[INK_OAUTH_SECRET_LEN + 1];
    bool expired;
};

/** A new random secret (state, nonce, PKCE verifier): 43 base64url characters. */
void ink_oauth_secret(char out[INK_OAUTH_SECRET_LEN + 1]);
/** The PKCE S256 challenge of a verifier: BASE64URL(SHA256(verifier)). */
void ink_oauth_pkce_challenge(const char *verifier, char out[INK_OAUTH_SECRET_LEN + 1]);
/** The stored form of a state, as bytea hex ("\\x" + 64 hex); false when `state` cannot be one
 *  of ours (not exactly 43 base64url characters), so it never reaches the database. */
bool ink_oauth_state_key(const char *state, char out[2 + 64 + 1]);
/** Stores a new state for (provider, client). */
enum ink_status ink_oauth_state_create(const char *provider, const char *client, bool pkce,
                                       struct ink_oauth_state *st,
                                       char state[INK_OAUTH_SECRET_LEN + 1]);
/** Consumes a state atomically: INK_OK fills *out (check out->expired and out->provider);
 *  INK_NOT_FOUND when it is unknown, used or malformed. */
enum ink_status ink_oauth_state_consume(const char *state, struct ink_oauth_state *out);

/* ---- urls (flow.c) ------------------------------------------------------------------------ */

/** `base` with the form's pairs appended as a query ('?' or '&' as base needs). malloc'd. */
char *ink_oauth_url_with(const char *base, const char *query);

#endif
