/* Contract §2.1: sign-in with Google and Apple against the local fake providers
 * (tests/fakes/fake_oidc.py). The group starts one fake and one inkletd pointed at it; the test
 * plays the browser: it follows each redirect by hand, and for Apple reads the auto-submitting
 * form_post page and posts its fields, as a browser would. Tests that need another
 * configuration (no provider, a fresh JWKS cache) start their own daemon. Every test signs in a
 * fresh identity (sub and email are unique per run), so what tests share at the fake is told
 * apart by subject. */
#include "harness.h"
#include "itest_browser.h"
#include "itest_mail.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define D itest_shared

#define DESKTOP_TARGET "inklet://auth/callback"

static struct itest_fake fake;
static char key_path[160], pub_path[160];
static char kv[8][200];

/* The OAuth environment of a daemon pointed at the fake; `google`/`apple` false leave that
 * provider unconfigured. */
static const char *const *oauth_env(bool google, bool apple, const char *out[40])
{
    unsigned p = fake.port;
    size_t n = 0;
    snprintf(kv[0], sizeof kv[0], "GOOGLE_AUTH_URL=http://127.0.0.1:%u/google/o/oauth2/v2/auth", p);
    snprintf(kv[1], sizeof kv[1], "GOOGLE_TOKEN_URL=http://127.0.0.1:%u/google/token", p);
    snprintf(kv[2], sizeof kv[2], "GOOGLE_JWKS_URL=http://127.0.0.1:%u/google/oauth2/v3/certs", p);
    snprintf(kv[3], sizeof kv[3], "APPLE_AUTH_URL=http://127.0.0.1:%u/apple/auth/authorize", p);
    snprintf(kv[4], sizeof kv[4], "APPLE_TOKEN_URL=http://127.0.0.1:%u/apple/auth/token", p);
    snprintf(kv[5], sizeof kv[5], "APPLE_JWKS_URL=http://127.0.0.1:%u/apple/auth/keys", p);
    snprintf(kv[6], sizeof kv[6], "APPLE_REVOKE_URL=http://127.0.0.1:%u/apple/auth/revoke", p);
    snprintf(kv[7], sizeof kv[7], "APPLE_PRIVATE_KEY_FILE=%s", key_path);
    for (int i = 0; i < 7; i++)
        out[n++] = kv[i];
    out[n++] = "OAUTH_WEB_REDIRECT=" WEB_TARGET;
    out[n++] = "OAUTH_TIMEOUT=2";
    out[n++] = "RATE_LIMIT_LOGIN=10000/60";
    if (google) {
        out[n++] = "GOOGLE_CLIENT_IDS=" GOOGLE_ID ",inklet-google-ios";
        out[n++] = "GOOGLE_CLIENT_SECRET=" GOOGLE_SECRET;
        out[n++] = "GOOGLE_REDIRECT_URL=" API_BASE "/auth/oauth/google/callback";
    }
    if (apple) {
        out[n++] = "APPLE_CLIENT_IDS=" APPLE_ID;
        out[n++] = "APPLE_TEAM_ID=" TEAM_ID;
        out[n++] = "APPLE_KEY_ID=" KEY_ID;
        out[n++] = "APPLE_REDIRECT_URL=" API_BASE "/auth/oauth/apple/callback";
        out[n++] = "TOKEN_ENCRYPTION_KEY=" ENC_KEY;
        out[n++] = kv[7];
    }
    out[n] = NULL;
    return out;
}

/* ---- small parsers ----------------------------------------------------------------------- */

/* The decoded value of query parameter `name` in `url`, or NULL (malloc'd). */
static char *query_param(const char *url, const char *name)
{
    const char *q = strchr(url, '?');
    size_t nlen = strlen(name);
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        size_t n = strcspn(p, "&#");
        if (n > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            char *v = curl_easy_unescape(NULL, p + nlen + 1, (int)(n - nlen - 1), NULL);
            char *out = v ? strdup(v) : NULL;
            curl_free(v);
            return out;
        }
        p = p[n] == '&' ? p + n + 1 : NULL;
    }
    return NULL;
}

static void expect_param(const char *url, const char *name, const char *value)
{
    char *v = query_param(url, name);
    if (!v || strcmp(v, value) != 0)
        fail_msg("%s: %s is \"%s\", expected \"%s\"", url, name, v ? v : "(none)", value);
    free(v);
}

/* ---- playing the browser ------------------------------------------------------------------ */

/* Asserts `r` is the 302 the contract's redirects are (no-store, no-referrer) and returns its
 * Location (malloc'd). */
static char *expect_redirect(const struct itest_resp *r)
{
    itest_expect_status(r, 302);
    const char *loc = itest_header(r, "Location");
    assert_non_null(loc);
    assert_string_equal(itest_header(r, "Cache-Control"), "no-store");
    assert_string_equal(itest_header(r, "Referrer-Policy"), "no-referrer");
    return strdup(loc);
}

/* Our callback URL as the provider redirects to it, moved onto daemon `d`. */
static char *on_daemon(const struct itest_daemon *d, const char *url)
{
    assert_true(strncmp(url, API_BASE "/", strlen(API_BASE) + 1) == 0);
    size_t n = strlen(d->url) + strlen(url) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%s%s", d->url, url + strlen(API_BASE));
    return out;
}

/* Step 1 on `d`: GET /auth/oauth/<provider><query>; returns the authorize URL. */
static char *start(const struct itest_daemon *d, const char *provider, const char *query)
{
    char url[256];
    snprintf(url, sizeof url, "%s/auth/oauth/%s%s", d->url, provider, query);
    struct itest_resp r;
    itest_fetch("GET", url, NULL, &r);
    char *loc = expect_redirect(&r);
    itest_resp_free(&r);
    return loc;
}

/* Google: the fake's authorize answers 302 to our callback; follows it on `d` and returns the
 * final Location. */
static char *google_finish(const struct itest_daemon *d, const char *authorize)
{
    struct itest_resp r;
    itest_fetch("GET", authorize, NULL, &r);
    itest_expect_status(&r, 302);
    char *cb = on_daemon(d, itest_header(&r, "Location"));
    itest_resp_free(&r);
    itest_fetch("GET", cb, NULL, &r);
    char *final = expect_redirect(&r);
    itest_resp_free(&r);
    free(cb);
    return final;
}

/* Apple: the fake's authorize answers an auto-submitting form; posts its fields to `d` as the
 * browser would and returns the final Location. */
static char *apple_finish(const struct itest_daemon *d, const char *authorize)
{
    struct itest_resp r;
    itest_fetch("GET", authorize, NULL, &r);
    itest_expect_status(&r, 200);
    assert_non_null(strstr(r.body, "document.forms[0].submit()"));
    const char *formtag = strstr(r.body, "<form");
    assert_non_null(formtag);
    char *method = itest_html_attr(formtag, "method"), *action = itest_html_attr(formtag, "action");
    assert_string_equal(method, "POST");
    char body[8192];
    assert_true(itest_html_form_body(formtag, body, sizeof body));
    itest_resp_free(&r);
    char *cb = on_daemon(d, action);
    itest_fetch("POST", cb, body, &r);
    char *final = expect_redirect(&r);
    itest_resp_free(&r);
    free(cb);
    free(method);
    free(action);
    return final;
}

/* The whole browser flow of `provider` on `d`. */
static char *sign_in(const struct itest_daemon *d, const char *provider, const char *query)
{
    char *authorize = start(d, provider, query);
    char *final =
        strcmp(provider, "google") == 0 ? google_finish(d, authorize) : apple_finish(d, authorize);
    free(authorize);
    return final;
}

/* ---- identities at the fake ----------------------------------------------------------------- */

struct identity {
    char sub[96];
    char email[128];
};

static void identity_new(struct identity *id, const char *provider)
{
    static unsigned seq;
    unsigned char r[4];
    for (size_t i = 0; i < sizeof r; i++)
        r[i] = (unsigned char)rand();
    snprintf(id->sub, sizeof id->sub, "%s-%s-%u-%02x%02x%02x%02x", provider, itest.run_tag, ++seq,
             r[0], r[1], r[2], r[3]);
    snprintf(id->email, sizeof id->email, "oauth-%s-%u-%02x%02x@example.com", itest.run_tag, seq,
             r[0], r[1]);
}

/* Who signs in next at the fake. */
static void fake_user(const char *provider, const struct identity *id, bool verified)
{
    json_decref(itest_fake_callf(&fake, "POST", "/_fake/user", "{s:s,s:s,s:s,s:b}", "provider",
                                 provider, "sub", id->sub, "email", id->email, "email_verified",
                                 verified));
}

static struct identity *signed_in_as(const char *provider, struct identity *id)
{
    identity_new(id, provider);
    fake_user(provider, id, true);
    return id;
}

/* Asserts the final Location is `target` with both tokens (and nothing else); returns
 * GET /auth/me with the access token (new reference); *refresh gets the refresh token. */
static json_t *expect_tokens(const struct itest_daemon *d, const char *final, const char *target,
                             char refresh[128])
{
    size_t n = strlen(target);
    if (strncmp(final, target, n) != 0 || final[n] != '?')
        fail_msg("final redirect %s is not to %s", final, target);
    char *err = query_param(final, "error");
    if (err)
        fail_msg("final redirect carries error=%s", err);
    char *access = query_param(final, "accessToken"), *rt = query_param(final, "refreshToken");
    assert_non_null(access);
    assert_non_null(rt);
    if (refresh)
        snprintf(refresh, 128, "%s", rt);
    struct itest_resp r;
    itest_call(d, "GET", "/auth/me", access, NULL, &r);
    itest_expect_status(&r, 200);
    json_t *me = json_incref(r.json);
    itest_resp_free(&r);
    free(access);
    free(rt);
    return me;
}

static void expect_failed(const char *final, const char *target)
{
    char expected[256];
    snprintf(expected, sizeof expected, "%s?error=oauth_failed", target);
    assert_string_equal(final, expected);
}

static bool has_provider(const json_t *me, const char *provider)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(me, "providers"), i,
                       v) if (strcmp(json_string_value(v), provider) == 0) return true;
    return false;
}

/* The native route. */
static void native(const struct itest_daemon *d, const char *provider, const char *token,
                   const char *nonce, struct itest_resp *r)
{
    char path[64];
    snprintf(path, sizeof path, "/auth/oauth/%s/token", provider);
    if (nonce)
        itest_callf(d, "POST", path, NULL, r, "{s:s,s:s}", "idToken", token, "nonce", nonce);
    else
        itest_callf(d, "POST", path, NULL, r, "{s:s}", "idToken", token);
}

/* A token the fake signs with exactly these claims (`key` as /_fake/sign takes it). */
static char *fake_sign(const char *provider, json_t *claims, const char *key)
{
    json_t *body = json_pack("{s:s,s:o,s:s}", "provider", provider, "claims", claims, "key", key);
    json_t *v = itest_fake_call(&fake, "POST", "/_fake/sign", body);
    json_decref(body);
    char *t = strdup(itest_str(v, "token"));
    json_decref(v);
    return t;
}

/* Google claims that pass every check, for `id`. */
static json_t *good_claims(const struct identity *id, const char *aud)
{
    long long now = (long long)time(NULL);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I}", "iss", "https://accounts.google.com",
                     "aud", aud, "azp", aud, "sub", id->sub, "email", id->email, "email_verified",
                     1, "iat", now, "exp", now + 3600);
}

/* ---- the browser flow --------------------------------------------------------------------- */

static void test_oauth_google_web_flow_ends_at_the_web_target_with_working_tokens(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    static const char ok_metric[] = "inklet_signins_total{provider=\"google\",result=\"ok\"}";
    unsigned long long ok_before = itest_metric(D, ok_metric);
    char *authorize = start(D, "google", "?client=web");
    /* what the provider is asked for (§2.1 step 1) */
    char prefix[96];
    snprintf(prefix, sizeof prefix, "http://127.0.0.1:%u/google/o/oauth2/v2/auth?", fake.port);
    assert_true(strncmp(authorize, prefix, strlen(prefix)) == 0);
    expect_param(authorize, "client_id", GOOGLE_ID);
    expect_param(authorize, "redirect_uri", API_BASE "/auth/oauth/google/callback");
    expect_param(authorize, "response_type", "code");
    expect_param(authorize, "scope", "openid email profile");
    expect_param(authorize, "code_challenge_method", "S256");
    char *st = query_param(authorize, "state"), *nonce = query_param(authorize, "nonce"),
         *ch = query_param(authorize, "code_challenge");
    assert_int_equal(strlen(st), 43);
    assert_int_equal(strlen(nonce), 43);
    assert_int_equal(strlen(ch), 43);
    char *final = google_finish(D, authorize);
    json_t *me = expect_tokens(D, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "email"), id.email);
    assert_true(has_provider(me, "google"));
    assert_false(json_is_true(json_object_get(me, "hasPassword")));
    assert_int_equal(itest_metric(D, ok_metric), ok_before + 1);
    json_decref(me);
    free(st);
    free(nonce);
    free(ch);
    free(authorize);
    free(final);
}

static void test_oauth_desktop_flow_ends_at_the_inklet_deep_link(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *final = sign_in(D, "google", "?client=desktop");
    json_t *me = expect_tokens(D, final, DESKTOP_TARGET, NULL);
    assert_string_equal(itest_str(me, "email"), id.email);
    json_decref(me);
    free(final);
}

static void test_oauth_without_client_is_the_web_flow(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *final = sign_in(D, "google", "");
    json_decref(expect_tokens(D, final, WEB_TARGET, NULL));
    free(final);
}

static void test_oauth_apple_form_post_flow_ends_at_the_web_target(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("apple", &id);
    char *authorize = start(D, "apple", "?client=web");
    expect_param(authorize, "client_id", APPLE_ID);
    expect_param(authorize, "response_mode", "form_post");
    expect_param(authorize, "scope", "name email");
    char *final = apple_finish(D, authorize);
    json_t *me = expect_tokens(D, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "email"), id.email);
    assert_true(has_provider(me, "apple"));
    json_decref(me);
    free(authorize);
    free(final);
}

static void test_oauth_first_sign_in_creates_a_user_and_the_second_finds_it(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *f1 = sign_in(D, "google", "?client=web");
    json_t *first = expect_tokens(D, f1, WEB_TARGET, NULL);
    char *f2 = sign_in(D, "google", "?client=web");
    json_t *second = expect_tokens(D, f2, WEB_TARGET, NULL);
    assert_string_equal(itest_str(first, "id"), itest_str(second, "id"));
    /* a generated, valid username from the address */
    const char *name = itest_str(first, "username");
    assert_true(strlen(name) >= 3 && strlen(name) <= 32);
    assert_true(strncmp(name, "oauth-", 6) == 0);
    json_decref(first);
    json_decref(second);
    free(f1);
    free(f2);
}

static void test_oauth_verified_email_links_and_locks_out_the_pre_registered_password(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct identity id;
    identity_new(&id, "google");
    snprintf(id.email, sizeof id.email, "%s", u.email);
    itest_register(D, &u);
    fake_user("google", &id, true);
    char *final = sign_in(D, "google", "?client=web");
    json_t *me = expect_tokens(D, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "id"), u.id);
    assert_true(has_provider(me, "google"));
    assert_false(json_is_true(json_object_get(me, "hasPassword")));
    /* the password of whoever registered the address first no longer works, and the sessions
     * opened with it are gone */
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.email, "password",
                u.password);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_expect_token_dies(D, u.s.access, itest_now_ms(), 5000 * itest.slow);
    /* Google vouched for the address */
    assert_true(json_is_true(json_object_get(me, "emailVerified")));
    json_decref(me);
    free(final);
}

/* §2.1 step 4 as §2.2 amends it: an address we verified proves the password's owner reads it,
 * so linking Google keeps the password and the sessions. */
static void test_oauth_verified_email_links_and_keeps_a_verified_accounts_password(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct identity id;
    identity_new(&id, "google");
    snprintf(id.email, sizeof id.email, "%s", u.email);
    itest_register(D, &u);
    itest_db_exec1("UPDATE users SET email_verified_at = now() WHERE id = $1", u.id);
    fake_user("google", &id, true);
    char *final = sign_in(D, "google", "?client=web");
    json_t *me = expect_tokens(D, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "id"), u.id);
    assert_true(has_provider(me, "google"));
    assert_true(json_is_true(json_object_get(me, "hasPassword")));
    assert_true(json_is_true(json_object_get(me, "emailVerified")));
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.email, "password",
                u.password);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_sleep_ms(itest_scaled(200));
    assert_int_equal(itest_me_status(D, u.s.access), 200);
    json_decref(me);
    free(final);
}

static void test_oauth_unverified_email_never_links_or_creates(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct identity id;
    identity_new(&id, "google");
    snprintf(id.email, sizeof id.email, "%s", u.email);
    fake_user("google", &id, false);
    char *final = sign_in(D, "google", "?client=web");
    expect_failed(final, WEB_TARGET);
    free(final);
    /* the account is untouched */
    assert_int_equal(itest_me_status(D, u.s.access), 200);
    struct itest_session s;
    itest_login(D, &u, &s);
    /* and an unverified address nobody has does not make an account either */
    identity_new(&id, "google");
    fake_user("google", &id, false);
    final = sign_in(D, "google", "?client=web");
    expect_failed(final, WEB_TARGET);
    free(final);
}

static void test_oauth_denied_at_the_provider_is_oauth_failed(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    static const char failed_metric[] =
        "inklet_signins_total{provider=\"google\",result=\"failed\"}";
    unsigned long long before = itest_metric(D, failed_metric);
    json_decref(itest_fake_callf(&fake, "POST", "/_fake/deny", "{s:s,s:b}", "provider", "google",
                                 "deny", 1));
    char *final = sign_in(D, "google", "?client=desktop");
    assert_int_equal(itest_metric(D, failed_metric), before + 1);
    json_decref(itest_fake_callf(&fake, "POST", "/_fake/deny", "{s:s,s:b}", "provider", "google",
                                 "deny", 0));
    expect_failed(final, DESKTOP_TARGET);
    free(final);
}

/* The callback URL the fake would send the browser to, for a started flow (not followed). */
static char *callback_of(const struct itest_daemon *d, const char *authorize)
{
    struct itest_resp r;
    itest_fetch("GET", authorize, NULL, &r);
    itest_expect_status(&r, 302);
    char *cb = on_daemon(d, itest_header(&r, "Location"));
    itest_resp_free(&r);
    return cb;
}

static char *get_final(const char *url)
{
    struct itest_resp r;
    itest_fetch("GET", url, NULL, &r);
    char *final = expect_redirect(&r);
    itest_resp_free(&r);
    return final;
}

static void test_oauth_missing_or_forged_state_is_oauth_failed(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *authorize = start(D, "google", "?client=desktop");
    char *cb = callback_of(D, authorize);
    char *code = query_param(cb, "code");
    char *enc = curl_easy_escape(NULL, code, 0);
    char url[512];
    /* no state; a well-formed state we never issued; a malformed one */
    const char *states[] = {"", "&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                            "&state=%27%3B--"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(states); i++) {
        snprintf(url, sizeof url, "%s/auth/oauth/google/callback?code=%s%s", D->url, enc,
                 states[i]);
        char *final = get_final(url);
        expect_failed(final, WEB_TARGET); /* no state of ours: the client type is unknown */
        free(final);
    }
    curl_free(enc);
    free(code);
    free(cb);
    free(authorize);
}

static void test_oauth_replayed_state_is_oauth_failed(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *authorize = start(D, "google", "?client=web");
    char *cb = callback_of(D, authorize);
    char *first = get_final(cb);
    json_decref(expect_tokens(D, first, WEB_TARGET, NULL));
    char *again = get_final(cb);
    expect_failed(again, WEB_TARGET);
    free(first);
    free(again);
    free(cb);
    free(authorize);
}

struct replay_job {
    const char *url;
    char *final;
};

static void *replay_thread(void *arg)
{
    struct replay_job *j = arg;
    struct itest_resp r;
    itest_fetch("GET", j->url, NULL, &r);
    const char *loc = itest_header(&r, "Location");
    j->final = loc ? strdup(loc) : NULL;
    itest_resp_free(&r);
    return NULL;
}

static void test_oauth_one_state_used_by_concurrent_callbacks_signs_in_once(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *authorize = start(D, "google", "?client=web");
    char *cb = callback_of(D, authorize);
    enum { N = 6 };
    struct replay_job jobs[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct replay_job){cb, NULL};
        assert_int_equal(pthread_create(&t[i], NULL, replay_thread, &jobs[i]), 0);
    }
    int ok = 0, failed = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        assert_non_null(jobs[i].final);
        char *err = query_param(jobs[i].final, "error");
        if (err && strcmp(err, "oauth_failed") == 0)
            failed++;
        else if (!err)
            ok++;
        free(err);
        free(jobs[i].final);
    }
    assert_int_equal(ok, 1);
    assert_int_equal(failed, N - 1);
    free(cb);
    free(authorize);
}

/* Moves every stored state of the run into the past, as ten minutes would. */
static void expire_states(void)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "psql -X -q -v ON_ERROR_STOP=1 '%s' -c "
             "\"UPDATE oauth_states SET expires_at = now() - interval '1 second'\"",
             itest.database_url);
    assert_int_equal(itest_sh(cmd, 10000 * itest.slow), 0);
}

static void test_oauth_expired_state_is_oauth_failed(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *authorize = start(D, "google", "?client=desktop");
    char *cb = callback_of(D, authorize);
    expire_states();
    char *final = get_final(cb);
    expect_failed(final, DESKTOP_TARGET);
    free(final);
    free(cb);
    free(authorize);
}

static void test_oauth_state_of_one_provider_fails_at_the_other(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *authorize = start(D, "apple", "?client=web");
    char *st = query_param(authorize, "state");
    char url[512];
    snprintf(url, sizeof url, "%s/auth/oauth/google/callback?code=x&state=%s", D->url, st);
    char *final = get_final(url);
    expect_failed(final, WEB_TARGET);
    free(final);
    free(st);
    free(authorize);
}

static void test_oauth_unknown_client_is_400_and_unknown_provider_404(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_get(D, "/auth/oauth/google?client=https://evil.example", &r);
    itest_expect_error(&r, 400, "invalid_client");
    assert_null(itest_header(&r, "Location"));
    itest_resp_free(&r);
    itest_get(D, "/auth/oauth/github?client=web", &r);
    itest_expect_error(&r, 404, "not_found");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/oauth/github/token", NULL, &r, "{s:s}", "idToken", "x.y.z");
    itest_expect_error(&r, 404, "not_found");
    itest_resp_free(&r);
}

static void test_oauth_malformed_apple_callback_body_is_oauth_failed(void **state)
{
    (void)state;
    char url[160];
    snprintf(url, sizeof url, "%s/auth/oauth/apple/callback", D->url);
    static const char *const bodies[] = {"code=abc&state=%zz", "code=a&code=b", "code=%00"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bodies); i++) {
        struct itest_resp r;
        itest_fetch("POST", url, bodies[i], &r);
        char *final = expect_redirect(&r);
        expect_failed(final, WEB_TARGET);
        free(final);
        itest_resp_free(&r);
    }
    struct itest_resp r;
    itest_call(D, "POST", "/auth/oauth/apple/callback", NULL, "{\"code\":\"x\"}", &r);
    char *final = expect_redirect(&r);
    expect_failed(final, WEB_TARGET);
    free(final);
    itest_resp_free(&r);
}

/* The token endpoint answers a hostile ID token in place of the real one. */
static void token_endpoint_answers(const char *provider, const char *id_token)
{
    char path[64];
    snprintf(path, sizeof path, "/%s/%stoken", provider, strcmp(provider, "apple") ? "" : "auth/");
    json_t *rule =
        json_pack("{s:s,s:s,s:i,s:{s:s,s:s},s:i}", "method", "POST", "path_prefix", path, "status",
                  200, "body", "id_token", id_token, "token_type", "Bearer", "count", 1);
    json_decref(itest_fake_call(&fake, "POST", "/_fake/faults", rule));
    json_decref(rule);
}

static void test_oauth_bad_id_tokens_from_the_token_endpoint_are_oauth_failed(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    const char *keys[] = {"none", "hs256-with-public-pem", "unpublished", "current"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(keys); i++) {
        /* the last one is well signed but for another audience */
        char *tok =
            fake_sign("google", good_claims(&id, i == 3 ? "someone-else" : GOOGLE_ID), keys[i]);
        token_endpoint_answers("google", tok);
        char *final = sign_in(D, "google", "?client=web");
        if (strcmp(final, WEB_TARGET "?error=oauth_failed") != 0)
            fail_msg("key %s: final %s", keys[i], final);
        free(final);
        free(tok);
    }
}

/* ---- the native route ---------------------------------------------------------------------- */

static void test_oauth_native_google_token_signs_in_with_the_auth_response(void **state)
{
    (void)state;
    struct identity id;
    identity_new(&id, "google");
    /* the second configured client id (a mobile app) is an accepted audience too */
    json_t *claims = good_claims(&id, "inklet-google-ios");
    json_object_set_new(claims, "nonce", json_string("n-0123456789"));
    char *tok = fake_sign("google", claims, "current");
    struct itest_resp r;
    native(D, "google", tok, "n-0123456789", &r);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *[]){"accessToken", "refreshToken", "user", NULL});
    json_t *user = json_object_get(r.json, "user");
    assert_string_equal(itest_str(user, "email"), id.email);
    struct itest_session s;
    itest_session_from(r.json, &s);
    itest_resp_free(&r);
    assert_int_equal(itest_me_status(D, s.access), 200);
    free(tok);
}

static void test_oauth_native_nonce_may_be_the_hex_sha256_of_the_one_sent(void **state)
{
    (void)state;
    struct identity id;
    identity_new(&id, "google");
    json_t *claims = good_claims(&id, GOOGLE_ID);
    /* 64 hex digits that are not the SHA-256 of the nonce sent */
    json_object_set_new(
        claims, "nonce",
        json_string("c2d3a6e1e8b0b1ef1e0b55a2c27bd6fa3b0b0d1a4b86a6a2f3a5b6d0b1c6b2e9"));
    char *tok = fake_sign("google", claims, "current");
    struct itest_resp r;
    native(D, "google", tok, "raw-nonce", &r);
    itest_expect_error(&r, 401, "invalid_id_token"); /* that is not its hash */
    itest_resp_free(&r);
    free(tok);
    /* the real hash, computed here */
    unsigned char digest[32];
    unsigned len = 0;
    EVP_Digest("raw-nonce", 9, digest, &len, EVP_sha256(), NULL);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    claims = good_claims(&id, GOOGLE_ID);
    json_object_set_new(claims, "nonce", json_string(hex));
    tok = fake_sign("google", claims, "current");
    native(D, "google", tok, "raw-nonce", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    free(tok);
}

static void test_oauth_native_refuses_every_bad_token_with_401(void **state)
{
    (void)state;
    struct identity id;
    identity_new(&id, "google");
    long long now = (long long)time(NULL);
    struct {
        const char *what, *key, *nonce;
        json_t *claims;
    } cases[] = {
        {"wrong aud", "current", NULL, good_claims(&id, "another-app")},
        {"wrong iss", "current", NULL, NULL},
        {"expired", "current", NULL, NULL},
        {"wrong nonce", "current", "expected-nonce", NULL},
        {"unknown kid", "unpublished", NULL, good_claims(&id, GOOGLE_ID)},
        {"alg none", "none", NULL, good_claims(&id, GOOGLE_ID)},
        {"HS256 with the public key", "hs256-with-public-pem", NULL, good_claims(&id, GOOGLE_ID)},
    };
    cases[1].claims = good_claims(&id, GOOGLE_ID);
    json_object_set_new(cases[1].claims, "iss", json_string("https://evil.example"));
    cases[2].claims = good_claims(&id, GOOGLE_ID);
    json_object_set_new(cases[2].claims, "iat", json_integer(now - 7200));
    json_object_set_new(cases[2].claims, "exp", json_integer(now - 3600));
    cases[3].claims = good_claims(&id, GOOGLE_ID);
    json_object_set_new(cases[3].claims, "nonce", json_string("another-nonce"));
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cases); i++) {
        char *tok = fake_sign("google", cases[i].claims, cases[i].key);
        struct itest_resp r;
        native(D, "google", tok, cases[i].nonce, &r);
        if (r.status != 401)
            fprintf(stderr, "  case: %s\n", cases[i].what);
        itest_expect_error(&r, 401, "invalid_id_token");
        itest_resp_free(&r);
        free(tok);
    }
    /* none of them made an account */
    char *tok = fake_sign("google", good_claims(&id, GOOGLE_ID), "current");
    struct itest_resp r;
    native(D, "google", tok, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    free(tok);
}

static void test_oauth_native_apple_string_email_verified_is_honoured(void **state)
{
    (void)state;
    struct identity id;
    identity_new(&id, "apple");
    long long now = (long long)time(NULL);
    json_t *claims = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "iss", "https://appleid.apple.com",
                               "aud", APPLE_ID, "sub", id.sub, "email", id.email, "email_verified",
                               "true", "iat", now, "exp", now + 600);
    char *tok = fake_sign("apple", claims, "current");
    struct itest_resp r;
    native(D, "apple", tok, NULL, &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(json_object_get(r.json, "user"), "email"), id.email);
    itest_resp_free(&r);
    free(tok);
}

static void test_oauth_native_without_id_token_is_400(void **state)
{
    (void)state;
    struct itest_resp r;
    itest_call(D, "POST", "/auth/oauth/google/token", NULL, "{\"nonce\":\"x\"}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/oauth/google/token", NULL, "{\"idToken\":5}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
}

/* ---- accounts without a password --------------------------------------------------------------
 */

static void test_oauth_only_account_sets_a_password_and_deletes_itself_without_one(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    char *final = sign_in(D, "google", "?client=web");
    char *access = query_param(final, "accessToken");
    json_t *me = expect_tokens(D, final, WEB_TARGET, NULL);
    /* a password login to it answers exactly like an unknown user */
    struct itest_resp r, unknown;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", id.email, "password",
                "whatever-password");
    itest_callf(D, "POST", "/auth/login", NULL, &unknown, "{s:s,s:s}", "identifier",
                "nobody-at-all@example.com", "password", "whatever-password");
    itest_expect_error(&r, 401, "invalid_credentials");
    assert_string_equal(r.body, unknown.body);
    itest_resp_free(&r);
    itest_resp_free(&unknown);
    /* a password without a current one */
    itest_callf(D, "POST", "/auth/password", access, &r, "{s:s}", "newPassword",
                "a-new-long-password");
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", id.email, "password",
                "a-new-long-password");
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    json_decref(me);
    free(final);
    free(access);
    /* another OAuth-only account deletes itself without a password */
    signed_in_as("google", &id);
    final = sign_in(D, "google", "?client=web");
    access = query_param(final, "accessToken");
    itest_call(D, "DELETE", "/auth/me", access, NULL, &r);
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    assert_int_equal(itest_me_status(D, access), 401);
    free(final);
    free(access);
}

static void test_oauth_account_deletion_revokes_the_apple_token_at_apple(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("apple", &id);
    char *final = sign_in(D, "apple", "?client=web");
    char *access = query_param(final, "accessToken");
    json_decref(expect_tokens(D, final, WEB_TARGET, NULL));
    static const char revoked_metric[] = "inklet_oauth_revocations_total{result=\"revoked\"}";
    unsigned long long before = itest_metric(D, revoked_metric);
    struct itest_resp r;
    itest_call(D, "DELETE", "/auth/me", access, NULL, &r);
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    /* the revoker works the queue in the background: poll the fake */
    bool revoked = false;
    int64_t deadline = itest_now_ms() + itest_scaled(10000);
    while (!revoked && itest_now_ms() < deadline) {
        json_t *list = itest_fake_call(&fake, "GET", "/_fake/revoked", NULL);
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v)
        {
            const char *sub = json_string_value(json_object_get(v, "sub"));
            if (sub && strcmp(sub, id.sub) == 0) {
                assert_string_equal(itest_str(v, "token_type_hint"), "refresh_token");
                assert_string_equal(itest_str(v, "client_id"), APPLE_ID);
                assert_true(json_is_true(json_object_get(v, "known")));
                revoked = true;
            }
        }
        json_decref(list);
        if (!revoked)
            itest_sleep_ms(100);
    }
    assert_true(revoked);
    while (itest_metric(D, revoked_metric) == before && itest_now_ms() < deadline)
        itest_sleep_ms(50);
    assert_int_equal(itest_metric(D, revoked_metric), before + 1);
    free(final);
    free(access);
}

/* ---- the provider-linked notice (§2.2) ------------------------------------------------------ */

#define LINKED_SUBJECT "A new way to sign in was added to your Inklet account"
#define VERIFY_SUBJECT "Confirm your email address for Inklet"
#define MAIL_WAIT_MS 5000

/* The sink of the notice test, file-static so that the test's teardown can stop it when an
 * assertion ends the test early (a test's teardown does not stop sinks). */
static struct itest_smtp link_sink;

/* How many of `mails` have exactly this subject. */
static size_t count_subject(const json_t *mails, const char *subject)
{
    size_t i, n = 0;
    json_t *m;
    json_array_foreach(mails, i, m)
    {
        const char *s = json_string_value(json_object_get(m, "subject"));
        n += s && strcmp(s, subject) == 0;
    }
    return n;
}

/* The one mail of `mails` with this subject (borrowed), failing unless there is exactly one. */
static json_t *only_subject(const json_t *mails, const char *subject)
{
    size_t i;
    json_t *m, *found = NULL;
    json_array_foreach(mails, i, m)
    {
        const char *s = json_string_value(json_object_get(m, "subject"));
        if (s && strcmp(s, subject) == 0) {
            if (found)
                fail_msg("more than one mail \"%s\"", subject);
            found = m;
        }
    }
    if (!found)
        fail_msg("no mail \"%s\"", subject);
    return found;
}

/* Every mail the sink holds for `rcpt`, read once at least `n` arrived and a short pause more
 * has passed, so that one too many shows in the count (new reference; n = 0 in the second call:
 * no wait). */
static json_t *settled_mails_to(const char *rcpt, size_t n)
{
    json_decref(itest_smtp_wait_to(&link_sink, rcpt, n, MAIL_WAIT_MS));
    itest_sleep_ms(itest_scaled(300));
    return itest_smtp_wait_to(&link_sink, rcpt, 0, 0);
}

/* docs/email.md "Notices": Google linked to an existing account by its verified email queues a
 * provider_linked notice in the sign-in's transaction; a later sign-in with the same identity
 * finds it by (provider, sub) and links nothing, so it sends nothing. The group's daemon has no
 * SMTP_URL, so this test runs its own daemon and sink. */
static void test_oauth_linking_a_provider_sends_the_provider_linked_notice(void **state)
{
    (void)state;
    if (!getenv("INKLET_ITEST_SMTP_SINK")) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_SMTP_SINK is not set; the provider-linked "
                        "notice test is skipped\n");
        return;
    }
    assert_true(itest_smtp_start(&link_sink, NULL));
    char url[80], smtp_url[96];
    itest_smtp_url(&link_sink, false, url, sizeof url);
    snprintf(smtp_url, sizeof smtp_url, "SMTP_URL=%s", url);
    const char *env[48];
    oauth_env(true, false, env);
    size_t n = 0;
    while (env[n])
        n++;
    const char *const mail_keys[] = {smtp_url, "PORTAL_URL=https://portal.example.test",
                                     "MAIL_FROM=Inklet Tests <no-reply@inklet.test>",
                                     "MAIL_RETRY_BASE=1", itest_smtp_timeout_kv};
    assert_true(n + ITEST_ARRAY_LEN(mail_keys) < ITEST_ARRAY_LEN(env));
    for (size_t i = 0; i < ITEST_ARRAY_LEN(mail_keys); i++)
        env[n++] = mail_keys[i];
    env[n] = NULL;
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);

    struct itest_user u;
    itest_user_new(&u);
    itest_register(d, &u);
    struct identity id;
    identity_new(&id, "google");
    snprintf(id.email, sizeof id.email, "%s", u.email);
    fake_user("google", &id, true);
    char *final = sign_in(d, "google", "?client=web");
    json_t *me = expect_tokens(d, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "id"), u.id);
    assert_true(has_provider(me, "google"));
    json_decref(me);
    free(final);

    /* the registration's verification mail and one notice, nothing else */
    json_t *mails = settled_mails_to(u.email, 2);
    assert_int_equal(json_array_size(mails), 2);
    assert_int_equal(count_subject(mails, VERIFY_SUBJECT), 1);
    const char *text = itest_str(only_subject(mails, LINKED_SUBJECT), "text");
    assert_non_null(strstr(text, "with Google"));
    assert_non_null(strstr(text, u.username));
    json_decref(mails);

    /* the same identity again: found by (provider, sub), no new link, no new notice */
    final = sign_in(d, "google", "?client=web");
    me = expect_tokens(d, final, WEB_TARGET, NULL);
    assert_string_equal(itest_str(me, "id"), u.id);
    json_decref(me);
    free(final);
    /* A mail queued after the second sign-in's commit is due no earlier than a notice it would
     * have queued, and the sender claims rows by due time: once this one arrived, such a
     * notice would have too. */
    struct itest_user later;
    itest_user_new(&later);
    itest_register(d, &later);
    json_decref(settled_mails_to(later.email, 1));
    mails = settled_mails_to(u.email, 2);
    assert_int_equal(json_array_size(mails), 2);
    assert_int_equal(count_subject(mails, LINKED_SUBJECT), 1);
    json_decref(mails);

    assert_int_equal(itest_daemon_stop(d), 0);
    assert_int_equal(itest_smtp_stop(&link_sink), 0);
}

/* ---- configuration and failing providers ----------------------------------------------------- */

static void test_oauth_unconfigured_provider_is_503_provider_not_configured(void **state)
{
    (void)state;
    const char *env[40];
    struct itest_daemon *d = itest_daemon_start(oauth_env(false, false, env));
    assert_non_null(d);
    struct itest_resp r;
    itest_get(d, "/auth/oauth/google?client=web", &r);
    itest_expect_error(&r, 503, "provider_not_configured");
    itest_resp_free(&r);
    itest_callf(d, "POST", "/auth/oauth/apple/token", NULL, &r, "{s:s}", "idToken", "a.b.c");
    itest_expect_error(&r, 503, "provider_not_configured");
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* Every start writes a row, so it shares the login bucket; here with the production default
 * (RATE_LIMIT_LOGIN=20/60) rather than the group's generous one. */
static void test_oauth_start_is_rate_limited_by_the_default_login_bucket(void **state)
{
    (void)state;
    const char *env[40];
    oauth_env(true, false, env);
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "RATE_LIMIT_LOGIN=", 17) == 0)
            env[i] = "RATE_LIMIT_LOGIN"; /* unset: the default */
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);
    for (int i = 0; i < 20; i++) {
        struct itest_resp r;
        itest_get(d, "/auth/oauth/google?client=web", &r);
        itest_expect_status(&r, 302);
        itest_resp_free(&r);
    }
    struct itest_resp r;
    itest_get(d, "/auth/oauth/google?client=web", &r);
    itest_expect_error(&r, 429, "rate_limited");
    itest_expect_retry_after(&r);
    assert_null(itest_header(&r, "Location"));
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static size_t jwks_fetches(void)
{
    json_t *log =
        itest_fake_call(&fake, "GET", "/_fake/requests?path_prefix=/google/oauth2/v3/certs", NULL);
    size_t n = json_array_size(log);
    json_decref(log);
    return n;
}

static void test_oauth_key_rotation_is_picked_up_and_unknown_kids_refetch_rate_limited(void **state)
{
    (void)state;
    const char *env[40];
    struct itest_daemon *d = itest_daemon_start(oauth_env(true, false, env));
    assert_non_null(d);
    struct identity id;
    identity_new(&id, "google");
    size_t before = jwks_fetches();
    char *tok = fake_sign("google", good_claims(&id, GOOGLE_ID), "current");
    struct itest_resp r;
    native(d, "google", tok, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    free(tok);
    assert_int_equal(jwks_fetches(), before + 1);
    static const char fetches[] = "inklet_oauth_jwks_fetches_total{provider=\"google\"}";
    assert_int_equal(itest_metric(d, fetches), 1);
    /* invented kids right away: refused without hammering the provider */
    for (int i = 0; i < 5; i++) {
        tok = fake_sign("google", good_claims(&id, GOOGLE_ID), "unpublished");
        native(d, "google", tok, NULL, &r);
        itest_expect_error(&r, 401, "invalid_id_token");
        itest_resp_free(&r);
        free(tok);
    }
    assert_true(jwks_fetches() <= before + 2);
    assert_int_equal(itest_metric(d, fetches), jwks_fetches() - before);
    /* the provider rotates; after the refetch pause the new key is fetched and accepted */
    json_decref(itest_fake_callf(&fake, "POST", "/_fake/rotate", "{s:s}", "provider", "google"));
    itest_sleep_ms(10500);
    tok = fake_sign("google", good_claims(&id, GOOGLE_ID), "current");
    native(d, "google", tok, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    free(tok);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void add_fault(const char *path, int delay_ms, int status)
{
    json_t *rule = json_pack("{s:s,s:i}", "path_prefix", path, "count", 50);
    if (delay_ms)
        json_object_set_new(rule, "delay_ms", json_integer(delay_ms));
    if (status)
        json_object_set_new(rule, "status", json_integer(status));
    json_decref(itest_fake_call(&fake, "POST", "/_fake/faults", rule));
    json_decref(rule);
}

static void clear_faults(void)
{
    json_decref(itest_fake_call(&fake, "DELETE", "/_fake/faults", NULL));
}

struct health_probe {
    const struct itest_daemon *d;
    volatile bool stop;
    int slow, total;
};

static void *probe_health(void *arg)
{
    struct health_probe *p = arg;
    while (!p->stop) {
        struct itest_resp r;
        itest_get(p->d, "/health", &r);
        if (r.status != 200 || r.seconds > 1.0 * itest.slow)
            p->slow++;
        p->total++;
        itest_resp_free(&r);
        itest_sleep_ms(50);
    }
    return NULL;
}

static void test_oauth_token_endpoint_down_or_hung_fails_cleanly_within_the_timeout(void **state)
{
    (void)state;
    struct identity id;
    signed_in_as("google", &id);
    struct health_probe probe = {.d = D};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, probe_health, &probe), 0);
    add_fault("/google/token", 0, 500);
    char *final = sign_in(D, "google", "?client=web");
    expect_failed(final, WEB_TARGET);
    free(final);
    clear_faults();
    add_fault("/google/token", 8000, 0); /* longer than OAUTH_TIMEOUT=2 */
    int64_t t0 = itest_now_ms();
    final = sign_in(D, "google", "?client=web");
    int64_t took = itest_now_ms() - t0;
    clear_faults();
    expect_failed(final, WEB_TARGET);
    free(final);
    if (took > 6000 * (int64_t)itest.slow)
        fail_msg("a hung token endpoint held the sign-in for %lld ms (OAUTH_TIMEOUT=2)",
                 (long long)took);
    probe.stop = true;
    pthread_join(t, NULL);
    assert_true(probe.total > 0);
    assert_int_equal(probe.slow, 0);
}

static void test_oauth_jwks_down_or_hung_fails_cleanly_and_other_routes_work(void **state)
{
    (void)state;
    const char *env[40];
    struct itest_daemon *d = itest_daemon_start(oauth_env(true, false, env));
    assert_non_null(d);
    struct identity id;
    signed_in_as("google", &id);
    add_fault("/google/oauth2/v3/certs", 0, 503);
    char *final = sign_in(d, "google", "?client=web");
    expect_failed(final, WEB_TARGET);
    free(final);
    clear_faults();
    add_fault("/google/oauth2/v3/certs", 8000, 0);
    struct itest_user u = {0};
    itest_register(d, &u);
    int64_t t0 = itest_now_ms();
    char *tok = fake_sign("google", good_claims(&id, GOOGLE_ID), "current");
    struct itest_resp r;
    native(d, "google", tok, NULL, &r);
    int64_t took = itest_now_ms() - t0;
    itest_expect_error(&r, 401, "invalid_id_token");
    itest_resp_free(&r);
    free(tok);
    if (took > 6000 * (int64_t)itest.slow)
        fail_msg("a hung JWKS held the native sign-in for %lld ms", (long long)took);
    assert_int_equal(itest_me_status(d, u.s.access), 200);
    clear_faults();
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- group -------------------------------------------------------------------------------- */

static int oauth_setup(void **state)
{
    (void)state;
    snprintf(key_path, sizeof key_path, "%s/apple-signin.p8", itest.tmpdir);
    snprintf(pub_path, sizeof pub_path, "%s/apple-signin.pub.pem", itest.tmpdir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '%s' 2>/dev/null"
             " && openssl pkey -in '%s' -pubout -out '%s' 2>/dev/null",
             key_path, key_path, pub_path);
    if (itest_sh(cmd, 20000) != 0) {
        fprintf(stderr, "inklet-itest: could not make an Apple test key\n");
        itest_fixture_failures++;
        return -1;
    }
    const char *args[] = {"--google-client-id",
                          GOOGLE_ID,
                          "--google-client-secret",
                          GOOGLE_SECRET,
                          "--apple-client-id",
                          APPLE_ID,
                          "--apple-team-id",
                          TEAM_ID,
                          "--apple-key-id",
                          KEY_ID,
                          "--apple-public-key-file",
                          pub_path,
                          NULL};
    if (!itest_fake_start(&fake, "fake-oidc", itest.fake_oidc, args)) {
        itest_fake_stop(&fake);
        itest_fixture_failures++;
        return -1;
    }
    const char *env[40];
    itest_shared = itest_daemon_start(oauth_env(true, true, env));
    if (!itest_shared) {
        itest_fake_stop(&fake);
        itest_fixture_failures++;
        return -1;
    }
    itest_shared->shared = true;
    return 0;
}

static int oauth_teardown(void **state)
{
    int st = itest_group_teardown(state);
    if (itest_fake_stop(&fake) != 0) {
        itest_fixture_failures++;
        st = -1;
    }
    return st;
}

/* A failed test must not leave the provider broken for the next one. */
static int oauth_test_teardown(void **state)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_fake/faults", fake.port);
    struct itest_resp r;
    itest_request(NULL, "DELETE", url, NULL, NULL, 0, &r);
    itest_resp_free(&r);
    int st = itest_teardown(state);
    /* pid 0 would be the whole process group to kill(): only a sink that ran is stopped */
    if (link_sink.ctl.pid > 0)
        itest_smtp_stop(&link_sink);
    return st;
}

#define T(f) cmocka_unit_test_teardown(f, oauth_test_teardown)

int itest_group_oauth(void)
{
    if (!itest.fake_oidc) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_FAKE_OIDC is not set; the OAuth tests are "
                        "skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_oauth_google_web_flow_ends_at_the_web_target_with_working_tokens),
        T(test_oauth_desktop_flow_ends_at_the_inklet_deep_link),
        T(test_oauth_without_client_is_the_web_flow),
        T(test_oauth_apple_form_post_flow_ends_at_the_web_target),
        T(test_oauth_first_sign_in_creates_a_user_and_the_second_finds_it),
        T(test_oauth_verified_email_links_and_locks_out_the_pre_registered_password),
        T(test_oauth_verified_email_links_and_keeps_a_verified_accounts_password),
        T(test_oauth_unverified_email_never_links_or_creates),
        T(test_oauth_denied_at_the_provider_is_oauth_failed),
        T(test_oauth_missing_or_forged_state_is_oauth_failed),
        T(test_oauth_replayed_state_is_oauth_failed),
        T(test_oauth_one_state_used_by_concurrent_callbacks_signs_in_once),
        T(test_oauth_expired_state_is_oauth_failed),
        T(test_oauth_state_of_one_provider_fails_at_the_other),
        T(test_oauth_unknown_client_is_400_and_unknown_provider_404),
        T(test_oauth_malformed_apple_callback_body_is_oauth_failed),
        T(test_oauth_bad_id_tokens_from_the_token_endpoint_are_oauth_failed),
        T(test_oauth_native_google_token_signs_in_with_the_auth_response),
        T(test_oauth_native_nonce_may_be_the_hex_sha256_of_the_one_sent),
        T(test_oauth_native_refuses_every_bad_token_with_401),
        T(test_oauth_native_apple_string_email_verified_is_honoured),
        T(test_oauth_native_without_id_token_is_400),
        T(test_oauth_only_account_sets_a_password_and_deletes_itself_without_one),
        T(test_oauth_account_deletion_revokes_the_apple_token_at_apple),
        T(test_oauth_linking_a_provider_sends_the_provider_linked_notice),
        T(test_oauth_unconfigured_provider_is_503_provider_not_configured),
        T(test_oauth_start_is_rate_limited_by_the_default_login_bucket),
        T(test_oauth_key_rotation_is_picked_up_and_unknown_kids_refetch_rate_limited),
        T(test_oauth_token_endpoint_down_or_hung_fails_cleanly_within_the_timeout),
        T(test_oauth_jwks_down_or_hung_fails_cleanly_and_other_routes_work),
    };
    return cmocka_run_group_tests_name("oauth", tests, oauth_setup, oauth_teardown);
}
