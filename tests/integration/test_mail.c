/* Contract §2.2 and docs/email.md: verification, password reset and security notices, against a
 * real SMTP conversation with the local sink (tests/fakes/smtp_sink.py). Every daemon of this
 * group sends to the one sink, so a mail is told apart by its recipient: every test uses fresh
 * addresses. The database is shared with every daemon of the run, but only the daemons started
 * here have SMTP_URL, so only they send. */
#include "harness.h"
#include "itest_mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D itest_shared
#define PORTAL "https://portal.example.test"
#define FORGOT_BODY "If that address has an account, a reset link is on its way."
#define MAIL_WAIT_MS 5000
#define RACERS 6

static struct itest_smtp sink;
static char smtp_url_kv[96];

/* The group's mail settings: retries after 1 s so the outage tests are quick, and a per-IP
 * bucket large enough for the whole group (the throttle test has its own daemon). */
static const char *const mail_env[] = {smtp_url_kv,
                                       "PORTAL_URL=" PORTAL,
                                       "MAIL_FROM=Inklet Tests <no-reply@inklet.test>",
                                       "MAIL_RETRY_BASE=1",
                                       itest_smtp_timeout_kv,
                                       "RATE_LIMIT_MAIL=10000/3600",
                                       NULL};

/* ---- helpers ------------------------------------------------------------------------------- */

/* The messages to `rcpt` of the kind whose subject contains `subject_part` (all when NULL). */
static json_t *mails_to(const char *rcpt, const char *subject_part)
{
    json_t *all = itest_smtp_messages(&sink), *out = json_array(), *m;
    size_t i;
    json_array_foreach(all, i, m)
    {
        json_t *to = json_object_get(m, "rcptTo"), *r;
        size_t k;
        bool match = false;
        json_array_foreach(to, k, r) match |= strcmp(json_string_value(r), rcpt) == 0;
        const char *subject = json_string_value(json_object_get(m, "subject"));
        if (match && (!subject_part || (subject && strstr(subject, subject_part))))
            json_array_append(out, m);
    }
    json_decref(all);
    return out;
}

/* True once no mail to `address` is still queued: every one sent has reached the sink (the
 * sender marks a row sent only after the relay's 250) or was given up. */
static bool outbox_drained(const char *address)
{
    char *n = itest_db_value(
        "SELECT count(*) FROM mail_outbox WHERE to_address = $1 AND state = 'queued'", address);
    bool drained = n && strcmp(n, "0") == 0;
    free(n);
    return drained;
}

/* Waits for exactly `n` mails to `rcpt` (subject containing `subject_part`), then until nothing
 * more to it is queued (at most 300 ms, scaled) and asserts no further one came. Returns them. */
static json_t *expect_mails(const char *rcpt, const char *subject_part, size_t n)
{
    int64_t until = itest_now_ms() + itest_scaled(MAIL_WAIT_MS);
    json_t *got = NULL;
    for (;;) {
        json_decref(got);
        got = mails_to(rcpt, subject_part);
        if (json_array_size(got) >= n || itest_now_ms() > until)
            break;
        itest_sleep_ms(50);
    }
    if (json_array_size(got) < n)
        fail_msg("expected %zu mail(s) to %s (%s), got %zu", n, rcpt,
                 subject_part ? subject_part : "any", json_array_size(got));
    /* a duplicate would be a second queued row or the same row not yet marked sent */
    for (int64_t quiet = itest_now_ms() + itest_scaled(300);
         !outbox_drained(rcpt) && itest_now_ms() < quiet;)
        itest_sleep_ms(20);
    json_decref(got);
    got = mails_to(rcpt, subject_part);
    assert_int_equal(json_array_size(got), n);
    return got;
}

/* The one mail to `rcpt` with that subject; its token for `path`, malloc'd (NULL path: none). */
static char *expect_one_mail(const char *rcpt, const char *subject_part, const char *path)
{
    json_t *list = expect_mails(rcpt, subject_part, 1);
    char *token = path ? itest_mail_token(json_array_get(list, 0), path) : NULL;
    json_decref(list);
    return token;
}

static bool me_verified(const struct itest_daemon *d, const char *access)
{
    struct itest_resp r;
    itest_call(d, "GET", "/auth/me", access, NULL, &r);
    itest_expect_status(&r, 200);
    json_t *v = json_object_get(r.json, "emailVerified");
    assert_true(json_is_boolean(v));
    bool out = json_is_true(v);
    itest_resp_free(&r);
    return out;
}

/* Registers a fresh user and consumes its verification mail; returns that mail's token. */
static char *register_with_mail(const struct itest_daemon *d, struct itest_user *u)
{
    memset(u, 0, sizeof *u);
    itest_register(d, u);
    return expect_one_mail(u->email, "Confirm", "/verify-email");
}

static void forgot(const struct itest_daemon *d, const char *email, long status)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/password/forgot", NULL, &r, "{s:s}", "email", email);
    itest_expect_status(&r, status);
    if (status == 202) {
        itest_expect_keys(r.json, (const char *const[]){"message", NULL});
        assert_string_equal(itest_str(r.json, "message"), FORGOT_BODY);
    }
    itest_resp_free(&r);
}

static void reset_expect(const struct itest_daemon *d, const char *token, const char *password,
                         long status, const char *code)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/password/reset", NULL, &r, "{s:s,s:s}", "token", token,
                "newPassword", password);
    if (code) {
        itest_expect_error(&r, status, code);
    } else {
        itest_expect_status(&r, status);
        itest_expect_keys(r.json, (const char *const[]){"message", NULL});
        assert_string_equal(itest_str(r.json, "message"), "password updated");
    }
    itest_resp_free(&r);
}

static long login_status(const struct itest_daemon *d, const char *identifier, const char *pw)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", identifier,
                "password", pw);
    long st = r.status;
    itest_resp_free(&r);
    return st;
}

static unsigned long long mail_metric(const struct itest_daemon *d, const char *result)
{
    char name[96];
    snprintf(name, sizeof name, "inklet_mail_total{result=\"%s\"}", result);
    return itest_metric(d, name);
}

/* inklet_mail_total{result} once it is at least `at_least` (or when the wait ends). The sender
 * counts after its UPDATE returns, so a test that has just seen a row's new state, or the mail at
 * the sink, may read the counter a moment before it moves. */
static unsigned long long wait_mail_metric(const struct itest_daemon *d, const char *result,
                                           unsigned long long at_least)
{
    unsigned long long v;
    for (int64_t until = itest_now_ms() + itest_scaled(MAIL_WAIT_MS);
         (v = mail_metric(d, result)) < at_least && itest_now_ms() < until;)
        itest_sleep_ms(20);
    return v;
}

/* ---- verification --------------------------------------------------------------------------- */

static void test_mail_registration_sends_a_verification_mail_whose_link_verifies(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    assert_false(me_verified(D, u.s.access));
    json_t *list = expect_mails(u.email, "Confirm", 1);
    json_t *m = json_array_get(list, 0);
    /* what a mail provider expects of the message */
    assert_string_equal(itest_str(m, "mailFrom"), "no-reply@inklet.test");
    assert_string_equal(itest_str(m, "from"), "Inklet Tests <no-reply@inklet.test>");
    assert_string_equal(itest_str(m, "to"), u.email);
    assert_non_null(strstr(itest_str(m, "contentType"), "multipart/alternative"));
    assert_true(strlen(itest_str(m, "date")) > 20);
    assert_non_null(strstr(itest_str(m, "messageId"), "@inklet.test>"));
    assert_int_equal(json_array_size(json_object_get(m, "defects")), 0);
    assert_non_null(strstr(itest_str(m, "text"), u.username));
    assert_non_null(strstr(itest_str(m, "text"), PORTAL "/verify-email?token="));
    char *token = itest_mail_token(m, "/verify-email");
    json_decref(list);

    struct itest_resp r;
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", token);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"id", "email", "username", "createdAt",
                                                    "updatedAt", "emailVerified", NULL});
    assert_string_equal(itest_str(r.json, "id"), u.id);
    assert_true(json_is_true(json_object_get(r.json, "emailVerified")));
    itest_resp_free(&r);
    assert_true(me_verified(D, u.s.access));
    /* single use */
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", token);
    itest_expect_error(&r, 400, "invalid_verification_token");
    itest_resp_free(&r);
    free(token);
}

static void test_mail_verify_refuses_made_up_and_malformed_tokens(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "short", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                                      "not base64url !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", NULL};
    for (size_t i = 0; bad[i]; i++) {
        struct itest_resp r;
        itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", bad[i]);
        itest_expect_error(&r, 400, "invalid_verification_token");
        itest_resp_free(&r);
    }
    struct itest_resp r;
    itest_call(D, "POST", "/auth/email/verify", NULL, "{\"token\":42}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
}

static void test_mail_expired_verification_and_reset_tokens_are_410(void **state)
{
    (void)state;
    struct itest_user u;
    char *verify = register_with_mail(D, &u);
    forgot(D, u.email, 202);
    char *reset = expect_one_mail(u.email, "Reset", "/reset-password");
    itest_db_exec1("UPDATE email_tokens SET expires_at = now() - interval '1 second'"
                   " WHERE user_id = $1 AND purpose = 'verify'",
                   u.id);
    itest_db_exec1("UPDATE email_tokens SET expires_at = now() - interval '1 second'"
                   " WHERE user_id = $1 AND purpose = 'reset'",
                   u.id);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", verify);
    itest_expect_error(&r, 410, "verification_token_expired");
    itest_resp_free(&r);
    reset_expect(D, reset, "Brand-new-password-1", 410, "reset_token_expired");
    /* nothing changed */
    assert_false(me_verified(D, u.s.access));
    assert_int_equal(login_status(D, u.username, u.password), 200);
    assert_int_equal(login_status(D, u.username, "Brand-new-password-1"), 401);
    free(verify);
    free(reset);
}

static void test_mail_resend_sends_a_new_link_and_nothing_once_verified(void **state)
{
    (void)state;
    struct itest_user u;
    char *first = register_with_mail(D, &u);
    struct itest_resp r;
    itest_call(D, "POST", "/auth/email/verify/resend", NULL, NULL, &r);
    itest_expect_error(&r, 401, "invalid_token");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/email/verify/resend", u.s.access, NULL, &r);
    itest_expect_status(&r, 202);
    assert_string_equal(itest_str(r.json, "message"), "verification mail sent");
    itest_resp_free(&r);
    json_t *two = expect_mails(u.email, "Confirm", 2);
    char *a = itest_mail_token(json_array_get(two, 0), "/verify-email");
    char *b = itest_mail_token(json_array_get(two, 1), "/verify-email");
    assert_string_not_equal(a, b);
    json_decref(two);
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", b);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    /* verified: the same answer, and no mail */
    itest_call(D, "POST", "/auth/email/verify/resend", u.s.access, NULL, &r);
    itest_expect_status(&r, 202);
    itest_resp_free(&r);
    json_decref(expect_mails(u.email, "Confirm", 2));
    free(first);
    free(a);
    free(b);
}

static void
test_mail_email_change_unverifies_sends_to_the_new_address_and_tells_the_old(void **state)
{
    (void)state;
    struct itest_user u, fresh;
    char *old_token = register_with_mail(D, &u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", old_token);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    assert_true(me_verified(D, u.s.access));
    /* a second link to the old address, still unused */
    itest_call(D, "POST", "/auth/email/verify/resend", u.s.access, NULL, &r);
    itest_resp_free(&r);
    itest_user_new(&fresh);
    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", fresh.email,
                "currentPassword", u.password);
    itest_expect_status(&r, 200);
    assert_true(json_is_false(json_object_get(r.json, "emailVerified")));
    itest_resp_free(&r);
    char *token = expect_one_mail(fresh.email, "Confirm", "/verify-email");
    /* the address the account leaves is told, without a link (its links stopped working) */
    expect_one_mail(u.email, "email address was changed", NULL);
    json_decref(expect_mails(fresh.email, "email address was changed", 0));
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token", token);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(r.json, "email"), fresh.email);
    itest_resp_free(&r);
    assert_true(me_verified(D, u.s.access));
    free(old_token);
    free(token);
}

/* ---- password reset ------------------------------------------------------------------------- */

static void
test_mail_forgot_sends_a_reset_link_that_resets_once_and_revokes_every_session(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    struct itest_session second;
    itest_login(D, &u, &second);
    /* the sender is woken by the commit, not a slow poll: at the relay within 1 s */
    int64_t asked = itest_now_ms();
    forgot(D, u.email, 202);
    json_t *list = NULL;
    while (itest_now_ms() - asked < itest_scaled(2000)) {
        json_decref(list);
        list = mails_to(u.email, "Reset");
        if (json_array_size(list))
            break;
        itest_sleep_ms(20);
    }
    int64_t took = itest_now_ms() - asked;
    fprintf(stderr, "  the reset mail reached the relay %lld ms after the request\n",
            (long long)took);
    assert_int_equal(json_array_size(list), 1);
    assert_true(took < (int64_t)itest_scaled(1000));
    json_decref(list);
    list = expect_mails(u.email, "Reset", 1);
    const char *text = itest_str(json_array_get(list, 0), "text");
    /* says when the link expires (PASSWORD_RESET_TTL's default) and that ignoring it is safe */
    assert_non_null(strstr(text, "30 minutes"));
    char *token = itest_mail_token(json_array_get(list, 0), "/reset-password");
    json_decref(list);
    int64_t t0 = itest_now_ms();
    reset_expect(D, token, "After-the-reset-1", 200, NULL);
    itest_refresh_expect(D, u.s.refresh, 401, NULL, NULL);
    itest_refresh_expect(D, second.refresh, 401, NULL, NULL);
    itest_expect_token_dies(D, second.access, t0, 5000 * itest.slow);
    assert_int_equal(login_status(D, u.username, u.password), 401);
    assert_int_equal(login_status(D, u.email, "After-the-reset-1"), 200);
    /* the link reached the inbox: the address is verified */
    struct itest_session s;
    snprintf(u.password, sizeof u.password, "After-the-reset-1");
    itest_login(D, &u, &s);
    assert_true(me_verified(D, s.access));
    reset_expect(D, token, "Once-more-please-1", 400, "invalid_reset_token");
    expect_one_mail(u.email, "was reset", NULL);
    free(token);
}

/* Several resets with one token at once, on two instances: exactly one sets its password. */
static void test_mail_concurrent_resets_with_one_token_exactly_one_wins(void **state)
{
    (void)state;
    struct itest_daemon *other = itest_daemon_start(mail_env);
    assert_non_null(other);
    struct itest_user u;
    free(register_with_mail(D, &u));
    forgot(D, u.email, 202);
    char *token = expect_one_mail(u.email, "Reset", "/reset-password");
    char urls[2][96], bodies[RACERS][256];
    snprintf(urls[0], sizeof urls[0], "%s/auth/password/reset", D->url);
    snprintf(urls[1], sizeof urls[1], "%s/auth/password/reset", other->url);
    struct itest_race racers[RACERS];
    for (size_t i = 0; i < RACERS; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"token\":\"%s\",\"newPassword\":\"Racer-password-%zu\"}", token, i);
        racers[i] = (struct itest_race){.url = urls[i % 2], .body = bodies[i]};
    }
    itest_race_posts(racers, RACERS);
    int winners = 0, winner = -1;
    for (size_t i = 0; i < RACERS; i++) {
        if (racers[i].status == 200) {
            winners++;
            winner = (int)i;
        } else if (racers[i].status == 503 && itest.slow > 1) {
            /* under valgrind a hash takes seconds: past the hashing semaphore's wait, a racer is
             * shed (documented overload answer) before it touches the token */
            assert_string_equal(racers[i].code, "service_unavailable");
        } else {
            assert_int_equal(racers[i].status, 400);
            assert_string_equal(racers[i].code, "invalid_reset_token");
        }
    }
    itest_race_free(racers, RACERS);
    assert_int_equal(winners, 1);
    /* the winner's password first: the losers' five failures then reach the login back-off
     * (LOGIN_BACKOFF_AFTER) only after the last of them */
    char pw[32];
    snprintf(pw, sizeof pw, "Racer-password-%d", winner);
    assert_int_equal(login_status(D, u.username, pw), 200);
    for (size_t i = 0; i < RACERS; i++) {
        snprintf(pw, sizeof pw, "Racer-password-%zu", i);
        if ((int)i != winner)
            assert_int_equal(login_status(D, u.username, pw), 401);
    }
    expect_one_mail(u.email, "was reset", NULL);
    free(token);
    assert_int_equal(itest_daemon_stop(other), 0);
}

static void test_mail_a_newer_reset_link_voids_the_older_one(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    forgot(D, u.email, 202);
    forgot(D, u.email, 202);
    json_t *two = expect_mails(u.email, "Reset", 2);
    char *a = itest_mail_token(json_array_get(two, 0), "/reset-password");
    char *b = itest_mail_token(json_array_get(two, 1), "/reset-password");
    json_decref(two);
    /* the sink keeps arrival order, which is the order of the two requests */
    reset_expect(D, a, "Older-link-password-1", 400, "invalid_reset_token");
    reset_expect(D, b, "Newer-link-password-1", 200, NULL);
    free(a);
    free(b);
}

static void test_mail_reset_refuses_bad_passwords_and_tokens_and_changes_nothing(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    forgot(D, u.email, 202);
    char *token = expect_one_mail(u.email, "Reset", "/reset-password");
    reset_expect(D, token, "short", 400, "invalid_password");
    reset_expect(D, "made-up-token", "Long-enough-pass-1", 400, "invalid_reset_token");
    struct itest_resp r;
    itest_call(D, "POST", "/auth/password/reset", NULL, "{\"token\":\"x\"}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    assert_int_equal(login_status(D, u.username, u.password), 200);
    /* the token survived the refused attempts */
    reset_expect(D, token, "Long-enough-pass-1", 200, NULL);
    free(token);
}

/* ---- enumeration -------------------------------------------------------------------------- */

#define TIMING_ROUNDS 12

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

static long long median(long long *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_ll);
    return v[n / 2];
}

/* One forgot request; returns its wall time in microseconds and its body (malloc'd). */
static long long timed_forgot(const char *email, char **body)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password/forgot", NULL, &r, "{s:s}", "email", email);
    clock_gettime(CLOCK_MONOTONIC, &b);
    itest_expect_status(&r, 202);
    *body = strdup(r.body);
    itest_resp_free(&r);
    return (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
}

/* Makes u an account without a password, linked to Google (as a Google sign-in creates it). */
static void make_oauth_only(struct itest_user *u)
{
    itest_db_exec1("UPDATE users SET password_hash = NULL, created_via = 'google' WHERE id = $1",
                   u->id);
    itest_db_exec1("INSERT INTO oauth_identities (provider, subject, user_id)"
                   " VALUES ('google', 'sub-' || $1, $1::uuid)",
                   u->id);
}

/* Existing, unknown and OAuth-only addresses: the same status and body, and the same time (the
 * same statements run for each; medians of interleaved rounds are compared, as the cost of a
 * hash or a commit would show up in milliseconds). */
static void test_mail_forgot_answers_alike_for_existing_unknown_and_oauth_only(void **state)
{
    (void)state;
    struct itest_user known[TIMING_ROUNDS], oauth[TIMING_ROUNDS], ghost;
    /* under valgrind the times say nothing: fewer rounds, the answers and mails still checked */
    const size_t rounds = itest.slow > 1 ? 3 : TIMING_ROUNDS;
    for (size_t i = 0; i < rounds; i++) {
        memset(&known[i], 0, sizeof known[i]);
        memset(&oauth[i], 0, sizeof oauth[i]);
        itest_register(D, &known[i]);
        itest_register(D, &oauth[i]);
        make_oauth_only(&oauth[i]);
    }
    long long tk[TIMING_ROUNDS], tu[TIMING_ROUNDS], to[TIMING_ROUNDS];
    char *first_body = NULL;
    char ghosts[TIMING_ROUNDS][96];
    for (size_t i = 0; i < rounds; i++) {
        itest_user_new(&ghost);
        snprintf(ghosts[i], sizeof ghosts[i], "%s", ghost.email);
        char *b1, *b2, *b3;
        tk[i] = timed_forgot(known[i].email, &b1);
        tu[i] = timed_forgot(ghosts[i], &b2);
        to[i] = timed_forgot(oauth[i].email, &b3);
        assert_string_equal(b1, b2);
        assert_string_equal(b1, b3);
        if (!first_body)
            first_body = strdup(b1);
        assert_string_equal(b1, first_body);
        free(b1);
        free(b2);
        free(b3);
    }
    long long mk = median(tk, rounds), mu = median(tu, rounds), mo = median(to, rounds);
    fprintf(stderr, "  forgot medians: existing %lld us, unknown %lld us, OAuth-only %lld us\n", mk,
            mu, mo);
    /* a password hash or a second commit would show as several milliseconds */
    long long slack = 2000 + mk / 4;
    if (itest.slow == 1) {
        assert_true(llabs(mk - mu) <= slack);
        assert_true(llabs(mk - mo) <= slack);
    }
    /* the mails: a reset link for the account with a password, the provider hint for the
     * OAuth-only one (no link), nothing for the unknown address */
    for (size_t i = 0; i < rounds; i++) {
        free(expect_one_mail(known[i].email, "Reset", "/reset-password"));
        json_t *hint = expect_mails(oauth[i].email, "About your", 1);
        const char *text = itest_str(json_array_get(hint, 0), "text");
        assert_non_null(strstr(text, "Google"));
        assert_null(strstr(text, "token="));
        json_decref(hint);
        json_t *none = mails_to(ghosts[i], NULL);
        assert_int_equal(json_array_size(none), 0);
        json_decref(none);
    }
    free(first_body);
}

static void test_mail_forgot_refuses_malformed_addresses(void **state)
{
    (void)state;
    static const char *const bad[] = {"",
                                      "no-at-sign",
                                      "two@@example.com",
                                      "sp ace@example.com",
                                      "a@b.c\r\nBcc: evil@example.com",
                                      NULL};
    for (size_t i = 0; bad[i]; i++) {
        struct itest_resp r;
        itest_callf(D, "POST", "/auth/password/forgot", NULL, &r, "{s:s}", "email", bad[i]);
        itest_expect_error(&r, 400, "invalid_email");
        itest_resp_free(&r);
    }
    struct itest_resp r;
    itest_call(D, "POST", "/auth/password/forgot", NULL, "{}", &r);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    json_t *none = mails_to("evil@example.com", NULL);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

/* ---- throttling ----------------------------------------------------------------------------- */

static void test_mail_at_most_three_requests_an_hour_per_address_whatever_the_ip(void **state)
{
    (void)state;
    struct itest_user u, ghost;
    free(register_with_mail(D, &u));
    itest_user_new(&ghost);
    for (int i = 0; i < 3; i++) {
        forgot(D, u.email, 202);
        forgot(D, ghost.email, 202);
    }
    /* the fourth: refused alike for the account and the unknown address */
    struct itest_resp r1, r2;
    itest_callf(D, "POST", "/auth/password/forgot", NULL, &r1, "{s:s}", "email", u.email);
    itest_callf(D, "POST", "/auth/password/forgot", NULL, &r2, "{s:s}", "email", ghost.email);
    itest_expect_error(&r1, 429, "rate_limited");
    itest_expect_error(&r2, 429, "rate_limited");
    assert_string_equal(r1.body, r2.body);
    unsigned wait = itest_expect_retry_after(&r1);
    assert_true(wait > 3000 && wait <= 3600);
    itest_resp_free(&r1);
    itest_resp_free(&r2);
    /* the resend of a signed-in user counts for its address too */
    struct itest_resp r;
    itest_call(D, "POST", "/auth/email/verify/resend", u.s.access, NULL, &r);
    itest_expect_error(&r, 429, "rate_limited");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);
    json_decref(expect_mails(u.email, "Reset", 3));
}

static void test_mail_forgot_and_resend_share_the_per_ip_bucket(void **state)
{
    (void)state;
    const char *env[ITEST_ARRAY_LEN(mail_env) + 1];
    size_t n = 0;
    for (; mail_env[n]; n++)
        env[n] = strncmp(mail_env[n], "RATE_LIMIT_MAIL=", 16) == 0 ? "RATE_LIMIT_MAIL=3/3600"
                                                                   : mail_env[n];
    env[n] = NULL;
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);
    struct itest_user a, b, c;
    itest_user_new(&a);
    itest_user_new(&b);
    memset(&c, 0, sizeof c);
    itest_register(d, &c);
    forgot(d, a.email, 202);
    forgot(d, b.email, 202);
    struct itest_resp r;
    itest_call(d, "POST", "/auth/email/verify/resend", c.s.access, NULL, &r);
    itest_expect_status(&r, 202);
    itest_resp_free(&r);
    itest_callf(d, "POST", "/auth/password/forgot", NULL, &r, "{s:s}", "email", c.email);
    itest_expect_error(&r, 429, "rate_limited");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);
    itest_call(d, "POST", "/auth/email/verify/resend", c.s.access, NULL, &r);
    itest_expect_error(&r, 429, "rate_limited");
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- delivery ------------------------------------------------------------------------------- */

static void test_mail_smtp_down_is_202_and_the_mail_arrives_once_when_it_returns(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    unsigned long long retried = mail_metric(D, "retried");
    unsigned long long sent = mail_metric(D, "sent");
    itest_smtp_mode(&sink, "down", NULL, 0);
    forgot(D, u.email, 202);
    /* the first attempt fails and is scheduled again; a second failure shows the retry ran */
    assert_true(wait_mail_metric(D, "retried", retried + 2) >= retried + 2);
    json_t *none = mails_to(u.email, "Reset");
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
    itest_smtp_mode(&sink, "accept", NULL, 0);
    char *token = expect_one_mail(u.email, "Reset", "/reset-password");
    assert_true(wait_mail_metric(D, "sent", sent + 1) > sent);
    reset_expect(D, token, "After-the-outage-1", 200, NULL);
    free(token);
}

/* A server that answers 451 or drops the connection before accepting the message: nothing was
 * delivered, so the mail goes out once later. */
static void test_mail_refused_or_dropped_mid_message_is_sent_once_later(void **state)
{
    (void)state;
    static const char *const faults[][2] = {
        {"tempfail", "rcpt"}, {"drop", "dot"}, {"tempfail", "connect"}};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(faults); i++) {
        struct itest_user u;
        free(register_with_mail(D, &u));
        itest_smtp_mode(&sink, faults[i][0], faults[i][1], 1);
        forgot(D, u.email, 202);
        free(expect_one_mail(u.email, "Reset", "/reset-password"));
    }
}

/* The state of the newest outbox row to `address` (malloc'd). */
static char *outbox_state(const char *address)
{
    return itest_db_value("SELECT state || ':' || (payload IS NULL)::text FROM mail_outbox"
                          " WHERE to_address = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
                          address);
}

/* Waits until the newest outbox row to `address` is in `state` ("given_up:true"). */
static void expect_outbox_state(const char *address, const char *state)
{
    int64_t until = itest_now_ms() + itest_scaled(MAIL_WAIT_MS);
    char *got = NULL;
    for (;;) {
        free(got);
        got = outbox_state(address);
        if ((got && strcmp(got, state) == 0) || itest_now_ms() > until)
            break;
        itest_sleep_ms(50);
    }
    assert_non_null(got);
    assert_string_equal(got, state);
    free(got);
}

/* 550 to the recipient cannot get better by trying again: given up at once, the link erased. */
static void test_mail_a_permanent_refusal_is_given_up_at_once(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    unsigned long long given_up = mail_metric(D, "given_up");
    itest_smtp_mode(&sink, "permfail", "rcpt", 1);
    forgot(D, u.email, 202);
    expect_outbox_state(u.email, "given_up:true");
    assert_int_equal(wait_mail_metric(D, "given_up", given_up + 1), given_up + 1);
    json_t *none = mails_to(u.email, "Reset");
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

/* A mail still undelivered at its not_after (24 h, or its link's expiry) is given up, not sent
 * late; the rows are aged in the database instead of waiting a day. */
static void test_mail_undelivered_past_its_lifetime_is_given_up(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    unsigned long long given_up = mail_metric(D, "given_up");
    itest_smtp_mode(&sink, "down", NULL, 0);
    forgot(D, u.email, 202);
    expect_outbox_state(u.email, "queued:false");
    itest_db_exec1("UPDATE mail_outbox SET not_after = now() WHERE to_address = $1"
                   " AND state = 'queued'",
                   u.email);
    expect_outbox_state(u.email, "given_up:true");
    assert_int_equal(wait_mail_metric(D, "given_up", given_up + 1), given_up + 1);
    itest_smtp_mode(&sink, "accept", NULL, 0);
    /* a wrongly retried row would go out in the sender's next round (MAIL_RETRY_BASE=1 s) */
    itest_sleep_ms(itest_window(1500));
    json_t *none = mails_to(u.email, "Reset");
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

/* A stalled SMTP server costs the sender SMTP_TIMEOUT, never an HTTP request. */
static void test_mail_stalled_smtp_never_delays_requests_and_the_mail_follows(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    itest_smtp_mode(&sink, "stall", "ehlo", 0);
    int64_t t0 = itest_now_ms();
    forgot(D, u.email, 202);
    assert_int_equal(itest_me_status(D, u.s.access), 200);
    assert_true(itest_now_ms() - t0 < (int64_t)itest_scaled(1000));
    itest_sleep_ms(itest_scaled(500));
    itest_smtp_mode(&sink, "accept", NULL, 0);
    /* the stalled attempt times out (SMTP_TIMEOUT: 3 s, scaled under valgrind), the retry a second
     * later goes through */
    int64_t until = itest_now_ms() + itest_scaled(10000);
    json_t *got = NULL;
    while (itest_now_ms() < until) {
        json_decref(got);
        got = mails_to(u.email, "Reset");
        if (json_array_size(got))
            break;
        itest_sleep_ms(100);
    }
    assert_int_equal(json_array_size(got), 1);
    json_decref(got);
}

/* The group's daemon is the only sender between tests: it queues mails while the SMTP server is
 * away, is stopped and replaced by a new process, and the new one delivers each once. */
static void test_mail_queued_mails_survive_a_restart_and_arrive_once(void **state)
{
    (void)state;
    struct itest_user u[3];
    for (size_t i = 0; i < 3; i++)
        free(register_with_mail(D, &u[i]));
    itest_smtp_mode(&sink, "down", NULL, 0);
    for (size_t i = 0; i < 3; i++)
        forgot(D, u[i].email, 202);
    struct itest_daemon *old = D;
    assert_int_equal(itest_daemon_stop(old), 0);
    old->shared = false; /* freed by this test's teardown */
    itest_shared = itest_daemon_start(mail_env);
    assert_non_null(itest_shared);
    itest_shared->shared = true;
    itest_smtp_mode(&sink, "accept", NULL, 0);
    for (size_t i = 0; i < 3; i++)
        free(expect_one_mail(u[i].email, "Reset", "/reset-password"));
}

static void test_mail_two_instances_send_each_mail_once(void **state)
{
    (void)state;
    struct itest_daemon *other = itest_daemon_start(mail_env);
    assert_non_null(other);
    enum { N = 16 };
    struct itest_user u[N];
    /* queued while the server is away, so both instances find every row due at once */
    for (size_t i = 0; i < N; i++) {
        memset(&u[i], 0, sizeof u[i]);
        itest_register(i % 2 ? other : D, &u[i]);
    }
    for (size_t i = 0; i < N; i++)
        expect_one_mail(u[i].email, "Confirm", NULL);
    itest_smtp_mode(&sink, "down", NULL, 0);
    for (size_t i = 0; i < N; i++)
        forgot(i % 2 ? other : D, u[i].email, 202);
    itest_sleep_ms(itest_window(500));
    itest_smtp_mode(&sink, "accept", NULL, 0);
    for (size_t i = 0; i < N; i++)
        free(expect_one_mail(u[i].email, "Reset", "/reset-password"));
    assert_int_equal(itest_daemon_stop(other), 0);
}

/* ---- notices and header safety -------------------------------------------------------------- */

static void test_mail_password_change_and_account_deletion_send_notices(void **state)
{
    (void)state;
    struct itest_user u;
    free(register_with_mail(D, &u));
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                u.password, "newPassword", "Changed-password-1");
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    expect_one_mail(u.email, "changed", NULL);
    itest_callf(D, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", "Changed-password-1");
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    expect_one_mail(u.email, "deleted", NULL);
}

/* The API refuses CR/LF in names and addresses; a name that got into the database some other
 * way still cannot add a header or a recipient. */
static void test_mail_crlf_in_names_or_addresses_never_adds_a_header(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email",
                "x@example.com\r\nBcc: evil@example.com", "username", u.username, "password",
                u.password);
    itest_expect_error(&r, 400, "invalid_email");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", u.email,
                "username", "name\r\nBcc: evil@example.com", "password", u.password);
    itest_expect_error(&r, 400, "invalid_username");
    itest_resp_free(&r);

    memset(&u, 0, sizeof u);
    free(register_with_mail(D, &u));
    itest_db_exec1("UPDATE users SET username = E'Eve\\r\\nBcc: evil@example.com\\r\\n\\r\\n"
                   "--x\\r\\nSubject: forged' WHERE id = $1",
                   u.id);
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                u.password, "newPassword", "Changed-password-2");
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    json_t *list = expect_mails(u.email, "changed", 1);
    json_t *m = json_array_get(list, 0), *h;
    json_t *rcpt = json_object_get(m, "rcptTo");
    assert_int_equal(json_array_size(rcpt), 1);
    size_t i;
    json_array_foreach(json_object_get(m, "headers"), i, h)
    {
        const char *name = json_string_value(json_array_get(h, 0));
        const char *value = json_string_value(json_array_get(h, 1));
        assert_true(strcasecmp(name, "Bcc") != 0);
        assert_null(strstr(value, "evil@example.com"));
        assert_null(strstr(value, "forged"));
    }
    assert_int_equal(json_array_size(json_object_get(m, "defects")), 0);
    json_decref(list);
    json_t *none = mails_to("evil@example.com", NULL);
    assert_int_equal(json_array_size(none), 0);
    json_decref(none);
}

/* ---- group ---------------------------------------------------------------------------------- */

static int mail_setup(void **state)
{
    (void)state;
    if (!itest_smtp_start(&sink, NULL)) {
        itest_fixture_failures++;
        return -1;
    }
    char url[80];
    itest_smtp_url(&sink, false, url, sizeof url);
    snprintf(smtp_url_kv, sizeof smtp_url_kv, "SMTP_URL=%s", url);
    itest_shared = itest_daemon_start(mail_env);
    if (!itest_shared) {
        itest_smtp_stop(&sink);
        itest_fixture_failures++;
        return -1;
    }
    itest_shared->shared = true;
    return 0;
}

static int mail_teardown(void **state)
{
    int st = itest_group_teardown(state);
    if (itest_smtp_stop(&sink) != 0) {
        itest_fixture_failures++;
        st = -1;
    }
    return st;
}

/* A failed test must not leave the sink refusing for the next one. */
static int mail_test_teardown(void **state)
{
    itest_smtp_mode(&sink, "accept", NULL, 0);
    return itest_teardown(state);
}

#define T(f) cmocka_unit_test_teardown(f, mail_test_teardown)

int itest_group_mail(void)
{
    if (!getenv("INKLET_ITEST_SMTP_SINK")) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_SMTP_SINK is not set; the mail tests are "
                        "skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_mail_registration_sends_a_verification_mail_whose_link_verifies),
        T(test_mail_verify_refuses_made_up_and_malformed_tokens),
        T(test_mail_expired_verification_and_reset_tokens_are_410),
        T(test_mail_resend_sends_a_new_link_and_nothing_once_verified),
        T(test_mail_email_change_unverifies_sends_to_the_new_address_and_tells_the_old),
        T(test_mail_forgot_sends_a_reset_link_that_resets_once_and_revokes_every_session),
        T(test_mail_concurrent_resets_with_one_token_exactly_one_wins),
        T(test_mail_a_newer_reset_link_voids_the_older_one),
        T(test_mail_reset_refuses_bad_passwords_and_tokens_and_changes_nothing),
        T(test_mail_forgot_answers_alike_for_existing_unknown_and_oauth_only),
        T(test_mail_forgot_refuses_malformed_addresses),
        T(test_mail_at_most_three_requests_an_hour_per_address_whatever_the_ip),
        T(test_mail_forgot_and_resend_share_the_per_ip_bucket),
        T(test_mail_smtp_down_is_202_and_the_mail_arrives_once_when_it_returns),
        T(test_mail_refused_or_dropped_mid_message_is_sent_once_later),
        T(test_mail_stalled_smtp_never_delays_requests_and_the_mail_follows),
        T(test_mail_a_permanent_refusal_is_given_up_at_once),
        T(test_mail_undelivered_past_its_lifetime_is_given_up),
        T(test_mail_queued_mails_survive_a_restart_and_arrive_once),
        T(test_mail_two_instances_send_each_mail_once),
        T(test_mail_password_change_and_account_deletion_send_notices),
        T(test_mail_crlf_in_names_or_addresses_never_adds_a_header),
    };
    return cmocka_run_group_tests_name("mail", tests, mail_setup, mail_teardown);
}
