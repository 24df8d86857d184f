/* ratelimit: per-key token buckets per rate class (429 + integer Retry-After). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inklet/ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static struct ink_rate rates[INK_RATE_CLASS_COUNT];

static int setup(void **state)
{
    (void)state;
    rates[INK_RATE_NONE] = (struct ink_rate){1, 3600};
    rates[INK_RATE_LOGIN] = (struct ink_rate){3, 60};
    rates[INK_RATE_REGISTER] = (struct ink_rate){2, 60};
    rates[INK_RATE_REFRESH] = (struct ink_rate){2, 1};
    rates[INK_RATE_BIND] = (struct ink_rate){5, 30};
    ink_ratelimit_init(rates);
    return 0;
}

static int reset(void **state)
{
    (void)state;
    ink_ratelimit_reset();
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void bucket_allows_its_size_then_asks_to_wait(void **state)
{
    (void)state;
    const struct ink_rate r = rates[INK_RATE_LOGIN];
    for (unsigned i = 0; i < r.requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1"), 0);
    unsigned wait = ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1");
    assert_in_range(wait, 1, r.seconds);
    /* one token comes back every seconds/requests; the bucket is empty so that is the wait */
    unsigned per_token = r.seconds / r.requests;
    assert_in_range(wait, per_token - 1, per_token);
    /* still limited on the next try, and denied calls do not push the wait out */
    unsigned again = ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1");
    assert_in_range(again, 1, wait);
}

static void separate_keys_have_separate_buckets(void **state)
{
    (void)state;
    const struct ink_rate r = rates[INK_RATE_LOGIN];
    for (unsigned i = 0; i < r.requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1"), 0);
    assert_true(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1") > 0);
    for (unsigned i = 0; i < r.requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.2"), 0);
    assert_true(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.2") > 0);
    assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "2001:db8::1"), 0);
}

static void classes_are_independent(void **state)
{
    (void)state;
    const char *ip = "203.0.113.9";
    for (unsigned i = 0; i < rates[INK_RATE_LOGIN].requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, ip), 0);
    assert_true(ink_ratelimit_take(INK_RATE_LOGIN, ip) > 0);
    /* the same key in another class still has its whole bucket, sized by that class */
    for (unsigned i = 0; i < rates[INK_RATE_REGISTER].requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_REGISTER, ip), 0);
    unsigned wait = ink_ratelimit_take(INK_RATE_REGISTER, ip);
    assert_in_range(wait, 1, rates[INK_RATE_REGISTER].seconds);
    for (unsigned i = 0; i < rates[INK_RATE_BIND].requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_BIND, ip), 0);
    assert_true(ink_ratelimit_take(INK_RATE_BIND, ip) > 0);
}

static void rate_none_always_allows(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_NONE, "198.51.100.1"), 0);
    /* out-of-range classes are not limited either (and do not crash) */
    assert_int_equal(ink_ratelimit_take(INK_RATE_CLASS_COUNT, "198.51.100.1"), 0);
}

static void reset_clears_every_bucket(void **state)
{
    (void)state;
    for (unsigned i = 0; i < rates[INK_RATE_LOGIN].requests; i++)
        ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1");
    for (unsigned i = 0; i < rates[INK_RATE_REGISTER].requests; i++)
        ink_ratelimit_take(INK_RATE_REGISTER, "198.51.100.1");
    assert_true(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1") > 0);
    assert_true(ink_ratelimit_take(INK_RATE_REGISTER, "198.51.100.1") > 0);
    ink_ratelimit_reset();
    for (unsigned i = 0; i < rates[INK_RATE_LOGIN].requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "198.51.100.1"), 0);
    assert_int_equal(ink_ratelimit_take(INK_RATE_REGISTER, "198.51.100.1"), 0);
}

static void tokens_refill_over_time(void **state)
{
    (void)state;
    const struct ink_rate r = rates[INK_RATE_REFRESH]; /* 2 per second */
    for (unsigned i = 0; i < r.requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_REFRESH, "k"), 0);
    /* an empty bucket needs one whole token: ceil(seconds / requests) whole seconds */
    assert_int_equal(ink_ratelimit_take(INK_RATE_REFRESH, "k"),
                     (r.seconds + r.requests - 1) / r.requests);
    /* one token per 500 ms; wait a little longer than one */
    sleep_ms(1000L * r.seconds / r.requests + 150);
    assert_int_equal(ink_ratelimit_take(INK_RATE_REFRESH, "k"), 0);
}

static void many_distinct_keys_do_not_break_the_table(void **state)
{
    (void)state;
    char key[32];
    /* more keys than slots: memory is bounded, eviction may only forgive */
    for (int i = 0; i < 40000; i++) {
        snprintf(key, sizeof key, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, key), 0);
    }
    /* a fresh key still gets exactly its bucket */
    for (unsigned i = 0; i < rates[INK_RATE_LOGIN].requests; i++)
        assert_int_equal(ink_ratelimit_take(INK_RATE_LOGIN, "fresh"), 0);
    assert_true(ink_ratelimit_take(INK_RATE_LOGIN, "fresh") > 0);
}

static atomic_uint allowed;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < 50; i++)
        if (ink_ratelimit_take(INK_RATE_LOGIN, "shared") == 0)
            atomic_fetch_add(&allowed, 1);
    return NULL;
}

static void concurrent_takers_share_one_bucket_exactly(void **state)
{
    (void)state;
    atomic_store(&allowed, 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* 200 attempts within far less than one refill interval (20 s) */
    assert_int_equal(atomic_load(&allowed), rates[INK_RATE_LOGIN].requests);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(bucket_allows_its_size_then_asks_to_wait, reset),
        cmocka_unit_test_setup(separate_keys_have_separate_buckets, reset),
        cmocka_unit_test_setup(classes_are_independent, reset),
        cmocka_unit_test_setup(rate_none_always_allows, reset),
        cmocka_unit_test_setup(reset_clears_every_bucket, reset),
        cmocka_unit_test_setup(tokens_refill_over_time, reset),
        cmocka_unit_test_setup(many_distinct_keys_do_not_break_the_table, reset),
        cmocka_unit_test_setup(concurrent_takers_share_one_bucket_exactly, reset),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
