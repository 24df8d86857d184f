/* inklet-sim: a simulated Inklet display. It speaks the device side of the MQTT contract (§5):
 * request_claim at start, heartbeats, and a state report after each command it receives. */
#include "inklet/ids.h"
#include "inklet/nfc.h"
#include "inklet/topic.h"

#include <jansson.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sim {
    char host[256];
    int port;
    char hw_id[INK_UUID_STRLEN + 1];
    char thing[INK_THING_NAME_MAX + 1];
    unsigned char key[32];
    unsigned heartbeat_s;
    const char *firmware;
    int battery;
    char screen[4096];
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
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

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct sim *s = obj;
    if (rc != 0) {
        printf("[sim] broker refused the connection: %s\n", mosquitto_connack_string(rc));
        return;
    }
    char topic[INK_THING_NAME_MAX + 32];
    ink_topic_down_cmd(s->thing, topic, sizeof topic);
    mosquitto_subscribe(m, NULL, topic, 1);
    printf("[sim] connected to %s:%d as %s\n", s->host, s->port, s->thing);
    /* request_claim first: it issues the code, and the heartbeat then finds it live */
    request_claim(m, s);
    heartbeat(m, s);
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    struct sim *s = obj;
    json_t *cmd = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
    const char *kind = json_string_value(json_object_get(cmd, "kind"));
    const char *id = json_string_value(json_object_get(cmd, "id"));
    if (!kind || !id) {
        printf("[sim] ignoring a malformed command\n");
        json_decref(cmd);
        return;
    }
    if (strcmp(kind, "claim_code") == 0) {
        printf("[sim] CLAIM CODE: %s (expires %s)\n",
               json_string_value(json_object_get(cmd, "code")),
               json_string_value(json_object_get(cmd, "expiresAt")));
    } else if (strcmp(kind, "bound") == 0) {
        printf("[sim] BOUND: paired with an account\n");
    } else if (strcmp(kind, "already_bound") == 0) {
        printf("[sim] ALREADY BOUND: no code needed\n");
    } else if (strcmp(kind, "unbound") == 0) {
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

static bool parse_broker(const char *url, struct sim *s)
{
    const char *rest = strncmp(url, "mqtt://", 7) == 0 ? url + 7 : url;
    size_t n = strcspn(rest, ":/");
    if (n == 0 || n >= sizeof s->host)
        return false;
    memcpy(s->host, rest, n);
    s->host[n] = '\0';
    s->port = rest[n] == ':' ? atoi(rest + n + 1) : 1883;
    return s->port > 0 && s->port < 65536;
}

static void usage(void)
{
    fprintf(stderr, "usage: inklet-sim [--broker mqtt://host:port] [--hw-id UUID] "
                    "[--thing-name NAME]\n                  [--factory-secret HEX64] "
                    "[--heartbeat-seconds N] [--firmware V] [--battery N]\n");
}

int main(int argc, char **argv)
{
    struct sim s = {.port = 1883, .heartbeat_s = 30, .firmware = "sim-1.0.0", .battery = 100};
    const char *broker = "mqtt://127.0.0.1:1883";
    const char *secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    ink_uuid_v7(s.hw_id);
    s.thing[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (strcmp(a, "--broker") == 0)
            broker = v;
        else if (strcmp(a, "--hw-id") == 0 && ink_uuid_valid(v))
            snprintf(s.hw_id, sizeof s.hw_id, "%s", v);
        else if (strcmp(a, "--thing-name") == 0 && ink_thing_name_valid(v, strlen(v)))
            snprintf(s.thing, sizeof s.thing, "%s", v);
        else if (strcmp(a, "--factory-secret") == 0)
            secret = v;
        else if (strcmp(a, "--heartbeat-seconds") == 0 && atoi(v) > 0)
            s.heartbeat_s = (unsigned)atoi(v);
        else if (strcmp(a, "--firmware") == 0)
            s.firmware = v;
        else if (strcmp(a, "--battery") == 0)
            s.battery = atoi(v);
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (!s.thing[0])
        snprintf(s.thing, sizeof s.thing, "inklet-%.8s", s.hw_id);
    if (!parse_broker(broker, &s) || !ink_hex_decode(secret, strlen(secret), s.key, 32)) {
        usage();
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    char sig[INK_NFC_SIG_LEN + 1];
    ink_nfc_sign(s.key, s.hw_id, sig);
    printf("[sim] hwId %s thing %s\n[sim] NFC: inklet:1:%s:%s\n", s.hw_id, s.thing, s.hw_id, sig);

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(NULL, true, &s);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_reconnect_delay_set(m, 1, 10, true);
    if (mosquitto_connect_async(m, s.host, s.port, 30) != MOSQ_ERR_SUCCESS)
        printf("[sim] broker not reachable yet; retrying\n");
    mosquitto_loop_start(m);
    time_t next = time(NULL) + s.heartbeat_s;
    while (!stop) {
        usleep(100000);
        if (time(NULL) >= next) {
            heartbeat(m, &s);
            next = time(NULL) + s.heartbeat_s;
        }
    }
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, true);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    printf("[sim] stopped\n");
    return 0;
}
