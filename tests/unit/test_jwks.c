/* The JWKS cache with an injected fetcher and clock: max-age caching, the rate-limited refetch
 * for an unknown kid, key rotation, keys kept when a fetch fails, Cache-Control parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/ids.h"
#include "inklet/jwks.h"

#include <jansson.h>
#include <pthread.h>
#include <unistd.h>
#include <openssl/core_names.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *key_a, *key_b;
static int64_t now_ms;

static int64_t fake_clock(void)
{
    return now_ms;
}

struct provider {
    const char *kids[2]; /* published kids: kids[i] is key_a (0) or key_b (1) */
    long max_age;
    bool down;
    unsigned calls;
};

static char *bn_b64(EVP_PKEY *key, const char *name)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(key, name, &bn), 1);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    char *out = malloc(4 * ((size_t)n / 3 + 1) + 1);
    ink_base64url_encode(buf, (size_t)n, out);
    return out;
}

static bool fetch(const char *url, int64_t timeout_ms, char **body, size_t *len, long *max_age,
                  void *ctx)
{
    (void)url, (void)timeout_ms;
    struct provider *p = ctx;
    p->calls++;
    if (p->down)
        return false;
    json_t *keys = json_array();
    EVP_PKEY *pk[2] = {key_a, key_b};
    for (int i = 0; i < 2; i++) {
        if (!p->kids[i])
            continue;
        char *n = bn_b64(pk[i], OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(pk[i], OSSL_PKEY_PARAM_RSA_E);
        json_array_append_new(keys, json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "RSA", "alg", "RS256",
                                              "kid", p->kids[i], "n", n, "e", e));
        free(n);
        free(e);
    }
    json_t *doc = json_pack("{s:o}", "keys", keys);
    *body = json_dumps(doc, JSON_COMPACT);
    *len = strlen(*body);
    *max_age = p->max_age;
    json_decref(doc);
    return true;
}

static int setup(void **state)
{
    (void)state;
    key_a = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    key_b = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    return key_a && key_b ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(key_a);
    EVP_PKEY_free(key_b);
    return 0;
}

/* Looks `kid` up and says whether it came back as `want` (NULL: no key). */
static void expect_key(struct ink_jwks *j, const char *kid, EVP_PKEY *want)
{
    EVP_PKEY *k = ink_jwks_key(j, kid);
    if (!want) {
        assert_null(k);
        return;
    }
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(k, want), 1);
    EVP_PKEY_free(k);
}

static void keys_are_cached_for_max_age(void **state)
{
    (void)state;
    now_ms = 1000000;
    struct provider p = {{"a", NULL}, 300, false, 0};
    struct ink_jwks *j = ink_jwks_new_with("https://idp.example/keys", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 1);
    now_ms += 299 * 1000;
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 1);
    now_ms += 2 * 1000; /* past max-age: fetched again */
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 2);
    ink_jwks_free(j);
}

static void unknown_kid_refetches_at_most_once_per_interval(void **state)
{
    (void)state;
    now_ms = 2000000;
    struct provider p = {{"a", NULL}, 3600, false, 0};
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", key_a);
    now_ms += INK_JWKS_REFETCH_MIN_MS; /* the first unknown kid may refetch */
    expect_key(j, "invented-1", NULL);
    assert_int_equal(p.calls, 2);
    /* a flood of invented kids costs nothing more until the interval has passed */
    for (int i = 0; i < 100; i++) {
        now_ms += 50;
        expect_key(j, "invented-2", NULL);
    }
    assert_int_equal(p.calls, 2);
    expect_key(j, "a", key_a); /* known keys keep working meanwhile */
    now_ms += INK_JWKS_REFETCH_MIN_MS;
    expect_key(j, "invented-3", NULL);
    assert_int_equal(p.calls, 3);
    ink_jwks_free(j);
}

static void rotated_key_is_picked_up(void **state)
{
    (void)state;
    now_ms = 3000000;
    struct provider p = {{"a", NULL}, 3600, false, 0};
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", key_a);
    p.kids[0] = NULL; /* the provider rotates: a leaves, b arrives */
    p.kids[1] = "b";
    now_ms += INK_JWKS_REFETCH_MIN_MS;
    expect_key(j, "b", key_b);
    assert_int_equal(p.calls, 2);
    expect_key(j, "a", NULL); /* gone with the new set; refetch is rate-limited */
    assert_int_equal(p.calls, 2);
    ink_jwks_free(j);
}

static void failed_fetch_keeps_the_cached_keys(void **state)
{
    (void)state;
    now_ms = 4000000;
    struct provider p = {{"a", "b"}, 60, false, 0};
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", key_a);
    p.down = true;
    now_ms += 61 * 1000; /* stale: a refetch is tried, fails, the old keys still serve */
    expect_key(j, "a", key_a);
    expect_key(j, "b", key_b);
    assert_int_equal(p.calls, 2);
    now_ms += 1000; /* failures are retried at most every INK_JWKS_RETRY_MS */
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 2);
    now_ms += INK_JWKS_RETRY_MS;
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 3);
    p.down = false;
    now_ms += INK_JWKS_RETRY_MS;
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 4);
    now_ms += 1000; /* fresh again: no fetch */
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 4);
    ink_jwks_free(j);
}

static void provider_down_from_the_start_gives_no_key_and_retries_later(void **state)
{
    (void)state;
    now_ms = 5000000;
    struct provider p = {{"a", NULL}, 3600, true, 0};
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", NULL);
    expect_key(j, "a", NULL);
    assert_int_equal(p.calls, 1);
    p.down = false;
    now_ms += INK_JWKS_RETRY_MS;
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 2);
    assert_int_equal(ink_jwks_fetches(j), 2);
    ink_jwks_free(j);
}

static bool slow_fetch(const char *url, int64_t timeout_ms, char **body, size_t *len, long *max_age,
                       void *ctx)
{
    usleep(100 * 1000);
    return fetch(url, timeout_ms, body, len, max_age, ctx);
}

struct caller {
    struct ink_jwks *j;
    pthread_barrier_t *go;
    bool got;
};

static void *call_once(void *arg)
{
    struct caller *c = arg;
    pthread_barrier_wait(c->go);
    EVP_PKEY *k = ink_jwks_key(c->j, "a");
    c->got = k && EVP_PKEY_eq(k, key_a) == 1;
    EVP_PKEY_free(k);
    return NULL;
}

static void concurrent_first_lookups_share_one_fetch(void **state)
{
    (void)state;
    now_ms = 7000000;
    struct provider p = {{"a", NULL}, 3600, false, 0};
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, slow_fetch, &p, fake_clock);
    enum { N = 8 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    pthread_t th[N];
    struct caller c[N];
    for (int i = 0; i < N; i++) {
        c[i] = (struct caller){j, &go, false};
        assert_int_equal(pthread_create(&th[i], NULL, call_once, &c[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_true(c[i].got); /* nobody failed for arriving while the fetch ran */
    }
    assert_int_equal(p.calls, 1);
    pthread_barrier_destroy(&go);
    ink_jwks_free(j);
}

static void max_age_is_bounded(void **state)
{
    (void)state;
    now_ms = 6000000;
    struct provider p = {{"a", NULL}, 1, false, 0}; /* 1 s is raised to the minimum */
    struct ink_jwks *j = ink_jwks_new_with("u", 1000, fetch, &p, fake_clock);
    expect_key(j, "a", key_a);
    now_ms += (INK_JWKS_MAX_AGE_MIN - 1) * 1000;
    expect_key(j, "a", key_a);
    assert_int_equal(p.calls, 1);
    ink_jwks_free(j);
}

static void cache_control_max_age_is_parsed(void **state)
{
    (void)state;
    assert_int_equal(ink_jwks_parse_max_age("public, max-age=19204, must-revalidate, no-transform"),
                     19204);
    assert_int_equal(ink_jwks_parse_max_age("max-age=60"), 60);
    assert_int_equal(ink_jwks_parse_max_age("s-maxage=5, max-age=7"), 7);
    assert_int_equal(ink_jwks_parse_max_age("MAX-AGE=8"), 8);
    assert_int_equal(ink_jwks_parse_max_age("no-store"), -1);
    assert_int_equal(ink_jwks_parse_max_age("max-age=100, no-cache"), -1);
    assert_int_equal(ink_jwks_parse_max_age("max-age=abc"), -1);
    assert_int_equal(ink_jwks_parse_max_age("max-age="), -1);
    assert_int_equal(ink_jwks_parse_max_age("max-age=-5"), -1);
    assert_int_equal(ink_jwks_parse_max_age(""), -1);
    assert_int_equal(ink_jwks_parse_max_age(NULL), -1);
    assert_true(ink_jwks_parse_max_age("max-age=99999999999999999999") >= 100000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keys_are_cached_for_max_age),
        cmocka_unit_test(unknown_kid_refetches_at_most_once_per_interval),
        cmocka_unit_test(rotated_key_is_picked_up),
        cmocka_unit_test(failed_fetch_keeps_the_cached_keys),
        cmocka_unit_test(provider_down_from_the_start_gives_no_key_and_retries_later),
        cmocka_unit_test(concurrent_first_lookups_share_one_fetch),
        cmocka_unit_test(max_age_is_bounded),
        cmocka_unit_test(cache_control_max_age_is_parsed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
