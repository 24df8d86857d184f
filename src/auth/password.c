#include "inklet/password.h"

#include "inklet/alloc.h"
#include "inklet/deadline.h"
#include "inklet/ids.h"
#include "inklet/log.h"

#include <argon2.h>
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SALT_LEN 16
#define HASH_LEN 32
#define PW_MIN 8
#define PW_MAX 1024

static struct ink_argon2_params cfg = {19456, 2, 1};
static sem_t slots;
static bool slots_ready;
static unsigned wait_ms = 2000;
static atomic_uint waiting;
static atomic_ullong computed; /* argon2 runs: hashes and verifications */
static char *dummy_phc;

bool ink_password_policy_ok(const char *pw)
{
    size_t n = strlen(pw);
    return n >= PW_MIN && n <= PW_MAX;
}

static size_t b64_decoded_len(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    if (n % 4 == 1)
        return 0;
    return n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
}

static bool parse_u32(const char **p, const char *prefix, uint32_t *out)
{
    size_t pl = strlen(prefix);
    if (strncmp(*p, prefix, pl) != 0)
        return false;
    const char *s = *p + pl;
    uint64_t v = 0;
    size_t digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 11) {
        v = v * 10 + (uint64_t)(*s - '0');
        s++;
        digits++;
    }
    /* the PHC format has no leading zeros, and libargon2's decoder refuses them: a string we
     * would call well-formed could then never verify (found by fuzz_phc) */
    if (!digits || digits > 10 || v > UINT32_MAX || (digits > 1 && s[-(long)digits] == '0'))
        return false;
    *out = (uint32_t)v;
    *p = s;
    return true;
}

bool ink_phc_parse(const char *phc, struct ink_phc *out)
{
    if (!phc || strlen(phc) > 512)
        return false;
    const char *p = phc;
    uint32_t version;
    if (strncmp(p, "$argon2id$", 10) != 0)
        return false;
    p += 10;
    if (!parse_u32(&p, "v=", &version) || version != ARGON2_VERSION_13 || *p++ != '$')
        return false;
    if (!parse_u32(&p, "m=", &out->params.m_kib) || *p++ != ',' ||
        !parse_u32(&p, "t=", &out->params.t) || *p++ != ',' ||
        !parse_u32(&p, "p=", &out->params.p) || *p++ != '$')
        return false;
    const char *salt = p, *dollar = strchr(salt, '$');
    if (!dollar)
        return false;
    out->salt_len = b64_decoded_len(salt, (size_t)(dollar - salt));
    const char *hash = dollar + 1;
    out->hash_len = b64_decoded_len(hash, strlen(hash));
    return out->params.m_kib >= 8 && out->params.m_kib <= INK_PHC_MAX_M_KIB &&
           out->params.m_kib >= 8 * out->params.p && out->params.t >= 1 &&
           out->params.t <= INK_PHC_MAX_T && out->params.p >= 1 && out->params.p <= INK_PHC_MAX_P &&
           out->salt_len >= 8 && out->salt_len <= 64 && out->hash_len >= 16 && out->hash_len <= 64;
}

static enum ink_status take_slot(void)
{
    if (!slots_ready)
        return INK_OK;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    atomic_fetch_add(&waiting, 1);
    int rc;
    while ((rc = sem_timedwait(&slots, &ts)) != 0 && errno == EINTR)
        ;
    atomic_fetch_sub(&waiting, 1);
    if (rc != 0) {
        ink_warn("password hashing saturated; shedding a request");
        return INK_UNAVAILABLE;
    }
    return INK_OK;
}

static void give_slot(void)
{
    if (slots_ready)
        sem_post(&slots);
}

static char *hash_with(const struct ink_argon2_params *p, const char *pw)
{
    unsigned char salt[SALT_LEN];
    ink_random_bytes(salt, sizeof salt);
    size_t enc_len = argon2_encodedlen(p->t, p->m_kib, p->p, SALT_LEN, HASH_LEN, Argon2_id);
    char *enc = ink_malloc(enc_len);
    atomic_fetch_add(&computed, 1);
    int rc = argon2id_hash_encoded(p->t, p->m_kib, p->p, pw, strlen(pw), salt, SALT_LEN, HASH_LEN,
                                   enc, enc_len);
    if (rc != ARGON2_OK) {
        ink_error("argon2 hashing failed: %s", argon2_error_message(rc));
        free(enc);
        return NULL;
    }
    return enc;
}

bool ink_password_init(const struct ink_argon2_params *params, unsigned concurrency, unsigned wait)
{
    cfg = *params;
    wait_ms = wait;
    if (slots_ready)
        sem_destroy(&slots);
    sem_init(&slots, 0, concurrency ? concurrency : 1);
    slots_ready = true;
    free(dummy_phc);
    char random_pw[44];
    unsigned char raw[32];
    ink_random_bytes(raw, sizeof raw);
    ink_base64url_encode(raw, sizeof raw, random_pw);
    dummy_phc = hash_with(&cfg, random_pw);
    return dummy_phc != NULL;
}

void ink_password_shutdown(void)
{
    free(dummy_phc);
    dummy_phc = NULL;
    if (slots_ready)
        sem_destroy(&slots);
    slots_ready = false;
}

/* Hashing is CPU work with its own bound (the slot wait), not a wait on the database: the
 * request's database deadline stands still meanwhile. */
enum ink_status ink_password_hash(const char *pw, char **phc_out)
{
    *phc_out = NULL;
    int64_t paused = ink_deadline_pause();
    enum ink_status st = take_slot();
    if (st == INK_OK) {
        *phc_out = hash_with(&cfg, pw);
        give_slot();
        st = *phc_out ? INK_OK : INK_INTERNAL;
    }
    ink_deadline_resume(paused);
    return st;
}

enum ink_status ink_password_verify(const char *phc, const char *pw, bool *match,
                                    bool *needs_rehash)
{
    *match = false;
    *needs_rehash = false;
    struct ink_phc parsed;
    if (!ink_phc_parse(phc, &parsed)) {
        ink_warn("stored password hash is malformed or out of bounds");
        return ink_password_verify_dummy(pw);
    }
    int64_t paused = ink_deadline_pause();
    enum ink_status st = take_slot();
    if (st == INK_OK) {
        atomic_fetch_add(&computed, 1);
        *match = argon2id_verify(phc, pw, strlen(pw)) == ARGON2_OK;
        give_slot();
        *needs_rehash = parsed.params.m_kib != cfg.m_kib || parsed.params.t != cfg.t ||
                        parsed.params.p != cfg.p;
    }
    ink_deadline_resume(paused);
    return st;
}

enum ink_status ink_password_verify_dummy(const char *pw)
{
    int64_t paused = ink_deadline_pause();
    enum ink_status st = take_slot();
    if (st == INK_OK) {
        if (dummy_phc) {
            atomic_fetch_add(&computed, 1);
            (void)argon2id_verify(dummy_phc, pw, strlen(pw));
        } else {
            /* never fast: without a dummy (ink_password_init failed, and the server refuses to
             * start then) an unknown name must not get a quick 401 */
            st = INK_INTERNAL;
        }
        give_slot();
    }
    ink_deadline_resume(paused);
    return st;
}

unsigned long long ink_password_computed(void)
{
    return atomic_load(&computed);
}

unsigned ink_password_waiting(void)
{
    return atomic_load(&waiting);
}
