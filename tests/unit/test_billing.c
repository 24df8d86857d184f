/* Billing logic without Stripe or a database: Stripe-Signature verification (the cases of
 * Stripe's own libraries' webhook tests and ours), the status mapping, form encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "inklet/ids.h"
#include "inklet/plan.h"
#include "inklet/stripe.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#define SECRET "whsec_test_secret"
#define PAYLOAD "{\"id\":\"evt_test_webhook\",\"object\":\"event\"}"
#define NOW ((time_t)1492774577)
#define TOL INK_STRIPE_SIG_TOLERANCE

/* The v1 for t.payload under secret, computed with HMAC() (the server uses EVP_MAC). */
static void sign(const char *secret, long long t, const char *payload, char out[65])
{
    char msg[4096];
    int n = snprintf(msg, sizeof msg, "%lld.%s", t, payload);
    unsigned char md[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)msg, (size_t)n, md,
         &len);
    ink_hex_encode(md, len, out);
}

static enum ink_stripe_sig verify(const char *header)
{
    return ink_stripe_verify_signature(header, PAYLOAD, strlen(PAYLOAD), SECRET, NOW, TOL);
}

static void header_for(char *out, size_t cap, long long t, const char *secret)
{
    char v1[65];
    sign(secret, t, PAYLOAD, v1);
    snprintf(out, cap, "t=%lld,v1=%s", t, v1);
}

static void signature_matches_an_independent_vector(void **state)
{
    (void)state;
    /* computed with Python's hmac module, not with this code base */
    const char *h =
        "t=1492774577,v1=88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a";
    assert_int_equal(verify(h), INK_SIG_OK);
}

static void valid_header_passes_and_v0_is_ignored(void **state)
{
    (void)state;
    char h[256], with_v0[400];
    header_for(h, sizeof h, NOW, SECRET);
    assert_int_equal(verify(h), INK_SIG_OK);
    snprintf(with_v0, sizeof with_v0,
             "%s,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39", h);
    assert_int_equal(verify(with_v0), INK_SIG_OK);
}

static void missing_header_or_parts_fail(void **state)
{
    (void)state;
    assert_int_equal(ink_stripe_verify_signature(NULL, PAYLOAD, strlen(PAYLOAD), SECRET, NOW, TOL),
                     INK_SIG_MISSING);
    assert_int_equal(verify(""), INK_SIG_MISSING);
    assert_int_equal(verify("i'm not even a real signature header"), INK_SIG_MISSING);
    char v1[65], h[256];
    sign(SECRET, NOW, PAYLOAD, v1);
    snprintf(h, sizeof h, "v1=%s", v1); /* no timestamp */
    assert_int_equal(verify(h), INK_SIG_MISSING);
    snprintf(h, sizeof h, "t=%lld", (long long)NOW); /* no signature */
    assert_int_equal(verify(h), INK_SIG_MISSING);
}

static void timestamp_without_value_or_not_numeric_fails(void **state)
{
    (void)state;
    char v1[65], h[256];
    sign(SECRET, NOW, PAYLOAD, v1);
    snprintf(h, sizeof h, "t=,v1=%s", v1);
    assert_int_equal(verify(h), INK_SIG_MALFORMED);
    snprintf(h, sizeof h, "t=14927x4577,v1=%s", v1);
    assert_int_equal(verify(h), INK_SIG_MALFORMED);
    snprintf(h, sizeof h, "t=-1492774577,v1=%s", v1);
    assert_int_equal(verify(h), INK_SIG_MALFORMED);
    snprintf(h, sizeof h, "t=99999999999999999999,v1=%s", v1);
    assert_int_equal(verify(h), INK_SIG_MALFORMED);
}

static void only_v0_fails(void **state)
{
    (void)state;
    char v1[65], h[256];
    sign(SECRET, NOW, PAYLOAD, v1);
    snprintf(h, sizeof h, "t=%lld,v0=%s", (long long)NOW, v1);
    assert_int_equal(verify(h), INK_SIG_MISSING);
}

static void junk_v1_beside_a_good_one_passes(void **state)
{
    (void)state;
    char v1[65], h[400];
    sign(SECRET, NOW, PAYLOAD, v1);
    snprintf(h, sizeof h, "t=%lld,v1=bad_signature,v1=%s", (long long)NOW, v1);
    assert_int_equal(verify(h), INK_SIG_OK);
    snprintf(h, sizeof h, "t=%lld,v1=%s,v1=bad_signature", (long long)NOW, v1);
    assert_int_equal(verify(h), INK_SIG_OK);
    snprintf(h, sizeof h, "t=%lld,v1=bad_signature", (long long)NOW);
    assert_int_equal(verify(h), INK_SIG_MISMATCH);
}

static void signatures_from_an_old_and_a_new_secret_pass_with_either(void **state)
{
    (void)state;
    /* during a rotation Stripe signs with both secrets */
    char old_v1[65], new_v1[65], h[400];
    sign("whsec_old_secret", NOW, PAYLOAD, old_v1);
    sign(SECRET, NOW, PAYLOAD, new_v1);
    snprintf(h, sizeof h, "t=%lld,v1=%s,v1=%s", (long long)NOW, old_v1, new_v1);
    assert_int_equal(verify(h), INK_SIG_OK);
    assert_int_equal(
        ink_stripe_verify_signature(h, PAYLOAD, strlen(PAYLOAD), "whsec_old_secret", NOW, TOL),
        INK_SIG_OK);
    assert_int_equal(
        ink_stripe_verify_signature(h, PAYLOAD, strlen(PAYLOAD), "whsec_other", NOW, TOL),
        INK_SIG_MISMATCH);
}

static void tolerance_is_300_seconds_either_way(void **state)
{
    (void)state;
    char h[256];
    header_for(h, sizeof h, NOW - TOL + 1, SECRET);
    assert_int_equal(verify(h), INK_SIG_OK);
    header_for(h, sizeof h, NOW - TOL, SECRET);
    assert_int_equal(verify(h), INK_SIG_OK);
    header_for(h, sizeof h, NOW - TOL - 1, SECRET);
    assert_int_equal(verify(h), INK_SIG_STALE);
    header_for(h, sizeof h, NOW + TOL - 1, SECRET);
    assert_int_equal(verify(h), INK_SIG_OK);
    header_for(h, sizeof h, NOW + TOL + 1, SECRET);
    assert_int_equal(verify(h), INK_SIG_STALE);
}

static void one_byte_body_change_fails(void **state)
{
    (void)state;
    char h[256];
    header_for(h, sizeof h, NOW, SECRET);
    char body[] = PAYLOAD;
    body[7] ^= 1;
    assert_int_equal(ink_stripe_verify_signature(h, body, strlen(body), SECRET, NOW, TOL),
                     INK_SIG_MISMATCH);
    /* a byte more, a byte less */
    assert_int_equal(
        ink_stripe_verify_signature(h, PAYLOAD " ", strlen(PAYLOAD) + 1, SECRET, NOW, TOL),
        INK_SIG_MISMATCH);
    assert_int_equal(ink_stripe_verify_signature(h, PAYLOAD, strlen(PAYLOAD) - 1, SECRET, NOW, TOL),
                     INK_SIG_MISMATCH);
}

static void signature_covers_bytes_after_a_nul(void **state)
{
    (void)state;
    /* the raw body is compared by length, not as a C string */
    const char body[] = "{\"a\":1}\0tail";
    size_t len = sizeof body - 1;
    char h[256];
    header_for(h, sizeof h, NOW, SECRET); /* signs PAYLOAD */
    assert_int_equal(ink_stripe_verify_signature(h, body, len, SECRET, NOW, TOL), INK_SIG_MISMATCH);
}

static void empty_secret_never_verifies(void **state)
{
    (void)state;
    char h[256];
    header_for(h, sizeof h, NOW, "");
    assert_int_equal(ink_stripe_verify_signature(h, PAYLOAD, strlen(PAYLOAD), "", NOW, TOL),
                     INK_SIG_MISSING);
}

static void stripe_statuses_map_to_the_five(void **state)
{
    (void)state;
    static const char *const map[][2] = {
        {"active", "active"},     {"trialing", "trialing"},       {"past_due", "past_due"},
        {"canceled", "canceled"}, {"unpaid", "past_due"},         {"paused", "past_due"},
        {"incomplete", "none"},   {"incomplete_expired", "none"}, {"something_new", "none"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        assert_string_equal(ink_plan_status_from_stripe(map[i][0]), map[i][1]);
    assert_string_equal(ink_plan_status_from_stripe(NULL), "none");
    assert_true(ink_plan_status_is_live("active"));
    assert_true(ink_plan_status_is_live("trialing"));
    assert_true(ink_plan_status_is_live("past_due"));
    assert_false(ink_plan_status_is_live("canceled"));
    assert_false(ink_plan_status_is_live("none"));
    assert_string_equal(ink_plan_name("past_due"), "pro");
    assert_string_equal(ink_plan_name("canceled"), "free");
    assert_string_equal(ink_plan_name(NULL), "free");
    assert_string_equal(ink_plan_interval_from_stripe("month"), "monthly");
    assert_string_equal(ink_plan_interval_from_stripe("year"), "yearly");
    assert_null(ink_plan_interval_from_stripe("week"));
}

static void form_encodes_nested_params_in_bracket_syntax(void **state)
{
    (void)state;
    struct ink_form f;
    ink_form_init(&f);
    ink_form_add(&f, "mode", "subscription");
    ink_form_add(&f, "line_items[0][price]", "price_123");
    ink_form_add(&f, "metadata[userId]", "0190e3c4-7f7e-7000-8000-000000000001");
    ink_form_add(&f, "success_url", "https://portal.example/ok?session={CHECKOUT_SESSION_ID}&x=1");
    ink_form_add(&f, "email", "a+b@example.com");
    ink_form_add(&f, "name", "Zoë & co =1");
    assert_string_equal(f.data, "mode=subscription&line_items[0][price]=price_123"
                                "&metadata[userId]=0190e3c4-7f7e-7000-8000-000000000001"
                                "&success_url=https%3A%2F%2Fportal.example%2Fok%3Fsession%3D"
                                "%7BCHECKOUT_SESSION_ID%7D%26x%3D1"
                                "&email=a%2Bb%40example.com&name=Zo%C3%AB%20%26%20co%20%3D1");
    assert_int_equal(f.len, strlen(f.data));
    ink_form_free(&f);
}

static void form_value_cannot_add_a_parameter(void **state)
{
    (void)state;
    struct ink_form f;
    ink_form_init(&f);
    ink_form_add(&f, "email", "x@example.com&customer=cus_evil");
    ink_form_add(&f, "k", "");
    assert_string_equal(f.data, "email=x%40example.com%26customer%3Dcus_evil&k=");
    ink_form_free(&f);
}

static void form_grows_past_its_first_buffer(void **state)
{
    (void)state;
    struct ink_form f;
    ink_form_init(&f);
    char big[3000];
    memset(big, '/', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ink_form_add(&f, "v", big);
    assert_int_equal(f.len, 2 + 3 * (sizeof big - 1));
    assert_memory_equal(f.data, "v=%2F%2F", 8);
    ink_form_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signature_matches_an_independent_vector),
        cmocka_unit_test(valid_header_passes_and_v0_is_ignored),
        cmocka_unit_test(missing_header_or_parts_fail),
        cmocka_unit_test(timestamp_without_value_or_not_numeric_fails),
        cmocka_unit_test(only_v0_fails),
        cmocka_unit_test(junk_v1_beside_a_good_one_passes),
        cmocka_unit_test(signatures_from_an_old_and_a_new_secret_pass_with_either),
        cmocka_unit_test(tolerance_is_300_seconds_either_way),
        cmocka_unit_test(one_byte_body_change_fails),
        cmocka_unit_test(signature_covers_bytes_after_a_nul),
        cmocka_unit_test(empty_secret_never_verifies),
        cmocka_unit_test(stripe_statuses_map_to_the_five),
        cmocka_unit_test(form_encodes_nested_params_in_bracket_syntax),
        cmocka_unit_test(form_value_cannot_add_a_parameter),
        cmocka_unit_test(form_grows_past_its_first_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
