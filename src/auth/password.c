#include "inklet/password.h"

#include "inklet/alloc.h"
#include "inklet/deadline.h"
#include "inklet/ids.h"
#include "inklet/log.h"

#include <argon2.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
static struct ink_phc dummy;   /* what an unknown name is verified against */
static bool have_dummy;

/* Each hashing slot owns argon2's working memory (m KiB) for the life of the process, whichever
 * thread takes the slot. With the memory per thread instead (malloc's arenas), the hashing lane's
 * extra threads, which do a login's database work around its hash, each kept a 19 MiB buffer of
 * their own, and a hash often started on a buffer the caches had long dropped: about 8% more CPU
 * per hash than the same hashes on two warm buffers. Slot memory is mapped once, never freed
 * while the server runs, and wiped after every hash before it is handed back: by libargon2
 * (FLAG_clear_internal_memory, on by default), which ink_password_init checks, else by us. */
struct scratch {
    uint8_t *mem; /* NULL when it could not be mapped: that slot's hashes use malloc */
    size_t size;
    bool busy;
};
static struct scratch *scratch;
static unsigned nscratch;
static unsigned *free_slots; /* indexes into scratch; the semaphore guarantees one is there */
static unsigned nfree;
static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local struct scratch *held; /* the slot this thread is hashing in */
static bool wipe_ourselves;                /* libargon2 was built not to wipe */
static atomic_ullong fallbacks;            /* hashes that ran in malloc'd memory instead */

bool ink_password_policy_ok(const char *pw)
{
    size_t n = strlen(pw);
    return n >= PW_MIN && n <= PW_MAX;
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
    const char *hash = dollar + 1;
    /* strict like libargon2's own decoder: unused trailing bits must be zero */
    if (!ink_base64_decode(salt, (size_t)(dollar - salt), out->salt, sizeof out->salt,
                           &out->salt_len) ||
        !ink_base64_decode(hash, strlen(hash), out->hash, sizeof out->hash, &out->hash_len))
        return false;
    return out->params.m_kib >= 8 && out->params.m_kib <= INK_PHC_MAX_M_KIB &&
           out->params.m_kib >= 8 * out->params.p && out->params.t >= 1 &&
           out->params.t <= INK_PHC_MAX_T && out->params.p >= 1 && out->params.p <= INK_PHC_MAX_P &&
           out->salt_len >= 8 && out->hash_len >= 16; /* at most INK_PHC_MAX_SALT, _HASH */
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
    pthread_mutex_lock(&scratch_lock);
    held = nfree ? &scratch[free_slots[--nfree]] : NULL;
    pthread_mutex_unlock(&scratch_lock);
    return INK_OK;
}

static void give_slot(void)
{
    if (!slots_ready)
        return;
    if (held) {
        pthread_mutex_lock(&scratch_lock);
        free_slots[nfree++] = (unsigned)(held - scratch);
        pthread_mutex_unlock(&scratch_lock);
        held = NULL;
    }
    sem_post(&slots);
}

/* libargon2's allocator hooks; they take no context, hence the thread-local slot */
static int scratch_alloc(uint8_t **memory, size_t bytes)
{
    if (held && held->mem && !held->busy && bytes <= held->size) {
        held->busy = true;
        *memory = held->mem;
    } else {
        /* no slot (a failed mapping), or a stored hash with more memory than ARGON2_MEMORY_KIB */
        atomic_fetch_add(&fallbacks, 1);
        *memory = malloc(bytes);
    }
    return *memory ? ARGON2_OK : ARGON2_MEMORY_ALLOCATION_ERROR;
}

static void scratch_free(uint8_t *memory, size_t bytes)
{
    if (held && memory == held->mem) {
        if (wipe_ourselves)
            OPENSSL_cleanse(memory, bytes);
        held->busy = false;
    } else {
        free(memory);
    }
}

static void scratch_release(void)
{
    for (unsigned i = 0; i < nscratch; i++)
        if (scratch[i].mem)
            munmap(scratch[i].mem, scratch[i].size);
    free(scratch);
    free(free_slots);
    scratch = NULL;
    free_slots = NULL;
    nscratch = nfree = 0;
}

/* Address space only: a slot's pages are touched by its first hash. */
static void scratch_map(unsigned n, size_t size)
{
    scratch = ink_calloc(n, sizeof *scratch);
    free_slots = ink_calloc(n, sizeof *free_slots);
    for (unsigned i = 0; i < n; i++) {
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            ink_warn("cannot map %zu bytes for a hashing slot; it hashes with malloc", size);
        } else {
            (void)madvise(m, size, MADV_DONTDUMP); /* wiped anyway; never in a core file */
            scratch[i] = (struct scratch){m, size, false};
        }
        free_slots[i] = i;
    }
    nscratch = nfree = n;
}

static bool slot_is_clear(const struct scratch *sc)
{
    for (size_t j = 0; sc->mem && j < sc->size; j++)
        if (sc->mem[j])
            return false;
    return true;
}

bool ink_password_scratch_is_clear(void)
{
    pthread_mutex_lock(&scratch_lock);
    bool clear = true;
    for (unsigned i = 0; i < nscratch && clear; i++)
        clear = slot_is_clear(&scratch[i]);
    pthread_mutex_unlock(&scratch_lock);
    return clear;
}

unsigned long long ink_password_scratch_fallbacks(void)
{
    return atomic_load(&fallbacks);
}

unsigned ink_password_scratch_slots(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < nscratch; i++)
        n += scratch[i].mem != NULL;
    return n;
}

/* One argon2id run in the caller's slot memory. */
static int argon2id_run(const struct ink_argon2_params *p, const char *pw, const uint8_t *salt,
                        size_t salt_len, uint8_t *out, size_t out_len, const uint8_t *expected)
{
    argon2_context ctx = {
        .out = out,
        .outlen = (uint32_t)out_len,
        .pwd = (uint8_t *)(uintptr_t)pw, /* read only: ARGON2_FLAG_CLEAR_PASSWORD is not set */
        .pwdlen = (uint32_t)strlen(pw),
        .salt = (uint8_t *)(uintptr_t)salt,
        .saltlen = (uint32_t)salt_len,
        .t_cost = p->t,
        .m_cost = p->m_kib,
        .lanes = p->p,
        .threads = p->p,
        .version = ARGON2_VERSION_13,
        .allocate_cbk = scratch_alloc,
        .free_cbk = scratch_free,
        .flags = ARGON2_DEFAULT_FLAGS,
    };
    atomic_fetch_add(&computed, 1);
    /* argon2_verify_ctx compares in constant time */
    return expected ? argon2_verify_ctx(&ctx, (const char *)expected, Argon2_id)
                    : argon2_ctx(&ctx, Argon2_id);
}

static bool verify_parsed(const struct ink_phc *phc, const char *pw)
{
    uint8_t out[INK_PHC_MAX_HASH];
    int rc =
        argon2id_run(&phc->params, pw, phc->salt, phc->salt_len, out, phc->hash_len, phc->hash);
    OPENSSL_cleanse(out, sizeof out);
    return rc == ARGON2_OK;
}

static char *hash_with(const struct ink_argon2_params *p, const char *pw)
{
    uint8_t salt[SALT_LEN], hash[HASH_LEN];
    ink_random_bytes(salt, sizeof salt);
    int rc = argon2id_run(p, pw, salt, sizeof salt, hash, sizeof hash, NULL);
    if (rc != ARGON2_OK) {
        ink_error("argon2 hashing failed: %s", argon2_error_message(rc));
        return NULL;
    }
    /* the PHC string libargon2's argon2id_hash_encoded writes */
    size_t enc_len = argon2_encodedlen(p->t, p->m_kib, p->p, SALT_LEN, HASH_LEN, Argon2_id);
    char *enc = ink_malloc(enc_len);
    int n = snprintf(enc, enc_len, "$argon2id$v=%d$m=%u,t=%u,p=%u$", ARGON2_VERSION_13, p->m_kib,
                     p->t, p->p);
    n += (int)ink_base64_encode(salt, sizeof salt, enc + n);
    enc[n++] = '$';
    ink_base64_encode(hash, sizeof hash, enc + n);
    OPENSSL_cleanse(hash, sizeof hash);
    return enc;
}

bool ink_password_init(const struct ink_argon2_params *params, unsigned concurrency, unsigned wait)
{
    cfg = *params;
    wait_ms = wait;
    if (slots_ready)
        sem_destroy(&slots);
    if (!concurrency)
        concurrency = 1;
    sem_init(&slots, 0, concurrency);
    slots_ready = true;
    scratch_release();
    scratch_map(concurrency, (size_t)(cfg.m_kib > 8 * cfg.p ? cfg.m_kib : 8 * cfg.p) * 1024);
    char random_pw[44];
    unsigned char raw[32];
    ink_random_bytes(raw, sizeof raw);
    ink_base64url_encode(raw, sizeof raw, random_pw);
    /* the dummy is hashed in a slot's memory, which shows whether libargon2 wipes it */
    held = nscratch && scratch[0].mem ? &scratch[0] : NULL;
    char *phc = hash_with(&cfg, random_pw);
    held = NULL;
    wipe_ourselves = false;
    if (nscratch && !slot_is_clear(&scratch[0])) {
        ink_warn("libargon2 leaves its memory as it was; the server wipes it after each hash");
        wipe_ourselves = true;
        OPENSSL_cleanse(scratch[0].mem, scratch[0].size);
    }
    have_dummy = phc && ink_phc_parse(phc, &dummy);
    free(phc);
    return have_dummy;
}

void ink_password_shutdown(void)
{
    have_dummy = false;
    if (slots_ready)
        sem_destroy(&slots);
    slots_ready = false;
    scratch_release();
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
        *match = verify_parsed(&parsed, pw);
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
        if (have_dummy) {
            (void)verify_parsed(&dummy, pw);
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
