/* Contract §5 / issue: the broker link over TLS with a client certificate (mqtts://, as AWS IoT
 * Core is reached in production). The test makes its own CA, server and client certificates
 * with the openssl command and runs its own Mosquitto with a TLS listener that requires a
 * client certificate. */
#include "harness.h"
#include "mqtt_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[200];
static unsigned tls_port;

static unsigned pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return itest_sh(cmd, itest_scaled(30000));
}

/* CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
static bool make_certificates(void)
{
    return sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
              "-days 2 -subj /CN=inklet-itest-ca 2>/dev/null",
              dir) == 0 &&
           sh("cd %s && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
              "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
              "-subj /CN=127.0.0.1 2>/dev/null && openssl x509 -req -in server.csr -CA ca.crt "
              "-CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null",
              dir) == 0 &&
           sh("cd %s && openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
              "-subj /CN=inklet-backend 2>/dev/null && openssl x509 -req -in client.csr -CA ca.crt "
              "-CAkey ca.key -CAcreateserial -out client.crt -days 2 2>/dev/null",
              dir) == 0;
}

static int tls_setup(void **state)
{
    (void)state;
    if (itest_sh("command -v openssl >/dev/null && { command -v mosquitto || test -x "
                 "/usr/sbin/mosquitto; } >/dev/null",
                 5000) != 0) {
        fprintf(stderr, "inklet-itest: openssl or mosquitto missing; the mqtts test is skipped\n");
        dir[0] = '\0';
        return 0;
    }
    snprintf(dir, sizeof dir, "%s/mqtts", itest.tmpdir);
    tls_port = pick_port();
    if (sh("mkdir -p %s", dir) != 0 || !tls_port || !make_certificates())
        return -1;
    FILE *f;
    char path[300];
    snprintf(path, sizeof path, "%s/mosquitto.conf", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(
        f,
        "listener %u 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
        "require_certificate true\npid_file %s/mosquitto.pid\nlog_dest file %s/mosquitto.log\n%s",
        tls_port, dir, dir, dir, dir, dir, geteuid() == 0 ? "user root\n" : "");
    fclose(f);
    if (sh("PATH=$PATH:/usr/sbin mosquitto -c %s -d", path) != 0)
        return -1;
    /* wait until the listener accepts */
    for (int i = 0; i < 100; i++) {
        if (sh("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%u' 2>/dev/null", tls_port) == 0)
            return 0;
        itest_sleep_ms(50);
    }
    return -1;
}

static int tls_teardown(void **state)
{
    (void)state;
    if (dir[0])
        sh("kill $(cat %s/mosquitto.pid) 2>/dev/null; true", dir);
    return 0;
}

/* The readiness status once the broker check says `want_broker` and the database check (not
 * under test here, but under valgrind its ping can lag past its 1 s staleness) says ok; -1 when
 * that does not happen within `ms`. */
static long ready_status(const struct itest_daemon *d, const char *want_broker, unsigned ms)
{
    int64_t until = itest_now_ms() + itest_scaled(ms);
    long status;
    for (;;) {
        struct itest_resp r;
        itest_get(d, "/health/ready", &r);
        status = r.status;
        json_t *checks = r.json ? json_object_get(r.json, "checks") : NULL;
        const char *broker = json_string_value(json_object_get(checks, "broker"));
        const char *database = json_string_value(json_object_get(checks, "database"));
        bool done =
            broker && strcmp(broker, want_broker) == 0 && database && strcmp(database, "ok") == 0;
        itest_resp_free(&r);
        if (done || itest_now_ms() > until)
            return done ? status : -1;
        itest_sleep_ms(100);
    }
}

static void test_mqtts_with_client_certificate_connects_and_ingests(void **state)
{
    (void)state;
    if (!dir[0])
        skip();
    char url[64], ca[260], cert[260], key[260], id[96];
    snprintf(url, sizeof url, "MQTT_URL=mqtts://127.0.0.1:%u", tls_port);
    snprintf(ca, sizeof ca, "MQTT_CA_FILE=%s/ca.crt", dir);
    snprintf(cert, sizeof cert, "MQTT_CERT_FILE=%s/client.crt", dir);
    snprintf(key, sizeof key, "MQTT_KEY_FILE=%s/client.key", dir);
    snprintf(id, sizeof id, "MQTT_CLIENT_ID=itest-%s-tls", itest.run_tag);
    struct itest_daemon *d =
        itest_daemon_start((const char *const[]){url, ca, cert, key, id, NULL});
    assert_non_null(d);
    assert_int_equal(ready_status(d, "ok", 15000), 200);

    /* a display speaking TLS with its own certificate reaches the backend through the broker */
    char hw[37];
    FILE *u = fopen("/proc/sys/kernel/random/uuid", "r");
    assert_non_null(u);
    assert_non_null(fgets(hw, sizeof hw, u));
    fclose(u);
    assert_int_equal(sh("PATH=$PATH:/usr/sbin mosquitto_pub -h 127.0.0.1 -p %u --cafile %s/ca.crt "
                        "--cert %s/client.crt --key %s/client.key -q 1 -t "
                        "inklet/dev/tls-%.8s/up/heartbeat -m '{\"hwId\":\"%s\",\"ts\":1,"
                        "\"firmware\":\"tls-1\",\"battery\":50}'",
                        tls_port, dir, dir, dir, hw, hw),
                     0);
    bool seen = false;
    for (int64_t until = itest_now_ms() + itest_scaled(5000); !seen && itest_now_ms() < until;) {
        struct itest_resp r;
        itest_get(d, "/metrics", &r);
        seen = r.body && strstr(r.body, "\ninklet_mqtt_messages_processed_total 1\n");
        itest_resp_free(&r);
        if (!seen)
            itest_sleep_ms(50);
    }
    assert_true(seen);
    assert_int_equal(itest_daemon_stop(d), 0);
}

static void test_mqtts_without_client_certificate_is_refused(void **state)
{
    (void)state;
    if (!dir[0])
        skip();
    char url[64], ca[260], id[96];
    snprintf(url, sizeof url, "MQTT_URL=mqtts://127.0.0.1:%u", tls_port);
    snprintf(ca, sizeof ca, "MQTT_CA_FILE=%s/ca.crt", dir);
    snprintf(id, sizeof id, "MQTT_CLIENT_ID=itest-%s-tls-nocert", itest.run_tag);
    struct itest_daemon *d = itest_daemon_start((const char *const[]){url, ca, id, NULL});
    assert_non_null(d); /* HTTP serves although the broker refuses us */
    itest_sleep_ms(itest_scaled(1500));
    assert_int_equal(ready_status(d, "unavailable", 2000), 503);
    struct itest_resp r;
    itest_get(d, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    assert_int_equal(itest_daemon_stop(d), 0);
}

int itest_group_mqtts(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_mqtts_with_client_certificate_connects_and_ingests,
                                  itest_teardown),
        cmocka_unit_test_teardown(test_mqtts_without_client_certificate_is_refused, itest_teardown),
    };
    return cmocka_run_group_tests_name("mqtts", tests, tls_setup, tls_teardown);
}
