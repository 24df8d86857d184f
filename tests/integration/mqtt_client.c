/* The test-side MQTT client: a recorder of down/cmd messages and a fake device. */
#include "mqtt_client.h"

#include "harness.h"

#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACK_RING 1024
#define PUBACK_WAIT_MS 5000
#define SUBSCRIPTION "inklet/dev/+/down/cmd"

struct rec {
    char thing[160];
    char kind[40];
    json_t *cmd; /* NULL when the payload is not a JSON object */
    bool taken;
};

struct itest_mqtt {
    struct mosquitto *m;
    pthread_mutex_t lock;
    struct rec *recs;
    size_t nrecs, cap;
    int acked[ACK_RING];
    unsigned acked_next;
    int sub_mid;
    atomic_bool connected, subscribed;
};

static atomic_int lib_users;

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    struct itest_mqtt *c = obj;
    if (rc != 0)
        return;
    atomic_store(&c->connected, true);
    int mid = 0;
    /* clean session: subscribe again after every (re)connect */
    if (mosquitto_subscribe(m, &mid, SUBSCRIPTION, 1) == MOSQ_ERR_SUCCESS) {
        pthread_mutex_lock(&c->lock);
        c->sub_mid = mid;
        pthread_mutex_unlock(&c->lock);
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)rc;
    struct itest_mqtt *c = obj;
    atomic_store(&c->connected, false);
    atomic_store(&c->subscribed, false);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count, const int *granted)
{
    (void)m;
    struct itest_mqtt *c = obj;
    pthread_mutex_lock(&c->lock);
    bool ours = mid == c->sub_mid;
    pthread_mutex_unlock(&c->lock);
    if (ours && qos_count >= 1 && granted[0] <= 2)
        atomic_store(&c->subscribed, true);
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    struct itest_mqtt *c = obj;
    pthread_mutex_lock(&c->lock);
    c->acked[c->acked_next++ % ACK_RING] = mid;
    pthread_mutex_unlock(&c->lock);
}

/* inklet/dev/{thing}/down/cmd → thing */
static bool thing_of(const char *topic, char *out, size_t outlen)
{
    static const char prefix[] = "inklet/dev/", suffix[] = "/down/cmd";
    size_t tl = strlen(topic), pl = sizeof prefix - 1, sl = sizeof suffix - 1;
    if (tl <= pl + sl || strncmp(topic, prefix, pl) != 0 || strcmp(topic + tl - sl, suffix) != 0)
        return false;
    size_t n = tl - pl - sl;
    if (n >= outlen)
        return false;
    memcpy(out, topic + pl, n);
    out[n] = '\0';
    return true;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    struct itest_mqtt *c = obj;
    struct rec r = {0};
    if (!msg->topic || !thing_of(msg->topic, r.thing, sizeof r.thing))
        return;
    r.cmd = msg->payloadlen > 0 ? json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL) : NULL;
    if (r.cmd && !json_is_object(r.cmd)) {
        json_decref(r.cmd);
        r.cmd = NULL;
    }
    const char *kind = json_string_value(json_object_get(r.cmd, "kind"));
    snprintf(r.kind, sizeof r.kind, "%s", kind ? kind : "");
    pthread_mutex_lock(&c->lock);
    if (c->nrecs == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        struct rec *nr = realloc(c->recs, cap * sizeof *nr);
        if (!nr) {
            pthread_mutex_unlock(&c->lock);
            json_decref(r.cmd);
            return;
        }
        c->recs = nr;
        c->cap = cap;
    }
    c->recs[c->nrecs++] = r;
    pthread_mutex_unlock(&c->lock);
}

static bool parse_url(const char *url, char *host, size_t hostlen, int *port)
{
    const char *rest = strncmp(url, "mqtt://", 7) == 0 ? url + 7 : url;
    size_t n = strcspn(rest, ":/");
    if (n == 0 || n >= hostlen)
        return false;
    memcpy(host, rest, n);
    host[n] = '\0';
    *port = rest[n] == ':' ? atoi(rest + n + 1) : 1883;
    return *port > 0 && *port < 65536;
}

struct itest_mqtt *itest_mqtt_new(const char *url, const char *client_id)
{
    char host[256];
    int port;
    if (!url || !parse_url(url, host, sizeof host, &port)) {
        fprintf(stderr, "itest-mqtt: bad broker URL %s\n", url ? url : "(null)");
        return NULL;
    }
    if (atomic_fetch_add(&lib_users, 1) == 0)
        mosquitto_lib_init();
    struct itest_mqtt *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    pthread_mutex_init(&c->lock, NULL);
    c->sub_mid = -1;
    c->m = mosquitto_new(client_id, true, c);
    if (!c->m) {
        fprintf(stderr, "itest-mqtt: mosquitto_new failed\n");
        itest_mqtt_free(c);
        return NULL;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    mosquitto_reconnect_delay_set(c->m, 1, 2, false);
    /* messages published while the link is down stay queued without limit */
    int rc = mosquitto_connect_async(c->m, host, port, 30);
    if (rc != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "itest-mqtt: connect to %s: %s (will retry)\n", url,
                mosquitto_strerror(rc));
    if (mosquitto_loop_start(c->m) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "itest-mqtt: mosquitto_loop_start failed\n");
        itest_mqtt_free(c);
        return NULL;
    }
    if (!itest_mqtt_wait_ready(c, itest_scaled(10000))) {
        fprintf(stderr, "itest-mqtt: not connected and subscribed to %s after 10 s\n", url);
        itest_mqtt_free(c);
        return NULL;
    }
    return c;
}

void itest_mqtt_free(struct itest_mqtt *c)
{
    if (!c)
        return;
    if (c->m) {
        mosquitto_disconnect(c->m);
        mosquitto_loop_stop(c->m, true);
        mosquitto_destroy(c->m);
    }
    for (size_t i = 0; i < c->nrecs; i++)
        json_decref(c->recs[i].cmd);
    free(c->recs);
    pthread_mutex_destroy(&c->lock);
    free(c);
    if (atomic_fetch_sub(&lib_users, 1) == 1)
        mosquitto_lib_cleanup();
}

bool itest_mqtt_wait_ready(struct itest_mqtt *c, unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        if (atomic_load(&c->connected) && atomic_load(&c->subscribed))
            return true;
        if (itest_now_ms() > deadline)
            return false;
        itest_sleep_ms(10);
    }
}

static bool was_acked(struct itest_mqtt *c, int mid)
{
    bool found = false;
    pthread_mutex_lock(&c->lock);
    for (unsigned i = 0; i < ACK_RING && !found; i++)
        found = c->acked[i] == mid;
    pthread_mutex_unlock(&c->lock);
    return found;
}

bool itest_mqtt_publish(struct itest_mqtt *c, const char *topic, const void *payload, size_t len)
{
    int mid = 0;
    int rc = mosquitto_publish(c->m, &mid, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "itest-mqtt: publish to %s: %s\n", topic, mosquitto_strerror(rc));
        return false;
    }
    int64_t deadline = itest_now_ms() + itest_scaled(PUBACK_WAIT_MS);
    while (!was_acked(c, mid)) {
        if (itest_now_ms() > deadline) {
            fprintf(stderr, "itest-mqtt: no PUBACK for a publish to %s\n", topic);
            return false;
        }
        itest_sleep_ms(2);
    }
    return true;
}

bool itest_mqtt_publish_up(struct itest_mqtt *c, const char *thing, const char *kind, json_t *body)
{
    char topic[256];
    snprintf(topic, sizeof topic, "inklet/dev/%s/up/%s", thing, kind);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return false;
    bool ok = itest_mqtt_publish(c, topic, text, strlen(text));
    free(text);
    return ok;
}

bool itest_mqtt_heartbeat(struct itest_mqtt *c, const char *thing, const char *hw_id,
                          const char *firmware, int battery)
{
    json_t *b = json_pack("{s:s,s:I}", "hwId", hw_id, "ts", (json_int_t)time(NULL));
    if (firmware)
        json_object_set_new(b, "firmware", json_string(firmware));
    if (battery >= -1000)
        json_object_set_new(b, "battery", json_integer(battery));
    return itest_mqtt_publish_up(c, thing, "heartbeat", b);
}

bool itest_mqtt_request_claim(struct itest_mqtt *c, const char *thing, const char *hw_id)
{
    return itest_mqtt_publish_up(
        c, thing, "request_claim",
        json_pack("{s:s,s:I}", "hwId", hw_id, "ts", (json_int_t)time(NULL)));
}

static bool rec_matches(const struct rec *r, const char *thing, const char *kind)
{
    return strcmp(r->thing, thing) == 0 && (!kind || strcmp(r->kind, kind) == 0);
}

json_t *itest_mqtt_take(struct itest_mqtt *c, const char *thing, const char *kind,
                        unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        json_t *found = NULL;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->nrecs && !found; i++) {
            struct rec *r = &c->recs[i];
            if (!r->taken && rec_matches(r, thing, kind)) {
                r->taken = true;
                found = r->cmd ? json_incref(r->cmd) : json_null();
            }
        }
        pthread_mutex_unlock(&c->lock);
        if (found)
            return found;
        if (itest_now_ms() > deadline)
            return NULL;
        itest_sleep_ms(10);
    }
}

size_t itest_mqtt_count(struct itest_mqtt *c, const char *thing, const char *kind)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nrecs; i++)
        n += rec_matches(&c->recs[i], thing, kind);
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t itest_mqtt_count_id(struct itest_mqtt *c, const char *thing, const char *id)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nrecs; i++) {
        const char *rid = json_string_value(json_object_get(c->recs[i].cmd, "id"));
        n += rec_matches(&c->recs[i], thing, NULL) && rid && strcmp(rid, id) == 0;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

size_t itest_mqtt_wait_count_id(struct itest_mqtt *c, const char *thing, const char *id, size_t n,
                                unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    size_t seen;
    while ((seen = itest_mqtt_count_id(c, thing, id)) < n && itest_now_ms() < deadline)
        itest_sleep_ms(20);
    return seen;
}

json_t *itest_mqtt_find_id(struct itest_mqtt *c, const char *thing, const char *id,
                           unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + timeout_ms;
    for (;;) {
        json_t *found = NULL;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->nrecs && !found; i++) {
            struct rec *r = &c->recs[i];
            const char *rid = json_string_value(json_object_get(r->cmd, "id"));
            if (rec_matches(r, thing, NULL) && rid && strcmp(rid, id) == 0)
                found = json_incref(r->cmd);
        }
        pthread_mutex_unlock(&c->lock);
        if (found)
            return found;
        if (itest_now_ms() > deadline)
            return NULL;
        itest_sleep_ms(10);
    }
}
