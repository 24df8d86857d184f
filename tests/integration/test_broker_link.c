/* Contract §5 and §1 (/health/ready): the broker link as the broker sees it. The link counts as
 * up only once the broker granted the subscription; instances of a shared-subscription group
 * each need their own client id; shutdown is clean while the ingest workers publish and while
 * the broker is unreachable.
 *
 * Every test runs its own Mosquitto (a private port, config and log file) so that it can use a
 * special configuration and read what the broker logged. Mosquitto 2.0's acl_file never fails a
 * SUBSCRIBE (it grants the QoS asked for and only filters deliveries), so the refused
 * subscriptions come from the dynamic-security plugin shipped with the broker, which checks
 * subscriptions against its roles and answers SUBACK 0x80 in MQTT 3.1.1. It matches a
 * `$share/<group>/<filter>` subscription as that whole text, so a role for the shared form needs
 * a pattern such as `$share/+/inklet/dev/+/up/#`. */
#include "harness.h"
#include "mqtt_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SUB_FILTER "inklet/dev/+/up/#"
#define BURST_MESSAGES 2000
#define MAX_IDS 16

struct broker {
    char dir[200];
    char log[260];
    char url[64];
    unsigned port;
    pid_t pid; /* 0 when not running */
};

/* the broker of the running test; the per-test teardown stops it */
static struct broker br;
static const char *mosquitto_bin;
static char dynsec_plugin[256];

/* ---- small helpers ------------------------------------------------------------------------ */

static unsigned pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* The whole file as a NUL-terminated string (empty when it cannot be read); caller frees. */
static bool file_has(const char *path, const char *needle)
{
    char *text = itest_read_file(path, NULL);
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* Waits (bounded, scaled) until the file contains `needle`. */
static bool wait_file_has(const char *path, const char *needle, unsigned ms)
{
    int64_t until = itest_now_ms() + itest_scaled(ms);
    for (;;) {
        if (file_has(path, needle))
            return true;
        if (itest_now_ms() > until)
            return false;
        itest_sleep_ms(50);
    }
}

static bool contains_ci(const char *hay, size_t hay_len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= hay_len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)hay[i + k]) == tolower((unsigned char)needle[k]))
            k++;
        if (k == n)
            return true;
    }
    return false;
}

/* ---- a private Mosquitto ------------------------------------------------------------------ */

/* Starts Mosquitto on a free loopback port with the common settings plus `extra` (config lines,
 * may be empty). `verbose` logs everything (SUBACKs, subscriptions); otherwise only the
 * default notices (connections). Waits until it listens. */
static bool broker_start(struct broker *b, const char *name, const char *extra, bool verbose)
{
    snprintf(b->dir, sizeof b->dir, "%s/broker-%s", itest.tmpdir, name);
    snprintf(b->log, sizeof b->log, "%s/mosquitto.log", b->dir);
    if (mkdir(b->dir, 0755) != 0 && errno != EEXIST)
        return false;
    for (int attempt = 0; attempt < 3; attempt++) {
        b->port = pick_port();
        if (!b->port)
            return false;
        snprintf(b->url, sizeof b->url, "mqtt://127.0.0.1:%u", b->port);
        char conf[300], out[300];
        snprintf(conf, sizeof conf, "%s/mosquitto.conf", b->dir);
        snprintf(out, sizeof out, "%s/mosquitto.out", b->dir);
        unlink(b->log);
        FILE *f = fopen(conf, "w");
        if (!f)
            return false;
        fprintf(f,
                "listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "log_dest file %s\nlog_timestamp true\nconnection_messages true\n%s%s%s",
                b->port, b->log,
                verbose ? "log_type all\n"
                        : "log_type error\nlog_type warning\nlog_type notice\n"
                          "log_type information\n",
                geteuid() == 0 ? "user root\n" : "", extra);
        fclose(f);
        b->pid = itest_spawn_program((const char *const[]){mosquitto_bin, "-c", conf, NULL}, NULL,
                                     out, out);
        if (b->pid < 0) {
            b->pid = 0;
            return false;
        }
        bool exited = false;
        int st;
        for (int64_t until = itest_now_ms() + itest_scaled(10000);
             !exited && itest_now_ms() < until;) {
            if (file_has(b->log, " running"))
                return true;
            exited = waitpid(b->pid, &st, WNOHANG) == b->pid;
            itest_sleep_ms(20);
        }
        /* it did not come up (the port was taken meanwhile?): try another port */
        if (!exited) {
            kill(b->pid, SIGKILL);
            itest_wait_pid(b->pid, 5000);
        }
        fprintf(stderr, "inklet-itest: mosquitto did not start on port %u; see %s and %s\n",
                b->port, out, b->log);
        b->pid = 0;
    }
    return false;
}

static void broker_stop(struct broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        itest_wait_pid(b->pid, 5000);
    }
    b->pid = 0;
}

/* The dynamic-security plugin with one role for anonymous clients: subscribing is allowed to
 * the `allowed` patterns (NULL-terminated) and refused for everything else; publishing and
 * receiving are allowed. */
static bool broker_start_dynsec(struct broker *b, const char *name, const char *const allowed[])
{
    char json[300], extra[700];
    snprintf(json, sizeof json, "%s/broker-%s.json", itest.tmpdir, name);
    FILE *f = fopen(json, "w");
    if (!f)
        return false;
    fprintf(f, "{\"defaultACLAccess\":{\"publishClientSend\":true,\"publishClientReceive\":true,"
               "\"subscribe\":false,\"unsubscribe\":true},\"clients\":[],"
               "\"groups\":[{\"groupname\":\"anonymous\",\"roles\":[{\"rolename\":\"backend\"}]}],"
               "\"roles\":[{\"rolename\":\"backend\",\"acls\":[");
    for (size_t i = 0; allowed[i]; i++)
        fprintf(f,
                "%s{\"acltype\":\"subscribePattern\",\"topic\":\"%s\",\"priority\":0,"
                "\"allow\":true}",
                i ? "," : "", allowed[i]);
    fprintf(f, "]}],\"anonymousGroup\":\"anonymous\"}\n");
    fclose(f);
    snprintf(extra, sizeof extra, "plugin %s\nplugin_opt_config_file %s\n", dynsec_plugin, json);
    return broker_start(b, name, extra, true);
}

/* The distinct client ids that the broker logged as connected ("New client connected from
 * <addr> as <id> (p2, c1, k30)."). Returns how many were found (at most max). */
static size_t connected_ids(const struct broker *b, char ids[][128], size_t max)
{
    static const char marker[] = "New client connected from ";
    char *log = itest_read_file(b->log, NULL);
    size_t n = 0;
    for (const char *p = strstr(log, marker); p; p = strstr(p + 1, marker)) {
        const char *eol = strchr(p, '\n');
        const char *as = strstr(p, " as ");
        if (!as || (eol && as > eol))
            continue;
        as += 4;
        const char *end = strstr(as, " (");
        if (!end || (eol && end > eol) || (size_t)(end - as) >= sizeof ids[0])
            continue;
        char id[128];
        memcpy(id, as, (size_t)(end - as));
        id[end - as] = '\0';
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = strcmp(ids[i], id) == 0;
        if (!seen && n < max)
            memcpy(ids[n++], id, sizeof id);
    }
    free(log);
    return n;
}

/* How many "New client connected" lines the broker logged. */
static size_t connect_count(const struct broker *b)
{
    char *log = itest_read_file(b->log, NULL);
    size_t n = 0;
    for (const char *p = strstr(log, "New client connected from "); p;
         p = strstr(p + 1, "New client connected from "))
        n++;
    free(log);
    return n;
}

static bool wait_connects(const struct broker *b, size_t want, unsigned ms)
{
    int64_t until = itest_now_ms() + itest_scaled(ms);
    while (connect_count(b) < want) {
        if (itest_now_ms() > until)
            return false;
        itest_sleep_ms(50);
    }
    return true;
}

static void dump_broker_log(const struct broker *b, const char *why)
{
    char *log = itest_read_file(b->log, NULL);
    size_t n = strlen(log);
    const char *from = n > 12000 ? log + n - 12000 : log;
    fprintf(stderr, "----- mosquitto log (%s): %s -----\n%s\n----- end of mosquitto log -----\n",
            why, b->log, from);
    free(log);
}

/* ---- readiness ---------------------------------------------------------------------------- */

/* One GET /health/ready: its status; checks.broker and checks.database copied (empty when
 * missing). */
static long ready(const struct itest_daemon *d, char broker[32], char database[32])
{
    struct itest_resp r;
    itest_get(d, "/health/ready", &r);
    json_t *checks = r.json ? json_object_get(r.json, "checks") : NULL;
    const char *b = json_string_value(json_object_get(checks, "broker"));
    const char *db = json_string_value(json_object_get(checks, "database"));
    snprintf(broker, 32, "%s", b ? b : "");
    snprintf(database, 32, "%s", db ? db : "");
    long status = r.status;
    itest_resp_free(&r);
    return status;
}

/* Polls /health/ready until checks.broker is `want` (bounded, scaled); returns the status of
 * that answer, or -1 if it never came. */
static long wait_broker_check(const struct itest_daemon *d, const char *want, unsigned ms)
{
    int64_t until = itest_now_ms() + itest_scaled(ms);
    for (;;) {
        char broker[32], database[32];
        long status = ready(d, broker, database);
        /* waiting for "ok": the status must be the broker's answer, not a moment where the
         * database check is stale (its pings can lag 1 s behind under valgrind) */
        if (strcmp(broker, want) == 0 && (strcmp(want, "ok") != 0 || strcmp(database, "ok") == 0))
            return status;
        if (itest_now_ms() > until)
            return -1;
        itest_sleep_ms(100);
    }
}

/* Asserts that /health/ready answers 503 with broker "unavailable" (and database "ok") on every
 * one of `samples` calls spread over `ms` (scaled). */
static void expect_broker_unavailable_throughout(const struct itest_daemon *d, unsigned samples,
                                                 unsigned ms)
{
    for (unsigned i = 0; i < samples; i++) {
        char broker[32], database[32];
        long status = ready(d, broker, database);
        if (status != 503 || strcmp(broker, "unavailable") != 0)
            fprintf(stderr, "  /health/ready sample %u: %ld, broker \"%s\", database \"%s\"\n", i,
                    status, broker, database);
        assert_int_equal(status, 503);
        assert_string_equal(broker, "unavailable");
        assert_string_equal(database, "ok");
        itest_sleep_ms(itest_window(ms) / samples);
    }
}

/* ---- fixtures ----------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    mosquitto_bin = access("/usr/sbin/mosquitto", X_OK) == 0                 ? "/usr/sbin/mosquitto"
                    : itest_sh("command -v mosquitto >/dev/null", 5000) == 0 ? "mosquitto"
                                                                             : NULL;
    if (!mosquitto_bin)
        fprintf(stderr, "inklet-itest: mosquitto missing; the broker-link tests are skipped\n");
    glob_t g;
    dynsec_plugin[0] = '\0';
    if (glob("/usr/lib/*/mosquitto_dynamic_security.so", 0, NULL, &g) == 0 && g.gl_pathc > 0)
        snprintf(dynsec_plugin, sizeof dynsec_plugin, "%s", g.gl_pathv[0]);
    else if (glob("/usr/lib/mosquitto_dynamic_security.so", 0, NULL, &g) == 0 && g.gl_pathc > 0)
        snprintf(dynsec_plugin, sizeof dynsec_plugin, "%s", g.gl_pathv[0]);
    globfree(&g);
    if (!dynsec_plugin[0])
        fprintf(stderr, "inklet-itest: mosquitto_dynamic_security.so missing; the refused-"
                        "subscription tests are skipped\n");
    return 0;
}

static int test_teardown(void **state)
{
    int rc = itest_teardown(state);
    broker_stop(&br);
    return rc;
}

static void need_broker(void)
{
    if (!mosquitto_bin)
        skip();
}

static void need_dynsec(void)
{
    if (!mosquitto_bin || !dynsec_plugin[0])
        skip();
}

static void client_id_kv(char *out, size_t len, const char *what)
{
    snprintf(out, len, "MQTT_CLIENT_ID=bl-%s-%d-%s", itest.run_tag, (int)getpid(), what);
}

/* ---- the subscription must be granted before the link is up ------------------------------- */

/* A broker that refuses the subscription (SUBACK 0x80) leaves the link down. Today the link is
 * marked up on CONNACK, before (and regardless of) the SUBACK. */
static void test_broker_link_refused_subscription_is_not_ready(void **state)
{
    (void)state;
    need_dynsec();
    assert_true(
        broker_start_dynsec(&br, "refused", (const char *const[]){"inklet/dev/+/down/cmd", NULL}));
    char url[80], id[96], suback[128];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    client_id_kv(id, sizeof id, "refused");
    snprintf(suback, sizeof suback, "Sending SUBACK to %s", strchr(id, '=') + 1);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, id, NULL});
    assert_non_null(d);
    /* the broker has answered the subscription; give the daemon a moment to read the answer */
    if (!wait_file_has(br.log, suback, 15000))
        dump_broker_log(&br, "no SUBACK sent");
    assert_true(file_has(br.log, suback));
    itest_sleep_ms(itest_scaled(500));
    expect_broker_unavailable_throughout(d, 10, 2000);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* The daemon says why the link is down: a warning naming the refused subscription. */
static void test_broker_link_refused_subscription_logs_a_warning(void **state)
{
    (void)state;
    need_dynsec();
    assert_true(broker_start_dynsec(&br, "refused-warn",
                                    (const char *const[]){"inklet/dev/+/down/cmd", NULL}));
    char url[80], id[96], suback[128];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    client_id_kv(id, sizeof id, "refused-warn");
    snprintf(suback, sizeof suback, "Sending SUBACK to %s", strchr(id, '=') + 1);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, id, NULL});
    assert_non_null(d);
    assert_true(wait_file_has(br.log, suback, 15000));
    /* a warn line: {"...","level":"warn",...} (LOG_FORMAT=json) or "<ts> warn  ..." (text) */
    bool warned = false;
    for (int64_t until = itest_now_ms() + itest_scaled(3000); !warned;) {
        char *log = itest_read_file(d->log_path, NULL);
        for (const char *line = log; *line && !warned;) {
            const char *eol = strchr(line, '\n');
            size_t len = eol ? (size_t)(eol - line) : strlen(line);
            warned = (contains_ci(line, len, "\"level\":\"warn\"") ||
                      contains_ci(line, len, " warn ")) &&
                     (contains_ci(line, len, "subscri") || contains_ci(line, len, "suback"));
            line += len + (eol ? 1 : 0);
        }
        free(log);
        if (warned || itest_now_ms() > until)
            break;
        itest_sleep_ms(100);
    }
    if (!warned)
        itest_daemon_dump_log(d, "no warning about the refused subscription");
    assert_true(warned);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* The positive case: the role allows the backend's filter, the broker grants QoS 1, ready. */
static void test_broker_link_granted_subscription_is_ready(void **state)
{
    (void)state;
    need_dynsec();
    assert_true(broker_start_dynsec(&br, "granted", (const char *const[]){SUB_FILTER, NULL}));
    char url[80], id[96], granted[160];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    client_id_kv(id, sizeof id, "granted");
    /* log_type subscribe: "<client id> <qos> <filter>", written only for a granted filter */
    snprintf(granted, sizeof granted, "%s 1 " SUB_FILTER "\n", strchr(id, '=') + 1);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, id, NULL});
    assert_non_null(d);
    assert_int_equal(wait_broker_check(d, "ok", 15000), 200);
    if (!file_has(br.log, granted))
        dump_broker_log(&br, "subscription not granted");
    assert_true(file_has(br.log, granted));
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* With MQTT_SHARE_GROUP the backend subscribes to $share/<group>/inklet/dev/+/up/#; a role that
 * allows that form grants it and the link is up. */
static void test_broker_link_granted_shared_subscription_is_ready(void **state)
{
    (void)state;
    need_dynsec();
    assert_true(broker_start_dynsec(&br, "granted-shared",
                                    (const char *const[]){"$share/+/" SUB_FILTER, NULL}));
    char url[80], id[96], granted[160];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    client_id_kv(id, sizeof id, "granted-shared");
    snprintf(granted, sizeof granted, "%s 1 $share/g1/" SUB_FILTER "\n", strchr(id, '=') + 1);
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){url, id, "MQTT_SHARE_GROUP=g1", NULL});
    assert_non_null(d);
    assert_int_equal(wait_broker_check(d, "ok", 15000), 200);
    if (!file_has(br.log, granted))
        dump_broker_log(&br, "shared subscription not granted");
    assert_true(file_has(br.log, granted));
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* A role that allows only the plain filter refuses the $share form (the broker matches the whole
 * "$share/g1/..." text): the shared instance's link stays down. */
static void
test_broker_link_shared_subscription_refused_without_share_acl_is_not_ready(void **state)
{
    (void)state;
    need_dynsec();
    assert_true(
        broker_start_dynsec(&br, "shared-refused", (const char *const[]){SUB_FILTER, NULL}));
    char url[80], id[96], suback[128];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    client_id_kv(id, sizeof id, "shared-refused");
    snprintf(suback, sizeof suback, "Sending SUBACK to %s", strchr(id, '=') + 1);
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){url, id, "MQTT_SHARE_GROUP=g1", NULL});
    assert_non_null(d);
    if (!wait_file_has(br.log, suback, 15000))
        dump_broker_log(&br, "no SUBACK sent");
    assert_true(file_has(br.log, suback));
    itest_sleep_ms(itest_scaled(500));
    expect_broker_unavailable_throughout(d, 10, 2000);
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- client ids of a shared-subscription group -------------------------------------------- */

/* Starts two daemons of share group g1 without MQTT_CLIENT_ID against `br` and waits until the
 * broker has logged at least two connections. */
static void start_share_group_pair(struct itest_daemon *d[2])
{
    char url[80];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    const char *const env[] = {url, "MQTT_SHARE_GROUP=g1", "MQTT_CLIENT_ID", NULL};
    for (int i = 0; i < 2; i++) {
        d[i] = itest_daemon_start(env);
        assert_non_null(d[i]);
    }
    if (!wait_connects(&br, 2, 15000))
        dump_broker_log(&br, "fewer than two connections");
    assert_true(connect_count(&br) >= 2);
}

static void test_broker_link_share_group_instances_get_distinct_generated_client_ids(void **state)
{
    (void)state;
    need_broker();
    assert_true(broker_start(&br, "share-ids", "", false));
    struct itest_daemon *d[2];
    start_share_group_pair(d);
    char ids[MAX_IDS][128];
    size_t n = connected_ids(&br, ids, MAX_IDS);
    bool all_generated = true;
    for (size_t i = 0; i < n; i++) {
        fprintf(stderr, "  broker saw client id \"%s\"\n", ids[i]);
        all_generated = all_generated && strncmp(ids[i], "inklet-backend-", 15) == 0;
    }
    assert_true(all_generated);
    assert_int_equal(n, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_daemon_stop(d[i]), 0);
}

/* Neither instance takes the other's session over: no "already connected" in the broker log
 * and both stay ready for ~3 s. Today both are "inklet-backend" and kick each other off. */
static void test_broker_link_share_group_instances_keep_their_sessions(void **state)
{
    (void)state;
    need_broker();
    assert_true(broker_start(&br, "share-sessions", "", false));
    struct itest_daemon *d[2];
    start_share_group_pair(d);
    for (int i = 0; i < 2; i++)
        assert_int_equal(wait_broker_check(d[i], "ok", 15000), 200);
    bool always_ready = true;
    for (int64_t until = itest_now_ms() + itest_window(3000); itest_now_ms() < until;) {
        for (int i = 0; i < 2; i++) {
            char broker[32], database[32];
            long status = ready(d[i], broker, database);
            if (status != 200 || strcmp(broker, "ok") != 0) {
                fprintf(stderr, "  daemon %d: /health/ready %ld, broker \"%s\"\n", i, status,
                        broker);
                always_ready = false;
            }
        }
        itest_sleep_ms(200);
    }
    bool taken_over = file_has(br.log, "already connected");
    if (taken_over || !always_ready)
        dump_broker_log(&br, "a session was taken over");
    assert_false(taken_over);
    assert_true(always_ready);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_daemon_stop(d[i]), 0);
}

/* An explicit MQTT_CLIENT_ID is used as it is, also in a share group. */
static void test_broker_link_explicit_client_id_is_used_with_share_group(void **state)
{
    (void)state;
    need_broker();
    assert_true(broker_start(&br, "explicit-id", "", false));
    char url[80];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    struct itest_daemon *d = itest_daemon_start(
        (const char *const[]){url, "MQTT_SHARE_GROUP=g1", "MQTT_CLIENT_ID=explicit-id", NULL});
    assert_non_null(d);
    assert_true(wait_connects(&br, 1, 15000));
    char ids[MAX_IDS][128];
    size_t n = connected_ids(&br, ids, MAX_IDS);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "explicit-id");
    assert_int_equal(itest_daemon_stop(d), 0);
}

/* ---- check-config ------------------------------------------------------------------------- */

/* Runs `inkletd check-config` with env, asserts exit 0 and copies its MQTT_CLIENT_ID line
 * (without the newline) into line. */
static void check_config_client_id_line(const char *const env[], char *line, size_t len)
{
    struct itest_proc p;
    int st = itest_run_inkletd((const char *const[]){"check-config", NULL}, env, 20000, &p);
    if (st != 0)
        fprintf(stderr, "  stdout: %s\n  stderr: %s\n", p.out, p.err);
    assert_int_equal(st, 0);
    const char *at = strncmp(p.out, "MQTT_CLIENT_ID=", 15) == 0 ? p.out : NULL;
    if (!at) {
        at = strstr(p.out, "\nMQTT_CLIENT_ID=");
        at = at ? at + 1 : NULL;
    }
    if (!at)
        fprintf(stderr, "  no MQTT_CLIENT_ID line in:\n%s\n", p.out);
    assert_non_null(at);
    size_t n = strcspn(at, "\n");
    snprintf(line, len, "%.*s", (int)n, at);
    itest_proc_free(&p);
}

static void test_broker_link_check_config_share_group_client_id_is_unique_per_process(void **state)
{
    (void)state;
    char line[512];
    check_config_client_id_line(
        (const char *const[]){"MQTT_SHARE_GROUP=g1", "MQTT_CLIENT_ID", NULL}, line, sizeof line);
    fprintf(stderr, "  check-config: %s\n", line);
    assert_true(strncmp(line, "MQTT_CLIENT_ID=", 15) == 0);
    assert_non_null(strstr(line, "unique per process"));
}

static void test_broker_link_check_config_explicit_client_id_is_printed(void **state)
{
    (void)state;
    char line[512];
    check_config_client_id_line(
        (const char *const[]){"MQTT_SHARE_GROUP=g1", "MQTT_CLIENT_ID=explicit-id", NULL}, line,
        sizeof line);
    assert_string_equal(line, "MQTT_CLIENT_ID=explicit-id");
}

static void test_broker_link_check_config_default_client_id_without_share_group(void **state)
{
    (void)state;
    char line[512];
    check_config_client_id_line((const char *const[]){"MQTT_SHARE_GROUP", "MQTT_CLIENT_ID", NULL},
                                line, sizeof line);
    assert_string_equal(line, "MQTT_CLIENT_ID=inklet-backend");
}

/* ---- shutdown ----------------------------------------------------------------------------- */

static void on_burst_ack(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)mid;
    atomic_fetch_add((atomic_uint *)obj, 1);
}

/* Publishes BURST_MESSAGES heartbeats (QoS 1), each for a new thing, without waiting for each
 * PUBACK (the test-side client of mqtt_client.h waits for every one), then waits (bounded) until
 * the broker acknowledged them all. The first thing's name goes to first_thing. */
static bool publish_burst(const struct broker *b, char first_thing[64])
{
    atomic_uint acked = 0;
    char cid[64];
    snprintf(cid, sizeof cid, "bl-%s-%d-burst", itest.run_tag, (int)getpid());
    struct mosquitto *m = mosquitto_new(cid, true, &acked);
    if (!m)
        return false;
    bool ok = false;
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_publish_callback_set(m, on_burst_ack);
    if (mosquitto_connect(m, "127.0.0.1", (int)b->port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "  burst publisher could not connect to %s\n", b->url);
        mosquitto_destroy(m);
        return false;
    }
    for (unsigned i = 0; i < BURST_MESSAGES; i++) {
        char thing[64], topic[128], hw[37], payload[160];
        snprintf(thing, sizeof thing, "bl-%s-%d-%u", itest.run_tag, (int)getpid(), i);
        if (i == 0)
            snprintf(first_thing, 64, "%s", thing);
        itest_random_uuid(hw);
        snprintf(topic, sizeof topic, "inklet/dev/%s/up/heartbeat", thing);
        int len = snprintf(payload, sizeof payload,
                           "{\"hwId\":\"%s\",\"ts\":%lld,\"firmware\":\"1.0\",\"battery\":80}", hw,
                           (long long)time(NULL));
        int rc = mosquitto_publish(m, NULL, topic, len, payload, 1, false);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "  burst publish %u: %s\n", i, mosquitto_strerror(rc));
            goto out;
        }
    }
    for (int64_t until = itest_now_ms() + itest_scaled(30000);
         atomic_load(&acked) < BURST_MESSAGES && itest_now_ms() < until;)
        itest_sleep_ms(10);
    ok = atomic_load(&acked) == BURST_MESSAGES;
    if (!ok)
        fprintf(stderr, "  only %u of %u burst messages were acknowledged\n", atomic_load(&acked),
                BURST_MESSAGES);
out:
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    return ok;
}

/* SIGTERM while the ingest workers are busy creating devices and publishing their claim codes
 * on the broker handle: exit status 0 and no sanitizer report. */
static void test_broker_link_sigterm_during_ingest_burst_exits_0(void **state)
{
    (void)state;
    need_broker();
    /* the backend must get the whole burst: no cap on messages queued for one client */
    assert_true(broker_start(&br, "burst", "max_queued_messages 0\n", false));
    char url[80], rec_id[64], first[64];
    snprintf(url, sizeof url, "MQTT_URL=%s", br.url);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, NULL});
    assert_non_null(d);
    assert_int_equal(wait_broker_check(d, "ok", 15000), 200);
    /* the recorder (mqtt_client.h) shows when the workers have started publishing claim codes */
    snprintf(rec_id, sizeof rec_id, "bl-%s-%d-rec", itest.run_tag, (int)getpid());
    struct itest_mqtt *rec = itest_mqtt_new(br.url, rec_id);
    assert_non_null(rec);
    bool published = publish_burst(&br, first);
    json_t *code =
        published ? itest_mqtt_take(rec, first, "claim_code", itest_scaled(15000)) : NULL;
    bool claim_seen = code != NULL;
    json_decref(code);
    int status = itest_daemon_stop(d);
    itest_mqtt_free(rec);
    assert_true(published);
    assert_true(claim_seen);
    assert_int_equal(status, 0);
}

/* SIGTERM while the broker is unreachable (the link is in its reconnect back-off): exit 0 within
 * a few seconds. */
static void test_broker_link_sigterm_with_broker_unreachable_exits_0(void **state)
{
    (void)state;
    unsigned port = pick_port(); /* nothing listens there */
    assert_true(port != 0);
    char url[80];
    snprintf(url, sizeof url, "MQTT_URL=mqtt://127.0.0.1:%u", port);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, NULL});
    assert_non_null(d);
    itest_sleep_ms(itest_window(1500)); /* a few connection attempts have failed by now */
    assert_int_equal(wait_broker_check(d, "unavailable", 2000), 503);
    assert_int_equal(kill(d->pid, SIGTERM), 0);
    assert_int_equal(itest_daemon_wait_exit(d, 10000), 0);
}

int itest_group_broker_link(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_broker_link_refused_subscription_is_not_ready,
                                  test_teardown),
        cmocka_unit_test_teardown(test_broker_link_refused_subscription_logs_a_warning,
                                  test_teardown),
        cmocka_unit_test_teardown(test_broker_link_granted_subscription_is_ready, test_teardown),
        cmocka_unit_test_teardown(test_broker_link_granted_shared_subscription_is_ready,
                                  test_teardown),
        cmocka_unit_test_teardown(
            test_broker_link_shared_subscription_refused_without_share_acl_is_not_ready,
            test_teardown),
        cmocka_unit_test_teardown(
            test_broker_link_share_group_instances_get_distinct_generated_client_ids,
            test_teardown),
        cmocka_unit_test_teardown(test_broker_link_share_group_instances_keep_their_sessions,
                                  test_teardown),
        cmocka_unit_test_teardown(test_broker_link_explicit_client_id_is_used_with_share_group,
                                  test_teardown),
        cmocka_unit_test_teardown(
            test_broker_link_check_config_share_group_client_id_is_unique_per_process,
            test_teardown),
        cmocka_unit_test_teardown(test_broker_link_check_config_explicit_client_id_is_printed,
                                  test_teardown),
        cmocka_unit_test_teardown(
            test_broker_link_check_config_default_client_id_without_share_group, test_teardown),
        cmocka_unit_test_teardown(test_broker_link_sigterm_during_ingest_burst_exits_0,
                                  test_teardown),
        cmocka_unit_test_teardown(test_broker_link_sigterm_with_broker_unreachable_exits_0,
                                  test_teardown),
    };
    return cmocka_run_group_tests_name("broker_link", tests, group_setup, NULL);
}
