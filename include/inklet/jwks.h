/** A provider's signing keys (Google's or Apple's JWKS), fetched over HTTP and cached per its
 *  Cache-Control max-age. Thread-safe; one per provider.
 *
 *  - An unknown `kid` refetches, but at most once per INK_JWKS_REFETCH_MIN_MS: a token with an
 *    invented kid cannot make the server hammer the provider.
 *  - A failed fetch keeps the cached keys (used past their max-age) and is retried at most every
 *    INK_JWKS_RETRY_MS.
 *  - While the first fetch runs, other callers wait for it (bounded by the fetch timeout). */
#ifndef INKLET_JWKS_H
#define INKLET_JWKS_H
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INK_JWKS_REFETCH_MIN_MS 10000
#define INK_JWKS_RETRY_MS 5000
#define INK_JWKS_MAX_AGE_DEFAULT 3600 /* seconds, when the provider sends none */
#define INK_JWKS_MAX_AGE_MIN 60
#define INK_JWKS_MAX_AGE_MAX 86400

/** Fetches `url`: on success *body (malloc'd) and *len, and *max_age (-1 when none). */
typedef bool (*ink_jwks_fetch_fn)(const char *url, int64_t timeout_ms, char **body, size_t *len,
                                  long *max_age, void *ctx);

struct ink_jwks;

/** Keys from `url`, each fetch bounded by `timeout_ms`, over the shared HTTP client. */
struct ink_jwks *ink_jwks_new(const char *url, int64_t timeout_ms);
/** The same with another fetcher and clock (monotonic ms), for tests. */
struct ink_jwks *ink_jwks_new_with(const char *url, int64_t timeout_ms, ink_jwks_fetch_fn fetch,
                                   void *ctx, int64_t (*clock_ms)(void));
void ink_jwks_free(struct ink_jwks *j);
/** The key with `kid`, as a new reference (EVP_PKEY_free), or NULL when there is none even after
 *  the fetch the rules above allow. Blocks for at most one fetch. */
EVP_PKEY *ink_jwks_key(struct ink_jwks *j, const char *kid);
/** Fetches so far (attempts, successful or not), for tests and metrics. */
unsigned long ink_jwks_fetches(struct ink_jwks *j);

/** The max-age of a Cache-Control value, or -1 when it has none (or `no-store`/`no-cache`). */
long ink_jwks_parse_max_age(const char *cache_control);

#endif
