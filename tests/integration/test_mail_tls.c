/* Contract §2.2 and docs/email.md "SMTP and TLS": the mail sender's transport policy, end to
 * end. Each test runs its own sink (tests/fakes/smtp_sink.py) as the relay it needs and its own
 * inkletd pointed at it, registers a fresh user (registration queues a verification mail) and
 * reads what the relay saw: to a relay off loopback, STARTTLS with a verified certificate before
 * AUTH or any mail, and nothing at all when either is missing; TLS from the first byte with
 * smtps://; plain SMTP to a loopback relay. A refused mail stays queued for a retry: the test
 * deletes it at the end, since the outbox is shared with every later daemon of the run. */
#include "harness.h"
#include "itest_mail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PORTAL "https://portal.example.test"
#define MAIL_WAIT_MS 5000
/* With MAIL_RETRY_BASE=1 the attempts come 1 s, then 2 s apart: three take about 3 s. */
#define REFUSED_ATTEMPTS 3
#define REFUSED_WAIT_MS 10000
#define RELAY_USER "inklet-relay"
#define RELAY_PASSWORD "relay-password-1"
#define MAX_ENV 16

/* The running test's relay; the teardown stops it when a failed test could not. */
static struct itest_smtp sink;
static bool sink_up;

/* As test_mail.c's daemons: retries after 1 s, short attempts, no per-IP limit in the way. */
static const char *const mail_env[] = {
    "PORTAL_URL=" PORTAL,         "MAIL_FROM=Inklet Tests <no-reply@inklet.test>",
    "MAIL_RETRY_BASE=1",          itest_smtp_timeout_kv,
    "RATE_LIMIT_MAIL=10000/3600", NULL};

/* ---- helpers ------------------------------------------------------------------------------- */

static void start_sink(const char *const args[])
{
    assert_true(itest_smtp_start(&sink, args));
    sink_up = true;
}

static void stop_sink(void)
{
    sink_up = false;
    assert_int_equal(itest_smtp_stop(&sink), 0);
}

/* The machine's non-loopback IPv4 address, or the test is skipped: inkletd never upgrades to
 * TLS on loopback, so a STARTTLS relay must listen elsewhere. */
static void need_non_loopback(char addr[64])
{
    if (!itest_non_loopback_ipv4(addr)) {
        fprintf(stderr, "  no non-loopback IPv4 address on this machine: this STARTTLS case "
                        "cannot be tested here; skipped\n");
        skip();
    }
}

/* inkletd sending to the sink (smtps:// when `smtps`), with the group's mail settings and the
 * `extra` ones (NULL-terminated, may be NULL; "KEY" alone unsets). */
static struct itest_daemon *start_inkletd(bool smtps, const char *const extra[])
{
    char url[96], url_kv[112];
    itest_smtp_url(&sink, smtps, url, sizeof url);
    snprintf(url_kv, sizeof url_kv, "SMTP_URL=%s", url);
    const char *env[MAX_ENV];
    size_t n = 0;
    env[n++] = url_kv;
    for (size_t i = 0; mail_env[i]; i++)
        env[n++] = mail_env[i];
    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(n < MAX_ENV - 1);
        env[n++] = extra[i];
    }
    env[n] = NULL;
    struct itest_daemon *d = itest_daemon_start(env);
    assert_non_null(d);
    return d;
}

/* "SMTP_CA_FILE=<the sink's throwaway CA>" into `out`. */
static void ca_env(char *out, size_t n)
{
    assert_true((size_t)snprintf(out, n, "SMTP_CA_FILE=%s", sink.ca_file) < n);
}

static unsigned long long mail_metric(const struct itest_daemon *d, const char *result)
{
    char name[96];
    snprintf(name, sizeof name, "inklet_mail_total{result=\"%s\"}", result);
    return itest_metric(d, name);
}

/* Every SMTP session the sink has seen, oldest first (new reference). */
static json_t *sink_sessions(void)
{
    json_t *answer = itest_fake_call(&sink.ctl, "GET", "/_fake/sessions", NULL);
    json_t *list = json_object_get(answer, "sessions");
    assert_true(json_is_array(list));
    json_incref(list);
    json_decref(answer);
    return list;
}

/* The index of the first command of `session` whose verb is `verb`, -1 when there is none. */
static int command_at(const json_t *session, const char *verb)
{
    size_t i, len = strlen(verb);
    const json_t *c;
    json_array_foreach(json_object_get(session, "commands"), i, c)
    {
        const char *line = json_string_value(c);
        if (line && strncasecmp(line, verb, len) == 0 && (line[len] == ' ' || line[len] == '\0'))
            return (int)i;
    }
    return -1;
}

/* The session that carried `msg` (new reference). */
static json_t *session_of(const json_t *msg)
{
    json_int_t id = json_integer_value(json_object_get(msg, "id"));
    json_t *all = sink_sessions(), *s, *found = NULL;
    size_t i;
    json_array_foreach(all, i, s)
    {
        size_t k;
        const json_t *m;
        json_array_foreach(json_object_get(s, "messages"), k, m)
        {
            if (!found && json_integer_value(m) == id)
                found = json_incref(s);
        }
    }
    json_decref(all);
    if (!found)
        fail_msg("no session of the sink carried message %lld", (long long)id);
    return found;
}

/* The verification mail to `rcpt`, once it is there (new reference). */
static json_t *the_mail_to(const char *rcpt)
{
    json_t *list = itest_smtp_wait_to(&sink, rcpt, 1, MAIL_WAIT_MS);
    assert_int_equal(json_array_size(list), 1);
    json_t *m = json_incref(json_array_get(list, 0));
    json_decref(list);
    assert_non_null(strstr(itest_str(m, "subject"), "Confirm"));
    return m;
}

/* Waits until the mail to `rcpt` has been tried REFUSED_ATTEMPTS times while staying queued
 * (a refusal of the transport is temporary: never given up, never sent); returns its last
 * error as the outbox recorded it (malloc'd). */
static char *wait_refused(const char *rcpt)
{
    int64_t until = itest_now_ms() + itest_scaled(REFUSED_WAIT_MS);
    long attempts = 0;
    for (;;) {
        char *row = itest_db_value(
            "SELECT state || ' ' || attempts FROM mail_outbox WHERE to_address = $1", rcpt);
        if (!row)
            fail_msg("no outbox row for %s", rcpt);
        bool queued = strncmp(row, "queued ", 7) == 0;
        if (queued)
            attempts = strtol(row + 7, NULL, 10);
        if (!queued)
            fprintf(stderr, "  the mail to %s is no longer queued: %s\n", rcpt, row);
        free(row);
        assert_true(queued);
        if (attempts >= REFUSED_ATTEMPTS || itest_now_ms() > until)
            break;
        itest_sleep_ms(100);
    }
    if (attempts < REFUSED_ATTEMPTS)
        fail_msg("the mail to %s was tried %ld time(s), expected %d", rcpt, attempts,
                 REFUSED_ATTEMPTS);
    char *why = itest_db_value("SELECT last_error FROM mail_outbox WHERE to_address = $1", rcpt);
    assert_non_null(why);
    fprintf(stderr, "  refused as expected: %s\n", why);
    return why;
}

/* inkletd reached the relay but handed it nothing: no message, and no session that got to
 * AUTH or MAIL FROM. Returns the sessions (new reference). */
static json_t *expect_nothing_sent(void)
{
    json_t *messages = itest_smtp_messages(&sink);
    assert_int_equal(json_array_size(messages), 0);
    json_decref(messages);
    json_t *sessions = sink_sessions(), *s;
    /* the last attempt may still be connecting */
    assert_true(json_array_size(sessions) >= REFUSED_ATTEMPTS - 1);
    size_t i;
    json_array_foreach(sessions, i, s)
    {
        if (!json_is_null(json_object_get(s, "ended")))
            assert_non_null(json_string_value(json_object_get(s, "ehlo")));
        assert_int_equal(command_at(s, "AUTH"), -1);
        assert_int_equal(command_at(s, "MAIL"), -1);
        assert_int_equal(json_array_size(json_object_get(s, "messages")), 0);
    }
    return sessions;
}

/* Stops `d` and removes the mail that could not go out, asserting it was still queued (no later
 * daemon of the run must deliver it). */
static void finish_refused(struct itest_daemon *d, const char *rcpt)
{
    assert_int_equal(itest_daemon_stop(d), 0);
    itest_db_exec1("DELETE FROM mail_outbox WHERE to_address = $1 AND state = 'queued'", rcpt);
    stop_sink();
}

/* ---- the cases ------------------------------------------------------------------------------ */

static void test_mail_tls_starttls_and_auth_to_a_relay_off_loopback(void **state)
{
    (void)state;
    char addr[64], san[80], ca_kv[300];
    need_non_loopback(addr);
    snprintf(san, sizeof san, "IP:%s", addr);
    start_sink((const char *const[]){"--listen", addr, "--san", san, "--user", RELAY_USER,
                                     "--password", RELAY_PASSWORD, NULL});
    assert_string_equal(sink.listen, addr);
    ca_env(ca_kv, sizeof ca_kv);
    struct itest_daemon *d =
        start_inkletd(false, (const char *const[]){ca_kv, "SMTP_USER=" RELAY_USER,
                                                   "SMTP_PASSWORD=" RELAY_PASSWORD, NULL});
    struct itest_user u = {0};
    itest_register(d, &u);
    json_t *m = the_mail_to(u.email);
    assert_true(json_is_true(json_object_get(m, "tls")));
    assert_string_equal(itest_str(m, "authUser"), RELAY_USER);
    json_t *s = session_of(m);
    assert_string_equal(itest_str(s, "listener"), "smtp");
    assert_non_null(json_string_value(json_object_get(s, "tlsVersion")));
    /* the password crossed the network inside TLS only */
    int tls_at = command_at(s, "STARTTLS"), auth_at = command_at(s, "AUTH");
    assert_true(tls_at >= 0);
    assert_true(auth_at > tls_at);
    assert_true(command_at(s, "MAIL") > auth_at);
    json_decref(s);
    json_decref(m);
    /* counted once the row is marked sent, a moment after the relay's 250 (long under
     * valgrind) */
    int64_t until = itest_now_ms() + itest_scaled(2000);
    while (mail_metric(d, "sent") < 1 && itest_now_ms() < until)
        itest_sleep_ms(50);
    assert_true(mail_metric(d, "sent") >= 1);
    assert_int_equal(itest_daemon_stop(d), 0);
    stop_sink();
}

static void test_mail_tls_smtps_with_a_private_ca_on_loopback(void **state)
{
    (void)state;
    char ca_kv[300];
    start_sink((const char *const[]){"--smtps-port", "0", NULL});
    ca_env(ca_kv, sizeof ca_kv);
    struct itest_daemon *d = start_inkletd(true, (const char *const[]){ca_kv, NULL});
    struct itest_user u = {0};
    itest_register(d, &u);
    json_t *m = the_mail_to(u.email);
    assert_true(json_is_true(json_object_get(m, "tls")));
    assert_true(json_is_null(json_object_get(m, "authUser")));
    json_t *s = session_of(m);
    /* implicit TLS: the smtps listener, no STARTTLS said in clear */
    assert_string_equal(itest_str(s, "listener"), "smtps");
    assert_non_null(json_string_value(json_object_get(s, "tlsVersion")));
    assert_int_equal(command_at(s, "STARTTLS"), -1);
    json_decref(s);
    json_decref(m);
    assert_int_equal(itest_daemon_stop(d), 0);
    stop_sink();
}

/* A relay off loopback that does not offer STARTTLS: the mail waits rather than cross the
 * network in clear, and so do the credentials. */
static void test_mail_tls_relay_without_starttls_gets_nothing_and_is_retried(void **state)
{
    (void)state;
    char addr[64], ca_kv[300];
    need_non_loopback(addr);
    start_sink((const char *const[]){"--listen", addr, "--no-starttls", "--user", RELAY_USER,
                                     "--password", RELAY_PASSWORD, NULL});
    ca_env(ca_kv, sizeof ca_kv);
    struct itest_daemon *d =
        start_inkletd(false, (const char *const[]){ca_kv, "SMTP_USER=" RELAY_USER,
                                                   "SMTP_PASSWORD=" RELAY_PASSWORD, NULL});
    unsigned long long retried = mail_metric(d, "retried");
    struct itest_user u = {0};
    itest_register(d, &u);
    char *why = wait_refused(u.email);
    assert_non_null(strstr(why, "(curl 64")); /* CURLE_USE_SSL_FAILED */
    free(why);
    json_t *sessions = expect_nothing_sent(), *s;
    size_t i;
    json_array_foreach(sessions, i, s) assert_true(json_is_false(json_object_get(s, "tls")));
    json_decref(sessions);
    assert_true(mail_metric(d, "retried") >= retried + REFUSED_ATTEMPTS - 1);
    assert_int_equal(mail_metric(d, "sent"), 0);
    finish_refused(d, u.email);
}

/* A STARTTLS relay whose certificate is valid for its address but signed by a CA inkletd was
 * not told to trust (no SMTP_CA_FILE): the handshake fails and nothing is sent. */
static void test_mail_tls_untrusted_certificate_gets_nothing_and_is_retried(void **state)
{
    (void)state;
    char addr[64], san[80];
    need_non_loopback(addr);
    snprintf(san, sizeof san, "IP:%s", addr);
    start_sink((const char *const[]){"--listen", addr, "--san", san, "--user", RELAY_USER,
                                     "--password", RELAY_PASSWORD, NULL});
    struct itest_daemon *d =
        start_inkletd(false, (const char *const[]){"SMTP_CA_FILE", "SMTP_USER=" RELAY_USER,
                                                   "SMTP_PASSWORD=" RELAY_PASSWORD, NULL});
    unsigned long long retried = mail_metric(d, "retried");
    struct itest_user u = {0};
    itest_register(d, &u);
    char *why = wait_refused(u.email);
    assert_non_null(strstr(why, "(curl 60")); /* CURLE_PEER_FAILED_VERIFICATION */
    free(why);
    json_t *sessions = expect_nothing_sent(), *s;
    size_t i;
    json_array_foreach(sessions, i, s)
    {
        /* it asked for TLS and walked away from the handshake */
        if (!json_is_null(json_object_get(s, "ended")))
            assert_true(command_at(s, "STARTTLS") >= 0);
        assert_true(json_is_false(json_object_get(s, "tls")));
    }
    json_decref(sessions);
    assert_true(mail_metric(d, "retried") >= retried + REFUSED_ATTEMPTS - 1);
    assert_int_equal(mail_metric(d, "sent"), 0);
    finish_refused(d, u.email);
}

/* A refused login (535) is the operator's to fix: the mail waits for it instead of being given
 * up. */
static void test_mail_tls_wrong_smtp_password_is_retried_not_given_up(void **state)
{
    (void)state;
    start_sink((const char *const[]){"--user", RELAY_USER, "--password", RELAY_PASSWORD, NULL});
    struct itest_daemon *d =
        start_inkletd(false, (const char *const[]){"SMTP_USER=" RELAY_USER,
                                                   "SMTP_PASSWORD=not-the-password", NULL});
    unsigned long long retried = mail_metric(d, "retried");
    unsigned long long given_up = mail_metric(d, "given_up");
    struct itest_user u = {0};
    itest_register(d, &u);
    char *why = wait_refused(u.email);
    assert_non_null(strstr(why, "reply 535"));
    free(why);
    json_t *messages = itest_smtp_messages(&sink);
    assert_int_equal(json_array_size(messages), 0);
    json_decref(messages);
    json_t *sessions = sink_sessions(), *s;
    size_t i, refused = 0;
    json_array_foreach(sessions, i, s)
    {
        const char *auth = json_string_value(json_object_get(s, "auth"));
        if (auth) {
            assert_string_equal(auth, "failed");
            refused++;
        }
        assert_int_equal(command_at(s, "MAIL"), -1);
    }
    json_decref(sessions);
    assert_true(refused >= REFUSED_ATTEMPTS - 1);
    assert_true(mail_metric(d, "retried") >= retried + REFUSED_ATTEMPTS - 1);
    assert_int_equal(mail_metric(d, "given_up"), given_up);
    finish_refused(d, u.email);
}

/* A loopback relay is a local one (the development sink, a host's own MTA): plain SMTP, and no
 * STARTTLS is attempted although this one offers it. */
static void test_mail_tls_loopback_relay_is_plain_even_when_it_offers_starttls(void **state)
{
    (void)state;
    start_sink(NULL);
    json_t *info = itest_fake_call(&sink.ctl, "GET", "/_fake/info", NULL);
    assert_true(json_is_true(json_object_get(info, "starttls")));
    json_decref(info);
    struct itest_daemon *d = start_inkletd(false, NULL);
    struct itest_user u = {0};
    itest_register(d, &u);
    json_t *m = the_mail_to(u.email);
    assert_true(json_is_false(json_object_get(m, "tls")));
    json_t *s = session_of(m);
    assert_string_equal(itest_str(s, "listener"), "smtp");
    assert_int_equal(command_at(s, "STARTTLS"), -1);
    assert_true(command_at(s, "MAIL") >= 0);
    json_decref(s);
    json_decref(m);
    assert_int_equal(itest_daemon_stop(d), 0);
    stop_sink();
}

/* ---- group ---------------------------------------------------------------------------------- */

/* Kills a daemon a failed test left, then its relay. */
static int tls_test_teardown(void **state)
{
    int st = itest_teardown(state);
    if (sink_up) {
        sink_up = false;
        itest_smtp_stop(&sink);
    }
    return st;
}

#define T(f) cmocka_unit_test_teardown(f, tls_test_teardown)

int itest_group_mail_tls(void)
{
    if (!getenv("INKLET_ITEST_SMTP_SINK")) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_SMTP_SINK is not set; the mail TLS tests "
                        "are skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_mail_tls_starttls_and_auth_to_a_relay_off_loopback),
        T(test_mail_tls_smtps_with_a_private_ca_on_loopback),
        T(test_mail_tls_relay_without_starttls_gets_nothing_and_is_retried),
        T(test_mail_tls_untrusted_certificate_gets_nothing_and_is_retried),
        T(test_mail_tls_wrong_smtp_password_is_retried_not_given_up),
        T(test_mail_tls_loopback_relay_is_plain_even_when_it_offers_starttls),
    };
    return cmocka_run_group_tests_name("mail_tls", tests, NULL, NULL);
}
