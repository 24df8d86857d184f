/** Provider ID tokens (Google, Apple; contract §2.1 step 3): RS256 only, the key chosen by `kid`
 *  from the provider's JSON Web Key Set, every claim checked here (libjwt 1.10 trusts the token's
 *  own `alg` and checks no claims, so it is not used for these).
 *
 *  Verification is two steps so that a key cache can refetch on an unknown `kid` in between:
 *  ink_idtoken_parse() refuses anything but a well-formed RS256 token before any key is looked
 *  up (alg:none, HS256 signed with a public key as secret, and every other algorithm never reach
 *  a key), then ink_idtoken_check() verifies the signature with the chosen key and the claims. */
#ifndef INKLET_IDTOKEN_H
#define INKLET_IDTOKEN_H
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>

#define INK_IDTOKEN_MAX_LEN 16384
#define INK_IDTOKEN_KID_MAX 128
/** Clock difference tolerated for `exp` and `iat`, seconds. */
#define INK_IDTOKEN_LEEWAY 60

/* ---- keys --------------------------------------------------------------------------------- */

/** An RSA public key from a JWK object (`kty` RSA, `n`, `e`; `use` sig and `alg` RS256 when
 *  present), built with OpenSSL 3's EVP_PKEY_fromdata. 2048 to 8192-bit moduli, odd exponent
 *  > 1 of at most 64 bits. NULL (and *why, static) otherwise. Caller frees (EVP_PKEY_free). */
EVP_PKEY *ink_jwk_rsa_public(json_t *jwk, const char **why);

/** The usable keys of a JWKS document, by kid. Keys that are not RSA signature keys, or have no
 *  kid, are skipped (a provider may publish others). */
struct ink_jwk_set;
/** Parses a JWKS body. NULL (and *why) when it is not `{"keys":[...]}` or holds no usable key. */
struct ink_jwk_set *ink_jwk_set_parse(const char *body, size_t len, const char **why);
void ink_jwk_set_free(struct ink_jwk_set *set);
/** The key with that kid (borrowed; valid while the set lives), or NULL. */
EVP_PKEY *ink_jwk_set_find(const struct ink_jwk_set *set, const char *kid);
size_t ink_jwk_set_count(const struct ink_jwk_set *set);

/* ---- tokens ------------------------------------------------------------------------------- */

enum ink_idtoken_result {
    INK_IDT_OK,
    INK_IDT_MALFORMED, /* not three base64url segments of a JSON header and payload */
    INK_IDT_ALG,       /* alg is not RS256 (none, HS*, ES*, ...): refused before any key */
    INK_IDT_NO_KEY,    /* no key with that kid */
    INK_IDT_SIGNATURE, /* the signature does not verify */
    INK_IDT_CLAIMS,    /* iss, aud, exp, iat, nonce, sub or email_verified is wrong */
};

/** A parsed, not yet verified token. */
struct ink_idtoken {
    char kid[INK_IDTOKEN_KID_MAX + 1];
    json_t *claims; /* owned */
    unsigned char *sig;
    size_t sig_len;
    size_t signed_len; /* the "header.payload" prefix of the text the signature covers */
    char *text;        /* owned copy of the token */
};

/** What the claims must say. */
struct ink_idtoken_rules {
    const char *const *issuers; /* accepted `iss` values */
    size_t issuer_count;
    const char *audiences; /* comma-separated accepted client ids */
    /* The nonce the token must carry, raw; the token may hold it as is or as the hex SHA-256 of
     * it (Apple's native flow hashes it). NULL: the token must not be checked for one (native
     * sign-in without a nonce). */
    const char *nonce;
    long long now;
};

/** What a verified token says about the user. */
struct ink_identity {
    char sub[256];
    char email[256]; /* "" when absent */
    bool email_verified;
};

enum ink_idtoken_result ink_idtoken_parse(const char *token, struct ink_idtoken *out);
void ink_idtoken_free(struct ink_idtoken *t);
/** Verifies the signature with `key` (RS256, PKCS#1 v1.5, SHA-256) and the claims: `iss` one of
 *  the issuers; `aud` a string or array holding a configured client id (with several audiences
 *  `azp` must be one too); integer `exp` > now − leeway; integer `iat` ≤ now + leeway; the nonce
 *  when one is expected; `sub` a non-empty string; `email_verified` true or the string "true"
 *  (Apple) — anything else is false. */
enum ink_idtoken_result ink_idtoken_check(const struct ink_idtoken *t, EVP_PKEY *key,
                                          const struct ink_idtoken_rules *rules,
                                          struct ink_identity *out, const char **why);
/** True when `expected` (raw) matches the token's `claimed` nonce as is or as hex SHA-256. */
bool ink_idtoken_nonce_matches(const char *claimed, const char *expected);

#endif
