/** Stripe over libcurl: form-encoded requests with Stripe's bracket syntax, one call with a time
 *  budget and bounded retries, Stripe's error object logged (never shown to clients), and the
 *  webhook signature check. Knows Stripe's protocol, nothing of Inklet's tables. */
#ifndef INKLET_STRIPE_H
#define INKLET_STRIPE_H
#include "inklet/formdata.h"
#include "inklet/status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- webhook signatures ------------------------------------------------------------------- */

enum ink_stripe_sig {
    INK_SIG_OK,
    INK_SIG_MISSING,   /* no header, or no t= / no v1= */
    INK_SIG_MALFORMED, /* t= empty or not a number */
    INK_SIG_MISMATCH,  /* no v1 matches the body */
    INK_SIG_STALE,     /* t is further than the tolerance from now, either way */
};

#define INK_STRIPE_SIG_TOLERANCE 300

/** Checks a Stripe-Signature header (`t=<unix>,v1=<hex>[,v1=…][,v0=…]`) against the raw body:
 *  HMAC-SHA256 over "<t>.<body>" keyed with the whole endpoint secret, any v1 may match
 *  (compared in constant time), v0 and unknown schemes are ignored. The signature is checked
 *  before the timestamp, so a stale but authentic delivery is told apart from a forgery. */
enum ink_stripe_sig ink_stripe_verify_signature(const char *header, const char *body, size_t len,
                                                const char *secret, time_t now, unsigned tolerance);

/* ---- the client --------------------------------------------------------------------------- */

/** The API version every request pins (Stripe-Version), so object shapes do not change under us
 *  when the account's default version moves. */
#define INK_STRIPE_API_VERSION "2024-06-20"

/** Sets up the client from ink_app.cfg (base URL, secret key, STRIPE_TIMEOUT) after
 *  curl_global_init. False when billing is not configured (no secret key): calls then fail. */
bool ink_stripe_init(void);
void ink_stripe_shutdown(void);
/** True when STRIPE_SECRET_KEY is set. */
bool ink_stripe_configured(void);
/** The absolute monotonic deadline (ms) one Stripe operation gets from now: STRIPE_TIMEOUT. */
int64_t ink_stripe_budget(void);

/** One Stripe API call: `method` "GET" / "POST" / "DELETE", `path` "/v1/…", `form` the body of a
 *  POST or the query of a GET (may be NULL). `idempotency_key` (POST only, may be NULL) is sent
 *  as Idempotency-Key and makes the call safe to retry. Transport errors, 409 (a concurrent
 *  request with the same key, lock timeouts), 429 and 5xx are retried with back-off while the
 *  `deadline` (monotonic ms) allows, honouring Stripe-Should-Retry. On INK_OK *out is the parsed
 *  object (new reference). INK_NOT_FOUND for a 404 (resource_missing); INK_UPSTREAM for anything
 *  else, with the Stripe error logged. The calling thread's database deadline is paused
 *  meanwhile. */
enum ink_status ink_stripe_call(const char *method, const char *path, const struct ink_form *form,
                                const char *idempotency_key, int64_t deadline, json_t **out);

/** Calls that ended in success / in failure (after retries), for /metrics. */
struct ink_histogram;
void ink_stripe_stats(unsigned long long *ok, unsigned long long *failed,
                      const struct ink_histogram **latency);

#endif
