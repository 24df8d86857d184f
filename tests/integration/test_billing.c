/* Contract §3 and docs/billing.md: Stripe billing, against the fake Stripe
 * (tests/fakes/fake_stripe.py, tests/fakes/README.md). The group starts one fake and one inkletd
 * pointed at it; tests that need another configuration start their own daemon. Every test uses
 * fresh users, so what the tests share at the fake (customers, subscriptions, the request log)
 * is told apart by user, customer and subscription ids. Event `created` times are given
 * explicitly and increase within a test, so ordering never depends on the clock's second. */
#include "harness.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define D itest_shared

#define SECRET_KEY "sk_test_inklet_fake"
#define WEBHOOK_SECRET "whsec_inklet_fake"
#define PRICE_MONTHLY "price_inklet_monthly"
#define PRICE_YEARLY "price_inklet_yearly"
#define SUCCESS_URL "https://portal.example.test/billing/success"
#define CANCEL_URL "https://portal.example.test/billing/cancel"
#define PORTAL_RETURN_URL "https://portal.example.test/account/billing"
#define STRIPE_TIMEOUT_MS 2000
#define ONE_MIB (1024 * 1024)
#define CHECKOUT_URL_PREFIX "https://checkout.stripe.com/c/pay/cs_test_"
#define PORTAL_URL_PREFIX "https://billing.stripe.com/p/session/test_"

static struct itest_fake fake;
static char api_base_kv[64];

/* The billing environment of the group's daemon (and of `inkletd billing-sync`). */
static const char *const billing_env[] = {api_base_kv,
                                          "STRIPE_SECRET_KEY=" SECRET_KEY,
                                          "STRIPE_WEBHOOK_SECRET=" WEBHOOK_SECRET,
                                          "STRIPE_PRICE_MONTHLY=" PRICE_MONTHLY,
                                          "STRIPE_PRICE_YEARLY=" PRICE_YEARLY,
                                          "BILLING_SUCCESS_URL=" SUCCESS_URL,
                                          "BILLING_CANCEL_URL=" CANCEL_URL,
                                          "BILLING_PORTAL_RETURN_URL=" PORTAL_RETURN_URL,
                                          "STRIPE_TIMEOUT=2",
                                          NULL};

/* ---- the fake: process ----------------------------------------------------------------------- */

static bool fake_start(void)
{
    const char *args[] = {"--secret-key",
                          SECRET_KEY,
                          "--webhook-secret",
                          WEBHOOK_SECRET,
                          "--price",
                          PRICE_MONTHLY ":month",
                          "--price",
                          PRICE_YEARLY ":year",
                          NULL};
    return itest_fake_start(&fake, "fake-stripe", itest.fake_stripe, args);
}

static int fake_stop(void)
{
    return itest_fake_stop(&fake);
}

/* ---- the fake: control API and Stripe API ---------------------------------------------------- */

static json_t *fake_call(const char *method, const char *path, const json_t *body)
{
    return itest_fake_call(&fake, method, path, body);
}

/* Adds a fault rule (tests/fakes/README.md) built by json_pack(fmt, ...). */
static void fake_fault(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *v = itest_fake_vcallf(&fake, "POST", "/_fake/faults", fmt, ap);
    va_end(ap);
    assert_true(json_is_integer(json_object_get(v, "id")));
    json_decref(v);
}

static void fake_clear_faults(void)
{
    json_decref(fake_call("DELETE", "/_fake/faults", NULL));
}

/* The value at a dotted path ("line_items.0.price") inside `v`; array indexes are numbers. */
static json_t *dig(const json_t *v, const char *dotted)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", dotted);
    char *save = NULL;
    json_t *cur = (json_t *)v;
    for (char *tok = strtok_r(buf, ".", &save); tok && cur; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(cur)) {
            char *end;
            unsigned long i = strtoul(tok, &end, 10);
            cur = *end ? NULL : json_array_get(cur, i);
        } else {
            cur = json_object_get(cur, tok);
        }
    }
    return cur;
}

/* The string at a dotted path, or NULL. */
static const char *dig_str(const json_t *v, const char *dotted)
{
    return json_string_value(dig(v, dotted));
}

/* assert_string_equal that reports a missing (NULL) actual value instead of crashing on it. */
#define expect_str(actual, expected)                                                               \
    do {                                                                                           \
        const char *actual_ = (actual);                                                            \
        if (!actual_)                                                                              \
            fail_msg("%s is missing (expected \"%s\")", #actual, (expected));                      \
        assert_string_equal(actual_, (expected));                                                  \
    } while (0)

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* A query value of a logged request (the fake may log a value or a list of values). */
static const char *query_value(const json_t *entry, const char *key)
{
    json_t *v = json_object_get(json_object_get(entry, "query"), key);
    if (json_is_array(v))
        v = json_array_get(v, 0);
    return json_string_value(v);
}

/* Every logged /v1 request with `method` and exactly `path` whose params (or, when `where`
 * starts with "?", query) value at `where` equals `value` (both NULL: no filter). New array. */
static json_t *fake_requests(const char *method, const char *path, const char *where,
                             const char *value)
{
    char p[300];
    snprintf(p, sizeof p, "/_fake/requests?path_prefix=%s", path);
    json_t *all = fake_call("GET", p, NULL);
    assert_true(json_is_array(all));
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        if (!str_eq(dig_str(e, "method"), method) || !str_eq(dig_str(e, "path"), path))
            continue;
        if (where) {
            const char *got = where[0] == '?' ? query_value(e, where + 1)
                                              : dig_str(json_object_get(e, "params"), where);
            if (!str_eq(got, value))
                continue;
        }
        json_array_append(out, e);
    }
    json_decref(all);
    return out;
}

/* The customers at the fake whose metadata.userId is `user_id` (new array). */
static json_t *fake_customers_of(const char *user_id)
{
    json_t *all = fake_call("GET", "/_fake/customers", NULL);
    assert_true(json_is_array(all));
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c)
    {
        if (str_eq(dig_str(c, "metadata.userId"), user_id))
            json_array_append(out, c);
    }
    json_decref(all);
    return out;
}

/* The fake's current subscription `id` (new reference); fails when it does not exist. */
static json_t *fake_subscription(const char *id)
{
    json_t *all = fake_call("GET", "/_fake/subscriptions", NULL);
    assert_true(json_is_array(all));
    json_t *found = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(all, i, s)
    {
        if (str_eq(dig_str(s, "id"), id))
            found = json_incref(s);
    }
    json_decref(all);
    if (!found)
        fail_msg("subscription %s is not at the fake", id);
    return found;
}

/* Creates a subscription at the fake directly (no webhook). */
static json_t *fake_new_subscription(const char *customer, const char *price, const char *status)
{
    json_t *sub = itest_fake_callf(&fake, "POST", "/_fake/subscriptions", "{s:s,s:s,s:s}",
                                   "customer", customer, "price", price, "status", status);
    assert_non_null(dig_str(sub, "id"));
    expect_str(dig_str(sub, "status"), status);
    return sub;
}

static json_t *fake_update_subscription(const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t err;
    json_t *body = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (!body)
        fail_msg("json_pack(%s): %s", fmt, err.text);
    char path[160];
    snprintf(path, sizeof path, "/_fake/subscriptions/%s", id);
    json_t *sub = fake_call("POST", path, body);
    json_decref(body);
    assert_non_null(sub);
    return sub;
}

static json_t *fake_invoice(const char *sub_id, const char *status)
{
    json_t *inv = itest_fake_callf(&fake, "POST", "/_fake/invoices", "{s:s,s:s}", "subscription",
                                   sub_id, "status", status);
    assert_non_null(dig_str(inv, "id"));
    return inv;
}

/* A Stripe API call at the fake with the secret key (form body may be NULL); asserts 200. */
static json_t *stripe_call(const char *method, const char *path, const char *form)
{
    char url[300];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", fake.port, path);
    const char *headers[] = {"Authorization: Bearer " SECRET_KEY,
                             "Content-Type: application/x-www-form-urlencoded", NULL};
    struct itest_resp r;
    itest_request(NULL, method, url, headers, form, form ? strlen(form) : 0, &r);
    itest_expect_status(&r, 200);
    json_t *v = json_incref(r.json);
    assert_non_null(v);
    itest_resp_free(&r);
    return v;
}

/* A customer made at the fake directly: the server never created it, so it does not know it. */
static void stranger_customer(char cus[40])
{
    json_t *c = stripe_call("POST", "/v1/customers", "email=stranger%40itest.example");
    snprintf(cus, 40, "%s", dig_str(c, "id"));
    json_decref(c);
}

/* ---- webhooks -------------------------------------------------------------------------------- */

static void event_id(char out[40])
{
    char uuid[37];
    itest_random_uuid(uuid);
    snprintf(out, 40, "evt_it%.8s%.4s%.4s%.4s", uuid, uuid + 9, uuid + 14, uuid + 19);
}

/* POST /_fake/send_event with `req` (stolen); "url" defaults to the group daemon's
 * /billing/webhook. Returns the fake's answer {event, deliveries}. */
static json_t *send_event_to(const struct itest_daemon *d, json_t *req)
{
    if (!json_object_get(req, "url")) {
        char url[160];
        snprintf(url, sizeof url, "%s/billing/webhook", d->url);
        json_object_set_new(req, "url", json_string(url));
    }
    json_t *v = fake_call("POST", "/_fake/send_event", req);
    json_decref(req);
    assert_true(json_is_array(json_object_get(v, "deliveries")));
    return v;
}

static json_t *send_event(json_t *req)
{
    return send_event_to(D, req);
}

/* Asserts `n` deliveries, each answered 200 {"received":true}. */
static void expect_received(const json_t *answer, size_t n)
{
    json_t *deliveries = json_object_get(answer, "deliveries");
    assert_int_equal(json_array_size(deliveries), n);
    size_t i;
    json_t *dl;
    json_array_foreach(deliveries, i, dl)
    {
        long long status = json_integer_value(json_object_get(dl, "status"));
        const char *body = dig_str(dl, "body");
        json_t *b = body ? json_loads(body, 0, NULL) : NULL;
        bool ok = status == 200 && json_is_object(b) && json_object_size(b) == 1 &&
                  json_is_true(json_object_get(b, "received"));
        if (!ok)
            fprintf(stderr, "  delivery %zu of %zu: status %lld, body %s\n", i + 1, n, status,
                    body ? body : "(none)");
        assert_true(ok);
        json_decref(b);
    }
}

/* Asserts one delivery answered `status` with the error `code`. */
static void expect_delivery_error(const json_t *answer, long status, const char *code)
{
    json_t *deliveries = json_object_get(answer, "deliveries");
    assert_int_equal(json_array_size(deliveries), 1);
    json_t *dl = json_array_get(deliveries, 0);
    long long got = json_integer_value(json_object_get(dl, "status"));
    const char *body = dig_str(dl, "body");
    json_t *b = body ? json_loads(body, 0, NULL) : NULL;
    const char *got_code = dig_str(b, "code");
    if (got != status || !str_eq(got_code, code))
        fprintf(stderr, "  expected %ld %s; delivery: status %lld, body %s\n", status, code, got,
                body ? body : "(none)");
    assert_int_equal(got, status);
    itest_expect_keys(b, (const char *const[]){"message", "code", NULL});
    assert_string_equal(got_code, code);
    json_decref(b);
}

/* A signed event of `type` about the fake's current object `object_id`, with id `id` (NULL:
 * the fake's default) and `created`; asserts it was received. */
static void deliver(const char *type, const char *object_id, const char *id, long long created)
{
    json_t *req = json_pack("{s:s,s:s,s:I}", "type", type, "object_id", object_id, "created",
                            (json_int_t)created);
    if (id)
        json_object_set_new(req, "id", json_string(id));
    json_t *answer = send_event(req);
    expect_received(answer, 1);
    json_decref(answer);
}

/* A Stripe event object as the fake builds it (new reference). */
static json_t *make_event(const char *id, const char *type, const json_t *object, long long created)
{
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:b,s:i,s:{s:n,s:n},s:{s:O}}", "id", id, "object",
                     "event", "api_version", "2024-06-20", "created", (json_int_t)created, "type",
                     type, "livemode", 0, "pending_webhooks", 1, "request", "id", "idempotency_key",
                     "data", "object", object);
}

/* "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" into out. */
static void sign(const char *secret, long long t, const char *body, size_t len, char *out,
                 size_t cap)
{
    char prefix[32];
    int pl = snprintf(prefix, sizeof prefix, "%lld.", t);
    size_t total = (size_t)pl + len;
    unsigned char *msg = malloc(total);
    assert_non_null(msg);
    memcpy(msg, prefix, (size_t)pl);
    memcpy(msg + pl, body, len);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, total, mac, &mac_len));
    free(msg);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned i = 0; i < mac_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    snprintf(out, cap, "t=%lld,v1=%s", t, hex);
}

/* POSTs `body` to the group daemon's /billing/webhook with `signature` as the Stripe-Signature
 * header (NULL: no such header). */
static void post_webhook(const char *signature, const char *body, size_t len, struct itest_resp *r)
{
    char url[160], sig[400];
    snprintf(url, sizeof url, "%s/billing/webhook", D->url);
    const char *headers[4] = {"Content-Type: application/json; charset=utf-8",
                              "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)", NULL,
                              NULL};
    if (signature) {
        snprintf(sig, sizeof sig, "Stripe-Signature: %s", signature);
        headers[2] = sig;
    }
    itest_request(NULL, "POST", url, headers, body, len, r);
}

/* ---- the server ------------------------------------------------------------------------------ */

static json_t *get_json(const struct itest_daemon *d, const char *path, const struct itest_user *u)
{
    struct itest_resp r;
    itest_call(d, "GET", path, u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    json_t *v = json_incref(r.json);
    assert_non_null(v);
    itest_resp_free(&r);
    return v;
}

static json_t *subscription_of(const struct itest_user *u)
{
    return get_json(D, "/auth/subscription", u);
}

static json_t *me_of(const struct itest_user *u)
{
    return get_json(D, "/auth/me", u);
}

static const char *const SUBSCRIPTION_KEYS[] = {"status",
                                                "plan",
                                                "interval",
                                                "currentPeriodStart",
                                                "currentPeriodEnd",
                                                "cancelAtPeriodEnd",
                                                "stripeCustomerId",
                                                "stripeSubscriptionId",
                                                NULL};

static const char *const ME_SUBSCRIPTION_KEYS[] = {
    "status", "plan", "interval", "currentPeriodEnd", "cancelAtPeriodEnd", NULL};

static void expect_null(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_null(v)) {
        char *s = json_dumps(obj, JSON_COMPACT);
        fprintf(stderr, "  \"%s\" is not null in %s\n", key, s ? s : "?");
        free(s);
    }
    assert_true(json_is_null(v));
}

/* Asserts GET /auth/subscription of u shows `status` (and prints the object when it does not). */
static void expect_status_of(const struct itest_user *u, const char *status)
{
    json_t *s = subscription_of(u);
    const char *got = dig_str(s, "status");
    if (!str_eq(got, status)) {
        char *text = json_dumps(s, JSON_COMPACT);
        fprintf(stderr, "  expected status \"%s\"; GET /auth/subscription: %s\n", status,
                text ? text : "?");
        free(text);
    }
    assert_string_equal(got ? got : "(missing)", status);
    json_decref(s);
}

/* Asserts /auth/me shows `plan` and a subscription of `status` (NULL: subscription null). */
static void expect_me_plan(const struct itest_user *u, const char *plan, const char *status)
{
    json_t *me = me_of(u);
    assert_string_equal(itest_str(me, "plan"), plan);
    json_t *sub = json_object_get(me, "subscription");
    if (status) {
        itest_expect_keys(sub, ME_SUBSCRIPTION_KEYS);
        assert_string_equal(itest_str(sub, "status"), status);
    } else {
        expect_null(me, "subscription");
    }
    json_decref(me);
}

/* The stripeCustomerId GET /auth/subscription shows (must be a cus_ id). */
static void customer_id_of(const struct itest_user *u, char cus[40])
{
    json_t *s = subscription_of(u);
    const char *c = itest_str(s, "stripeCustomerId");
    assert_true(strncmp(c, "cus_", 4) == 0 && strlen(c) < 40);
    snprintf(cus, 40, "%s", c);
    json_decref(s);
}

static void checkout(const struct itest_user *u, const char *interval, struct itest_resp *r)
{
    itest_callf(D, "POST", "/auth/subscription/checkout", u->s.access, r, "{s:s}", "interval",
                interval);
}

/* A checkout answered 200 {"url": a session URL of the fake}; the URL into url. */
static void expect_checkout_url(const struct itest_resp *r, char url[160])
{
    itest_expect_status(r, 200);
    itest_expect_keys(r->json, (const char *const[]){"url", NULL});
    const char *got = itest_str(r->json, "url");
    if (strncmp(got, CHECKOUT_URL_PREFIX, strlen(CHECKOUT_URL_PREFIX)) != 0)
        fprintf(stderr, "  checkout url %s is not a session url of the fake\n", got);
    assert_true(strncmp(got, CHECKOUT_URL_PREFIX, strlen(CHECKOUT_URL_PREFIX)) == 0);
    assert_true(strlen(got) < 160);
    snprintf(url, 160, "%s", got);
}

/* A registered user with a Stripe customer (made by a portal call); its id into cus. */
static void billing_user(struct itest_user *u, char cus[40])
{
    itest_register(D, u);
    struct itest_resp r;
    itest_call(D, "POST", "/auth/subscription/portal", u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    customer_id_of(u, cus);
}

/* billing_user plus a subscription created at the fake with `price` and `status`, announced by
 * a signed customer.subscription.updated of `created`. Returns the fake's object. */
static json_t *subscribed_user(struct itest_user *u, char cus[40], const char *price,
                               const char *status, long long created)
{
    billing_user(u, cus);
    json_t *sub = fake_new_subscription(cus, price, status);
    deliver("customer.subscription.updated", dig_str(sub, "id"), NULL, created);
    return sub;
}

/* Event times: an hour ago, plus a few seconds per step within a test. */
static long long hour_ago(void)
{
    return (long long)time(NULL) - 3600;
}

/* Asserts GET /auth/subscription shows the fake's subscription `sub` with `status` and
 * `interval`, and /auth/me agrees. */
static void expect_shows(const struct itest_user *u, const json_t *sub, const char *cus,
                         const char *status, const char *interval, const char *me_plan)
{
    json_t *s = subscription_of(u);
    itest_expect_keys(s, SUBSCRIPTION_KEYS);
    assert_string_equal(itest_str(s, "status"), status);
    assert_string_equal(itest_str(s, "plan"), "pro");
    assert_string_equal(itest_str(s, "interval"), interval);
    assert_int_equal(itest_timestamp(s, "currentPeriodStart"),
                     json_integer_value(json_object_get(sub, "current_period_start")));
    assert_int_equal(itest_timestamp(s, "currentPeriodEnd"),
                     json_integer_value(json_object_get(sub, "current_period_end")));
    assert_true(json_is_boolean(json_object_get(s, "cancelAtPeriodEnd")));
    assert_int_equal(json_is_true(json_object_get(s, "cancelAtPeriodEnd")),
                     json_is_true(json_object_get(sub, "cancel_at_period_end")));
    assert_string_equal(itest_str(s, "stripeCustomerId"), cus);
    assert_string_equal(itest_str(s, "stripeSubscriptionId"), dig_str(sub, "id"));
    json_decref(s);

    json_t *me = me_of(u);
    assert_string_equal(itest_str(me, "plan"), me_plan);
    json_t *ms = json_object_get(me, "subscription");
    itest_expect_keys(ms, ME_SUBSCRIPTION_KEYS);
    assert_string_equal(itest_str(ms, "status"), status);
    assert_string_equal(itest_str(ms, "plan"), "pro");
    assert_string_equal(itest_str(ms, "interval"), interval);
    assert_int_equal(itest_timestamp(ms, "currentPeriodEnd"),
                     json_integer_value(json_object_get(sub, "current_period_end")));
    assert_int_equal(json_is_true(json_object_get(ms, "cancelAtPeriodEnd")),
                     json_is_true(json_object_get(sub, "cancel_at_period_end")));
    json_decref(me);
}

/* ---- no subscription ------------------------------------------------------------------------- */

static void test_billing_without_subscription_is_none_with_nulls_and_plan_free(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    json_t *s = subscription_of(&u);
    itest_expect_keys(s, SUBSCRIPTION_KEYS);
    assert_string_equal(itest_str(s, "status"), "none");
    const char *nulls[] = {"plan",
                           "interval",
                           "currentPeriodStart",
                           "currentPeriodEnd",
                           "stripeCustomerId",
                           "stripeSubscriptionId"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(nulls); i++)
        expect_null(s, nulls[i]);
    assert_true(json_is_false(json_object_get(s, "cancelAtPeriodEnd")));
    json_decref(s);
    expect_me_plan(&u, "free", NULL);
    /* looking creates nothing at Stripe */
    json_t *c = fake_customers_of(u.id);
    assert_int_equal(json_array_size(c), 0);
    json_decref(c);
}

static void test_billing_routes_need_a_bearer_token(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_call(D, "GET", "/auth/subscription", NULL, NULL, &r);
    itest_expect_error(&r, 401, "invalid_token");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/subscription/checkout", NULL, "{\"interval\":\"monthly\"}", &r);
    itest_expect_error(&r, 401, "invalid_token");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/subscription/portal", NULL, NULL, &r);
    itest_expect_error(&r, 401, "invalid_token");
    itest_resp_free(&r);
}

/* ---- checkout -------------------------------------------------------------------------------- */

/* The one logged checkout-session request of user `user_id` (new reference). */
static json_t *only_checkout_request(const char *user_id)
{
    json_t *reqs = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", user_id);
    assert_int_equal(json_array_size(reqs), 1);
    json_t *e = json_incref(json_array_get(reqs, 0));
    json_decref(reqs);
    return e;
}

/* Asserts a logged checkout-session request carries exactly the section B parameters. */
static void expect_session_params(const json_t *req, const struct itest_user *u, const char *cus,
                                  const char *price)
{
    const json_t *p = json_object_get(req, "params");
    expect_str(dig_str(p, "mode"), "subscription");
    expect_str(dig_str(p, "customer"), cus);
    expect_str(dig_str(p, "client_reference_id"), u->id);
    assert_int_equal(json_array_size(json_object_get(p, "line_items")), 1);
    expect_str(dig_str(p, "line_items.0.price"), price);
    expect_str(dig_str(p, "line_items.0.quantity"), "1");
    expect_str(dig_str(p, "success_url"), SUCCESS_URL);
    expect_str(dig_str(p, "cancel_url"), CANCEL_URL);
    expect_str(dig_str(p, "subscription_data.metadata.userId"), u->id);
    const char *idem = dig_str(req, "headers.idempotency-key");
    assert_non_null(idem);
    assert_true(strlen(idem) > 0);
    expect_str(dig_str(req, "headers.authorization"), "Bearer " SECRET_KEY);
    assert_int_equal(json_integer_value(json_object_get(req, "status")), 200);
}

static void test_billing_checkout_returns_the_fake_session_url_made_as_section_b_says(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    checkout(&u, "monthly", &r);
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);

    /* one customer, with the account's email and id, created under an Idempotency-Key */
    json_t *customers = fake_customers_of(u.id);
    assert_int_equal(json_array_size(customers), 1);
    const char *cus = dig_str(json_array_get(customers, 0), "id");
    assert_non_null(cus);
    expect_str(dig_str(json_array_get(customers, 0), "email"), u.email);
    json_t *creates = fake_requests("POST", "/v1/customers", "metadata.userId", u.id);
    assert_int_equal(json_array_size(creates), 1);
    json_t *create = json_array_get(creates, 0);
    expect_str(dig_str(create, "params.email"), u.email);
    const char *idem = dig_str(create, "headers.idempotency-key");
    assert_non_null(idem);
    assert_true(strlen(idem) > 0);

    /* the session: section B's parameters, and the URL the server answered is that session's */
    json_t *session_req = only_checkout_request(u.id);
    expect_session_params(session_req, &u, cus, PRICE_MONTHLY);
    char path[200];
    snprintf(path, sizeof path, "/_fake/checkout/%s/complete", strrchr(url, '/') + 1);
    json_t *done = fake_call("POST", path, NULL);
    expect_str(dig_str(done, "session.url"), url);
    expect_str(dig_str(done, "session.customer"), cus);
    expect_str(dig_str(done, "session.client_reference_id"), u.id);

    /* and the account now shows its customer, still without a subscription */
    json_t *s = subscription_of(&u);
    assert_string_equal(itest_str(s, "status"), "none");
    assert_string_equal(itest_str(s, "stripeCustomerId"), cus);
    expect_null(s, "stripeSubscriptionId");
    json_decref(s);
    json_decref(done);
    json_decref(session_req);
    json_decref(creates);
    json_decref(customers);
}

static void test_billing_yearly_checkout_uses_the_yearly_price_and_the_same_customer(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    struct itest_resp r;
    checkout(&u, "yearly", &r);
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
    json_t *req = only_checkout_request(u.id);
    expect_session_params(req, &u, cus, PRICE_YEARLY);
    json_decref(req);
    /* the customer from the portal call is reused: still exactly one create for this user */
    json_t *creates = fake_requests("POST", "/v1/customers", "metadata.userId", u.id);
    assert_int_equal(json_array_size(creates), 1);
    json_decref(creates);
    json_t *customers = fake_customers_of(u.id);
    assert_int_equal(json_array_size(customers), 1);
    json_decref(customers);
}

static void test_billing_checkout_ignores_client_price_customer_and_urls(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char stranger[40];
    stranger_customer(stranger);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/subscription/checkout", u.s.access, &r,
                "{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "interval", "monthly", "price",
                PRICE_YEARLY, "priceId", PRICE_YEARLY, "customer", stranger, "customerId", stranger,
                "success_url", "https://evil.example/ok", "successUrl", "https://evil.example/ok",
                "cancel_url", "https://evil.example/no", "cancelUrl", "https://evil.example/no",
                "client_reference_id", "someone-else", "userId", "someone-else");
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
    json_t *customers = fake_customers_of(u.id);
    assert_int_equal(json_array_size(customers), 1);
    const char *cus = dig_str(json_array_get(customers, 0), "id");
    assert_non_null(cus);
    assert_string_not_equal(cus, stranger);
    json_t *req = only_checkout_request(u.id);
    expect_session_params(req, &u, cus, PRICE_MONTHLY);
    json_decref(req);
    json_t *stray = fake_requests("POST", "/v1/checkout/sessions", "customer", stranger);
    assert_int_equal(json_array_size(stray), 0);
    json_decref(stray);
    stray = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", "someone-else");
    assert_int_equal(json_array_size(stray), 0);
    json_decref(stray);
    json_decref(customers);
}

struct checkout_job {
    const struct itest_user *u;
    const char *interval;
    pthread_barrier_t *go;
    struct itest_resp r;
    int64_t ms;
};

static void *checkout_thread(void *arg)
{
    struct checkout_job *j = arg;
    char body[64];
    snprintf(body, sizeof body, "{\"interval\":\"%s\"}", j->interval);
    pthread_barrier_wait(j->go);
    int64_t t0 = itest_now_ms();
    itest_call(D, "POST", "/auth/subscription/checkout", j->u->s.access, body, &j->r);
    j->ms = itest_now_ms() - t0;
    return NULL;
}

/* Runs one checkout per job at once; the answers stay in the jobs (free them). */
static void run_checkouts(struct checkout_job *jobs, size_t n)
{
    pthread_t th[16];
    pthread_barrier_t go;
    assert_true(n <= ITEST_ARRAY_LEN(th));
    assert_int_equal(pthread_barrier_init(&go, NULL, (unsigned)n), 0);
    for (size_t i = 0; i < n; i++) {
        jobs[i].go = &go;
        assert_int_equal(pthread_create(&th[i], NULL, checkout_thread, &jobs[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&go);
}

static void test_billing_racing_first_checkouts_make_one_customer(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    /* customer creation takes a while at the fake, so the racers overlap for certain */
    fake_fault("{s:s,s:s,s:i}", "method", "POST", "path_prefix", "/v1/customers", "delay_ms", 300);
    struct checkout_job jobs[4];
    memset(jobs, 0, sizeof jobs);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++) {
        jobs[i].u = &u;
        jobs[i].interval = i % 2 ? "yearly" : "monthly";
    }
    run_checkouts(jobs, ITEST_ARRAY_LEN(jobs));
    fake_clear_faults();
    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++) {
        char url[160];
        expect_checkout_url(&jobs[i].r, url);
        itest_resp_free(&jobs[i].r);
    }
    json_t *customers = fake_customers_of(u.id);
    if (json_array_size(customers) != 1)
        fprintf(stderr, "  %zu customers at the fake for one user\n", json_array_size(customers));
    assert_int_equal(json_array_size(customers), 1);
    const char *cus = dig_str(json_array_get(customers, 0), "id");
    assert_non_null(cus);
    /* every session the racers made is for that one customer */
    json_t *sessions = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", u.id);
    assert_true(json_array_size(sessions) >= 1);
    size_t i;
    json_t *e;
    json_array_foreach(sessions, i, e)
    {
        if (json_integer_value(json_object_get(e, "status")) == 200)
            expect_str(dig_str(e, "params.customer"), cus);
    }
    char shown[40];
    customer_id_of(&u, shown);
    assert_string_equal(shown, cus);
    json_decref(sessions);
    json_decref(customers);
}

static void test_billing_checkout_rejects_an_invalid_interval(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    const char *bodies[] = {"{\"interval\":\"weekly\"}",
                            "{\"interval\":\"Monthly\"}",
                            "{\"interval\":\"month\"}",
                            "{\"interval\":\"\"}",
                            "{}",
                            "{\"interval\":null}",
                            "{\"interval\":1}",
                            "{\"interval\":true}",
                            "{\"interval\":[\"monthly\"]}",
                            "{\"interval\":{\"v\":\"yearly\"}}"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bodies); i++) {
        struct itest_resp r;
        itest_call(D, "POST", "/auth/subscription/checkout", u.s.access, bodies[i], &r);
        if (r.status != 400)
            fprintf(stderr, "  body %s\n", bodies[i]);
        itest_expect_error(&r, 400, "invalid_interval");
        itest_resp_free(&r);
    }
    /* refused before any Stripe call */
    json_t *c = fake_customers_of(u.id);
    assert_int_equal(json_array_size(c), 0);
    json_decref(c);
    json_t *s = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", u.id);
    assert_int_equal(json_array_size(s), 0);
    json_decref(s);
}

static void test_billing_checkout_while_active_trialing_or_past_due_is_409(void **state)
{
    (void)state;
    const char *statuses[] = {"active", "trialing", "past_due"};
    long long base = hour_ago();
    for (size_t i = 0; i < ITEST_ARRAY_LEN(statuses); i++) {
        struct itest_user u = {0};
        char cus[40];
        json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, statuses[i], base);
        expect_status_of(&u, statuses[i]);
        const char *intervals[] = {"monthly", "yearly"};
        for (size_t k = 0; k < ITEST_ARRAY_LEN(intervals); k++) {
            struct itest_resp r;
            checkout(&u, intervals[k], &r);
            if (r.status != 409)
                fprintf(stderr, "  status %s, interval %s\n", statuses[i], intervals[k]);
            itest_expect_error(&r, 409, "subscription_active");
            itest_resp_free(&r);
        }
        json_t *reqs = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", u.id);
        assert_int_equal(json_array_size(reqs), 0);
        json_decref(reqs);
        json_decref(sub);
    }
}

static void test_billing_checkout_after_cancellation_is_allowed(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    json_decref(fake_update_subscription(dig_str(sub, "id"), "{s:s}", "status", "canceled"));
    deliver("customer.subscription.deleted", dig_str(sub, "id"), NULL, base + 10);
    expect_status_of(&u, "canceled");
    struct itest_resp r;
    checkout(&u, "monthly", &r);
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
    json_t *req = only_checkout_request(u.id);
    expect_session_params(req, &u, cus, PRICE_MONTHLY);
    json_decref(req);
    json_decref(sub);
}

static void test_billing_checkout_session_completed_records_the_subscription(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    checkout(&u, "monthly", &r);
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
    char cus[40];
    customer_id_of(&u, cus);
    const char *cs = strrchr(url, '/') + 1;
    char path[200];
    snprintf(path, sizeof path, "/_fake/checkout/%s/complete", cs);
    json_t *done = fake_call("POST", path, NULL);
    const char *sub_id = dig_str(done, "subscription.id");
    assert_non_null(sub_id);
    deliver("checkout.session.completed", cs, NULL, hour_ago());
    json_t *s = subscription_of(&u);
    assert_string_equal(itest_str(s, "status"), "active");
    assert_string_equal(itest_str(s, "plan"), "pro");
    assert_string_equal(itest_str(s, "stripeCustomerId"), cus);
    assert_string_equal(itest_str(s, "stripeSubscriptionId"), sub_id);
    json_decref(s);
    expect_me_plan(&u, "pro", "active");
    json_decref(done);
}

/* ---- configuration --------------------------------------------------------------------------- */

static void test_billing_without_secret_key_is_503_billing_not_configured(void **state)
{
    (void)state;
    /* the base environment has no STRIPE_* key at all */
    struct itest_daemon *d = itest_daemon_start(NULL);
    assert_non_null(d);
    struct itest_user u = {0};
    itest_register(d, &u);
    struct itest_resp r;
    itest_call(d, "POST", "/auth/subscription/checkout", u.s.access, "{\"interval\":\"monthly\"}",
               &r);
    itest_expect_error(&r, 503, "billing_not_configured");
    itest_resp_free(&r);
    itest_call(d, "POST", "/auth/subscription/portal", u.s.access, NULL, &r);
    itest_expect_error(&r, 503, "billing_not_configured");
    itest_resp_free(&r);
    /* no webhook secret either: a well-signed event cannot be checked */
    char evt[40];
    event_id(evt);
    json_t *answer = send_event_to(d, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", evt, "type",
                                                "customer.subscription.updated", "object", "id",
                                                "sub_00000000000000", "object", "subscription"));
    expect_delivery_error(answer, 503, "billing_not_configured");
    json_decref(answer);
    /* the rest of the account works */
    json_t *me = get_json(d, "/auth/me", &u);
    assert_string_equal(itest_str(me, "plan"), "free");
    json_decref(me);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* billing_env without the keys named in `drop` (NULL-terminated) into out (room for 16). */
static const char *const *billing_env_without(const char *const drop[], const char *out[16])
{
    size_t n = 0;
    for (size_t i = 0; billing_env[i]; i++) {
        bool dropped = false;
        for (size_t k = 0; drop[k]; k++) {
            size_t kl = strlen(drop[k]);
            if (strncmp(billing_env[i], drop[k], kl) == 0 && billing_env[i][kl] == '=')
                dropped = true;
        }
        if (!dropped && n < 15)
            out[n++] = billing_env[i];
    }
    out[n] = NULL;
    return out;
}

/* Runs inkletd `command` (NULL: serve) with the billing environment minus `drop`; expects a
 * non-zero exit with exactly one stderr line per dropped key, naming it, and no secret. */
static void expect_refused(const char *command, const char *const drop[])
{
    const char *env[16];
    billing_env_without(drop, env);
    struct itest_proc p;
    const char *args[] = {command, NULL};
    int st = itest_run_inkletd(args, env, 15000, &p);
    size_t lines = 0, dropped = 0;
    for (const char *c = p.err; *c; c++)
        lines += *c == '\n';
    for (size_t k = 0; drop[k]; k++)
        dropped++;
    bool named = true;
    for (size_t k = 0; drop[k]; k++)
        named = named && strstr(p.err, drop[k]) != NULL;
    if (st == 0 || st == -1 || st >= 128 || lines != dropped || !named)
        fprintf(stderr, "  %s without %s%s: status %d, stderr:\n%s\n",
                command ? command : "(serve)", drop[0], drop[1] ? " and more" : "", st, p.err);
    assert_true(st != 0 && st != -1 && st < 128); /* an exit, not a crash or a hang */
    assert_int_equal(lines, dropped);
    assert_true(named);
    const char *secrets[] = {SECRET_KEY, WEBHOOK_SECRET};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(secrets); i++) {
        assert_null(strstr(p.err, secrets[i]));
        assert_null(strstr(p.out, secrets[i]));
    }
    itest_proc_free(&p);
}

static void test_billing_partial_config_refuses_to_start_naming_each_missing_key(void **state)
{
    (void)state;
    const char *required[] = {"STRIPE_WEBHOOK_SECRET", "STRIPE_PRICE_MONTHLY",
                              "STRIPE_PRICE_YEARLY",   "BILLING_SUCCESS_URL",
                              "BILLING_CANCEL_URL",    "BILLING_PORTAL_RETURN_URL"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(required); i++)
        expect_refused(NULL, (const char *const[]){required[i], NULL});
    /* two missing: one line for each */
    expect_refused(NULL, (const char *const[]){"STRIPE_PRICE_YEARLY", "BILLING_CANCEL_URL", NULL});
    expect_refused("check-config",
                   (const char *const[]){"STRIPE_WEBHOOK_SECRET", "STRIPE_PRICE_MONTHLY", NULL});
}

/* ---- portal ---------------------------------------------------------------------------------- */

static void test_billing_portal_returns_the_fake_url_with_the_configured_return_url(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char urls[2][160];
    for (int round = 0; round < 2; round++) {
        struct itest_resp r;
        itest_call(D, "POST", "/auth/subscription/portal", u.s.access, NULL, &r);
        itest_expect_status(&r, 200);
        itest_expect_keys(r.json, (const char *const[]){"url", NULL});
        const char *url = itest_str(r.json, "url");
        if (strncmp(url, PORTAL_URL_PREFIX, strlen(PORTAL_URL_PREFIX)) != 0)
            fprintf(stderr, "  portal url %s is not a portal url of the fake\n", url);
        assert_true(strncmp(url, PORTAL_URL_PREFIX, strlen(PORTAL_URL_PREFIX)) == 0);
        snprintf(urls[round], sizeof urls[round], "%s", url);
        itest_resp_free(&r);
    }
    /* the first call made the customer; the second reused it */
    json_t *customers = fake_customers_of(u.id);
    assert_int_equal(json_array_size(customers), 1);
    const char *cus = dig_str(json_array_get(customers, 0), "id");
    assert_non_null(cus);
    expect_str(dig_str(json_array_get(customers, 0), "email"), u.email);
    json_t *reqs = fake_requests("POST", "/v1/billing_portal/sessions", "customer", cus);
    assert_int_equal(json_array_size(reqs), 2);
    size_t i;
    json_t *e;
    json_array_foreach(reqs, i, e)
    {
        expect_str(dig_str(e, "params.return_url"), PORTAL_RETURN_URL);
        expect_str(dig_str(e, "headers.authorization"), "Bearer " SECRET_KEY);
        assert_int_equal(json_integer_value(json_object_get(e, "status")), 200);
    }
    assert_string_not_equal(urls[0], urls[1]); /* each call is a new session of the fake */
    json_t *s = subscription_of(&u);
    assert_string_equal(itest_str(s, "status"), "none");
    assert_string_equal(itest_str(s, "stripeCustomerId"), cus);
    json_decref(s);
    json_decref(reqs);
    json_decref(customers);
}

/* ---- webhook effects ------------------------------------------------------------------------- */

static void test_billing_subscription_updated_shows_pro_with_the_fake_periods(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    json_t *sub = fake_new_subscription(cus, PRICE_MONTHLY, "active");
    /* nothing is known before the event */
    expect_status_of(&u, "none");
    deliver("customer.subscription.updated", dig_str(sub, "id"), NULL, hour_ago());
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    json_t *s = subscription_of(&u);
    assert_true(json_is_false(json_object_get(s, "cancelAtPeriodEnd")));
    json_decref(s);
    json_decref(sub);
}

static void test_billing_yearly_subscription_cancelling_at_period_end_is_shown(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    long long base = hour_ago();
    json_t *sub = fake_new_subscription(cus, PRICE_YEARLY, "active");
    deliver("customer.subscription.created", dig_str(sub, "id"), NULL, base);
    expect_shows(&u, sub, cus, "active", "yearly", "pro");
    json_t *later =
        fake_update_subscription(dig_str(sub, "id"), "{s:b}", "cancel_at_period_end", 1);
    deliver("customer.subscription.updated", dig_str(sub, "id"), NULL, base + 10);
    expect_shows(&u, later, cus, "active", "yearly", "pro");
    json_t *s = subscription_of(&u);
    assert_true(json_is_true(json_object_get(s, "cancelAtPeriodEnd")));
    json_decref(s);
    json_decref(later);
    json_decref(sub);
}

static void test_billing_subscription_deleted_shows_canceled_and_plan_free(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    expect_me_plan(&u, "pro", "active");
    char path[160];
    snprintf(path, sizeof path, "/v1/subscriptions/%s", dig_str(sub, "id"));
    json_t *gone = stripe_call("DELETE", path, NULL);
    expect_str(dig_str(gone, "status"), "canceled");
    deliver("customer.subscription.deleted", dig_str(sub, "id"), NULL, base + 10);
    json_t *s = subscription_of(&u);
    itest_expect_keys(s, SUBSCRIPTION_KEYS);
    assert_string_equal(itest_str(s, "status"), "canceled");
    assert_string_equal(itest_str(s, "stripeSubscriptionId"), dig_str(sub, "id"));
    assert_string_equal(itest_str(s, "stripeCustomerId"), cus);
    json_decref(s);
    expect_me_plan(&u, "free", "canceled");
    json_decref(gone);
    json_decref(sub);
}

static void test_billing_canceled_subscription_never_comes_back(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    json_decref(fake_update_subscription(id, "{s:s}", "status", "canceled"));
    deliver("customer.subscription.deleted", id, NULL, base + 10);
    expect_status_of(&u, "canceled");
    /* a later event that says active again does not revive it */
    json_decref(fake_update_subscription(id, "{s:s}", "status", "active"));
    deliver("customer.subscription.updated", id, NULL, base + 20);
    expect_status_of(&u, "canceled");
    expect_me_plan(&u, "free", "canceled");
    json_decref(sub);
}

static void test_billing_payment_failed_is_past_due_then_paid_is_active(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    json_t *open = fake_invoice(id, "open");
    deliver("invoice.payment_failed", dig_str(open, "id"), NULL, base + 10);
    expect_shows(&u, sub, cus, "past_due", "monthly", "pro");
    json_t *paid = fake_invoice(id, "paid");
    deliver("invoice.paid", dig_str(paid, "id"), NULL, base + 20);
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    json_decref(paid);
    json_decref(open);
    json_decref(sub);
}

static void test_billing_other_stripe_statuses_map_to_the_documented_five(void **state)
{
    (void)state;
    static const struct {
        const char *stripe, *shown, *me_plan;
    } cases[] = {
        {"trialing", "trialing", "pro"},        {"unpaid", "past_due", "pro"},
        {"paused", "past_due", "pro"},          {"incomplete", "none", "free"},
        {"incomplete_expired", "none", "free"},
    };
    long long base = hour_ago();
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cases); i++) {
        struct itest_user u = {0};
        char cus[40];
        json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, cases[i].stripe, base);
        json_t *s = subscription_of(&u);
        const char *got = dig_str(s, "status");
        if (!str_eq(got, cases[i].shown))
            fprintf(stderr, "  %s -> %s, expected %s\n", cases[i].stripe, got ? got : "(missing)",
                    cases[i].shown);
        assert_string_equal(got ? got : "(missing)", cases[i].shown);
        json_decref(s);
        expect_me_plan(&u, cases[i].me_plan,
                       strcmp(cases[i].shown, "none") ? cases[i].shown : NULL);
        json_decref(sub);
    }
}

static void test_billing_webhook_is_also_mounted_under_auth_subscription(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    json_t *sub = fake_new_subscription(cus, PRICE_MONTHLY, "active");
    char url[160];
    snprintf(url, sizeof url, "%s/auth/subscription/webhook", D->url);
    json_t *answer = send_event(json_pack("{s:s,s:s,s:s,s:I}", "url", url, "type",
                                          "customer.subscription.updated", "object_id",
                                          dig_str(sub, "id"), "created", (json_int_t)hour_ago()));
    expect_received(answer, 1);
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    json_decref(answer);
    json_decref(sub);
}

static void test_billing_webhook_acknowledges_unknown_customers_and_ignored_types(void **state)
{
    (void)state;
    char stranger[40];
    stranger_customer(stranger);
    json_t *sub = fake_new_subscription(stranger, PRICE_MONTHLY, "active");
    deliver("customer.subscription.updated", dig_str(sub, "id"), NULL, hour_ago());
    deliver("customer.created", stranger, NULL, hour_ago());
    json_t *answer = send_event(json_pack("{s:s,s:{s:s,s:s}}", "type", "inklet.itest.unknown",
                                          "object", "object", "thing", "id", "thing_1"));
    expect_received(answer, 1);
    json_decref(answer);
    json_decref(sub);
}

/* ---- duplicates and ordering ----------------------------------------------------------------- */

static void test_billing_same_event_twice_has_one_effect(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    json_t *open = fake_invoice(id, "open");
    char failed_evt[40];
    event_id(failed_evt);
    for (int i = 0; i < 2; i++) {
        deliver("invoice.payment_failed", dig_str(open, "id"), failed_evt, base + 10);
        expect_status_of(&u, "past_due");
    }
    json_t *paid = fake_invoice(id, "paid");
    deliver("invoice.paid", dig_str(paid, "id"), NULL, base + 20);
    expect_status_of(&u, "active");
    /* the failed-payment event once more, even dated after the payment: its id was processed,
     * so it is a duplicate and changes nothing */
    deliver("invoice.payment_failed", dig_str(open, "id"), failed_evt, base + 10);
    expect_status_of(&u, "active");
    deliver("invoice.payment_failed", dig_str(open, "id"), failed_evt, base + 30);
    expect_status_of(&u, "active");
    json_decref(paid);
    json_decref(open);
    json_decref(sub);
}

static void test_billing_ten_concurrent_deliveries_have_one_effect_and_all_get_200(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    json_t *open = fake_invoice(id, "open");
    char evt[40];
    event_id(evt);
    json_t *answer = send_event(
        json_pack("{s:s,s:s,s:s,s:I,s:i}", "id", evt, "type", "invoice.payment_failed", "object_id",
                  dig_str(open, "id"), "created", (json_int_t)base + 10, "copies", 10));
    expect_received(answer, 10);
    json_decref(answer);
    expect_shows(&u, sub, cus, "past_due", "monthly", "pro");
    json_t *paid = fake_invoice(id, "paid");
    deliver("invoice.paid", dig_str(paid, "id"), NULL, base + 20);
    expect_status_of(&u, "active");
    /* the id was stored once and for all: a later copy is a duplicate */
    deliver("invoice.payment_failed", dig_str(open, "id"), evt, base + 30);
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    json_decref(paid);
    json_decref(open);
    json_decref(sub);
}

static void test_billing_older_event_after_a_newer_one_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    json_t *older = json_deep_copy(sub);
    json_t *newer =
        fake_update_subscription(id, "{s:s,s:b}", "status", "past_due", "cancel_at_period_end", 1);
    deliver("customer.subscription.updated", id, NULL, base + 20);
    expect_shows(&u, newer, cus, "past_due", "monthly", "pro");
    /* Stripe delivers an event from before that one only now */
    json_t *answer = send_event(json_pack("{s:s,s:O,s:I}", "type", "customer.subscription.updated",
                                          "object", older, "created", (json_int_t)base + 10));
    expect_received(answer, 1);
    json_decref(answer);
    expect_shows(&u, newer, cus, "past_due", "monthly", "pro");
    json_decref(newer);
    json_decref(older);
    json_decref(sub);
}

/* ---- webhook verification -------------------------------------------------------------------- */

static void test_billing_webhook_bad_signatures_are_400_and_change_nothing(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    char evt[40];
    event_id(evt);
    long long now = (long long)time(NULL);
    /* the same deletion event each time: refused, it must change nothing */
    json_t *bad[] = {
        json_pack("{s:s}", "secret", "whsec_not_the_right_one"),
        json_pack("{s:I}", "timestamp", (json_int_t)(now - 301)),
        json_pack("{s:I}", "timestamp", (json_int_t)(now + 400)),
    };
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        json_t *common =
            json_pack("{s:s,s:s,s:s,s:I}", "id", evt, "type", "customer.subscription.deleted",
                      "object_id", id, "created", (json_int_t)(base + 10));
        json_object_update(bad[i], common);
        json_decref(common);
        json_t *answer = send_event(bad[i]);
        expect_delivery_error(answer, 400, "invalid_signature");
        json_decref(answer);
        expect_status_of(&u, "active");
    }
    /* signatures the fake cannot make: none at all, a non-numeric t, only t, a v0 scheme */
    json_t *event = make_event(evt, "customer.subscription.deleted", sub, base + 10);
    char *body = json_dumps(event, JSON_COMPACT);
    size_t len = strlen(body);
    char good[200], v0[200], letters[220], trailing[220], t_only[40];
    sign(WEBHOOK_SECRET, now, body, len, good, sizeof good);
    const char *v1 = strstr(good, "v1=");
    snprintf(v0, sizeof v0, "t=%lld,v0=%s", now, v1 + 3);
    snprintf(letters, sizeof letters, "t=abc,%s", v1);
    snprintf(trailing, sizeof trailing, "t=%lldx,%s", now, v1);
    snprintf(t_only, sizeof t_only, "t=%lld", now);
    const char *sigs[] = {NULL, letters, trailing, t_only, v0, "garbage"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(sigs); i++) {
        struct itest_resp r;
        post_webhook(sigs[i], body, len, &r);
        if (r.status != 400)
            fprintf(stderr, "  Stripe-Signature: %s\n", sigs[i] ? sigs[i] : "(none)");
        itest_expect_error(&r, 400, "invalid_signature");
        itest_resp_free(&r);
        expect_status_of(&u, "active");
    }
    /* none of that burned the event id: the genuine delivery still takes effect */
    struct itest_resp r;
    post_webhook(good, body, len, &r);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"received", NULL});
    assert_true(json_is_true(json_object_get(r.json, "received")));
    itest_resp_free(&r);
    expect_status_of(&u, "canceled");
    free(body);
    json_decref(event);
    json_decref(sub);
}

static void test_billing_webhook_accepts_a_matching_v1_among_others(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    json_t *sub = fake_new_subscription(cus, PRICE_MONTHLY, "active");
    char zeros[65], other[65];
    memset(zeros, '0', 64);
    zeros[64] = '\0';
    memset(other, 'a', 64);
    other[64] = '\0';
    json_t *answer = send_event(
        json_pack("{s:s,s:s,s:I,s:[s,s]}", "type", "customer.subscription.updated", "object_id",
                  dig_str(sub, "id"), "created", (json_int_t)hour_ago(), "extra_v1", zeros, other));
    expect_received(answer, 1);
    json_decref(answer);
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    json_decref(sub);
}

static void test_billing_webhook_invalid_payload_with_valid_signature_is_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    char evt[40];
    event_id(evt);
    /* deletion events, each broken in one way; a server that took any would cancel */
    json_t *event = make_event(evt, "customer.subscription.deleted", sub, base + 10);
    char *whole = json_dumps(event, JSON_COMPACT);
    char *bodies[12];
    size_t n = 0;
    bodies[n++] = strdup("{not json");
    bodies[n++] = strdup("[]");
    bodies[n++] = strdup("\"evt\"");
    const char *drop[] = {"id", "type", "created", "data"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(drop); i++) {
        json_t *e = json_deep_copy(event);
        json_object_del(e, drop[i]);
        bodies[n++] = json_dumps(e, JSON_COMPACT);
        json_decref(e);
    }
    json_t *e = json_deep_copy(event);
    json_object_set_new(e, "id", json_integer(12345));
    bodies[n++] = json_dumps(e, JSON_COMPACT);
    json_object_set_new(e, "id", json_string(evt));
    json_object_set_new(e, "created", json_string("1700000000"));
    bodies[n++] = json_dumps(e, JSON_COMPACT);
    json_object_set_new(e, "created", json_integer(base + 10));
    json_object_set_new(e, "data", json_pack("{s:s}", "object", "sub"));
    bodies[n++] = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    /* duplicate keys (contract §0): the whole event with a second "type" in front */
    size_t wl = strlen(whole);
    char *dup = malloc(wl + 64);
    assert_non_null(dup);
    snprintf(dup, wl + 64, "{\"type\":\"customer.subscription.deleted\",%s", whole + 1);
    bodies[n++] = dup;
    assert_true(n <= ITEST_ARRAY_LEN(bodies));
    for (size_t i = 0; i < n; i++) {
        json_t *answer = send_event(json_pack("{s:s,s:s}", "type", "ignored", "body", bodies[i]));
        if (json_integer_value(json_object_get(
                json_array_get(json_object_get(answer, "deliveries"), 0), "status")) != 400)
            fprintf(stderr, "  body %.300s\n", bodies[i]);
        expect_delivery_error(answer, 400, "invalid_payload");
        json_decref(answer);
        expect_status_of(&u, "active");
        free(bodies[i]);
    }
    /* the well-formed event with that id still applies */
    json_t *answer = send_event(json_pack("{s:s,s:s}", "type", "ignored", "body", whole));
    expect_received(answer, 1);
    json_decref(answer);
    expect_status_of(&u, "canceled");
    free(whole);
    json_decref(event);
    json_decref(sub);
}

/* A well-formed event of an ignored type, exactly `size` bytes, as malloc'd text. */
static char *padded_event(size_t size)
{
    char evt[40];
    event_id(evt);
    json_t *obj = json_pack("{s:s,s:s,s:s}", "object", "inklet_padding", "id", "pad_1", "pad", "");
    json_t *event = make_event(evt, "inklet.itest.padding", obj, hour_ago());
    char *text = json_dumps(event, JSON_COMPACT);
    size_t fixed = strlen(text);
    free(text);
    assert_true(size > fixed);
    char *pad = malloc(size - fixed + 1);
    assert_non_null(pad);
    memset(pad, 'x', size - fixed);
    pad[size - fixed] = '\0';
    json_object_set_new(json_object_get(json_object_get(event, "data"), "object"), "pad",
                        json_string(pad));
    free(pad);
    text = json_dumps(event, JSON_COMPACT);
    assert_int_equal(strlen(text), size);
    json_decref(event);
    json_decref(obj);
    return text;
}

static void test_billing_webhook_body_over_1_mib_is_413(void **state)
{
    (void)state;
    /* exactly 1 MiB is within the limit */
    char *edge = padded_event(ONE_MIB);
    char sig[200];
    sign(WEBHOOK_SECRET, (long long)time(NULL), edge, ONE_MIB, sig, sizeof sig);
    struct itest_resp r;
    post_webhook(sig, edge, ONE_MIB, &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_true(json_object_get(r.json, "received")));
    itest_resp_free(&r);
    free(edge);
    char *big = padded_event(ONE_MIB + 1);
    sign(WEBHOOK_SECRET, (long long)time(NULL), big, ONE_MIB + 1, sig, sizeof sig);
    post_webhook(sig, big, ONE_MIB + 1, &r);
    itest_expect_error(&r, 413, "payload_too_large");
    itest_resp_free(&r);
    free(big);
    itest_get(D, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
}

/* ---- Stripe failures ------------------------------------------------------------------------- */

/* Asserts a 502 stripe_error that does not pass the fake's own error text on. */
static void expect_stripe_error(const struct itest_resp *r)
{
    itest_expect_error(r, 502, "stripe_error");
    assert_null(strstr(r->body, "fake fault"));
    assert_null(strstr(r->body, SECRET_KEY));
}

static void test_billing_stripe_answering_500_is_502_stripe_error(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    struct itest_resp r;
    fake_fault("{s:s,s:s,s:i}", "method", "POST", "path_prefix", "/v1/checkout/sessions", "status",
               500);
    checkout(&u, "monthly", &r);
    expect_stripe_error(&r);
    itest_resp_free(&r);
    json_t *reqs = fake_requests("POST", "/v1/checkout/sessions", "client_reference_id", u.id);
    assert_true(json_array_size(reqs) >= 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(reqs, 0), "status")), 500);
    json_decref(reqs);
    fake_clear_faults();

    fake_fault("{s:s,s:s,s:i}", "method", "POST", "path_prefix", "/v1/billing_portal/sessions",
               "status", 500);
    itest_call(D, "POST", "/auth/subscription/portal", u.s.access, NULL, &r);
    expect_stripe_error(&r);
    itest_resp_free(&r);
    fake_clear_faults();

    /* a first checkout whose customer cannot be made: 502, and still no customer shown */
    struct itest_user v = {0};
    itest_register(D, &v);
    fake_fault("{s:s,s:s,s:i}", "method", "POST", "path_prefix", "/v1/customers", "status", 500);
    checkout(&v, "monthly", &r);
    expect_stripe_error(&r);
    itest_resp_free(&r);
    fake_clear_faults();
    json_t *s = subscription_of(&v);
    expect_null(s, "stripeCustomerId");
    json_decref(s);

    /* Stripe is back: both work */
    checkout(&u, "monthly", &r);
    char url[160];
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
    checkout(&v, "monthly", &r);
    expect_checkout_url(&r, url);
    itest_resp_free(&r);
}

#define PROBE_MAX 4096

/* Measures /health, /auth/me and a login, one after the other, until told to stop. */
struct probe {
    const struct itest_user *u;
    atomic_bool stop;
    unsigned health[PROBE_MAX], me[PROBE_MAX], login[PROBE_MAX];
    size_t n_health, n_me, n_login;
    long bad_status; /* the first non-200 answer, 0 if none */
    const char *bad_what;
};

static unsigned timed(struct probe *p, const char *what, const char *method, const char *path,
                      const char *token, const char *body)
{
    struct itest_resp r;
    int64_t t0 = itest_now_ms();
    itest_call(D, method, path, token, body, &r);
    unsigned ms = (unsigned)(itest_now_ms() - t0);
    if (r.status != 200 && !p->bad_status) {
        p->bad_status = r.status ? r.status : -1;
        p->bad_what = what;
    }
    itest_resp_free(&r);
    return ms;
}

static void *probe_thread(void *arg)
{
    struct probe *p = arg;
    char login[256];
    snprintf(login, sizeof login, "{\"identifier\":\"%s\",\"password\":\"%s\"}", p->u->username,
             p->u->password);
    for (unsigned i = 0; !atomic_load(&p->stop) && p->n_health < PROBE_MAX; i++) {
        p->health[p->n_health++] = timed(p, "/health", "GET", "/health", NULL, NULL);
        p->me[p->n_me++] = timed(p, "/auth/me", "GET", "/auth/me", p->u->s.access, NULL);
        if (i % 4 == 0)
            p->login[p->n_login++] = timed(p, "login", "POST", "/auth/login", NULL, login);
        itest_sleep_ms(10);
    }
    return NULL;
}

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of v[0..n); sorts v. */
static unsigned percentile(unsigned *v, size_t n, unsigned p)
{
    assert_true(n > 0);
    qsort(v, n, sizeof *v, cmp_unsigned);
    size_t rank = (n * p + 99) / 100;
    return v[rank ? rank - 1 : 0];
}

static void test_billing_hanging_stripe_is_502_within_the_timeout_and_others_stay_fast(void **state)
{
    (void)state;
    struct itest_user probe_user = {0};
    itest_register(D, &probe_user);
    struct itest_user users[4];
    struct checkout_job jobs[ITEST_ARRAY_LEN(users)];
    memset(jobs, 0, sizeof jobs);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(users); i++) {
        memset(&users[i], 0, sizeof users[i]);
        itest_register(D, &users[i]);
        jobs[i].u = &users[i];
        jobs[i].interval = "monthly";
    }
    /* Stripe accepts the connection and then says nothing for 10 s */
    fake_fault("{s:s,s:s,s:i}", "method", "POST", "path_prefix", "/v1/", "delay_ms", 10000);
    struct probe *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->u = &probe_user;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, probe_thread, p), 0);
    itest_sleep_ms(100);
    run_checkouts(jobs, ITEST_ARRAY_LEN(jobs));
    atomic_store(&p->stop, true);
    pthread_join(th, NULL);
    fake_clear_faults();

    for (size_t i = 0; i < ITEST_ARRAY_LEN(jobs); i++) {
        fprintf(stderr, "  hanging checkout %zu: %ld after %lld ms\n", i + 1, jobs[i].r.status,
                (long long)jobs[i].ms);
        expect_stripe_error(&jobs[i].r);
        itest_resp_free(&jobs[i].r);
        /* it waited for Stripe, and no longer than STRIPE_TIMEOUT (plus a generous margin) */
        assert_true(jobs[i].ms >= STRIPE_TIMEOUT_MS / 2);
        assert_true(jobs[i].ms < STRIPE_TIMEOUT_MS + (int64_t)itest_scaled(1500));
    }
    size_t nh = p->n_health, nm = p->n_me, nl = p->n_login;
    unsigned health_p99 = percentile(p->health, nh, 99), me_p99 = percentile(p->me, nm, 99);
    unsigned login_max = percentile(p->login, nl, 100);
    fprintf(stderr,
            "  meanwhile: /health %zu x, p99 %u ms, max %u ms; /auth/me %zu x, p99 %u ms, max %u "
            "ms; login %zu x, max %u ms\n",
            nh, health_p99, p->health[nh - 1], nm, me_p99, p->me[nm - 1], nl, login_max);
    if (p->bad_status)
        fprintf(stderr, "  %s answered %ld meanwhile\n", p->bad_what, p->bad_status);
    assert_int_equal(p->bad_status, 0);
    assert_true(nh >= 5 && nl >= 2);
    assert_true(health_p99 < itest_scaled(250));
    assert_true(me_p99 < itest_scaled(250));
    assert_true(login_max < itest_scaled(1500));
    free(p);
}

/* ---- account deletion ------------------------------------------------------------------------ */

/* Polls the fake until subscription `id` is canceled, up to `limit_ms`; returns the elapsed
 * milliseconds, or -1 when it never was. */
static int64_t wait_canceled_at_fake(const char *id, unsigned limit_ms, int64_t since)
{
    for (;;) {
        json_t *s = fake_subscription(id);
        bool canceled = str_eq(dig_str(s, "status"), "canceled");
        json_decref(s);
        int64_t elapsed = itest_now_ms() - since;
        if (canceled)
            return elapsed;
        if (elapsed > (int64_t)limit_ms)
            return -1;
        itest_sleep_ms(100);
    }
}

static void delete_account(const struct itest_user *u)
{
    struct itest_resp r;
    itest_callf(D, "DELETE", "/auth/me", u->s.access, &r, "{s:s}", "password", u->password);
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
}

static void test_billing_account_deletion_cancels_the_subscriptions_at_stripe(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    /* a second live one the server never heard of: cancelled too, found by listing */
    json_t *trial = fake_new_subscription(cus, PRICE_YEARLY, "trialing");
    int64_t t0 = itest_now_ms();
    delete_account(&u);
    const char *ids[] = {dig_str(sub, "id"), dig_str(trial, "id")};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(ids); i++) {
        int64_t ms = wait_canceled_at_fake(ids[i], itest_scaled(10000), t0);
        if (ms < 0)
            fprintf(stderr, "  %s is not canceled at the fake %u ms after DELETE /auth/me\n",
                    ids[i], itest_scaled(10000));
        assert_true(ms >= 0);
    }
    json_t *lists = fake_requests("GET", "/v1/subscriptions", "?customer", cus);
    assert_true(json_array_size(lists) >= 1);
    expect_str(query_value(json_array_get(lists, 0), "status"), "all");
    json_decref(lists);
    json_decref(trial);
    json_decref(sub);
}

static void test_billing_failed_cancellation_on_deletion_is_retried(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    fake_fault("{s:s,s:s,s:i,s:i}", "method", "DELETE", "path_prefix", "/v1/subscriptions",
               "status", 500, "count", 1);
    int64_t t0 = itest_now_ms();
    delete_account(&u);
    int64_t ms = wait_canceled_at_fake(id, itest_scaled(15000), t0);
    if (ms < 0)
        fprintf(stderr, "  %s is not canceled at the fake %u ms after DELETE /auth/me\n", id,
                itest_scaled(15000));
    assert_true(ms >= 0);
    char path[160];
    snprintf(path, sizeof path, "/v1/subscriptions/%s", id);
    json_t *deletes = fake_requests("DELETE", path, NULL, NULL);
    size_t n = json_array_size(deletes);
    fprintf(stderr, "  cancelled after %lld ms and %zu DELETE(s)\n", (long long)ms, n);
    assert_true(n >= 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(deletes, 0), "status")),
                     500);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(deletes, n - 1), "status")),
                     200);
    json_decref(deletes);
    json_decref(sub);
}

static void test_billing_cancellation_failing_past_one_attempt_is_retried_later(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    long long base = hour_ago();
    json_t *sub = subscribed_user(&u, cus, PRICE_MONTHLY, "active", base);
    const char *id = dig_str(sub, "id");
    char path[160];
    snprintf(path, sizeof path, "/v1/subscriptions/%s", id);
    /* Stripe refuses every cancellation until the first attempt (STRIPE_TIMEOUT, retries
     * included) is surely over: only a later, durable retry can cancel it */
    fake_fault("{s:s,s:s,s:i}", "method", "DELETE", "path_prefix", path, "status", 500);
    int64_t t0 = itest_now_ms();
    delete_account(&u);
    size_t failed = 0;
    while (itest_now_ms() - t0 < (int64_t)itest_scaled(10000)) {
        json_t *d = fake_requests("DELETE", path, NULL, NULL);
        failed = json_array_size(d);
        json_decref(d);
        if (failed)
            break;
        itest_sleep_ms(100);
    }
    if (!failed)
        fprintf(stderr, "  no DELETE %s reached the fake\n", path);
    assert_true(failed >= 1);
    itest_sleep_ms(STRIPE_TIMEOUT_MS + itest_scaled(1000));
    json_t *before = fake_requests("DELETE", path, NULL, NULL);
    size_t refused = json_array_size(before);
    json_decref(before);
    fake_clear_faults();
    int64_t t1 = itest_now_ms();
    int64_t ms = wait_canceled_at_fake(id, itest_scaled(15000), t1);
    json_t *deletes = fake_requests("DELETE", path, NULL, NULL);
    size_t n = json_array_size(deletes);
    fprintf(stderr,
            "  %zu refused DELETE(s) in the first attempt; %zu DELETE(s) in all; %s %lld ms after "
            "Stripe came back (back-off starts at 5 s)\n",
            refused, n, ms >= 0 ? "cancelled" : "still not cancelled",
            (long long)(ms >= 0 ? ms : itest_now_ms() - t1));
    assert_true(ms >= 0);
    assert_true(n > refused);
    for (size_t i = 0; i < refused; i++)
        assert_int_equal(json_integer_value(json_object_get(json_array_get(deletes, i), "status")),
                         500);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(deletes, n - 1), "status")),
                     200);
    json_decref(deletes);
    json_decref(sub);
}

/* ---- billing-sync ---------------------------------------------------------------------------- */

static void billing_sync(struct itest_proc *p)
{
    int st = itest_run_inkletd((const char *const[]){"billing-sync", NULL}, billing_env, 60000, p);
    if (st != 0)
        fprintf(stderr, "  billing-sync: status %d\n  stdout: %s\n  stderr: %s\n", st, p->out,
                p->err);
    assert_int_equal(st, 0);
}

static void test_billing_sync_repairs_a_subscription_no_webhook_announced(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    json_t *sub = fake_new_subscription(cus, PRICE_YEARLY, "active");
    const char *id = dig_str(sub, "id");
    expect_status_of(&u, "none");
    struct itest_proc p;
    billing_sync(&p);
    if (!strstr(p.out, id))
        fprintf(stderr, "  %s not named; stdout:\n%s\n  stderr:\n%s\n", id, p.out, p.err);
    assert_non_null(strstr(p.out, id));
    itest_proc_free(&p);
    expect_shows(&u, sub, cus, "active", "yearly", "pro");
    /* nothing left to repair for it */
    billing_sync(&p);
    if (strstr(p.out, id))
        fprintf(stderr, "  the second run named %s again:\n%s\n", id, p.out);
    assert_null(strstr(p.out, id));
    itest_proc_free(&p);
    expect_shows(&u, sub, cus, "active", "yearly", "pro");
    /* each run listed everything: status=all, limit=100, no customer filter */
    json_t *lists = fake_requests("GET", "/v1/subscriptions", "?status", "all");
    size_t i, full = 0;
    json_t *e;
    json_array_foreach(lists, i, e)
    {
        if (query_value(e, "customer"))
            continue;
        full++;
        expect_str(query_value(e, "limit"), "100");
    }
    assert_true(full >= 2);
    json_decref(lists);
    json_decref(sub);
}

/* How many logged subscription listings asked for a page after a given subscription. */
static size_t listings_with_starting_after(void)
{
    json_t *lists = fake_requests("GET", "/v1/subscriptions", "?status", "all");
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(lists, i, e)
    {
        n += query_value(e, "starting_after") != NULL;
    }
    json_decref(lists);
    return n;
}

static void test_billing_sync_follows_pages_past_the_first_hundred(void **state)
{
    (void)state;
    struct itest_user u = {0};
    char cus[40];
    billing_user(&u, cus);
    /* the oldest subscription at the fake: it is on the last page of the list */
    json_t *sub = itest_fake_callf(&fake, "POST", "/_fake/subscriptions", "{s:s,s:s,s:s,s:I}",
                                   "customer", cus, "price", PRICE_MONTHLY, "status", "active",
                                   "created", (json_int_t)(time(NULL) - 5 * 86400));
    const char *id = dig_str(sub, "id");
    char stranger[40];
    stranger_customer(stranger);
    for (int i = 0; i < 101; i++)
        json_decref(fake_new_subscription(stranger, PRICE_MONTHLY, "active"));
    expect_status_of(&u, "none");
    size_t pages_before = listings_with_starting_after();
    struct itest_proc p;
    billing_sync(&p);
    if (!strstr(p.out, id))
        fprintf(stderr, "  %s not named; stdout:\n%s\n  stderr:\n%s\n", id, p.out, p.err);
    assert_non_null(strstr(p.out, id));
    itest_proc_free(&p);
    expect_shows(&u, sub, cus, "active", "monthly", "pro");
    assert_true(listings_with_starting_after() > pages_before);
    json_decref(sub);
}

/* ---- fixtures -------------------------------------------------------------------------------- */

static int billing_setup(void **state)
{
    (void)state;
    if (!fake_start()) {
        fake_stop();
        itest_fixture_failures++;
        return -1;
    }
    snprintf(api_base_kv, sizeof api_base_kv, "STRIPE_API_BASE=http://127.0.0.1:%u", fake.port);
    itest_shared = itest_daemon_start(billing_env);
    if (!itest_shared) {
        fake_stop();
        itest_fixture_failures++;
        return -1;
    }
    itest_shared->shared = true;
    return 0;
}

static int billing_teardown(void **state)
{
    int st = itest_group_teardown(state);
    if (fake_stop() != 0) {
        itest_fixture_failures++;
        st = -1;
    }
    return st;
}

/* Clears the fake's faults (a failed test must not leave Stripe broken for the next one), then
 * the harness teardown. */
static int billing_test_teardown(void **state)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_fake/faults", fake.port);
    struct itest_resp r;
    itest_request(NULL, "DELETE", url, NULL, NULL, 0, &r);
    itest_resp_free(&r);
    return itest_teardown(state);
}

#define T(f) cmocka_unit_test_teardown(f, billing_test_teardown)

int itest_group_billing(void)
{
    if (!itest.fake_stripe) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_FAKE_STRIPE is not set; the billing tests are "
                        "skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_billing_without_subscription_is_none_with_nulls_and_plan_free),
        T(test_billing_routes_need_a_bearer_token),
        T(test_billing_checkout_returns_the_fake_session_url_made_as_section_b_says),
        T(test_billing_yearly_checkout_uses_the_yearly_price_and_the_same_customer),
        T(test_billing_checkout_ignores_client_price_customer_and_urls),
        T(test_billing_racing_first_checkouts_make_one_customer),
        T(test_billing_checkout_rejects_an_invalid_interval),
        T(test_billing_checkout_while_active_trialing_or_past_due_is_409),
        T(test_billing_checkout_after_cancellation_is_allowed),
        T(test_billing_checkout_session_completed_records_the_subscription),
        T(test_billing_without_secret_key_is_503_billing_not_configured),
        T(test_billing_partial_config_refuses_to_start_naming_each_missing_key),
        T(test_billing_portal_returns_the_fake_url_with_the_configured_return_url),
        T(test_billing_subscription_updated_shows_pro_with_the_fake_periods),
        T(test_billing_yearly_subscription_cancelling_at_period_end_is_shown),
        T(test_billing_subscription_deleted_shows_canceled_and_plan_free),
        T(test_billing_canceled_subscription_never_comes_back),
        T(test_billing_payment_failed_is_past_due_then_paid_is_active),
        T(test_billing_other_stripe_statuses_map_to_the_documented_five),
        T(test_billing_webhook_is_also_mounted_under_auth_subscription),
        T(test_billing_webhook_acknowledges_unknown_customers_and_ignored_types),
        T(test_billing_same_event_twice_has_one_effect),
        T(test_billing_ten_concurrent_deliveries_have_one_effect_and_all_get_200),
        T(test_billing_older_event_after_a_newer_one_changes_nothing),
        T(test_billing_webhook_bad_signatures_are_400_and_change_nothing),
        T(test_billing_webhook_accepts_a_matching_v1_among_others),
        T(test_billing_webhook_invalid_payload_with_valid_signature_is_400),
        T(test_billing_webhook_body_over_1_mib_is_413),
        T(test_billing_stripe_answering_500_is_502_stripe_error),
        T(test_billing_hanging_stripe_is_502_within_the_timeout_and_others_stay_fast),
        T(test_billing_account_deletion_cancels_the_subscriptions_at_stripe),
        T(test_billing_failed_cancellation_on_deletion_is_retried),
        T(test_billing_cancellation_failing_past_one_attempt_is_retried_later),
        T(test_billing_sync_repairs_a_subscription_no_webhook_announced),
        T(test_billing_sync_follows_pages_past_the_first_hundred),
    };
    return cmocka_run_group_tests_name("billing", tests, billing_setup, billing_teardown);
}
