/** Password policy and argon2id hashing with a cap on concurrent hashes.
 *  Hashing is CPU- and memory-heavy (~18 ms, 19 MiB each), so at most `concurrency` run at once;
 *  excess callers wait briefly and then get INK_UNAVAILABLE. Each of those slots hashes in its
 *  own memory, mapped once and wiped after every hash. */
#ifndef INKLET_PASSWORD_H
#define INKLET_PASSWORD_H
#include "inklet/config.h"
#include "inklet/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ink_argon2_params {
    uint32_t m_kib;
    uint32_t t;
    uint32_t p;
};

/** Bounds applied to PHC strings read back from the database before they are used. They are the
 *  configuration's bounds too (ARGON2_*), so the server can always read back what it wrote. */
#define INK_PHC_MAX_M_KIB INK_ARGON2_MAX_M_KIB
#define INK_PHC_MAX_T INK_ARGON2_MAX_T
#define INK_PHC_MAX_P INK_ARGON2_MAX_P

#define INK_PHC_MAX_SALT 64
#define INK_PHC_MAX_HASH 64

struct ink_phc {
    struct ink_argon2_params params;
    size_t salt_len; /* decoded bytes */
    size_t hash_len; /* decoded bytes */
    uint8_t salt[INK_PHC_MAX_SALT];
    uint8_t hash[INK_PHC_MAX_HASH];
};

/** Configures parameters and concurrency, and prepares the dummy hash used to equalize timing.
 *  False when the dummy hash cannot be computed with these parameters: the server must not
 *  start then, or logins for unknown users would be measurably fast. */
bool ink_password_init(const struct ink_argon2_params *params, unsigned concurrency,
                       unsigned wait_ms);
void ink_password_shutdown(void);

/** 8–1024 bytes; the caller guarantees valid UTF-8 without NUL (the JSON parser does). */
bool ink_password_policy_ok(const char *pw);

/** Parses and bounds-checks an argon2id PHC string. False if malformed or out of bounds. */
bool ink_phc_parse(const char *phc, struct ink_phc *out);

/** Hashes with the configured parameters and a fresh 16-byte salt; *phc_out is malloc'd. */
enum ink_status ink_password_hash(const char *pw, char **phc_out);
/** Verifies pw against phc. INK_OK with *match; *needs_rehash when phc's parameters differ from
 *  the configured ones. A malformed or out-of-bounds phc never matches (but costs the same). */
enum ink_status ink_password_verify(const char *phc, const char *pw, bool *match,
                                    bool *needs_rehash);
/** Spends the time of one verification without a real hash (unknown user, OAuth-only account).
 *  INK_INTERNAL when there is no dummy hash (never a fast answer). */
enum ink_status ink_password_verify_dummy(const char *pw);
/** Hashing slots whose argon2 memory is mapped for the process's life (the others use malloc). */
unsigned ink_password_scratch_slots(void);
/** Hashes that could not use their slot's memory and used malloc (tests). */
unsigned long long ink_password_scratch_fallbacks(void);
/** True when no slot's argon2 memory holds anything but zeros: no hash leaves its state behind
 *  (tests; reads every mapped page). */
bool ink_password_scratch_is_clear(void);
/** Hashes currently waiting for a slot (metrics). */
unsigned ink_password_waiting(void);
/** argon2 computations so far, hashes and verifications alike (metrics). */
unsigned long long ink_password_computed(void);

#endif
