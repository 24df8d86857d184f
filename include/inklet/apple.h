/** Sign in with Apple specifics: the client secret is not a fixed string but an ES256 JWT the
 *  server signs with the team's private key (the `.p8` file from the developer portal). */
#ifndef INKLET_APPLE_H
#define INKLET_APPLE_H
#include <openssl/evp.h>

#define INK_APPLE_AUDIENCE "https://appleid.apple.com"
/** Apple accepts client secrets valid for at most 15777000 s (six months). */
#define INK_APPLE_SECRET_MAX_TTL 15777000

/** Loads the `.p8` (PKCS#8 PEM) private key; it must be an EC P-256 key. NULL and *why
 *  otherwise. Caller frees (EVP_PKEY_free). */
EVP_PKEY *ink_apple_load_key(const char *path, const char **why);
/** The client secret: header {alg ES256, kid key_id}, claims {iss team_id, iat now, exp now+ttl,
 *  aud https://appleid.apple.com, sub client_id}, signature r||s (64 bytes, as JWS requires, not
 *  DER). malloc'd, or NULL when signing failed. */
char *ink_apple_client_secret(EVP_PKEY *key, const char *key_id, const char *team_id,
                              const char *client_id, long long now, unsigned ttl);

#endif
