/* Contract §4/§5: devices, pairing (claim code, NFC), commands, state and the MQTT link, all
 * through the real inkletd, the real broker and real MQTT clients (the test-side client of
 * mqtt_client.c as a fake display, and the real build/inklet-sim process). */
#include "harness.h"
#include "itest_devices.h"
#include "mqtt_client.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
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
#define CODE_ALPHABET "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
#define CODE_RACERS 8
#define MAX_SIMS 8

static const char *const DEVICE_KEYS[] = {
    "id",      "hwId",    "thingName", "firmware", "battery",        "online",   "lastSeenAt",
    "ownerId", "boundAt", "claimCode", "state",    "stateUpdatedAt", "nickname", NULL};
static const char *const COMMAND_KEYS[] = {"id",        "deviceId",  "kind",   "payload",
                                           "status",    "createdAt", "sentAt", "deliveredAt",
                                           "expiresAt", NULL};
static const char *const STATE_KEYS[] = {"deviceId", "state",      "stateUpdatedAt",
                                         "online",   "lastSeenAt", NULL};

/* A syntactically valid UUID that names no device. */
static const char *const NO_SUCH_ID = "01900000-0000-7000-8000-000000000000";

/* The recorder and fake display shared by the tests of a group. */
static struct itest_mqtt *MQ;
/* set while a test has the broker stopped: the teardown starts it again */
static bool broker_stopped;

/* every wait for an MQTT message or an asynchronous effect */
static unsigned msg_wait(void)
{
    return itest_scaled(10000);
}

/* ---- small helpers ------------------------------------------------------------------------ */

static void random_code(char out[7])
{
    unsigned char b[6];
    assert_int_equal(RAND_bytes(b, sizeof b), 1);
    for (int i = 0; i < 6; i++)
        out[i] = CODE_ALPHABET[b[i] % 31];
    out[6] = '\0';
}

static bool code_well_formed(const char *s)
{
    if (strlen(s) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (!strchr(CODE_ALPHABET, s[i]))
            return false;
    return true;
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

/* Asserts `status` with the contract's error shape, whatever the code. */
static void expect_error_shape(const struct itest_resp *r, long status)
{
    itest_expect_status(r, status);
    itest_expect_keys(r->json, (const char *const[]){"message", "code", NULL});
    assert_true(strlen(itest_str(r->json, "message")) > 0);
    assert_true(strlen(itest_str(r->json, "code")) > 0);
}

static void call_expect_error(const char *method, const char *path, const char *token,
                              const char *body, long status, const char *code)
{
    struct itest_resp r;
    itest_call(D, method, path, token, body, &r);
    if (status != r.status)
        fprintf(stderr, "  %s %s %s\n", method, path, body ? body : "");
    if (code)
        itest_expect_error(&r, status, code);
    else
        expect_error_shape(&r, status);
    itest_resp_free(&r);
}

/* ---- NFC ---------------------------------------------------------------------------------- */

static void hex_key(const char *hex, unsigned char key[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        key[i] = (unsigned char)v;
    }
}

/* The first 16 lower-case hex characters of HMAC-SHA256(key, msg). */
static void hmac16(const void *key, size_t key_len, const char *msg, char out[17])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), mac, &len));
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

static void nfc_sig(const char *hw, char out[17])
{
    unsigned char key[32];
    hex_key(ITEST_FACTORY_SECRET, key);
    hmac16(key, sizeof key, hw, out);
}

static void nfc_payload(const char *hw, char out[80])
{
    char sig[17];
    nfc_sig(hw, sig);
    snprintf(out, 80, "inklet:1:%s:%s", hw, sig);
}

/* ---- fake displays (the test-side MQTT client) -------------------------------------------- */

struct fdev {
    char thing[96];
    char hw[37];
    char code[8]; /* the last claim code received */
    char id[37];  /* the device id once bound */
};

static void fdev_new(struct fdev *f)
{
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1) + 1;
    memset(f, 0, sizeof *f);
    itest_random_uuid(f->hw);
    snprintf(f->thing, sizeof f->thing, "itest-%s-%d-%u-%.8s", itest.run_tag, (int)getpid(), n,
             f->hw);
}

/* Takes the next claim_code command for f and checks its shape. */
static void fdev_take_code(struct fdev *f)
{
    json_t *cmd = itest_mqtt_take(MQ, f->thing, "claim_code", msg_wait());
    if (!cmd)
        fprintf(stderr, "  no claim_code for %s\n", f->thing);
    assert_non_null(cmd);
    itest_expect_keys(cmd, (const char *const[]){"kind", "id", "code", "expiresAt", NULL});
    itest_uuid_v7(cmd, "id");
    const char *code = itest_str(cmd, "code");
    assert_true(code_well_formed(code));
    long long exp = itest_timestamp(cmd, "expiresAt");
    assert_true(exp > (long long)time(NULL) - 5);
    snprintf(f->code, sizeof f->code, "%s", code);
    json_decref(cmd);
}

/* A first heartbeat: the backend creates the device and sends it a claim code. */
static void fdev_online(struct fdev *f)
{
    assert_true(itest_mqtt_heartbeat(MQ, f->thing, f->hw, "fake-1.0.0", 80));
    fdev_take_code(f);
}

/* Asserts the documented device object for a device `owner` owns. */
static void expect_owned_device(const json_t *dev, const struct fdev *f,
                                const struct itest_user *owner)
{
    itest_expect_keys(dev, DEVICE_KEYS);
    itest_uuid_v7(dev, "id");
    assert_string_equal(itest_str(dev, "hwId"), f->hw);
    assert_string_equal(itest_str(dev, "thingName"), f->thing);
    assert_string_equal(itest_str(dev, "ownerId"), owner->id);
    assert_true(json_is_null(json_object_get(dev, "claimCode")));
    assert_true(json_is_boolean(json_object_get(dev, "online")));
    long long bound = itest_timestamp(dev, "boundAt");
    assert_true(llabs(bound - (long long)time(NULL)) < 300);
    json_t *b = json_object_get(dev, "battery");
    assert_true(json_is_null(b) || json_is_integer(b));
    json_t *fw = json_object_get(dev, "firmware");
    assert_true(json_is_null(fw) || json_is_string(fw));
    json_t *st = json_object_get(dev, "state");
    assert_true(json_is_null(st) || json_is_string(st));
    json_t *nick = json_object_get(dev, "nickname");
    assert_true(json_is_null(nick) || json_is_string(nick));
}

/* Binds by claim code (any route/field), asserts 200 and returns the device (new ref). */
static json_t *bind_ok(const char *path, const char *field, const char *value,
                       const struct itest_user *u)
{
    struct itest_resp r;
    itest_callf(D, "POST", path, u->s.access, &r, "{s:s}", field, value);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_header(&r, "Content-Type"), "application/json; charset=utf-8");
    json_t *dev = json_incref(r.json);
    itest_resp_free(&r);
    return dev;
}

/* Takes the `bound` command for f and checks its shape. */
static void fdev_take_bound(const struct fdev *f)
{
    json_t *cmd = itest_mqtt_take(MQ, f->thing, "bound", msg_wait());
    if (!cmd)
        fprintf(stderr, "  no bound command for %s\n", f->thing);
    assert_non_null(cmd);
    itest_expect_keys(cmd, (const char *const[]){"kind", "id", NULL});
    itest_uuid_v7(cmd, "id");
    json_decref(cmd);
}

/* Online, bound to u by its claim code, `bound` received. */
static void fdev_bind(struct fdev *f, const struct itest_user *u)
{
    fdev_online(f);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", f->code, u);
    expect_owned_device(dev, f, u);
    snprintf(f->id, sizeof f->id, "%s", itest_str(dev, "id"));
    json_decref(dev);
    fdev_take_bound(f);
}

/* A request_claim from a bound device answers already_bound; once that arrives every command
 * the backend published for the device before it has arrived too (one ordered link). */
static void fdev_sync_bound(const struct fdev *f)
{
    assert_true(itest_mqtt_request_claim(MQ, f->thing, f->hw));
    json_t *cmd = itest_mqtt_take(MQ, f->thing, "already_bound", msg_wait());
    assert_non_null(cmd);
    json_decref(cmd);
}

static char *devpath(const char *id, const char *suffix)
{
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "/api/devices/%s%s", id, suffix ? suffix : "");
    return buf;
}

/* GET /api/devices/{id} as u; asserts 200 and returns the device (new ref). */
static json_t *get_device(const struct itest_user *u, const char *id)
{
    struct itest_resp r;
    itest_call(D, "GET", devpath(id, NULL), u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    json_t *dev = json_incref(r.json);
    itest_resp_free(&r);
    assert_non_null(dev);
    return dev;
}

typedef bool (*dev_pred)(const json_t *dev, const void *arg);

/* Polls the device until pred holds or the wait is over; returns the last one seen. */
static json_t *poll_device(const struct itest_user *u, const char *id, dev_pred pred,
                           const void *arg)
{
    int64_t deadline = itest_now_ms() + msg_wait();
    for (;;) {
        json_t *dev = get_device(u, id);
        if (pred(dev, arg) || itest_now_ms() > deadline)
            return dev;
        json_decref(dev);
        itest_sleep_ms(20);
    }
}

static bool firmware_is(const json_t *dev, const void *arg)
{
    const char *fw = json_string_value(json_object_get(dev, "firmware"));
    return fw && strcmp(fw, arg) == 0;
}

static bool battery_is(const json_t *dev, const void *arg)
{
    json_t *b = json_object_get(dev, "battery");
    return json_is_integer(b) && json_integer_value(b) == *(const int *)arg;
}

static bool online_is(const json_t *dev, const void *arg)
{
    return json_is_true(json_object_get(dev, "online")) == *(const bool *)arg;
}

/* GET .../commands (query may be NULL); asserts 200 and returns the array (new ref). */
static json_t *get_commands(const struct itest_user *u, const char *id, const char *query)
{
    struct itest_resp r;
    char path[256];
    snprintf(path, sizeof path, "/api/devices/%s/commands%s%s", id, query ? "?" : "",
             query ? query : "");
    itest_call(D, "GET", path, u->s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_array(r.json));
    json_t *list = json_incref(r.json);
    itest_resp_free(&r);
    return list;
}

static json_t *find_command(const json_t *list, const char *cmd_id)
{
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        if (id && strcmp(id, cmd_id) == 0)
            return c;
    }
    return NULL;
}

/* Polls the command log until cmd_id has `status`; returns that entry (new ref) or NULL. */
static json_t *poll_command_status(const struct itest_user *u, const char *dev_id,
                                   const char *cmd_id, const char *status, unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    const char *last = "(absent)";
    char last_buf[16];
    for (;;) {
        json_t *list = get_commands(u, dev_id, "limit=100");
        json_t *c = find_command(list, cmd_id);
        const char *st = c ? json_string_value(json_object_get(c, "status")) : NULL;
        if (st && strcmp(st, status) == 0) {
            json_incref(c);
            json_decref(list);
            return c;
        }
        snprintf(last_buf, sizeof last_buf, "%s", st ? st : "(absent)");
        last = last_buf;
        json_decref(list);
        if (itest_now_ms() > deadline) {
            fprintf(stderr, "  command %s is %s, not %s\n", cmd_id, last, status);
            return NULL;
        }
        itest_sleep_ms(20);
    }
}

/* POST a text command; asserts 202 and the command object; returns its id in out. */
static void send_text_ok(const struct itest_user *u, const struct fdev *f, const char *text,
                         char out[37])
{
    struct itest_resp r;
    itest_callf(D, "POST", devpath(f->id, "/commands"), u->s.access, &r, "{s:s,s:s}", "kind",
                "text", "text", text);
    itest_expect_status(&r, 202);
    itest_expect_keys(r.json, COMMAND_KEYS);
    snprintf(out, 37, "%s", itest_uuid_v7(r.json, "id"));
    assert_string_equal(itest_str(r.json, "deviceId"), f->id);
    assert_string_equal(itest_str(r.json, "kind"), "text");
    json_t *payload = json_object_get(r.json, "payload");
    itest_expect_keys(payload, (const char *const[]){"text", NULL});
    assert_string_equal(itest_str(payload, "text"), text);
    const char *status = itest_str(r.json, "status");
    assert_true(strcmp(status, "queued") == 0 || strcmp(status, "sent") == 0);
    long long created = itest_timestamp(r.json, "createdAt");
    assert_true(llabs(created - (long long)time(NULL)) < 300);
    assert_true(json_is_null(json_object_get(r.json, "deliveredAt")));
    /* COMMAND_TTL is the default day in these groups */
    long long expires = itest_timestamp(r.json, "expiresAt");
    assert_true(llabs(expires - created - 86400) <= 2);
    itest_resp_free(&r);
}

/* The device side of a command: the message arrives on down/cmd with the same id and text. */
static void expect_text_received(const struct fdev *f, const char *cmd_id, const char *text)
{
    json_t *cmd = itest_mqtt_find_id(MQ, f->thing, cmd_id, msg_wait());
    if (!cmd)
        fprintf(stderr, "  command %s did not reach %s\n", cmd_id, f->thing);
    assert_non_null(cmd);
    itest_expect_keys(cmd, (const char *const[]){"kind", "id", "text", NULL});
    assert_string_equal(itest_str(cmd, "kind"), "text");
    assert_string_equal(itest_str(cmd, "text"), text);
    json_decref(cmd);
}

static void heartbeat(const struct fdev *f);

static bool publish_state(const struct fdev *f, json_t *state)
{
    return itest_mqtt_publish_up(MQ, f->thing, "state", state);
}

/* ---- the simulator process ---------------------------------------------------------------- */

struct sim {
    pid_t pid;
    char out[192];
    char thing[96];
    char hw[37];
};

static pid_t sims[MAX_SIMS];

static const char *sim_path(void)
{
    static char path[512];
    const char *env = getenv("INKLET_ITEST_SIM");
    if (env && *env)
        return env;
    const char *slash = strrchr(itest.inkletd, '/');
    if (!slash)
        snprintf(path, sizeof path, "inklet-sim");
    else
        snprintf(path, sizeof path, "%.*s/inklet-sim", (int)(slash - itest.inkletd), itest.inkletd);
    return path;
}

static void sim_forget(pid_t pid)
{
    for (int i = 0; i < MAX_SIMS; i++)
        if (sims[i] == pid)
            sims[i] = 0;
}

static void sim_kill(pid_t pid)
{
    kill(pid, SIGTERM);
    if (itest_wait_pid(pid, 5000) < 0)
        fprintf(stderr, "  inklet-sim %d had to be killed\n", (int)pid);
}

/* Starts inklet-sim as a display with a fresh hwId and thing name, heartbeat every second. */
static void sim_start_with(struct sim *s, const char *const extra[]);

static void sim_start(struct sim *s)
{
    sim_start_with(s, NULL);
}

/* The simulator with extra arguments (NULL-terminated; may be NULL). */
static void sim_start_with(struct sim *s, const char *const extra[])
{
    static unsigned seq;
    memset(s, 0, sizeof *s);
    itest_random_uuid(s->hw);
    snprintf(s->thing, sizeof s->thing, "itest-sim-%s-%d-%.8s", itest.run_tag, (int)getpid(),
             s->hw);
    snprintf(s->out, sizeof s->out, "%s/sim-%u.out", itest.tmpdir, ++seq);
    const char *path = sim_path();
    const char *argv[16] = {path,
                            "--broker",
                            itest.mqtt_url,
                            "--hw-id",
                            s->hw,
                            "--thing-name",
                            s->thing,
                            "--factory-secret",
                            ITEST_FACTORY_SECRET,
                            "--heartbeat-seconds",
                            "1",
                            NULL,
                            NULL,
                            NULL,
                            NULL,
                            NULL};
    for (size_t i = 0, n = 11; extra && extra[i] && n < ITEST_ARRAY_LEN(argv) - 1; i++)
        argv[n++] = extra[i];
    pid_t pid = itest_spawn_program(argv, NULL, s->out, s->out);
    assert_true(pid > 0);
    s->pid = pid;
    for (int i = 0; i < MAX_SIMS; i++) {
        if (!sims[i]) {
            sims[i] = pid;
            return;
        }
    }
    sim_kill(pid);
    fail_msg("too many simulators");
}

static void sim_stop(struct sim *s)
{
    if (s->pid > 0) {
        sim_forget(s->pid);
        sim_kill(s->pid);
        s->pid = 0;
    }
}

/* Waits for `needle` in the simulator's output; copies what follows it (to the end of the line)
 * into after (may be NULL). */
/* Waits for `needle` to appear in the simulator's output after the first `mark`. */
static bool sim_wait_output_after(const struct sim *s, const char *mark, const char *needle,
                                  unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        char *text = itest_read_file(s->out, NULL);
        char *m = strstr(text, mark);
        bool found = m && strstr(m + strlen(mark), needle);
        if (found || itest_now_ms() > deadline) {
            if (!found)
                fprintf(stderr, "  inklet-sim never printed \"%s\" after \"%s\":\n%s\n", needle,
                        mark, text);
            free(text);
            return found;
        }
        free(text);
        itest_sleep_ms(20);
    }
}

static bool sim_wait_output(const struct sim *s, const char *needle, char *after, size_t n)
{
    int64_t deadline = itest_now_ms() + msg_wait();
    for (;;) {
        char *text = itest_read_file(s->out, NULL);
        char *hit = strstr(text, needle);
        if (hit) {
            if (after) {
                const char *v = hit + strlen(needle);
                size_t l = strcspn(v, "\n");
                snprintf(after, n, "%.*s", (int)l, v);
            }
            free(text);
            return true;
        }
        bool late = itest_now_ms() > deadline;
        if (late) {
            fprintf(stderr, "  inklet-sim never printed \"%s\"; its output:\n%s\n", needle, text);
            free(text);
            return false;
        }
        free(text);
        itest_sleep_ms(20);
    }
}

/* ---- broker control ----------------------------------------------------------------------- */

static const char *env_or_null(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void broker_start_again(void)
{
    const char *start = env_or_null("INKLET_ITEST_MQTT_START");
    if (!broker_stopped || !start)
        return;
    int st = itest_sh(start, 60000);
    if (st != 0)
        fprintf(stderr, "inklet-itest: INKLET_ITEST_MQTT_START exited with %d\n", st);
    broker_stopped = false;
    if (MQ && !itest_mqtt_wait_ready(MQ, itest_scaled(15000)))
        fprintf(stderr, "inklet-itest: the test MQTT client did not reconnect\n");
}

static int dev_teardown(void **state)
{
    for (int i = 0; i < MAX_SIMS; i++) {
        if (sims[i]) {
            sim_kill(sims[i]);
            sims[i] = 0;
        }
    }
    broker_start_again();
    return itest_teardown(state);
}

/* Polls GET /health/ready until it answers `status`; returns the last response (caller frees). */
static void poll_ready(long status, unsigned timeout_ms, struct itest_resp *r)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        itest_get(D, "/health/ready", r);
        if (r->status == status || itest_now_ms() > deadline)
            return;
        itest_resp_free(r);
        itest_sleep_ms(50);
    }
}

/* ---- metrics ------------------------------------------------------------------------------ */

static unsigned long long metric(const char *name)
{
    return itest_metric(D, name);
}

/* ---- several instances ---------------------------------------------------------------------- */

/* Two instances in the share group `name`, each with its own client id, both subscribed
 * (/health/ready reports the broker). */
static void start_share_group(struct itest_daemon *d[2], const char *name)
{
    char group[64];
    snprintf(group, sizeof group, "MQTT_SHARE_GROUP=itest%s", name);
    for (int i = 0; i < 2; i++) {
        char id[96];
        snprintf(id, sizeof id, "MQTT_CLIENT_ID=itest-%s-%d-%s-%d", itest.run_tag, (int)getpid(),
                 name, i);
        d[i] = itest_daemon_start((const char *const[]){id, group, NULL});
        assert_non_null(d[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_wait_ready(d[i], 10000), 200);
}

static void test_shared_subscription_processes_each_message_once(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    start_share_group(d, "share");
    unsigned long long before[2];
    for (int i = 0; i < 2; i++)
        before[i] = itest_metric(d[i], "inklet_mqtt_messages_processed_total");
    char hw[37], thing[64];
    itest_random_uuid(hw);
    snprintf(thing, sizeof thing, "share-%.8s", hw);
    const unsigned n = 20;
    for (unsigned k = 0; k < n; k++)
        assert_true(itest_mqtt_heartbeat(MQ, thing, hw, "1.0.0", (int)k));
    unsigned long long got[2] = {0, 0};
    int64_t until = itest_now_ms() + itest_scaled(10000);
    while (got[0] + got[1] < n && itest_now_ms() < until) {
        itest_sleep_ms(50);
        for (int i = 0; i < 2; i++)
            got[i] = itest_metric(d[i], "inklet_mqtt_messages_processed_total") - before[i];
    }
    itest_sleep_ms(300); /* a duplicate would show up now */
    for (int i = 0; i < 2; i++)
        got[i] = itest_metric(d[i], "inklet_mqtt_messages_processed_total") - before[i];
    if (got[0] + got[1] != n)
        fail_msg("the group processed %llu + %llu messages of %u", got[0], got[1], n);
    /* the broker spreads the stream over the group */
    assert_true(got[0] > 0 && got[1] > 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_daemon_stop(d[i]), 0);
}

/* ---- pairing by code ---------------------------------------------------------------------- */

static void test_pair_by_code_with_simulator(void **state)
{
    (void)state;
    if (access(sim_path(), X_OK) != 0) {
        fprintf(stderr, "  %s is not executable; set INKLET_ITEST_SIM\n", sim_path());
        skip();
    }
    struct itest_user u = {0};
    itest_register(D, &u);
    struct sim s;
    sim_start(&s);
    char line[64];
    assert_true(sim_wait_output(&s, "CLAIM CODE: ", line, sizeof line));
    char code[7];
    snprintf(code, sizeof code, "%.6s", line);
    assert_true(code_well_formed(code));
    /* the recorder saw the same code on the documented topic */
    json_t *cmd = itest_mqtt_take(MQ, s.thing, "claim_code", msg_wait());
    assert_non_null(cmd);
    assert_string_equal(itest_str(cmd, "code"), code);
    json_decref(cmd);

    char lower[7];
    for (int i = 0; i < 7; i++)
        lower[i] = (char)(code[i] >= 'A' && code[i] <= 'Z' ? code[i] - 'A' + 'a' : code[i]);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", lower, &u);
    struct fdev f = {0};
    snprintf(f.thing, sizeof f.thing, "%s", s.thing);
    snprintf(f.hw, sizeof f.hw, "%s", s.hw);
    expect_owned_device(dev, &f, &u);
    assert_true(json_is_true(json_object_get(dev, "online")));
    assert_string_equal(itest_str(dev, "firmware"), "sim-1.0.0");
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 100);
    assert_true(json_is_null(json_object_get(dev, "nickname")));
    long long seen = itest_timestamp(dev, "lastSeenAt");
    assert_true(llabs(seen - (long long)time(NULL)) < 60);
    snprintf(f.id, sizeof f.id, "%s", itest_str(dev, "id"));
    json_decref(dev);

    /* the display hears about it */
    assert_true(sim_wait_output(&s, "BOUND", NULL, 0));
    fdev_take_bound(&f);
    /* and the simulator's state report (lastCmd = the bound command) marks it delivered */
    json_t *list = get_commands(&u, f.id, NULL);
    assert_true(json_array_size(list) >= 1);
    const char *bound_id = itest_str(json_array_get(list, 0), "id");
    json_t *c = poll_command_status(&u, f.id, bound_id, "delivered", msg_wait());
    assert_non_null(c);
    json_decref(c);
    json_decref(list);

    /* the device is in the owner's list */
    struct itest_resp r;
    itest_call(D, "GET", "/api/devices", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(itest_str(json_array_get(r.json, 0), "id"), f.id);
    itest_resp_free(&r);
    sim_stop(&s);
}

static void test_bind_route_accepts_claimCode_and_code(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    static const char *const fields[] = {"claimCode", "code"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(fields); i++) {
        struct fdev f;
        fdev_new(&f);
        fdev_online(&f);
        json_t *dev = bind_ok("/api/devices/bind", fields[i], f.code, &u);
        expect_owned_device(dev, &f, &u);
        json_decref(dev);
        fdev_take_bound(&f);
    }
}

static void test_bind_code_unknown_is_404(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char code[7];
    random_code(code);
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/code", u.s.access, &r, "{s:s}", "claimCode", code);
    itest_expect_error(&r, 404, "claim_code_not_found");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/api/devices/bind", u.s.access, &r, "{s:s}", "claimCode", code);
    itest_expect_error(&r, 404, "claim_code_not_found");
    itest_resp_free(&r);
}

static void test_bind_code_malformed_is_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    static const char *const bad[] = {"ABCDE",  "ABCDEFG",       "ABCDE0", "ABCDEO",
                                      "ABCDEI", "ABCDEL",        "ABCDE1", "",
                                      "ABC DE", "ABCDE\xc3\x89", "AB-CDE", " ABCDE"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        struct itest_resp r;
        itest_callf(D, "POST", "/api/devices/bind/code", u.s.access, &r, "{s:s}", "claimCode",
                    bad[i]);
        if (r.status != 400)
            fprintf(stderr, "  code \"%s\"\n", bad[i]);
        itest_expect_error(&r, 400, "invalid_claim_code");
        itest_resp_free(&r);
        itest_callf(D, "POST", "/api/devices/bind", u.s.access, &r, "{s:s}", "code", bad[i]);
        itest_expect_error(&r, 400, "invalid_claim_code");
        itest_resp_free(&r);
    }
    /* a number or a missing field is no code either */
    call_expect_error("POST", "/api/devices/bind/code", u.s.access, "{\"claimCode\":123456}", 400,
                      NULL);
    call_expect_error("POST", "/api/devices/bind/code", u.s.access, "{}", 400,
                      "invalid_claim_code");
    call_expect_error("POST", "/api/devices/bind", u.s.access, "{}", 400, NULL);
}

static void test_bind_code_is_single_use(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", f.code, &a);
    json_decref(dev);
    const struct itest_user *again[] = {&b, &a};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(again); i++) {
        struct itest_resp r;
        itest_callf(D, "POST", "/api/devices/bind/code", again[i]->s.access, &r, "{s:s}",
                    "claimCode", f.code);
        if (r.status != 404 && r.status != 409)
            fprintf(stderr, "  a used code answered %ld\n", r.status);
        assert_true(r.status == 404 || r.status == 409);
        expect_error_shape(&r, r.status);
        itest_resp_free(&r);
    }
}

/* ---- races -------------------------------------------------------------------------------- */

struct racer {
    pthread_barrier_t *barrier;
    const char *path, *field, *value, *token;
    long status;
    char owner[40];
};

static void *race_bind(void *arg)
{
    struct racer *rc = arg;
    pthread_barrier_wait(rc->barrier);
    struct itest_resp r;
    itest_callf(D, "POST", rc->path, rc->token, &r, "{s:s}", rc->field, rc->value);
    rc->status = r.status;
    const char *owner = json_string_value(json_object_get(r.json, "ownerId"));
    snprintf(rc->owner, sizeof rc->owner, "%s", owner ? owner : "");
    itest_resp_free(&r);
    return NULL;
}

/* Runs n racers for one bind; returns the index of the single winner (asserts there is one). */
static size_t race(size_t n, struct itest_user *users, const char *path, const char *field,
                   const char *value)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    struct racer rc[CODE_RACERS];
    pthread_t th[CODE_RACERS];
    assert_true(n <= CODE_RACERS);
    for (size_t i = 0; i < n; i++) {
        rc[i] = (struct racer){.barrier = &barrier,
                               .path = path,
                               .field = field,
                               .value = value,
                               .token = users[i].s.access};
        assert_int_equal(pthread_create(&th[i], NULL, race_bind, &rc[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    size_t winners = 0, winner = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc[i].status == 200) {
            winners++;
            winner = i;
            assert_string_equal(rc[i].owner, users[i].id);
        } else if (rc[i].status < 400 || rc[i].status >= 500) {
            fprintf(stderr, "  racer %zu got %ld\n", i, rc[i].status);
            fail();
        }
    }
    if (winners != 1)
        fprintf(stderr, "  %zu winners\n", winners);
    assert_int_equal(winners, 1);
    return winner;
}

static void test_code_race_has_exactly_one_winner(void **state)
{
    (void)state;
    struct itest_user users[CODE_RACERS];
    memset(users, 0, sizeof users);
    for (size_t i = 0; i < CODE_RACERS; i++)
        itest_register(D, &users[i]);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    size_t w = race(CODE_RACERS, users, "/api/devices/bind/code", "claimCode", f.code);
    struct itest_resp r;
    itest_call(D, "GET", "/api/devices", users[w].s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 1);
    json_t *dev = json_array_get(r.json, 0);
    assert_string_equal(itest_str(dev, "ownerId"), users[w].id);
    snprintf(f.id, sizeof f.id, "%s", itest_str(dev, "id"));
    itest_resp_free(&r);
    for (size_t i = 0; i < CODE_RACERS; i++) {
        if (i == w)
            continue;
        call_expect_error("GET", devpath(f.id, NULL), users[i].s.access, NULL, 403, NULL);
    }
    /* the display was told once */
    fdev_sync_bound(&f);
    assert_int_equal(itest_mqtt_count(MQ, f.thing, "bound"), 1);
}

static void test_nfc_race_has_exactly_one_winner(void **state)
{
    (void)state;
    struct itest_user users[2];
    memset(users, 0, sizeof users);
    itest_register(D, &users[0]);
    itest_register(D, &users[1]);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char payload[80];
    nfc_payload(f.hw, payload);
    size_t w = race(2, users, "/api/devices/bind/nfc", "payload", payload);
    struct itest_resp r;
    itest_call(D, "GET", "/api/devices", users[1 - w].s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 0);
    itest_resp_free(&r);
    itest_call(D, "GET", "/api/devices", users[w].s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 1);
    assert_string_equal(itest_str(json_array_get(r.json, 0), "ownerId"), users[w].id);
    itest_resp_free(&r);
}

/* ---- NFC ---------------------------------------------------------------------------------- */

static void test_nfc_signature_helper_matches_contract_vector(void **state)
{
    (void)state;
    char sig[17];
    nfc_sig("a1b2c3d4-5678-9012-abcd-ef0123456789", sig);
    assert_string_equal(sig, "6bf869d301fb599a");
}

static void test_nfc_bind_binds_and_notifies_device(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char payload[80];
    nfc_payload(f.hw, payload);
    json_t *dev = bind_ok("/api/devices/bind/nfc", "payload", payload, &u);
    expect_owned_device(dev, &f, &u);
    assert_string_equal(itest_str(dev, "firmware"), "fake-1.0.0");
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 80);
    json_decref(dev);
    fdev_take_bound(&f);
    /* binding cleared the claim code the display was showing */
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/code", u.s.access, &r, "{s:s}", "claimCode", f.code);
    itest_expect_error(&r, 404, "claim_code_not_found");
    itest_resp_free(&r);
}

static void test_nfc_bind_again_by_owner_is_200(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char payload[80];
    nfc_payload(f.hw, payload);
    json_t *first = bind_ok("/api/devices/bind/nfc", "payload", payload, &u);
    /* again, and with the signature in upper case */
    json_t *second = bind_ok("/api/devices/bind/nfc", "payload", payload, &u);
    for (char *p = payload + strlen(payload) - 16; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    json_t *third = bind_ok("/api/devices/bind/nfc", "payload", payload, &u);
    expect_owned_device(second, &f, &u);
    expect_owned_device(third, &f, &u);
    assert_string_equal(itest_str(second, "id"), itest_str(first, "id"));
    assert_string_equal(itest_str(second, "boundAt"), itest_str(first, "boundAt"));
    assert_string_equal(itest_str(third, "id"), itest_str(first, "id"));
    json_decref(first);
    json_decref(second);
    json_decref(third);
}

static void test_nfc_bind_by_another_user_is_409(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char payload[80];
    nfc_payload(f.hw, payload);
    json_t *dev = bind_ok("/api/devices/bind/nfc", "payload", payload, &a);
    json_decref(dev);
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/nfc", b.s.access, &r, "{s:s}", "payload", payload);
    itest_expect_error(&r, 409, "device_already_bound");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/api/devices/bind", b.s.access, &r, "{s:s}", "nfcPayload", payload);
    itest_expect_error(&r, 409, "device_already_bound");
    itest_resp_free(&r);
}

static void test_nfc_bad_signature_is_403(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char good[17], flipped[17], hex_text_key[17], swapped[17];
    nfc_sig(f.hw, good);
    snprintf(flipped, sizeof flipped, "%s", good);
    flipped[15] = flipped[15] == '0' ? '1' : '0';
    /* the documented wrong constructions: the secret's hex text as key; key and message swapped */
    hmac16(ITEST_FACTORY_SECRET, strlen(ITEST_FACTORY_SECRET), f.hw, hex_text_key);
    unsigned char key[32];
    hex_key(ITEST_FACTORY_SECRET, key);
    {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        HMAC(EVP_sha256(), f.hw, (int)strlen(f.hw), key, 32, mac, &len);
        for (int i = 0; i < 8; i++)
            snprintf(swapped + 2 * i, 3, "%02x", mac[i]);
    }
    const char *sigs[] = {flipped, hex_text_key, swapped, "0000000000000000", "3f7a8b2c1d9e0f4a"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(sigs); i++) {
        char payload[80];
        snprintf(payload, sizeof payload, "inklet:1:%s:%s", f.hw, sigs[i]);
        struct itest_resp r;
        itest_callf(D, "POST", "/api/devices/bind/nfc", u.s.access, &r, "{s:s}", "payload",
                    payload);
        if (r.status != 403)
            fprintf(stderr, "  payload %s\n", payload);
        itest_expect_error(&r, 403, "invalid_nfc_signature");
        itest_resp_free(&r);
    }
    /* the contract's test vector with the public docs' illustrative (wrong) signature */
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/nfc", u.s.access, &r, "{s:s}", "payload",
                "inklet:1:a1b2c3d4-5678-9012-abcd-ef0123456789:3f7a8b2c1d9e0f4a");
    itest_expect_error(&r, 403, "invalid_nfc_signature");
    itest_resp_free(&r);
    itest_call(D, "GET", "/api/devices", u.s.access, NULL, &r);
    assert_int_equal(json_array_size(r.json), 0);
    itest_resp_free(&r);
}

static void test_nfc_malformed_payload_is_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    char sig[17];
    nfc_sig(f.hw, sig);
    char bad[12][128];
    size_t n = 0;
    snprintf(bad[n++], 128, "%s", "");
    snprintf(bad[n++], 128, "inklet:1:%s", f.hw);
    snprintf(bad[n++], 128, "inklet:2:%s:%s", f.hw, sig);
    snprintf(bad[n++], 128, "inklex:1:%s:%s", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1:%s:%s:extra", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1:%s:%.15s", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1:%s:%s0", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1:%s:zz%.14s", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1:not-a-uuid:%s", sig);
    snprintf(bad[n++], 128, "inklet:1:%.35s:%s", f.hw, sig);
    snprintf(bad[n++], 128, " inklet:1:%s:%s", f.hw, sig);
    snprintf(bad[n++], 128, "inklet:1::%s:%s", f.hw, sig);
    for (size_t i = 0; i < n; i++) {
        struct itest_resp r;
        itest_callf(D, "POST", "/api/devices/bind/nfc", u.s.access, &r, "{s:s}", "payload", bad[i]);
        if (r.status != 400)
            fprintf(stderr, "  payload \"%s\"\n", bad[i]);
        itest_expect_error(&r, 400, "invalid_nfc_payload");
        itest_resp_free(&r);
    }
    call_expect_error("POST", "/api/devices/bind/nfc", u.s.access, "{}", 400,
                      "invalid_nfc_payload");
    call_expect_error("POST", "/api/devices/bind/nfc", u.s.access, "{\"payload\":42}", 400, NULL);
}

static void test_nfc_unknown_device_is_404(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char hw[37], payload[80];
    itest_random_uuid(hw);
    nfc_payload(hw, payload);
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/nfc", u.s.access, &r, "{s:s}", "payload", payload);
    itest_expect_error(&r, 404, "device_not_found");
    itest_resp_free(&r);
}

static void test_bind_route_accepts_nfcPayload_and_payload(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    static const char *const fields[] = {"nfcPayload", "payload"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(fields); i++) {
        struct fdev f;
        fdev_new(&f);
        fdev_online(&f);
        char payload[80];
        nfc_payload(f.hw, payload);
        json_t *dev = bind_ok("/api/devices/bind", fields[i], payload, &u);
        expect_owned_device(dev, &f, &u);
        json_decref(dev);
        fdev_take_bound(&f);
    }
}

/* ---- access control ----------------------------------------------------------------------- */

struct route {
    const char *method, *suffix, *body;
};

static const struct route ROUTES[] = {
    {"GET", "", NULL},
    {"DELETE", "", NULL},
    {"POST", "/unbind", NULL},
    {"PUT", "/nickname", "{\"nickname\":\"mine now\"}"},
    {"POST", "/commands", "{\"kind\":\"text\",\"text\":\"hi\"}"},
    {"GET", "/commands", NULL},
    {"GET", "/state", NULL},
};

static void test_device_routes_for_another_users_device_are_403(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &a);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(ROUTES); i++)
        call_expect_error(ROUTES[i].method, devpath(f.id, ROUTES[i].suffix), b.s.access,
                          ROUTES[i].body, 403, NULL);
    /* nothing changed: still a's, no nickname, no text sent */
    json_t *dev = get_device(&a, f.id);
    assert_string_equal(itest_str(dev, "ownerId"), a.id);
    assert_true(json_is_null(json_object_get(dev, "nickname")));
    json_decref(dev);
    json_t *list = get_commands(&a, f.id, NULL);
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) assert_string_not_equal(itest_str(c, "kind"), "text");
    json_decref(list);
}

static void test_device_routes_for_unknown_id_are_404(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    char random_id[37];
    itest_random_uuid(random_id);
    const char *ids[] = {NO_SUCH_ID, random_id};
    for (size_t k = 0; k < ITEST_ARRAY_LEN(ids); k++)
        for (size_t i = 0; i < ITEST_ARRAY_LEN(ROUTES); i++)
            call_expect_error(ROUTES[i].method, devpath(ids[k], ROUTES[i].suffix), u.s.access,
                              ROUTES[i].body, 404, NULL);
}

static void test_device_routes_with_non_uuid_id_are_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    /* "%2E%2E" reaches the router as the segment ".." (curl would resolve a literal one) */
    static const char *const ids[] = {"abc",
                                      "%2E%2E",
                                      "01900000-0000-7000-8000-00000000000",
                                      "01900000-0000-7000-8000-0000000000000",
                                      "0190000g-0000-7000-8000-000000000000",
                                      "{01900000-0000-7000-8000-000000000000}",
                                      "%20"};
    for (size_t k = 0; k < ITEST_ARRAY_LEN(ids); k++)
        for (size_t i = 0; i < ITEST_ARRAY_LEN(ROUTES); i++)
            call_expect_error(ROUTES[i].method, devpath(ids[k], ROUTES[i].suffix), u.s.access,
                              ROUTES[i].body, 400, "invalid_id");
}

/* "../x" encoded as one segment ("..%2Fx") is decoded before routing, so it names no route: an
 * error (400 or 404), and never another resource such as /auth/me. */
static void test_device_routes_with_dot_dot_slash_id_never_escape(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    static const char *const ids[] = {"..%2Fx", "..%2F..%2Fauth%2Fme", "%2E%2E%2F%2E%2E%2Fhealth"};
    for (size_t k = 0; k < ITEST_ARRAY_LEN(ids); k++) {
        for (size_t i = 0; i < ITEST_ARRAY_LEN(ROUTES); i++) {
            struct itest_resp r;
            itest_call(D, ROUTES[i].method, devpath(ids[k], ROUTES[i].suffix), u.s.access,
                       ROUTES[i].body, &r);
            if (r.status != 400 && r.status != 404)
                fprintf(stderr, "  %s %s\n", ROUTES[i].method, devpath(ids[k], ROUTES[i].suffix));
            assert_true(r.status == 400 || r.status == 404);
            expect_error_shape(&r, r.status);
            itest_resp_free(&r);
        }
    }
}

static void test_device_routes_without_token_are_401(void **state)
{
    (void)state;
    struct itest_user a = {0};
    itest_register(D, &a);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &a);
    for (size_t i = 0; i < ITEST_ARRAY_LEN(ROUTES); i++)
        call_expect_error(ROUTES[i].method, devpath(f.id, ROUTES[i].suffix), NULL, ROUTES[i].body,
                          401, NULL);
    call_expect_error("GET", "/api/devices", NULL, NULL, 401, NULL);
    call_expect_error("POST", "/api/devices/bind", NULL, "{\"claimCode\":\"ABCDEF\"}", 401, NULL);
    call_expect_error("POST", "/api/devices/bind/code", NULL, "{\"claimCode\":\"ABCDEF\"}", 401,
                      NULL);
    call_expect_error("POST", "/api/devices/bind/nfc", NULL, "{\"payload\":\"x\"}", 401, NULL);
    call_expect_error("GET", "/api/devices", "not-a-token", NULL, 401, NULL);
    /* the device was not touched */
    json_t *dev = get_device(&a, f.id);
    assert_string_equal(itest_str(dev, "ownerId"), a.id);
    json_decref(dev);
}

/* ---- listing ------------------------------------------------------------------------------ */

static void test_list_is_empty_for_new_user(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_call(D, "GET", "/api/devices", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_string_equal(r.body, "[]");
    itest_resp_free(&r);
}

static void test_list_is_most_recently_bound_first(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f1, f2;
    fdev_new(&f1);
    fdev_new(&f2);
    /* both online first, so creation order differs from bind order */
    fdev_online(&f2);
    fdev_online(&f1);
    json_t *d1 = bind_ok("/api/devices/bind/code", "claimCode", f1.code, &u);
    json_t *d2 = bind_ok("/api/devices/bind/code", "claimCode", f2.code, &u);
    struct itest_resp r;
    itest_call(D, "GET", "/api/devices", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 2);
    assert_string_equal(itest_str(json_array_get(r.json, 0), "id"), itest_str(d2, "id"));
    assert_string_equal(itest_str(json_array_get(r.json, 1), "id"), itest_str(d1, "id"));
    for (size_t i = 0; i < 2; i++) {
        json_t *dev = json_array_get(r.json, i);
        itest_expect_keys(dev, DEVICE_KEYS);
        assert_string_equal(itest_str(dev, "ownerId"), u.id);
    }
    itest_resp_free(&r);
    json_decref(d1);
    json_decref(d2);
}

/* ---- unbind ------------------------------------------------------------------------------- */

static void unbind_frees_device(const char *method, const char *suffix)
{
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &a);
    char cmd_id[37];
    send_text_ok(&a, &f, "private words", cmd_id);
    assert_true(
        publish_state(&f, json_pack("{s:s,s:s}", "screen", "private words", "lastCmd", cmd_id)));
    json_t *c = poll_command_status(&a, f.id, cmd_id, "delivered", msg_wait());
    assert_non_null(c);
    json_decref(c);
    char old_code[8];
    snprintf(old_code, sizeof old_code, "%s", f.code);

    struct itest_resp r;
    itest_call(D, method, devpath(f.id, suffix), a.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"message", NULL});
    assert_string_equal(itest_str(r.json, "message"), "device unbound");
    itest_resp_free(&r);

    json_t *cmd = itest_mqtt_take(MQ, f.thing, "unbound", msg_wait());
    assert_non_null(cmd);
    itest_expect_keys(cmd, (const char *const[]){"kind", "id", NULL});
    json_decref(cmd);
    itest_call(D, "GET", "/api/devices", a.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 0);
    itest_resp_free(&r);
    call_expect_error("GET", devpath(f.id, NULL), a.s.access, NULL, 403, NULL);
    /* unbinding again is not possible */
    call_expect_error(method, devpath(f.id, suffix), a.s.access, NULL, 403, NULL);

    /* the display asks for a new code and gets a fresh one */
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
    fdev_take_code(&f);
    assert_string_not_equal(f.code, old_code);
    /* which another user can bind; they see none of the previous owner's state or commands */
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", f.code, &b);
    expect_owned_device(dev, &f, &b);
    assert_string_equal(itest_str(dev, "id"), f.id);
    assert_true(json_is_null(json_object_get(dev, "state")));
    assert_true(json_is_null(json_object_get(dev, "stateUpdatedAt")));
    json_decref(dev);
    json_t *list = get_commands(&b, f.id, NULL);
    size_t i;
    json_array_foreach(list, i, c) assert_string_not_equal(itest_str(c, "kind"), "text");
    json_decref(list);
}

static void test_unbind_by_post_notifies_and_frees_device(void **state)
{
    (void)state;
    unbind_frees_device("POST", "/unbind");
}

static void test_unbind_by_delete_notifies_and_frees_device(void **state)
{
    (void)state;
    unbind_frees_device("DELETE", "");
}

static void test_request_claim_from_bound_device_gets_already_bound(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
    json_t *cmd = itest_mqtt_take(MQ, f.thing, "already_bound", msg_wait());
    assert_non_null(cmd);
    itest_expect_keys(cmd, (const char *const[]){"kind", "id", NULL});
    itest_uuid_v7(cmd, "id");
    json_decref(cmd);
    /* and no new claim code */
    assert_int_equal(itest_mqtt_count(MQ, f.thing, "claim_code"), 1);
}

static void test_request_claim_from_unbound_device_repeats_live_code(void **state)
{
    (void)state;
    struct fdev f;
    fdev_new(&f);
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw)); /* creates the device */
    fdev_take_code(&f);
    char first[8];
    snprintf(first, sizeof first, "%s", f.code);
    /* one answer per 5 s per display: asked again later, it gets the same live code */
    itest_sleep_ms(5500);
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
    fdev_take_code(&f);
    assert_string_equal(f.code, first);
    /* a heartbeat with a live code issues none (it may repeat the undelivered one) */
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "fake-1.0.0", 50));
    itest_sleep_ms(5500);
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
    fdev_take_code(&f);
    assert_string_equal(f.code, first);
    char *codes =
        itest_db_value("SELECT count(DISTINCT payload::json->>'code') FROM device_commands c"
                       " JOIN devices d ON d.id = c.device_id WHERE d.thing_name = $1"
                       " AND c.kind = 'claim_code'",
                       f.thing);
    assert_string_equal(codes, "1");
    free(codes);
}

static void test_request_claim_flood_is_answered_once_per_few_seconds(void **state)
{
    (void)state;
    struct fdev f;
    fdev_new(&f);
    unsigned long long limited_before = metric("inklet_mqtt_messages_limited_total");
    /* a display asking every 100 ms for 3 s */
    for (int i = 0; i < 30; i++) {
        assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
        itest_sleep_ms(100);
    }
    fdev_take_code(&f);
    /* everything it sent has been handled once the heartbeat behind it is */
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "fake-1.0.0", 50));
    int64_t deadline = itest_now_ms() + msg_wait();
    char *seen = NULL;
    while (itest_now_ms() < deadline) {
        free(seen);
        seen = itest_db_value("SELECT COALESCE(firmware, '') FROM devices WHERE thing_name = $1",
                              f.thing);
        if (strcmp(seen, "fake-1.0.0") == 0)
            break;
        itest_sleep_ms(50);
    }
    assert_string_equal(seen, "fake-1.0.0");
    free(seen);
    itest_sleep_ms(500);
    /* one answer per 5 s window (under a slow wrapper the 30 may be spread over two), one code,
     * and the command log did not grow with the flood */
    size_t answers = itest_mqtt_count(MQ, f.thing, "claim_code");
    size_t most = itest.slow > 1 ? 2 : 1;
    if (answers < 1 || answers > most)
        fail_msg("%zu claim_code answers to 30 requests in 3 s", answers);
    char *rows = itest_db_value("SELECT count(*) FROM device_commands c JOIN devices d"
                                " ON d.id = c.device_id WHERE d.thing_name = $1",
                                f.thing);
    assert_int_equal(atoi(rows), (int)answers);
    free(rows);
    char *codes =
        itest_db_value("SELECT count(DISTINCT payload::json->>'code') FROM device_commands c"
                       " JOIN devices d ON d.id = c.device_id WHERE d.thing_name = $1",
                       f.thing);
    assert_string_equal(codes, "1");
    free(codes);
    assert_int_equal(metric("inklet_mqtt_messages_limited_total") - limited_before, 30 - answers);
}

/* ---- commands ----------------------------------------------------------------------------- */

static void test_text_command_reaches_device_and_is_delivered(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char id[37];
    send_text_ok(&u, &f, "hello", id);
    expect_text_received(&f, id, "hello");
    assert_true(publish_state(&f, json_pack("{s:s,s:s}", "screen", "text", "lastCmd", id)));
    json_t *c = poll_command_status(&u, f.id, id, "delivered", msg_wait());
    assert_non_null(c);
    itest_expect_keys(c, COMMAND_KEYS);
    assert_string_equal(itest_str(c, "deviceId"), f.id);
    assert_string_equal(itest_str(c, "kind"), "text");
    assert_string_equal(itest_str(json_object_get(c, "payload"), "text"), "hello");
    long long created = itest_timestamp(c, "createdAt");
    long long delivered = itest_timestamp(c, "deliveredAt");
    long long sent = itest_timestamp(c, "sentAt");
    assert_true(created <= sent && sent <= delivered);
    json_decref(c);
}

static void test_text_command_is_sent_once_broker_acknowledges(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char id[37];
    send_text_ok(&u, &f, "no report from me", id);
    expect_text_received(&f, id, "no report from me");
    json_t *c = poll_command_status(&u, f.id, id, "sent", msg_wait());
    assert_non_null(c);
    itest_timestamp(c, "sentAt");
    assert_true(json_is_null(json_object_get(c, "deliveredAt")));
    json_decref(c);
}

static void test_state_for_unknown_command_id_changes_nothing(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    struct fdev fa, fb;
    fdev_new(&fa);
    fdev_new(&fb);
    fdev_bind(&fa, &a);
    fdev_bind(&fb, &b);
    char id[37];
    send_text_ok(&a, &fa, "for a", id);
    json_t *c = poll_command_status(&a, fa.id, id, "sent", msg_wait());
    assert_non_null(c);
    json_decref(c);
    /* another device claiming a's command does not deliver it */
    assert_true(publish_state(&fb, json_pack("{s:s}", "lastCmd", id)));
    assert_true(publish_state(&fb, json_pack("{s:s,s:i}", "lastCmd", "sync", "n", 2)));
    int64_t deadline = itest_now_ms() + msg_wait();
    for (;;) {
        struct itest_resp r;
        itest_call(D, "GET", devpath(fb.id, "/state"), b.s.access, NULL, &r);
        itest_expect_status(&r, 200);
        bool done = json_integer_value(json_object_get(json_object_get(r.json, "state"), "n")) == 2;
        itest_resp_free(&r);
        if (done)
            break;
        assert_true(itest_now_ms() < deadline);
        itest_sleep_ms(20);
    }
    c = poll_command_status(&a, fa.id, id, "sent", 0);
    assert_non_null(c);
    json_decref(c);
}

static void test_command_validation_is_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char *long_text = repeat("a", 4001);
    char *long_multi = repeat("\xc3\xa9", 4001);
    json_t *bodies[] = {
        json_pack("{s:s,s:s}", "kind", "text", "text", ""),
        json_pack("{s:s,s:s}", "kind", "text", "text", " \t\n "),
        json_pack("{s:s,s:s}", "kind", "text", "text", long_text),
        json_pack("{s:s,s:s}", "kind", "text", "text", long_multi),
        json_pack("{s:s,s:s}", "kind", "claim_code", "text", "hello"),
        json_pack("{s:s,s:s}", "kind", "bound", "text", "hello"),
        json_pack("{s:s}", "text", "hello"),
        json_pack("{s:s,s:i}", "kind", "text", "text", 5),
        json_pack("{s:s,s:n}", "kind", "text", "text"),
        json_pack("{s:s}", "kind", "text"),
        json_pack("{s:i,s:s}", "kind", 1, "text", "hello"),
        json_pack("{s:s,s:[s]}", "kind", "text", "text", "hello"),
    };
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bodies); i++) {
        char *body = json_dumps(bodies[i], JSON_COMPACT);
        struct itest_resp r;
        itest_call(D, "POST", devpath(f.id, "/commands"), u.s.access, body, &r);
        if (r.status != 400)
            fprintf(stderr, "  body %.200s\n", body);
        itest_expect_error(&r, 400, "invalid_command");
        itest_resp_free(&r);
        free(body);
        json_decref(bodies[i]);
    }
    free(long_text);
    free(long_multi);
    /* nothing reached the log */
    json_t *list = get_commands(&u, f.id, NULL);
    assert_int_equal(json_array_size(list), 1); /* just `bound` */
    assert_string_equal(itest_str(json_array_get(list, 0), "kind"), "bound");
    json_decref(list);
}

static void test_command_of_4000_characters_is_accepted(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    /* characters, not bytes: 4000 × "é" is 8000 bytes */
    char *texts[] = {repeat("a", 4000), repeat("\xc3\xa9", 4000), repeat("\xf0\x9f\x98\x80", 4000)};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(texts); i++) {
        char id[37];
        send_text_ok(&u, &f, texts[i], id);
        expect_text_received(&f, id, texts[i]);
        free(texts[i]);
    }
}

static void test_commands_limit_is_validated(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    static const char *const bad[] = {"0", "101", "abc", "-1", "", "1.5", "10x", "99999999999"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        char path[256];
        snprintf(path, sizeof path, "/api/devices/%s/commands?limit=%s", f.id, bad[i]);
        call_expect_error("GET", path, u.s.access, NULL, 400, NULL);
    }
    json_t *list = get_commands(&u, f.id, "limit=100");
    json_decref(list);
}

static void test_commands_are_newest_first_and_limited(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char one[37], two[37];
    send_text_ok(&u, &f, "one", one);
    send_text_ok(&u, &f, "two", two);
    json_t *list = get_commands(&u, f.id, "limit=1");
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(itest_str(json_array_get(list, 0), "id"), two);
    json_decref(list);
    list = get_commands(&u, f.id, NULL);
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(itest_str(json_array_get(list, 0), "id"), two);
    assert_string_equal(itest_str(json_array_get(list, 1), "id"), one);
    assert_string_equal(itest_str(json_array_get(list, 2), "kind"), "bound");
    size_t i;
    json_t *c;
    json_array_foreach(list, i, c) itest_expect_keys(c, COMMAND_KEYS);
    json_decref(list);
}

/* ---- state, nickname, online, heartbeats -------------------------------------------------- */

static void test_state_endpoint_returns_parsed_object(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    struct itest_resp r;
    itest_call(D, "GET", devpath(f.id, "/state"), u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, STATE_KEYS);
    assert_true(json_is_null(json_object_get(r.json, "state")));
    assert_true(json_is_null(json_object_get(r.json, "stateUpdatedAt")));
    itest_resp_free(&r);

    json_t *want = json_pack("{s:s,s:s,s:i}", "screen", "text", "lastCmd", "x", "n", 5);
    assert_true(publish_state(&f, json_incref(want)));
    int64_t deadline = itest_now_ms() + msg_wait();
    for (;;) {
        itest_call(D, "GET", devpath(f.id, "/state"), u.s.access, NULL, &r);
        itest_expect_status(&r, 200);
        if (!json_is_null(json_object_get(r.json, "state")) || itest_now_ms() > deadline)
            break;
        itest_resp_free(&r);
        itest_sleep_ms(20);
    }
    itest_expect_keys(r.json, STATE_KEYS);
    assert_string_equal(itest_str(r.json, "deviceId"), f.id);
    json_t *got = json_object_get(r.json, "state");
    assert_true(json_is_object(got));
    assert_true(json_equal(got, want));
    long long at = itest_timestamp(r.json, "stateUpdatedAt");
    assert_true(llabs(at - (long long)time(NULL)) < 60);
    assert_true(json_is_true(json_object_get(r.json, "online")));
    itest_timestamp(r.json, "lastSeenAt");
    itest_resp_free(&r);

    /* the device object carries the same state as JSON text */
    json_t *dev = get_device(&u, f.id);
    const char *text = itest_str(dev, "state");
    json_t *parsed = json_loads(text, 0, NULL);
    assert_non_null(parsed);
    assert_true(json_equal(parsed, want));
    itest_timestamp(dev, "stateUpdatedAt");
    json_decref(parsed);
    json_decref(dev);
    json_decref(want);
}

static void test_nickname_can_be_set_and_cleared(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char *max = repeat("\xc3\xa9", 64); /* 64 characters, 128 bytes */
    const char *good[] = {"Kitchen", max};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(good); i++) {
        struct itest_resp r;
        itest_callf(D, "PUT", devpath(f.id, "/nickname"), u.s.access, &r, "{s:s}", "nickname",
                    good[i]);
        itest_expect_status(&r, 200);
        expect_owned_device(r.json, &f, &u);
        assert_string_equal(itest_str(r.json, "nickname"), good[i]);
        itest_resp_free(&r);
        json_t *dev = get_device(&u, f.id);
        assert_string_equal(itest_str(dev, "nickname"), good[i]);
        json_decref(dev);
    }
    free(max);
    struct itest_resp r;
    itest_call(D, "PUT", devpath(f.id, "/nickname"), u.s.access, "{\"nickname\":null}", &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_null(json_object_get(r.json, "nickname")));
    itest_resp_free(&r);

    char *too_long = repeat("n", 65);
    json_t *bad[] = {json_pack("{s:s}", "nickname", ""), json_pack("{s:s}", "nickname", too_long),
                     json_pack("{s:i}", "nickname", 5), json_pack("{s:b}", "nickname", 1),
                     json_pack("{}")};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        char *body = json_dumps(bad[i], JSON_COMPACT);
        call_expect_error("PUT", devpath(f.id, "/nickname"), u.s.access, body, 400, NULL);
        free(body);
        json_decref(bad[i]);
    }
    free(too_long);
    json_t *dev = get_device(&u, f.id);
    assert_true(json_is_null(json_object_get(dev, "nickname")));
    json_decref(dev);
}

static void test_online_follows_heartbeats(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    json_t *dev = get_device(&u, f.id);
    assert_true(json_is_true(json_object_get(dev, "online")));
    json_decref(dev);
    /* the last heartbeat two minutes ago: offline (> 90 s) */
    itest_db_exec1(
        "UPDATE devices SET last_seen_at = now() - interval '2 minutes' WHERE hw_id = $1", f.hw);
    dev = get_device(&u, f.id);
    assert_true(json_is_false(json_object_get(dev, "online")));
    long long seen = itest_timestamp(dev, "lastSeenAt");
    assert_true(seen <= (long long)time(NULL) - 100);
    json_decref(dev);
    struct itest_resp r;
    itest_call(D, "GET", devpath(f.id, "/state"), u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_true(json_is_false(json_object_get(r.json, "online")));
    itest_resp_free(&r);
    /* a heartbeat brings it back */
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "fake-1.0.0", 80));
    bool yes = true;
    dev = poll_device(&u, f.id, online_is, &yes);
    assert_true(json_is_true(json_object_get(dev, "online")));
    seen = itest_timestamp(dev, "lastSeenAt");
    assert_true(llabs(seen - (long long)time(NULL)) < 60);
    json_decref(dev);
}

static void test_heartbeat_updates_firmware_and_battery(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "2.0.0", 55));
    json_t *dev = poll_device(&u, f.id, firmware_is, "2.0.0");
    assert_string_equal(itest_str(dev, "firmware"), "2.0.0");
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 55);
    json_decref(dev);
    /* battery 0 and 100 are levels too */
    int zero = 0;
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, NULL, 0));
    dev = poll_device(&u, f.id, battery_is, &zero);
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 0);
    assert_string_equal(itest_str(dev, "firmware"), "2.0.0"); /* absent firmware: kept */
    json_decref(dev);
}

static void test_heartbeat_battery_out_of_range_is_ignored(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "3.0.0", 42));
    json_t *dev = poll_device(&u, f.id, firmware_is, "3.0.0");
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 42);
    json_decref(dev);
    static const struct {
        int battery;
        const char *fw;
    } cases[] = {{150, "3.0.1"}, {-1, "3.0.2"}, {101, "3.0.3"}};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(cases); i++) {
        /* the firmware marks when the heartbeat has been processed */
        assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, cases[i].fw, cases[i].battery));
        dev = poll_device(&u, f.id, firmware_is, cases[i].fw);
        assert_string_equal(itest_str(dev, "firmware"), cases[i].fw);
        assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 42);
        json_decref(dev);
    }
    /* a fractional level is no level either */
    assert_true(itest_mqtt_publish_up(
        MQ, f.thing, "heartbeat",
        json_pack("{s:s,s:s,s:f}", "hwId", f.hw, "firmware", "3.0.4", "battery", 50.5)));
    dev = poll_device(&u, f.id, firmware_is, "3.0.4");
    assert_string_equal(itest_str(dev, "firmware"), "3.0.4");
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 42);
    json_decref(dev);
}

static void test_heartbeat_with_other_hwid_is_rejected(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "4.0.0", 60));
    json_t *dev = poll_device(&u, f.id, firmware_is, "4.0.0");
    json_decref(dev);
    /* an impostor on f's thing name */
    char other_hw[37];
    itest_random_uuid(other_hw);
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, other_hw, "evil", 7));
    /* then f itself (no firmware): once its battery shows, the impostor has been handled */
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, NULL, 61));
    int want = 61;
    dev = poll_device(&u, f.id, battery_is, &want);
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 61);
    assert_string_equal(itest_str(dev, "firmware"), "4.0.0");
    assert_string_equal(itest_str(dev, "hwId"), f.hw);
    json_decref(dev);

    /* and f's hwId on another thing name does not create (or move) a device */
    struct fdev g;
    fdev_new(&g);
    assert_true(itest_mqtt_heartbeat(MQ, g.thing, f.hw, "stolen", 5));
    assert_true(itest_mqtt_request_claim(MQ, g.thing, g.hw)); /* g's own, after the theft */
    fdev_take_code(&g);
    char *hw = itest_db_value("SELECT hw_id::text FROM devices WHERE thing_name = $1", g.thing);
    assert_non_null(hw);
    assert_string_equal(hw, g.hw);
    free(hw);
    dev = get_device(&u, f.id);
    assert_string_equal(itest_str(dev, "thingName"), f.thing);
    assert_string_equal(itest_str(dev, "firmware"), "4.0.0");
    json_decref(dev);
    /* no code was ever offered for the stolen identity */
    assert_int_equal(itest_mqtt_count(MQ, g.thing, "claim_code"), 1);
}

/* ---- robustness of the link --------------------------------------------------------------- */

static void test_malformed_mqtt_messages_are_dropped(void **state)
{
    (void)state;
    /* e exists (bound, no state yet); f and ghost are thing names the backend never saw */
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev e, f, ghost;
    fdev_new(&e);
    fdev_new(&f);
    fdev_new(&ghost);
    fdev_bind(&e, &u);
    unsigned long long dropped0 = metric("inklet_mqtt_messages_dropped_total");
    char topic[256];
    size_t sent = 0;
#define PUB(dev, kind, text)                                                                       \
    do {                                                                                           \
        snprintf(topic, sizeof topic, "inklet/dev/%s/up/%s", (dev).thing, kind);                   \
        assert_true(itest_mqtt_publish(MQ, topic, text, sizeof text - 1));                         \
        sent++;                                                                                    \
    } while (0)
    PUB(f, "heartbeat", "{not json");
    PUB(f, "heartbeat", "[1,2,3]");
    PUB(f, "heartbeat", "\"just a string\"");
    PUB(f, "heartbeat", "{\"hwId\":5,\"ts\":1}");
    PUB(f, "heartbeat", "{\"hwId\":\"not-a-uuid\",\"ts\":1}");
    PUB(f, "heartbeat", "");
    PUB(f, "heartbeat", "\x00\xff\xfe\x01garbage\x80");
    PUB(f, "request_claim", "{\"hwId\":null}");
    PUB(f, "request_claim", "{}");
    PUB(f, "request_claim", "{\"hwId\":\"x\",\"ts\":1}\x00trailing");
    PUB(e, "state", "");
    PUB(e, "state", "[]");
    PUB(e, "state", "{bad");
    PUB(e, "state", "{\"a\":1,\"a\":2}");
    PUB(e, "state", "{\"lastCmd\":42}");
    PUB(e, "state", "{\"screen\":\"\xff\xfe\"}");
    PUB(e, "state", "\x00\x01\x02");
    PUB(e, "heartbeat", "{\"hwId\":null}");
    PUB(ghost, "state", "{\"screen\":\"boo\"}"); /* a thing that never sent a heartbeat */
#undef PUB
    /* wrong types in otherwise valid heartbeats (the hwId is a good UUID) */
    json_t *typed[] = {
        json_pack("{s:s,s:s}", "hwId", f.hw, "battery", "x"),
        json_pack("{s:s,s:i}", "hwId", f.hw, "firmware", 7),
        json_pack("{s:s,s:b}", "hwId", f.hw, "battery", 1),
        json_pack("{s:s,s:s}", "hwId", e.hw, "battery", "x"),
    };
    for (size_t i = 0; i < ITEST_ARRAY_LEN(typed); i++) {
        assert_true(itest_mqtt_publish_up(MQ, i < 3 ? f.thing : e.thing, "heartbeat", typed[i]));
        sent++;
    }
    /* 20 KiB: over the 16 KiB limit */
    size_t big_len = 20 * 1024;
    char *big = malloc(big_len);
    assert_non_null(big);
    int head = snprintf(big, big_len, "{\"hwId\":\"%s\",\"pad\":\"", f.hw);
    memset(big + head, 'x', big_len - (size_t)head - 2);
    memcpy(big + big_len - 2, "\"}", 2);
    snprintf(topic, sizeof topic, "inklet/dev/%s/up/heartbeat", f.thing);
    assert_true(itest_mqtt_publish(MQ, topic, big, big_len));
    snprintf(topic, sizeof topic, "inklet/dev/%s/up/state", e.thing);
    assert_true(itest_mqtt_publish(MQ, topic, big, big_len));
    sent += 2;
    free(big);
    /* topics outside the contract (still under the subscription) */
    static const char *const topics[] = {"inklet/dev/t/up/bogus", "inklet/dev/t/up/state/extra",
                                         "inklet/dev/t/up/", "inklet/dev/bad$name/up/heartbeat",
                                         "inklet/dev/t/up/heartbeat/x/y"};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(topics); i++) {
        assert_true(itest_mqtt_publish(MQ, topics[i], "{}", 2));
        sent++;
    }

    /* a valid heartbeat from a new device is still processed */
    struct fdev g;
    fdev_new(&g);
    fdev_online(&g);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", g.code, &u);
    expect_owned_device(dev, &g, &u);
    json_decref(dev);
    /* e is in order: its sync answer arrives, its state and battery are untouched */
    fdev_sync_bound(&e);
    dev = get_device(&u, e.id);
    assert_true(json_is_null(json_object_get(dev, "state")));
    assert_int_equal(json_integer_value(json_object_get(dev, "battery")), 80);
    json_decref(dev);
    /* none of the garbage created a device or got an answer */
    assert_int_equal(itest_mqtt_count(MQ, f.thing, NULL), 0);
    assert_int_equal(itest_mqtt_count(MQ, ghost.thing, NULL), 0);
    char *row = itest_db_value("SELECT id::text FROM devices WHERE thing_name = $1", f.thing);
    assert_null(row);
    row = itest_db_value("SELECT id::text FROM devices WHERE thing_name = $1", ghost.thing);
    assert_null(row);

    struct itest_resp r;
    itest_get(D, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    assert_true(itest_daemon_alive(D));
    /* every one of them was counted (the workers count asynchronously) */
    int64_t deadline = itest_now_ms() + msg_wait();
    unsigned long long dropped;
    while ((dropped = metric("inklet_mqtt_messages_dropped_total")) < dropped0 + sent &&
           itest_now_ms() < deadline)
        itest_sleep_ms(20);
    if (dropped < dropped0 + sent)
        fprintf(stderr, "  dropped went from %llu to %llu after %zu bad messages\n", dropped0,
                dropped, sent);
    assert_true(dropped > 0);
    assert_true(dropped >= dropped0 + sent);
}

static void test_account_deletion_unbinds_devices(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f1, f2;
    fdev_new(&f1);
    fdev_new(&f2);
    fdev_bind(&f1, &u);
    fdev_bind(&f2, &u);
    struct itest_resp r;
    itest_callf(D, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", u.password);
    itest_expect_status(&r, 204);
    itest_resp_free(&r);
    /* `unbound` was queued in the deletion's transaction: it goes out when each display next
     * says it is awake */
    const struct fdev *fs[] = {&f1, &f2};
    for (size_t i = 0; i < 2; i++) {
        heartbeat(fs[i]);
        json_t *cmd = itest_mqtt_take(MQ, fs[i]->thing, "unbound", msg_wait());
        if (!cmd)
            fprintf(stderr, "  %s was not told it is unbound\n", fs[i]->thing);
        assert_non_null(cmd);
        json_decref(cmd);
    }
    /* the display is free again: a new code, bindable by someone else */
    struct itest_user b = {0};
    itest_register(D, &b);
    assert_true(itest_mqtt_request_claim(MQ, f1.thing, f1.hw));
    fdev_take_code(&f1);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", f1.code, &b);
    expect_owned_device(dev, &f1, &b);
    json_decref(dev);
}

static void test_broker_outage_is_reported_and_survived(void **state)
{
    (void)state;
    const char *stop = env_or_null("INKLET_ITEST_MQTT_STOP");
    const char *start = env_or_null("INKLET_ITEST_MQTT_START");
    if (!stop || !start) {
        fprintf(stderr, "  INKLET_ITEST_MQTT_STOP/START not set; skipped\n");
        skip();
    }
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f, g;
    fdev_new(&f);
    fdev_new(&g);
    fdev_bind(&f, &u);
    fdev_online(&g);

    broker_stopped = true;
    assert_int_equal(itest_sh(stop, 30000), 0);
    struct itest_resp r;
    poll_ready(503, itest_scaled(15000), &r);
    itest_expect_status(&r, 503);
    json_t *checks = json_object_get(r.json, "checks");
    assert_string_equal(itest_str(checks, "broker"), "unavailable");
    assert_string_equal(itest_str(checks, "database"), "ok");
    itest_expect_retry_after(&r);
    itest_resp_free(&r);

    /* a command is accepted and kept for the display: 202 queued */
    char down_id[37];
    send_text_ok(&u, &f, "while down", down_id);
    json_t *list = get_commands(&u, f.id, NULL);
    json_t *newest = json_array_get(list, 0);
    assert_non_null(newest);
    assert_string_equal(itest_str(newest, "id"), down_id);
    assert_string_equal(itest_str(json_object_get(newest, "payload"), "text"), "while down");
    assert_string_equal(itest_str(newest, "status"), "queued");
    json_decref(list);
    /* the rest of the API keeps working */
    itest_call(D, "GET", "/api/devices", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_int_equal(json_array_size(r.json), 1);
    itest_resp_free(&r);
    itest_get(D, "/health", &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    assert_int_equal(metric("inklet_broker_connected"), 0);
    /* pairing by NFC and unbinding stand without the broker (the display is told when it is
     * reachable again: the bound/unbound commands wait, queued) */
    char payload[80];
    nfc_payload(g.hw, payload);
    json_t *dev = bind_ok("/api/devices/bind/nfc", "payload", payload, &u);
    expect_owned_device(dev, &g, &u);
    snprintf(g.id, sizeof g.id, "%s", itest_str(dev, "id"));
    json_decref(dev);
    list = get_commands(&u, g.id, NULL);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(itest_str(json_array_get(list, 0), "kind"), "bound");
    assert_string_equal(itest_str(json_array_get(list, 0), "status"), "queued");
    json_decref(list);
    itest_call(D, "POST", devpath(g.id, "/unbind"), u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);

    /* the broker comes back: the daemon reconnects by itself (back-off 1-30 s) */
    assert_int_equal(itest_sh(start, 60000), 0);
    broker_stopped = false;
    int64_t t0 = itest_now_ms();
    poll_ready(200, itest_scaled(35000), &r);
    itest_expect_status(&r, 200);
    checks = json_object_get(r.json, "checks");
    assert_string_equal(itest_str(checks, "broker"), "ok");
    assert_string_equal(itest_str(checks, "database"), "ok");
    itest_resp_free(&r);
    fprintf(stderr, "  the daemon reconnected %.1f s after the broker restarted\n",
            (double)(itest_now_ms() - t0) / 1000.0);
    assert_true(itest_mqtt_wait_ready(MQ, itest_scaled(15000)));

    /* the display says it is there: what waited for it goes out, and is delivered */
    assert_true(itest_mqtt_heartbeat(MQ, f.thing, f.hw, "fake-1.0.0", 80));
    expect_text_received(&f, down_id, "while down");
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", down_id)));
    json_t *waited = poll_command_status(&u, f.id, down_id, "delivered", msg_wait());
    assert_non_null(waited);
    json_decref(waited);
    /* g was unbound during the outage: it hears `unbound` (and its `bound` was canceled) */
    assert_true(itest_mqtt_heartbeat(MQ, g.thing, g.hw, "fake-1.0.0", 80));
    json_t *unbound = itest_mqtt_take(MQ, g.thing, "unbound", msg_wait());
    assert_non_null(unbound);
    json_decref(unbound);
    assert_int_equal(itest_mqtt_count(MQ, g.thing, "bound"), 0);

    char id[37];
    send_text_ok(&u, &f, "after the outage", id);
    expect_text_received(&f, id, "after the outage");
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", id)));
    json_t *c = poll_command_status(&u, f.id, id, "delivered", msg_wait());
    assert_non_null(c);
    json_decref(c);
    assert_true(itest_daemon_alive(D));
}

/* ---- durable delivery --------------------------------------------------------------------- */

/* What a redelivery waits for: a heartbeat more than 5 s after the command's last publish. */
#define REDELIVERY_GAP_MS 5600

static void heartbeat(const struct fdev *f)
{
    assert_true(itest_mqtt_heartbeat(MQ, f->thing, f->hw, "fake-1.0.0", 80));
}

static void expect_status_now(const struct itest_user *u, const char *dev_id, const char *cmd_id,
                              const char *status)
{
    json_t *c = poll_command_status(u, dev_id, cmd_id, status, msg_wait());
    assert_non_null(c);
    json_decref(c);
}

static void test_command_to_a_sleeping_display_arrives_when_it_wakes(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    /* the display sleeps: the first publish reaches nobody who shows it */
    char id[37];
    send_text_ok(&u, &f, "While you slept", id);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, id, 1, msg_wait()), 1);
    expect_status_now(&u, f.id, id, "sent");
    unsigned long long before = metric("inklet_commands_redelivered_total");
    /* a heartbeat right away is no wake-up for it (published < 5 s ago) */
    heartbeat(&f);
    fdev_sync_bound(&f);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, id), 1);
    /* it wakes later: the command goes out again, and its report delivers it */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, id, 2, msg_wait()), 2);
    assert_true(metric("inklet_commands_redelivered_total") >= before + 1);
    assert_true(publish_state(&f, json_pack("{s:s,s:s}", "screen", "text", "lastCmd", id)));
    expect_status_now(&u, f.id, id, "delivered");
    /* delivered is final: later heartbeats do not send it again */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    fdev_sync_bound(&f);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, id), 2);
}

/* A claim code whose publish reached no display (asleep, or the publish failed) goes out again
 * with the display's next heartbeat: it is a command like any other. */
static void test_undelivered_claim_code_is_published_again_on_a_later_heartbeat(void **state)
{
    (void)state;
    struct fdev f;
    fdev_new(&f);
    heartbeat(&f);
    json_t *first = itest_mqtt_take(MQ, f.thing, "claim_code", msg_wait());
    assert_non_null(first);
    char id[37];
    snprintf(id, sizeof id, "%s", itest_str(first, "id"));
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    json_t *again = itest_mqtt_take(MQ, f.thing, "claim_code", msg_wait());
    assert_non_null(again);
    assert_string_equal(itest_str(again, "id"), id);
    assert_string_equal(itest_str(again, "code"), itest_str(first, "code"));
    json_decref(first);
    json_decref(again);
}

static void test_queued_commands_arrive_in_order_and_one_report_delivers_all(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char ids[3][37];
    const char *texts[3] = {"one", "two", "three"};
    static const char *const counted[] = {
        "inklet_commands_total{status=\"queued\"}", "inklet_commands_total{status=\"delivered\"}",
        "inklet_commands_redelivered_total", "inklet_command_delivery_seconds_count"};
    unsigned long long before[4];
    for (int i = 0; i < 4; i++)
        before[i] = itest_metric(D, counted[i]);
    for (int i = 0; i < 3; i++)
        send_text_ok(&u, &f, texts[i], ids[i]);
    for (int i = 0; i < 3; i++) {
        json_t *c = itest_mqtt_take(MQ, f.thing, "text", msg_wait());
        assert_non_null(c);
        assert_string_equal(itest_str(c, "id"), ids[i]);
        json_decref(c);
    }
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    /* the redelivery: the same three, oldest first */
    for (int i = 0; i < 3; i++) {
        json_t *c = itest_mqtt_take(MQ, f.thing, "text", msg_wait());
        if (!c)
            fprintf(stderr, "  redelivery %d of 3 did not arrive\n", i + 1);
        assert_non_null(c);
        assert_string_equal(itest_str(c, "id"), ids[i]);
        assert_string_equal(itest_str(c, "text"), texts[i]);
        json_decref(c);
    }
    /* one report of the last marks all three delivered */
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", ids[2])));
    for (int i = 0; i < 3; i++)
        expect_status_now(&u, f.id, ids[i], "delivered");
    /* /metrics counted the three stored; the heartbeat repeated, and the report delivered
     * (each with its time), those three and the two still open from the pairing: the claim
     * code and `bound` */
    unsigned long long now[4];
    for (int i = 0; i < 4; i++)
        now[i] = itest_metric(D, counted[i]);
    assert_int_equal(now[0] - before[0], 3);
    for (int i = 1; i < 4; i++)
        assert_int_equal(now[i] - before[i], 3 + 2);
}

/* The display was offline when T went out (a clean session misses it) and woke within 5 s, so
 * the wake-up did not repeat T; a later command it does show proves nothing about T. */
static void test_report_after_a_wake_does_not_deliver_what_went_out_while_offline(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char missed[37], shown[37];
    send_text_ok(&u, &f, "sent while you were off", missed);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, missed, 1, msg_wait()), 1);
    /* it wakes (heartbeat, claim request) right away: too soon for a repeat of `missed` */
    heartbeat(&f);
    fdev_sync_bound(&f);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, missed), 1);
    send_text_ok(&u, &f, "sent while you were on", shown);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, shown, 1, msg_wait()), 1);
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", shown)));
    expect_status_now(&u, f.id, shown, "delivered");
    expect_status_now(&u, f.id, missed, "sent");
    /* the next heartbeat repeats it, and its own report delivers it */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, missed, 2, msg_wait()), 2);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, shown), 1);
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", missed)));
    expect_status_now(&u, f.id, missed, "delivered");
}

static void test_report_of_an_earlier_command_does_not_deliver_later_ones(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char first[37], second[37];
    send_text_ok(&u, &f, "first", first);
    send_text_ok(&u, &f, "second", second);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, second, 1, msg_wait()), 1);
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", first)));
    expect_status_now(&u, f.id, first, "delivered");
    expect_status_now(&u, f.id, second, "sent");
}

static void test_unbind_cancels_undelivered_commands_and_they_never_go_out(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char id[37];
    send_text_ok(&u, &f, "for the old owner only", id);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, id, 1, msg_wait()), 1);
    struct itest_resp r;
    itest_call(D, "POST", devpath(f.id, "/unbind"), u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);
    json_t *unbound = itest_mqtt_take(MQ, f.thing, "unbound", msg_wait());
    assert_non_null(unbound);
    json_decref(unbound);
    char *status = itest_db_value("SELECT status FROM device_commands WHERE id = $1", id);
    assert_string_equal(status, "canceled");
    free(status);
    /* the display wakes: the canceled command is not sent again */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    fdev_take_code(&f); /* unbound now: it gets a code, after anything else that was due */
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, id), 1);
}

static void test_cancel_a_queued_command_and_not_a_delivered_one(void **state)
{
    (void)state;
    struct itest_user u = {0}, other = {0};
    itest_register(D, &u);
    itest_register(D, &other);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char keep[37], drop[37];
    send_text_ok(&u, &f, "keep me", keep);
    send_text_ok(&u, &f, "never mind", drop);
    char path[400];
    snprintf(path, sizeof path, "%s/%s", devpath(f.id, "/commands"), drop);
    /* not yours: 403; unknown command: 404 */
    call_expect_error("DELETE", path, other.s.access, NULL, 403, NULL);
    char unknown[400];
    snprintf(unknown, sizeof unknown, "%s/%s", devpath(f.id, "/commands"), NO_SUCH_ID);
    call_expect_error("DELETE", unknown, u.s.access, NULL, 404, "command_not_found");
    char bad[400];
    snprintf(bad, sizeof bad, "%s/not-a-uuid", devpath(f.id, "/commands"));
    call_expect_error("DELETE", bad, u.s.access, NULL, 400, "invalid_id");
    struct itest_resp r;
    itest_call(D, "DELETE", path, u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, COMMAND_KEYS);
    assert_string_equal(itest_str(r.json, "id"), drop);
    assert_string_equal(itest_str(r.json, "status"), "canceled");
    itest_resp_free(&r);
    /* canceled is final: again → 409; and the display is never sent it again */
    call_expect_error("DELETE", path, u.s.access, NULL, 409, "command_finished");
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, keep, 1, msg_wait()), 1);
    size_t drop_seen = itest_mqtt_count_id(MQ, f.thing, drop); /* the first publish, if it won */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    heartbeat(&f);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, keep, 2, msg_wait()), 2);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, drop), drop_seen);
    /* a delivered command cannot be canceled */
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", keep)));
    expect_status_now(&u, f.id, keep, "delivered");
    snprintf(path, sizeof path, "%s/%s", devpath(f.id, "/commands"), keep);
    call_expect_error("DELETE", path, u.s.access, NULL, 409, "command_finished");
    expect_status_now(&u, f.id, drop, "canceled");
}

/* A state report whose hwId is another display's is refused like such a heartbeat. */
static void test_state_with_another_hwid_is_rejected(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char other[37];
    itest_random_uuid(other);
    unsigned long long dropped = metric("inklet_mqtt_messages_dropped_total");
    assert_true(publish_state(&f, json_pack("{s:s,s:s}", "hwId", other, "screen", "forged")));
    int64_t deadline = itest_now_ms() + msg_wait();
    while (metric("inklet_mqtt_messages_dropped_total") == dropped && itest_now_ms() < deadline)
        itest_sleep_ms(20);
    assert_int_equal(metric("inklet_mqtt_messages_dropped_total"), dropped + 1);
    json_t *dev = get_device(&u, f.id);
    assert_true(json_is_null(json_object_get(dev, "state")));
    json_decref(dev);
    /* its own hwId is fine */
    assert_true(publish_state(&f, json_pack("{s:s,s:s}", "hwId", f.hw, "screen", "mine")));
    deadline = itest_now_ms() + msg_wait();
    for (;;) {
        dev = get_device(&u, f.id);
        const char *st = json_string_value(json_object_get(dev, "state"));
        bool ok = st && strstr(st, "mine");
        json_decref(dev);
        if (ok)
            break;
        assert_true(itest_now_ms() < deadline);
        itest_sleep_ms(20);
    }
}

struct burst_job {
    const struct itest_user *u;
    const struct fdev *devs;
    size_t ndevs, from, to;
    char (*ids)[37];
    int failures;
};

static void *burst_thread(void *arg)
{
    struct burst_job *j = arg;
    CURL *h = curl_easy_init();
    for (size_t i = j->from; i < j->to; i++) {
        const struct fdev *f = &j->devs[i % j->ndevs];
        char path[128], body[64], auth[1100];
        snprintf(path, sizeof path, "%s/api/devices/%s/commands", D->url, f->id);
        snprintf(body, sizeof body, "{\"kind\":\"text\",\"text\":\"burst %zu\"}", i);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", j->u->s.access);
        const char *headers[] = {auth, "Content-Type: application/json", NULL};
        struct itest_resp r;
        itest_request(h, "POST", path, headers, body, strlen(body), &r);
        const char *id = r.status == 202 ? json_string_value(json_object_get(r.json, "id")) : NULL;
        if (id)
            snprintf(j->ids[i], 37, "%s", id);
        else
            j->failures++;
        itest_resp_free(&r);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static void test_burst_of_commands_all_reach_sent(void **state)
{
    (void)state;
    /* more than the 4,096 publishes the old acknowledgement table could tell apart */
    size_t n = itest.slow > 1 ? 600 : 5000;
    enum { NDEV = 10, NTHREADS = 8 };
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev devs[NDEV];
    for (int i = 0; i < NDEV; i++) {
        fdev_new(&devs[i]);
        fdev_bind(&devs[i], &u);
    }
    char(*ids)[37] = calloc(n, sizeof *ids);
    assert_non_null(ids);
    struct burst_job jobs[NTHREADS];
    pthread_t t[NTHREADS];
    for (int k = 0; k < NTHREADS; k++) {
        jobs[k] =
            (struct burst_job){&u, devs, NDEV, n * k / NTHREADS, n * (k + 1) / NTHREADS, ids, 0};
        assert_int_equal(pthread_create(&t[k], NULL, burst_thread, &jobs[k]), 0);
    }
    int failures = 0;
    for (int k = 0; k < NTHREADS; k++) {
        pthread_join(t[k], NULL);
        failures += jobs[k].failures;
    }
    assert_int_equal(failures, 0);
    /* every one is acknowledged by the broker and written: `sent`, none left `queued` */
    int64_t deadline = itest_now_ms() + itest_scaled(60000);
    char *queued = NULL;
    for (;;) {
        free(queued);
        queued =
            itest_db_value("SELECT count(*) FROM device_commands c JOIN devices d"
                           " ON d.id = c.device_id WHERE d.owner_id = $1::uuid AND c.kind = 'text'"
                           " AND c.status = 'queued'",
                           u.id);
        if (strcmp(queued, "0") == 0 || itest_now_ms() > deadline)
            break;
        itest_sleep_ms(200);
    }
    assert_string_equal(queued, "0");
    free(queued);
    char *sent =
        itest_db_value("SELECT count(*) FROM device_commands c JOIN devices d"
                       " ON d.id = c.device_id WHERE d.owner_id = $1::uuid AND c.kind = 'text'"
                       " AND c.status = 'sent'",
                       u.id);
    assert_int_equal(atoi(sent), (int)n);
    free(sent);
    free(ids);
}

static void test_share_group_redelivers_each_command_once(void **state)
{
    (void)state;
    struct itest_daemon *d[2];
    start_share_group(d, "redeliver");
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    char ids[3][37];
    for (int i = 0; i < 3; i++) {
        struct itest_resp r;
        itest_callf(d[i % 2], "POST", devpath(f.id, "/commands"), u.s.access, &r, "{s:s,s:s}",
                    "kind", "text", "text", "to the fleet");
        itest_expect_status(&r, 202);
        snprintf(ids[i], sizeof ids[i], "%s", itest_str(r.json, "id"));
        itest_resp_free(&r);
        assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, ids[i], 1, msg_wait()), 1);
    }
    /* the display wakes and says so four times in a row: the instances that get the heartbeats
     * publish each waiting command once between them */
    itest_sleep_ms(REDELIVERY_GAP_MS);
    for (int k = 0; k < 4; k++)
        heartbeat(&f);
    for (int i = 0; i < 3; i++)
        assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, ids[i], 2, msg_wait()), 2);
    fdev_sync_bound(&f);
    itest_sleep_ms(300); /* a duplicate would show up now */
    for (int i = 0; i < 3; i++)
        assert_int_equal(itest_mqtt_count_id(MQ, f.thing, ids[i]), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(itest_daemon_stop(d[i]), 0);
}

/* ---- command lifetime (own daemon: COMMAND_TTL=3) ------------------------------------------ */

static void test_undelivered_command_expires_after_command_ttl(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_bind(&f, &u);
    struct itest_resp r;
    itest_callf(D, "POST", devpath(f.id, "/commands"), u.s.access, &r, "{s:s,s:s}", "kind", "text",
                "text", "too late");
    itest_expect_status(&r, 202);
    char id[37];
    snprintf(id, sizeof id, "%s", itest_str(r.json, "id"));
    long long created = itest_timestamp(r.json, "createdAt");
    assert_int_equal(itest_timestamp(r.json, "expiresAt") - created, 3);
    itest_resp_free(&r);
    assert_int_equal(itest_mqtt_wait_count_id(MQ, f.thing, id, 1, msg_wait()), 1);
    itest_sleep_ms(REDELIVERY_GAP_MS);
    expect_status_now(&u, f.id, id, "expired");
    /* expired is final: not sent again, not cancelable, and a late report changes nothing */
    heartbeat(&f);
    fdev_sync_bound(&f);
    assert_int_equal(itest_mqtt_count_id(MQ, f.thing, id), 1);
    char path[400];
    snprintf(path, sizeof path, "%s/%s", devpath(f.id, "/commands"), id);
    call_expect_error("DELETE", path, u.s.access, NULL, 409, "command_finished");
    assert_true(publish_state(&f, json_pack("{s:s}", "lastCmd", id)));
    /* the report is handled once the state it carries is stored */
    int64_t deadline = itest_now_ms() + msg_wait();
    for (;;) {
        json_t *dev = get_device(&u, f.id);
        const char *st = json_string_value(json_object_get(dev, "state"));
        bool stored = st && strstr(st, id);
        json_decref(dev);
        if (stored)
            break;
        assert_true(itest_now_ms() < deadline);
        itest_sleep_ms(20);
    }
    expect_status_now(&u, f.id, id, "expired");
}

/* The README's walkthrough: a battery display (the real simulator, disconnected while it sleeps)
 * gets a message sent while it slept when it wakes, and the command becomes delivered. */
static void test_simulator_that_sleeps_gets_the_message_when_it_wakes(void **state)
{
    (void)state;
    if (access(sim_path(), X_OK) != 0)
        skip();
    struct itest_user u = {0};
    itest_register(D, &u);
    struct sim s;
    sim_start_with(&s, (const char *const[]){"--wake", "4", "--sleep", "8", NULL});
    char line[64];
    assert_true(sim_wait_output(&s, "CLAIM CODE: ", line, sizeof line));
    char code[7];
    snprintf(code, sizeof code, "%.6s", line);
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", code, &u);
    char id[37];
    snprintf(id, sizeof id, "%s", itest_str(dev, "id"));
    json_decref(dev);
    assert_true(sim_wait_output(&s, "BOUND", NULL, 0));
    /* once it sleeps (after being bound), send the message */
    assert_true(sim_wait_output_after(&s, "BOUND", "sleeping for", itest_scaled(15000)));
    struct itest_resp r;
    itest_callf(D, "POST", devpath(id, "/commands"), u.s.access, &r, "{s:s,s:s}", "kind", "text",
                "text", "While you slept");
    itest_expect_status(&r, 202);
    char cmd[37];
    snprintf(cmd, sizeof cmd, "%s", itest_str(r.json, "id"));
    itest_resp_free(&r);
    char *out = itest_read_file(s.out, NULL);
    assert_null(strstr(out, "TEXT: While you slept")); /* asleep: not shown yet */
    free(out);
    /* it wakes within 8 s, says so, gets it, shows it, reports it */
    assert_true(sim_wait_output_after(&s, "BOUND", "TEXT: While you slept", itest_scaled(20000)));
    json_t *c = poll_command_status(&u, id, cmd, "delivered", msg_wait());
    assert_non_null(c);
    json_decref(c);
    sim_stop(&s);
}

/* ---- claim code lifetime (own daemon: CLAIM_CODE_TTL=1) ------------------------------------ */

static void test_expired_code_is_410(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct fdev f;
    fdev_new(&f);
    fdev_online(&f);
    itest_sleep_ms(2000);
    struct itest_resp r;
    itest_callf(D, "POST", "/api/devices/bind/code", u.s.access, &r, "{s:s}", "claimCode", f.code);
    itest_expect_error(&r, 410, "claim_code_expired");
    assert_string_equal(itest_header(&r, "Content-Type"), "application/json; charset=utf-8");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/api/devices/bind", u.s.access, &r, "{s:s}", "claimCode", f.code);
    itest_expect_error(&r, 410, "claim_code_expired");
    itest_resp_free(&r);
    /* the display asks again and gets a new, working code */
    char old[8];
    snprintf(old, sizeof old, "%s", f.code);
    assert_true(itest_mqtt_request_claim(MQ, f.thing, f.hw));
    fdev_take_code(&f);
    assert_string_not_equal(f.code, old);
    if (itest.slow > 1)
        return; /* under a slow wrapper the 1 s code may expire before the bind arrives */
    json_t *dev = bind_ok("/api/devices/bind/code", "claimCode", f.code, &u);
    expect_owned_device(dev, &f, &u);
    json_decref(dev);
}

/* ---- groups ------------------------------------------------------------------------------- */

/* The group's daemon gets its own MQTT client id, and the recorder connects first. */
static int start_group(const char *name, const char *extra_env)
{
    char client_id[96], rec_id[96];
    snprintf(client_id, sizeof client_id, "MQTT_CLIENT_ID=itest-%s-%d-%s", itest.run_tag,
             (int)getpid(), name);
    snprintf(rec_id, sizeof rec_id, "itest-rec-%s-%d-%s", itest.run_tag, (int)getpid(), name);
    MQ = itest_mqtt_new(itest.mqtt_url, rec_id);
    if (!MQ)
        return -1;
    const char *env[] = {client_id, extra_env, NULL};
    itest_shared = itest_daemon_start(env);
    if (!itest_shared) {
        itest_mqtt_free(MQ);
        MQ = NULL;
        return -1;
    }
    itest_shared->shared = true;
    /* ready = connected to the database and subscribed to the broker */
    struct itest_resp r;
    poll_ready(200, itest_scaled(15000), &r);
    bool ok = r.status == 200;
    if (!ok)
        fprintf(stderr, "inklet-itest: %s: /health/ready is %ld: %s\n", name, r.status, r.body);
    itest_resp_free(&r);
    return ok ? 0 : -1;
}

static int devices_setup(void **state)
{
    (void)state;
    return start_group("devices", NULL);
}

static int ttl_setup(void **state)
{
    (void)state;
    return start_group("ttl", "CLAIM_CODE_TTL=1");
}

static int command_ttl_setup(void **state)
{
    (void)state;
    return start_group("cmdttl", "COMMAND_TTL=3");
}

static int devices_teardown(void **state)
{
    broker_start_again();
    int st = itest_group_teardown(state);
    itest_mqtt_free(MQ);
    MQ = NULL;
    return st;
}

#define T(f) cmocka_unit_test_teardown(f, dev_teardown)

int itest_group_devices(void)
{
    if (!itest.mqtt_url) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_MQTT_URL is not set; the device tests are "
                        "skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        T(test_shared_subscription_processes_each_message_once),
        T(test_pair_by_code_with_simulator),
        T(test_bind_route_accepts_claimCode_and_code),
        T(test_bind_code_unknown_is_404),
        T(test_bind_code_malformed_is_400),
        T(test_bind_code_is_single_use),
        T(test_code_race_has_exactly_one_winner),
        T(test_nfc_race_has_exactly_one_winner),
        T(test_nfc_signature_helper_matches_contract_vector),
        T(test_nfc_bind_binds_and_notifies_device),
        T(test_nfc_bind_again_by_owner_is_200),
        T(test_nfc_bind_by_another_user_is_409),
        T(test_nfc_bad_signature_is_403),
        T(test_nfc_malformed_payload_is_400),
        T(test_nfc_unknown_device_is_404),
        T(test_bind_route_accepts_nfcPayload_and_payload),
        T(test_device_routes_for_another_users_device_are_403),
        T(test_device_routes_for_unknown_id_are_404),
        T(test_device_routes_with_non_uuid_id_are_400),
        T(test_device_routes_with_dot_dot_slash_id_never_escape),
        T(test_device_routes_without_token_are_401),
        T(test_list_is_empty_for_new_user),
        T(test_list_is_most_recently_bound_first),
        T(test_unbind_by_post_notifies_and_frees_device),
        T(test_unbind_by_delete_notifies_and_frees_device),
        T(test_request_claim_from_bound_device_gets_already_bound),
        T(test_request_claim_from_unbound_device_repeats_live_code),
        T(test_request_claim_flood_is_answered_once_per_few_seconds),
        T(test_command_to_a_sleeping_display_arrives_when_it_wakes),
        T(test_undelivered_claim_code_is_published_again_on_a_later_heartbeat),
        T(test_queued_commands_arrive_in_order_and_one_report_delivers_all),
        T(test_report_of_an_earlier_command_does_not_deliver_later_ones),
        T(test_report_after_a_wake_does_not_deliver_what_went_out_while_offline),
        T(test_unbind_cancels_undelivered_commands_and_they_never_go_out),
        T(test_cancel_a_queued_command_and_not_a_delivered_one),
        T(test_state_with_another_hwid_is_rejected),
        T(test_burst_of_commands_all_reach_sent),
        T(test_share_group_redelivers_each_command_once),
        T(test_simulator_that_sleeps_gets_the_message_when_it_wakes),
        T(test_request_claim_flood_is_answered_once_per_few_seconds),
        T(test_command_to_a_sleeping_display_arrives_when_it_wakes),
        T(test_queued_commands_arrive_in_order_and_one_report_delivers_all),
        T(test_report_of_an_earlier_command_does_not_deliver_later_ones),
        T(test_unbind_cancels_undelivered_commands_and_they_never_go_out),
        T(test_cancel_a_queued_command_and_not_a_delivered_one),
        T(test_state_with_another_hwid_is_rejected),
        T(test_burst_of_commands_all_reach_sent),
        T(test_text_command_reaches_device_and_is_delivered),
        T(test_text_command_is_sent_once_broker_acknowledges),
        T(test_state_for_unknown_command_id_changes_nothing),
        T(test_command_validation_is_400),
        T(test_command_of_4000_characters_is_accepted),
        T(test_commands_limit_is_validated),
        T(test_commands_are_newest_first_and_limited),
        T(test_state_endpoint_returns_parsed_object),
        T(test_nickname_can_be_set_and_cleared),
        T(test_online_follows_heartbeats),
        T(test_heartbeat_updates_firmware_and_battery),
        T(test_heartbeat_battery_out_of_range_is_ignored),
        T(test_heartbeat_with_other_hwid_is_rejected),
        T(test_malformed_mqtt_messages_are_dropped),
        T(test_account_deletion_unbinds_devices),
        T(test_broker_outage_is_reported_and_survived), /* last: stops the broker */
    };
    const struct CMUnitTest ttl_tests[] = {
        T(test_expired_code_is_410),
    };
    const struct CMUnitTest command_ttl_tests[] = {
        T(test_undelivered_command_expires_after_command_ttl),
    };
    int failed = cmocka_run_group_tests_name("devices", tests, devices_setup, devices_teardown);
    failed +=
        cmocka_run_group_tests_name("devices_claim_ttl", ttl_tests, ttl_setup, devices_teardown);
    failed += cmocka_run_group_tests_name("devices_command_ttl", command_ttl_tests,
                                          command_ttl_setup, devices_teardown);
    return failed;
}
