/* password: policy, argon2id hashing, PHC bounds on stored hashes, the concurrency cap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/password.h"

#include <argon2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* small parameters keep the suite fast; production uses m=19456, t=2 */
static const struct ink_argon2_params SMALL = {256, 1, 1};
#define SMALL_PREFIX "$argon2id$v=19$m=256,t=1,p=1$"
#define CONCURRENCY 2
#define WAIT_MS 500

static int init_small(void **state)
{
    (void)state;
    ink_password_init(&SMALL, CONCURRENCY, WAIT_MS);
    return 0;
}

static int shutdown_all(void **state)
{
    (void)state;
    ink_password_shutdown();
    return 0;
}

static char *repeat(const char *unit, size_t times, const char *tail)
{
    size_t ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(ul * times + tl + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    memcpy(s + ul * times, tail, tl + 1);
    return s;
}

/* A PHC string made by libargon2 directly, with any parameters. */
static char *argon2_phc(uint32_t m, uint32_t t, uint32_t p, const char *pw)
{
    unsigned char salt[16];
    memset(salt, 0x5a, sizeof salt);
    size_t len = argon2_encodedlen(t, m, p, sizeof salt, 32, Argon2_id);
    char *enc = malloc(len);
    assert_non_null(enc);
    assert_int_equal(
        argon2id_hash_encoded(t, m, p, pw, strlen(pw), salt, sizeof salt, 32, enc, len), ARGON2_OK);
    return enc;
}

/* ---- policy ----------------------------------------------------------------------------- */

static void policy_counts_bytes_from_8_to_1024(void **state)
{
    (void)state;
    char *s = repeat("a", 7, "");
    assert_false(ink_password_policy_ok(s));
    free(s);
    s = repeat("a", 8, "");
    assert_true(ink_password_policy_ok(s));
    free(s);
    s = repeat("a", 1024, "");
    assert_true(ink_password_policy_ok(s));
    free(s);
    s = repeat("a", 1025, "");
    assert_false(ink_password_policy_ok(s));
    free(s);
    assert_false(ink_password_policy_ok(""));
}

static void policy_counts_multibyte_utf8_in_bytes(void **state)
{
    (void)state;
    char *s = repeat("\xc3\xa4", 4, ""); /* 4 characters, 8 bytes */
    assert_true(ink_password_policy_ok(s));
    free(s);
    s = repeat("\xc3\xa4", 3, "a"); /* 4 characters, 7 bytes */
    assert_false(ink_password_policy_ok(s));
    free(s);
    s = repeat("\xf0\x9f\x94\x91", 2, ""); /* 2 characters, 8 bytes */
    assert_true(ink_password_policy_ok(s));
    free(s);
    s = repeat("\xc3\xa4", 512, ""); /* 512 characters, 1024 bytes */
    assert_true(ink_password_policy_ok(s));
    free(s);
    s = repeat("\xc3\xa4", 512, "a"); /* 513 characters, 1025 bytes */
    assert_false(ink_password_policy_ok(s));
    free(s);
}

/* ---- hashing and verification ----------------------------------------------------------- */

static void hash_then_verify_matches(void **state)
{
    (void)state;
    char *phc = NULL;
    assert_int_equal(ink_password_hash("correct horse battery", &phc), INK_OK);
    assert_non_null(phc);
    bool match = false, rehash = true;
    assert_int_equal(ink_password_verify(phc, "correct horse battery", &match, &rehash), INK_OK);
    assert_true(match);
    assert_false(rehash);
    free(phc);
}

static void wrong_password_does_not_match(void **state)
{
    (void)state;
    char *phc = NULL;
    assert_int_equal(ink_password_hash("correct horse battery", &phc), INK_OK);
    static const char *const wrong[] = {"correct horse batter", "correct horse battery ",
                                        "Correct horse battery", "CORRECT HORSE BATTERY", ""};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++) {
        bool match = true, rehash = true;
        assert_int_equal(ink_password_verify(phc, wrong[i], &match, &rehash), INK_OK);
        if (match)
            fail_msg("\"%s\" matched", wrong[i]);
    }
    free(phc);
}

static void long_multibyte_password_is_never_truncated(void **state)
{
    (void)state;
    char *pw = repeat("\xc3\xa4", 512, ""); /* 1024 bytes */
    char *phc = NULL;
    assert_int_equal(ink_password_hash(pw, &phc), INK_OK);
    bool match = false, rehash = false;
    assert_int_equal(ink_password_verify(phc, pw, &match, &rehash), INK_OK);
    assert_true(match);
    pw[1022] = '\0'; /* one character shorter */
    assert_int_equal(ink_password_verify(phc, pw, &match, &rehash), INK_OK);
    assert_false(match);
    free(pw);
    free(phc);
}

static void hash_is_argon2id_phc_with_configured_params(void **state)
{
    (void)state;
    char *phc = NULL;
    assert_int_equal(ink_password_hash("password123", &phc), INK_OK);
    assert_memory_equal(phc, SMALL_PREFIX, strlen(SMALL_PREFIX));
    struct ink_phc parsed;
    assert_true(ink_phc_parse(phc, &parsed));
    assert_int_equal(parsed.params.m_kib, SMALL.m_kib);
    assert_int_equal(parsed.params.t, SMALL.t);
    assert_int_equal(parsed.params.p, SMALL.p);
    assert_int_equal(parsed.salt_len, 16);
    assert_int_equal(parsed.hash_len, 32);
    free(phc);
}

/* The server hashes through argon2_ctx in its own memory and writes the PHC string itself:
 * what it stores must be exactly what libargon2 writes and reads, both ways. */
static void hashes_are_libargon2_hashes_both_ways(void **state)
{
    (void)state;
    char *phc = NULL;
    assert_int_equal(ink_password_hash("password123", &phc), INK_OK);
    assert_int_equal(argon2id_verify(phc, "password123", strlen("password123")), ARGON2_OK);
    assert_int_equal(argon2id_verify(phc, "password124", strlen("password124")),
                     ARGON2_VERIFY_MISMATCH);
    struct ink_phc parsed;
    assert_true(ink_phc_parse(phc, &parsed));
    char theirs[256];
    assert_int_equal(argon2id_hash_encoded(SMALL.t, SMALL.m_kib, SMALL.p, "password123", 11,
                                           parsed.salt, parsed.salt_len, 32, theirs, sizeof theirs),
                     ARGON2_OK);
    assert_string_equal(phc, theirs);
    free(phc);
    /* and libargon2's, with several lanes too, verify here */
    static const struct ink_argon2_params other[] = {{256, 1, 1}, {512, 2, 2}, {1024, 1, 4}};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++) {
        char *lib = argon2_phc(other[i].m_kib, other[i].t, other[i].p, "password123");
        bool match = false, rehash;
        assert_int_equal(ink_password_verify(lib, "password123", &match, &rehash), INK_OK);
        assert_true(match);
        assert_int_equal(ink_password_verify(lib, "password12", &match, &rehash), INK_OK);
        assert_false(match);
        free(lib);
    }
}

struct verify_job {
    const char *phc;
    int wrong; /* verifications with a wrong password that matched */
    int right; /* verifications with the right password that did not */
};

static void *verify_many(void *arg)
{
    struct verify_job *job = arg;
    for (int i = 0; i < 10; i++) {
        bool match = false, rehash;
        bool right = i % 2 == 0;
        assert_int_equal(
            ink_password_verify(job->phc, right ? "password123" : "password321", &match, &rehash),
            INK_OK);
        if (right && !match)
            job->right++;
        if (!right && match)
            job->wrong++;
    }
    return NULL;
}

/* Two slots, eight threads: every hash runs in a slot's own memory, whichever thread takes the
 * slot, and none leaves its state there. */
static void every_hash_runs_in_slot_memory_and_leaves_it_wiped(void **state)
{
    (void)state;
    assert_int_equal(ink_password_scratch_slots(), CONCURRENCY);
    assert_true(ink_password_scratch_is_clear());
    unsigned long long fallbacks = ink_password_scratch_fallbacks();
    char *phc = NULL;
    assert_int_equal(ink_password_hash("password123", &phc), INK_OK);
    pthread_t th[8];
    struct verify_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (struct verify_job){.phc = phc};
        assert_int_equal(pthread_create(&th[i], NULL, verify_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].right, 0);
        assert_int_equal(jobs[i].wrong, 0);
    }
    bool match = false, rehash;
    assert_int_equal(ink_password_verify_dummy("password123"), INK_OK);
    assert_int_equal(ink_password_scratch_fallbacks(), fallbacks);
    assert_true(ink_password_scratch_is_clear());
    /* a stored hash with more memory than the slots have still verifies, in malloc'd memory */
    char *big = argon2_phc(4 * SMALL.m_kib, 1, 1, "password123");
    assert_int_equal(ink_password_verify(big, "password123", &match, &rehash), INK_OK);
    assert_true(match);
    assert_true(rehash);
    assert_int_equal(ink_password_scratch_fallbacks(), fallbacks + 1);
    assert_true(ink_password_scratch_is_clear());
    free(big);
    free(phc);
}

static void same_password_hashes_differently_each_time(void **state)
{
    (void)state;
    char *a = NULL, *b = NULL;
    assert_int_equal(ink_password_hash("password123", &a), INK_OK);
    assert_int_equal(ink_password_hash("password123", &b), INK_OK);
    assert_string_not_equal(a, b);
    /* the salts differ, not just the hashes */
    const char *sa = a + strlen(SMALL_PREFIX), *sb = b + strlen(SMALL_PREFIX);
    assert_memory_not_equal(sa, sb, (size_t)(strchr(sa, '$') - sa));
    bool match = false, rehash = true;
    assert_int_equal(ink_password_verify(b, "password123", &match, &rehash), INK_OK);
    assert_true(match);
    free(a);
    free(b);
}

static void needs_rehash_after_parameters_change(void **state)
{
    (void)state;
    char *phc = NULL;
    assert_int_equal(ink_password_hash("password123", &phc), INK_OK);
    const struct ink_argon2_params variants[] = {
        {SMALL.m_kib * 2, SMALL.t, SMALL.p},
        {SMALL.m_kib, SMALL.t + 1, SMALL.p},
        {SMALL.m_kib, SMALL.t, SMALL.p + 1},
    };
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        ink_password_init(&variants[i], CONCURRENCY, WAIT_MS);
        bool match = false, rehash = false;
        assert_int_equal(ink_password_verify(phc, "password123", &match, &rehash), INK_OK);
        assert_true(match); /* old hashes keep working */
        assert_true(rehash);
    }
    ink_password_init(&SMALL, CONCURRENCY, WAIT_MS);
    bool match = false, rehash = true;
    assert_int_equal(ink_password_verify(phc, "password123", &match, &rehash), INK_OK);
    assert_true(match);
    assert_false(rehash);
    free(phc);
}

/* The dummy verification must really run argon2 (counted), or unknown-user logins are fast. */
static void dummy_verification_runs_argon2_each_time(void **state)
{
    (void)state;
    unsigned long long before = ink_password_computed();
    assert_int_equal(ink_password_verify_dummy("whatever password"), INK_OK);
    assert_int_equal(ink_password_computed(), before + 1);
    assert_int_equal(ink_password_verify_dummy(""), INK_OK);
    assert_int_equal(ink_password_computed(), before + 2);
    assert_int_equal(ink_password_waiting(), 0);
}

/* Parameters argon2 refuses (memory below 8 KiB per lane) leave no dummy hash: init says so
 * (the server then refuses to start) and the dummy path fails closed instead of answering fast. */
static void parameters_that_cannot_hash_fail_init_and_the_dummy_fails_closed(void **state)
{
    (void)state;
    static const struct ink_argon2_params too_little = {8, 1, 2};
    assert_false(ink_password_init(&too_little, CONCURRENCY, WAIT_MS));
    assert_int_equal(ink_password_verify_dummy("whatever password"), INK_INTERNAL);
    assert_int_equal(ink_password_waiting(), 0);
    char *phc = NULL;
    assert_int_equal(ink_password_hash("password123", &phc), INK_INTERNAL);
    assert_null(phc);
    assert_true(ink_password_init(&SMALL, CONCURRENCY, WAIT_MS));
    assert_int_equal(ink_password_verify_dummy("whatever password"), INK_OK);
}

/* ---- PHC bounds ------------------------------------------------------------------------- */

/* 16-byte salt and 32-byte hash in PHC base64 (no padding) */
#define SALT16 "c2FsdHNhbHRzYWx0c2FsdA"
#define HASH32 "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

static void phc_parse_accepts_valid_strings(void **state)
{
    (void)state;
    struct ink_phc p;
    assert_true(ink_phc_parse("$argon2id$v=19$m=19456,t=2,p=1$" SALT16 "$" HASH32, &p));
    assert_int_equal(p.params.m_kib, 19456);
    assert_int_equal(p.params.t, 2);
    assert_int_equal(p.params.p, 1);
    assert_int_equal(p.salt_len, 16);
    assert_int_equal(p.hash_len, 32);
    assert_memory_equal(p.salt, "saltsaltsaltsalt", 16);
    assert_memory_equal(p.hash, "hashhashhashhashhashhashhashhash", 32);
    /* the longest salt (64 bytes) */
    assert_true(ink_phc_parse("$argon2id$v=19$m=256,t=1,p=1$"
                              "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2Fs"
                              "dHNhbHRzYWx0c2FsdA$" HASH32,
                              &p));
    assert_int_equal(p.salt_len, 64);
    /* the bounds themselves are inside */
    char buf[256];
    snprintf(buf, sizeof buf, "$argon2id$v=19$m=%u,t=%u,p=%u$" SALT16 "$" HASH32, INK_PHC_MAX_M_KIB,
             INK_PHC_MAX_T, INK_PHC_MAX_P);
    assert_true(ink_phc_parse(buf, &p));
    assert_int_equal(p.params.m_kib, INK_PHC_MAX_M_KIB);
    /* shortest allowed salt (8 bytes) and hash (16 bytes) */
    assert_true(
        ink_phc_parse("$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", &p));
    assert_int_equal(p.salt_len, 8);
    assert_int_equal(p.hash_len, 16);
    /* a real one */
    char *real = argon2_phc(256, 1, 1, "pw");
    assert_true(ink_phc_parse(real, &p));
    free(real);
}

static void phc_parse_rejects_malformed_or_out_of_bounds(void **state)
{
    (void)state;
    char over_m[128], over_t[128], over_p[128];
    snprintf(over_m, sizeof over_m, "$argon2id$v=19$m=%u,t=1,p=1$" SALT16 "$" HASH32,
             INK_PHC_MAX_M_KIB + 1);
    snprintf(over_t, sizeof over_t, "$argon2id$v=19$m=256,t=%u,p=1$" SALT16 "$" HASH32,
             INK_PHC_MAX_T + 1);
    snprintf(over_p, sizeof over_p, "$argon2id$v=19$m=4096,t=1,p=%u$" SALT16 "$" HASH32,
             INK_PHC_MAX_P + 1);
    const char *const bad[] = {
        /* other variants and versions */
        "$argon2i$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2d$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2ID$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=16$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$m=256,t=1,p=1$" SALT16 "$" HASH32, /* no version */
        /* parameters out of bounds */
        over_m,
        over_t,
        over_p,
        "$argon2id$v=19$m=4294967295,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=4294967296,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=99999999999999999999,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=7,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=0,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=8,t=1,p=2$" SALT16 "$" HASH32, /* m < 8p */
        "$argon2id$v=19$m=256,t=0,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,t=4294967295,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=0$" SALT16 "$" HASH32,
        /* leading zeros: libargon2 cannot decode them (tests/fuzz/corpus/fuzz_phc) */
        "$argon2id$v=019$m=256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=0256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,t=01,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=00$" SALT16 "$" HASH32,
        /* missing or reordered fields */
        "$argon2id$v=19$m=256,t=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$t=1,m=256,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16,
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$",
        "$argon2id$v=19$m=256,t=1,p=1$$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1",
        "$argon2id$v=19$",
        "$argon2id$",
        "",
        /* non-digits */
        "$argon2id$v=19$m=abc,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=-1,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=+256,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=0x100,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=2 56,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=19$m=,t=1,p=1$" SALT16 "$" HASH32,
        "$argon2id$v=x$m=256,t=1,p=1$" SALT16 "$" HASH32,
        /* salt shorter than 8 bytes, hash shorter than 16 bytes */
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbA$" HASH32,              /* 7-byte salt */
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$aGFzaGhhc2hoYXNoaGFz", /* 15-byte hash */
        /* bad base64 */
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA==$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRz-Wx0c2FsdA$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRz_Wx0c2FsdA$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRz*Wx0c2FsdA$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFz aGhhc2g",
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0c2Fsd$" HASH32, /* 4n+1 chars */
        /* unused trailing bits set: another spelling of the same bytes, which libargon2 refuses */
        "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdB$" HASH32,
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2h",
        /* longer than 64 bytes */
        "$argon2id$v=19$m=256,t=1,p=1$"
        "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbH"
        "Q$" HASH32,
        /* extra content */
        "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32 "$extra",
        "$argon2id$v=19$m=256,t=1,p=1,keyid=abc$" SALT16 "$" HASH32,
        " $argon2id$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32,
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct ink_phc p;
        if (ink_phc_parse(bad[i], &p))
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_false(ink_phc_parse(NULL, &(struct ink_phc){0}));
}

static void phc_parse_rejects_overlong_strings(void **state)
{
    (void)state;
    char *salt = repeat("c2Fs", 200, "");
    char *hash = repeat("aGFz", 400, "");
    char buf[4096];
    snprintf(buf, sizeof buf, "$argon2id$v=19$m=256,t=1,p=1$%s$%s", salt, hash);
    struct ink_phc p;
    assert_false(ink_phc_parse(buf, &p));
    /* a valid string followed by a long run of padding characters */
    snprintf(buf, sizeof buf, "$argon2id$v=19$m=256,t=1,p=1$" SALT16 "$%s", hash);
    assert_false(ink_phc_parse(buf, &p));
    free(salt);
    free(hash);
}

static long max_rss_kib(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_maxrss;
}

static void verify_with_out_of_bounds_phc_never_matches(void **state)
{
    (void)state;
    bool match = true, rehash = true;
    assert_int_equal(ink_password_verify("$argon2id$v=19$m=4294967295,t=1,p=1$" SALT16 "$" HASH32,
                                         "password123", &match, &rehash),
                     INK_OK);
    assert_false(match);
    assert_false(rehash);

    /* genuine hashes of the right password whose t or p are above the bounds: libargon2 would
     * say they match, the bounds check must not even try */
    char *over_t = argon2_phc(256, INK_PHC_MAX_T + 1, 1, "password123");
    assert_int_equal(argon2id_verify(over_t, "password123", strlen("password123")), ARGON2_OK);
    match = true;
    assert_int_equal(ink_password_verify(over_t, "password123", &match, &rehash), INK_OK);
    assert_false(match);
    free(over_t);
    char *over_p = argon2_phc(8 * (INK_PHC_MAX_P + 1), 1, INK_PHC_MAX_P + 1, "password123");
    match = true;
    assert_int_equal(ink_password_verify(over_p, "password123", &match, &rehash), INK_OK);
    assert_false(match);
    free(over_p);
}

static void verify_with_oversized_memory_parameter_does_not_allocate_it(void **state)
{
    (void)state;
    /* a real small hash with m rewritten just past the bound (1 GiB + 8 KiB): hashing with it
     * would touch over a gigabyte */
    char *phc = argon2_phc(256, 1, 1, "password123");
    char buf[256];
    snprintf(buf, sizeof buf, "$argon2id$v=19$m=%u,t=1,p=1%s", INK_PHC_MAX_M_KIB + 8,
             strchr(phc + strlen("$argon2id$v=19$"), '$'));
    long before = max_rss_kib();
    bool match = true, rehash = true;
    assert_int_equal(ink_password_verify(buf, "password123", &match, &rehash), INK_OK);
    assert_false(match);
    long grown = max_rss_kib() - before;
    if (grown > 256 * 1024)
        fail_msg("peak RSS grew by %ld KiB", grown);
    free(phc);
}

static void malformed_stored_hashes_never_match(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "password123", "$2b$12$abcdefghijklmnopqrstuv",
                                      "$argon2i$v=19$m=256,t=1,p=1$" SALT16 "$" HASH32};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bool match = true, rehash = true;
        assert_int_equal(ink_password_verify(bad[i], "password123", &match, &rehash), INK_OK);
        assert_false(match);
        assert_false(rehash);
    }
    /* a genuine argon2i hash of the right password is still refused */
    unsigned char salt[16] = {0};
    char enc[256];
    assert_int_equal(
        argon2i_hash_encoded(1, 256, 1, "password123", 11, salt, 16, 32, enc, sizeof enc),
        ARGON2_OK);
    bool match = true, rehash = true;
    assert_int_equal(ink_password_verify(enc, "password123", &match, &rehash), INK_OK);
    assert_false(match);
}

/* ---- concurrency cap -------------------------------------------------------------------- */

struct slow_job {
    const char *phc;
    enum ink_status st;
    bool match;
    atomic_bool done;
};

static void *slow_verify(void *arg)
{
    struct slow_job *job = arg;
    bool rehash;
    job->st = ink_password_verify(job->phc, "password123", &job->match, &rehash);
    atomic_store(&job->done, true);
    return NULL;
}

static void excess_hash_waits_then_is_shed_while_slots_are_busy(void **state)
{
    (void)state;
    /* one slot and a 50 ms wait; verification uses the stored hash's own parameters, so a
     * big stored hash holds the only slot for a long time (~250 ms here) while small ones
     * queue behind it */
    ink_password_init(&SMALL, 1, 50);
    char *big = argon2_phc(65536, 6, 1, "password123");
    char *small = NULL;
    assert_int_equal(ink_password_hash("password123", &small), INK_OK);

    struct slow_job job = {.phc = big};
    atomic_init(&job.done, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, slow_verify, &job), 0);
    bool shed = false, shed_while_busy = false;
    while (!atomic_load(&job.done) && !shed) {
        bool match = false, rehash;
        enum ink_status st = ink_password_verify(small, "password123", &match, &rehash);
        /* leave the slot alone for a moment so the slow job can take it */
        nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
        if (st == INK_UNAVAILABLE) {
            shed = true;
            /* shed only because the slow job held the one slot for longer than the wait */
            shed_while_busy = !atomic_load(&job.done);
            assert_false(match);
        } else {
            assert_int_equal(st, INK_OK);
            assert_true(match);
        }
    }
    pthread_join(th, NULL);
    assert_true(shed);
    assert_int_equal(job.st, INK_OK);
    assert_true(job.match);
    assert_int_equal(ink_password_waiting(), 0);
    /* the slot is free again afterwards */
    bool match = false, rehash;
    assert_int_equal(ink_password_verify(small, "password123", &match, &rehash), INK_OK);
    assert_true(match);
    free(big);
    free(small);
    ink_password_init(&SMALL, CONCURRENCY, WAIT_MS);
    assert_true(shed_while_busy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(policy_counts_bytes_from_8_to_1024),
        cmocka_unit_test(policy_counts_multibyte_utf8_in_bytes),
        cmocka_unit_test(hash_then_verify_matches),
        cmocka_unit_test(wrong_password_does_not_match),
        cmocka_unit_test(long_multibyte_password_is_never_truncated),
        cmocka_unit_test(hash_is_argon2id_phc_with_configured_params),
        cmocka_unit_test(hashes_are_libargon2_hashes_both_ways),
        cmocka_unit_test(every_hash_runs_in_slot_memory_and_leaves_it_wiped),
        cmocka_unit_test(same_password_hashes_differently_each_time),
        cmocka_unit_test(needs_rehash_after_parameters_change),
        cmocka_unit_test(dummy_verification_runs_argon2_each_time),
        cmocka_unit_test(parameters_that_cannot_hash_fail_init_and_the_dummy_fails_closed),
        cmocka_unit_test(phc_parse_accepts_valid_strings),
        cmocka_unit_test(phc_parse_rejects_malformed_or_out_of_bounds),
        cmocka_unit_test(phc_parse_rejects_overlong_strings),
        cmocka_unit_test(verify_with_out_of_bounds_phc_never_matches),
        cmocka_unit_test(verify_with_oversized_memory_parameter_does_not_allocate_it),
        cmocka_unit_test(malformed_stored_hashes_never_match),
        cmocka_unit_test(excess_hash_waits_then_is_shed_while_slots_are_busy),
    };
    return cmocka_run_group_tests(tests, init_small, shutdown_all);
}
