/* inklet-sim: a simulated Inklet display. It speaks the device side of the MQTT contract (§5):
 * request_claim at start, heartbeats, and a state report after each command it receives.
 *
 * Commands are de-duplicated by id (the server publishes every undelivered command again when
 * the display sends a heartbeat, so a display may see one twice): a repeated id is not shown
 * again but is still answered with a state report, so the server learns that it arrived.
 *
 * With --sleep S --wake W it behaves like a battery display: awake W seconds (a heartbeat on
 * wake, then every --heartbeat-seconds), then a clean disconnect and S seconds offline, then a
 * fresh connection with the same client id (the thing name), thing name and hwId and a clean
 * session, as a display that lost power would make. */
#include "inklet/ids.h"
#include "inklet/nfc.h"
#include "inklet/topic.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Command ids remembered for de-duplication (the server keeps at most 200 per device). */
#define SEEN_MAX 512
#define SEEN_ID_MAX 64

struct sim {
    char host[256];
    int port;
    char hw_id[INK_UUID_STRLEN + 1];
    char thing[INK_THING_NAME_MAX + 1];
    unsigned char key[32];
    unsigned heartbeat_s;
    unsigned sleep_s, wake_s; /* both 0: always awake */
    const char *firmware;
    int battery;
    char screen[4096];
    /* touched only on the MQTT thread (callbacks), which runs while the display is awake */
    bool bound; /* told so by bound/already_bound; then a wake needs no request_claim */
    char seen[SEEN_MAX][SEEN_ID_MAX];
    unsigned seen_next, seen_count;
    atomic_bool connected;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void publish_json(struct mosquitto *m, struct sim *s, const char *kind, json_t *body)
{
    char topic[INK_THING_NAME_MAX + 32];
    snprintf(topic, sizeof topic, "inklet/dev/%s/up/%s", s->thing, kind);
    char *text = json_dumps(body, JSON_COMPACT);
    if (text)
        mosquitto_publish(m, NULL, topic, (int)strlen(text), text, 1, false);
    free(text);
    json_decref(body);
}

static void request_claim(struct mosquitto *m, struct sim *s)
{
    publish_json(m, s, "request_claim",
                 json_pack("{s:s,s:I}", "hwId", s->hw_id, "ts", (json_int_t)time(NULL)));
}

static void heartbeat(struct mosquitto *m, struct sim *s)
{
    publish_json(m, s, "heartbeat",
                 json_pack("{s:s,s:I,s:s,s:i}", "hwId", s->hw_id, "ts", (json_int_t)time(NULL),
                           "firmware", s->firmware, "battery", s->battery));
}

static void report_state(struct mosquitto *m, struct sim *s, const char *last_cmd)
{
    publish_json(m, s, "state",
                 json_pack("{s:s,s:s,s:s}", "screen", s->screen[0] ? "text" : "blank", "text",
                           s->screen, "lastCmd", last_cmd));
}

/* True if id was seen before; otherwise remembers it (the oldest of SEEN_MAX is forgotten). */
static bool seen_before(struct sim *s, const char *id)
{
    size_t n = strlen(id);
    if (n >= SEEN_ID_MAX)
        return false; /* not a command id the server makes (UUIDs); handle it every time */
    for (unsigned i = 0; i < s->seen_count; i++)
        if (strcmp(s->seen[i], id) == 0)
            return true;
    memcpy(s->seen[s->seen_next], id, n + 1);
    s->seen_next = (s->seen_next + 1) % SEEN_MAX;
    if (s->seen_count < SEEN_MAX)
        s->seen_count++;
    return false;
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct sim *s = obj;
    if (rc != 0) {
        printf("[sim] broker refused the connection: %s\n", mosquitto_connack_string(rc));
        return;
    }
    atomic_store(&s->connected, true);
    char topic[INK_THING_NAME_MAX + 32];
    ink_topic_down_cmd(s->thing, topic, sizeof topic);
    mosquitto_subscribe(m, NULL, topic, 1);
    printf("[sim] connected to %s:%d as %s\n", s->host, s->port, s->thing);
    /* request_claim first: it issues the code, and the heartbeat then finds it live. A display
     * that knows it is bound only says it is awake: the heartbeat makes the server publish what
     * was queued while it slept, and no already_bound answer is mixed into that. */
    if (!s->bound)
        request_claim(m, s);
    heartbeat(m, s);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    struct sim *s = obj;
    atomic_store(&s->connected, false);
    if (rc != 0 && !stop)
        printf("[sim] lost the broker; reconnecting\n");
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    struct sim *s = obj;
    json_t *cmd = msg->payload ? json_loadb(msg->payload, (size_t)msg->payloadlen,
                                            JSON_REJECT_DUPLICATES, NULL)
                               : NULL;
    const char *kind = json_string_value(json_object_get(cmd, "kind"));
    const char *id = json_string_value(json_object_get(cmd, "id"));
    if (!kind || !id) {
        printf("[sim] ignoring a malformed command\n");
        json_decref(cmd);
        return;
    }
    if (seen_before(s, id)) {
        printf("[sim] already have command %s (%s); acknowledged again\n", id, kind);
        report_state(m, s, id);
        json_decref(cmd);
        return;
    }
    if (strcmp(kind, "claim_code") == 0) {
        s->bound = false;
        printf("[sim] CLAIM CODE: %s (expires %s)\n",
               json_string_value(json_object_get(cmd, "code")),
               json_string_value(json_object_get(cmd, "expiresAt")));
    } else if (strcmp(kind, "bound") == 0) {
        s->bound = true;
        printf("[sim] BOUND: paired with an account\n");
    } else if (strcmp(kind, "already_bound") == 0) {
        s->bound = true;
        printf("[sim] ALREADY BOUND: no code needed\n");
    } else if (strcmp(kind, "unbound") == 0) {
        s->bound = false;
        s->screen[0] = '\0';
        printf("[sim] UNBOUND: screen cleared; asking for a new code\n");
    } else if (strcmp(kind, "text") == 0) {
        const char *text = json_string_value(json_object_get(cmd, "text"));
        snprintf(s->screen, sizeof s->screen, "%s", text ? text : "");
        printf("[sim] TEXT: %s\n", s->screen);
    } else {
        printf("[sim] command %s\n", kind);
    }
    report_state(m, s, id);
    if (strcmp(kind, "unbound") == 0)
        request_claim(m, s);
    json_decref(cmd);
}

/* Connects (asynchronously: an unreachable broker is retried by the network thread) with the
 * thing name as client id and a clean session. Returns the new client, or NULL. */
static struct mosquitto *link_up(struct sim *s)
{
    struct mosquitto *m = mosquitto_new(s->thing, true, s);
    if (!m) {
        printf("[sim] cannot create an MQTT client\n");
        return NULL;
    }
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_disconnect_callback_set(m, on_disconnect);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_reconnect_delay_set(m, 1, 10, true);
    if (mosquitto_connect_async(m, s->host, s->port, 30) != MOSQ_ERR_SUCCESS)
        printf("[sim] broker not reachable yet; retrying\n");
    if (mosquitto_loop_start(m) != MOSQ_ERR_SUCCESS) {
        printf("[sim] cannot start the MQTT thread\n");
        mosquitto_destroy(m);
        return NULL;
    }
    return m;
}

/* A clean DISCONNECT, then the network thread ends; frees the client. */
static void link_down(struct sim *s, struct mosquitto *m)
{
    if (!m)
        return;
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
    mosquitto_destroy(m);
    atomic_store(&s->connected, false);
}

static bool parse_broker(const char *url, struct sim *s)
{
    const char *rest = strncmp(url, "mqtt://", 7) == 0 ? url + 7 : url;
    size_t n = strcspn(rest, ":/");
    if (n == 0 || n >= sizeof s->host)
        return false;
    memcpy(s->host, rest, n);
    s->host[n] = '\0';
    unsigned port = 1883;
    if (rest[n] == ':') {
        char *end;
        errno = 0;
        unsigned long p = strtoul(rest + n + 1, &end, 10);
        if (errno || end == rest + n + 1 || (*end && *end != '/') || p == 0 || p > 65535)
            return false;
        port = (unsigned)p;
    }
    s->port = (int)port;
    return true;
}

/* A decimal in [min, max]; false for anything else (sign, junk, overflow). */
static bool parse_uint(const char *v, unsigned min, unsigned max, unsigned *out)
{
    char *end;
    if (*v < '0' || *v > '9')
        return false;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || n < min || n > max)
        return false;
    *out = (unsigned)n;
    return true;
}

/* Any int in decimal, with an optional sign. */
static bool parse_int(const char *v, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < INT_MIN || n > INT_MAX)
        return false;
    *out = (int)n;
    return true;
}

static void usage(FILE *f, bool full)
{
    fprintf(f, "usage: inklet-sim [--broker mqtt://host:port] [--hw-id UUID] [--thing-name NAME]\n"
               "                  [--factory-secret HEX64] [--heartbeat-seconds N] [--firmware V]\n"
               "                  [--battery N] [--sleep SECONDS --wake SECONDS] [--help]\n");
    if (!full)
        return;
    fprintf(f,
            "\n"
            "A simulated Inklet display. It connects with its thing name as MQTT client id, asks\n"
            "for a claim code, sends heartbeats, prints each command it is sent (a command id\n"
            "seen before is not shown again) and reports lastCmd in a state message after each.\n"
            "\n"
            "  --broker URL             the MQTT broker (default mqtt://127.0.0.1:1883)\n"
            "  --hw-id UUID             hardware id (default: a new one each run)\n"
            "  --thing-name NAME        thing name and client id (default inklet-<hwId prefix>)\n"
            "  --factory-secret HEX64   key of the NFC payload it prints (default: development)\n"
            "  --heartbeat-seconds N    heartbeat interval while awake (default 30)\n"
            "  --firmware V, --battery N  what the heartbeats report (sim-1.0.0, 100)\n"
            "  --sleep SECONDS, --wake SECONDS\n"
            "                           battery display: awake WAKE s (heartbeat on wake, then\n"
            "                           every interval), then disconnect and sleep SLEEP s, then\n"
            "                           reconnect (same identity, clean session); repeats until\n"
            "                           SIGINT/SIGTERM. Give both, or neither (always awake).\n"
            "  --help                   this text\n");
}

int main(int argc, char **argv)
{
    static struct sim s = {
        .port = 1883, .heartbeat_s = 30, .firmware = "sim-1.0.0", .battery = 100};
    const char *broker = "mqtt://127.0.0.1:1883";
    const char *secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    bool have_sleep = false, have_wake = false;
    ink_uuid_v7(s.hw_id);
    s.thing[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, true);
            return 0;
        }
        unsigned n;
        int b;
        bool ok = true;
        if (!v)
            ok = false;
        else if (strcmp(a, "--broker") == 0)
            broker = v;
        else if (strcmp(a, "--hw-id") == 0 && ink_uuid_valid(v))
            snprintf(s.hw_id, sizeof s.hw_id, "%s", v);
        else if (strcmp(a, "--thing-name") == 0 && ink_thing_name_valid(v, strlen(v)))
            snprintf(s.thing, sizeof s.thing, "%s", v);
        else if (strcmp(a, "--factory-secret") == 0)
            secret = v;
        else if (strcmp(a, "--heartbeat-seconds") == 0 && parse_uint(v, 1, 86400, &n))
            s.heartbeat_s = n;
        else if (strcmp(a, "--firmware") == 0)
            s.firmware = v;
        else if (strcmp(a, "--battery") == 0 && parse_int(v, &b))
            s.battery = b; /* out of 0..100 on purpose: the server must ignore it */
        else if (strcmp(a, "--sleep") == 0 && parse_uint(v, 1, 86400, &n)) {
            s.sleep_s = n;
            have_sleep = true;
        } else if (strcmp(a, "--wake") == 0 && parse_uint(v, 1, 86400, &n)) {
            s.wake_s = n;
            have_wake = true;
        } else
            ok = false;
        if (!ok) {
            fprintf(stderr, "inklet-sim: bad or missing value for %s\n", a);
            usage(stderr, false);
            return 2;
        }
        i++;
    }
    if (have_sleep != have_wake) {
        fprintf(stderr, "inklet-sim: --sleep and --wake go together\n");
        usage(stderr, false);
        return 2;
    }
    if (!s.thing[0])
        snprintf(s.thing, sizeof s.thing, "inklet-%.8s", s.hw_id);
    if (!parse_broker(broker, &s) || !ink_hex_decode(secret, strlen(secret), s.key, 32)) {
        usage(stderr, false);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char sig[INK_NFC_SIG_LEN + 1];
    ink_nfc_sign(s.key, s.hw_id, sig);
    printf("[sim] hwId %s thing %s\n[sim] NFC: inklet:1:%s:%s\n", s.hw_id, s.thing, s.hw_id, sig);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    mosquitto_lib_init();
    bool cycles = s.sleep_s > 0;
    if (cycles)
        printf("[sim] awake for %u s\n", s.wake_s);
    struct mosquitto *m = link_up(&s);
    if (!m) {
        mosquitto_lib_cleanup();
        return 1;
    }
    int64_t t = now_ms();
    int64_t next_beat = t + (int64_t)s.heartbeat_s * 1000;
    int64_t phase_end = cycles ? t + (int64_t)s.wake_s * 1000 : INT64_MAX;
    bool awake = true;
    while (!stop) {
        usleep(100000);
        t = now_ms();
        if (awake && m && t >= next_beat) {
            if (atomic_load(&s.connected))
                heartbeat(m, &s);
            next_beat = t + (int64_t)s.heartbeat_s * 1000;
        }
        if (t < phase_end || stop)
            continue;
        if (awake) {
            printf("[sim] sleeping for %u s\n", s.sleep_s);
            link_down(&s, m);
            m = NULL;
            phase_end += (int64_t)s.sleep_s * 1000; /* no drift: a fleet stays in step */
        } else {
            printf("[sim] awake for %u s\n", s.wake_s);
            m = link_up(&s); /* on_connect sends the wake-up heartbeat */
            next_beat = t + (int64_t)s.heartbeat_s * 1000;
            phase_end += (int64_t)s.wake_s * 1000;
        }
        awake = !awake;
    }
    link_down(&s, m);
    mosquitto_lib_cleanup();
    printf("[sim] stopped\n");
    return 0;
}
