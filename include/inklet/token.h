/** Access tokens: HS256 JWTs with every claim checked. libjwt signs them; verification does not
 *  use libjwt (it trusts the token's own `alg`, checks no claims, has a heap overflow on empty
 *  segments, and cost half the instructions of GET /auth/me): the header must be byte for byte
 *  the one we issue, the HMAC-SHA256 is compared in constant time, then each claim is checked. */
#ifndef INKLET_TOKEN_H
#define INKLET_TOKEN_H
#include "inklet/ids.h"
#include "inklet/status.h"

#include <stddef.h>

#define INK_TOKEN_ISSUER "https://auth.iminklet.com"
#define INK_TOKEN_AUDIENCE "inklet"
#define INK_TOKEN_MAX_LEN 4096
/** Tolerated clock difference for `iat` in the future, seconds. */
#define INK_TOKEN_LEEWAY 60

struct ink_token_claims {
    char sub[INK_UUID_STRLEN + 1];
    char sid[INK_UUID_STRLEN + 1];
    long long iat;
    long long exp;
};

/** Signs a new access token; returns a malloc'd string (caller frees) or NULL on failure. */
char *ink_token_issue(const unsigned char *secret, size_t secret_len, const char *user_id,
                      const char *session_id, long long now, unsigned ttl);
/** Verifies the header (exactly {"alg":"HS256","typ":"JWT"} as issued), the signature, `typ` =
 *  "access", `iss`, `aud`, integer `exp` > now, integer `iat` not in the future (leeway) and not
 *  after `exp`, UUID `sub` and `sid`. INK_OK fills *out; else INK_UNAUTHORIZED. Thread-safe. */
enum ink_status ink_token_verify(const unsigned char *secret, size_t secret_len, const char *token,
                                 long long now, struct ink_token_claims *out);

/** Refresh tokens: 32 bytes from the CSPRNG as base64url (43 chars) into out[44]. */
void ink_refresh_token_new(char out[44]);
/** SHA-256 of a refresh token, the only form stored. */
void ink_refresh_token_hash(const char *token, unsigned char out[32]);
/** True if s looks like a refresh token we issued (43 base64url chars). */
bool ink_refresh_token_wellformed(const char *s);

#endif
