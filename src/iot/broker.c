#include "inklet/broker.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/ids.h"
#include "inklet/log.h"
#include "inklet/timeutil.h"
#include "inklet/topic.h"

#include <mosquitto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEPALIVE_S 30
/* MQTT packet ids are 16 bits: one slot per id, so two publishes in flight never share a slot.
 * At most PENDING_MAX may be in flight (well below the 65,535 ids, which libmosquitto hands out
 * in turn); beyond that a publish is refused and the command waits for its display's next
 * heartbeat, so an acknowledgement can never be matched to the wrong command. */
#define PENDING_SLOTS 65536
#define PENDING_MAX 32768
/* an acknowledgement that came before its publish returned is kept this long at most */
#define EARLY_ACK_MS 10000

/* mid → command id for publishes awaiting PUBACK. An ack can arrive before mosquitto_publish
 * has returned the mid to us, so an unmatched ack is remembered as "early" and paired later. */
struct pending {
    int mid;
    int64_t early_ack_ms; /* when an unmatched ack for this mid came (0: none) */
    char command_id[INK_UUID_STRLEN + 1];
};

static struct {
    struct mosquitto *mosq;
    atomic_bool connected;    /* the link is up: connected AND the subscription was granted */
    atomic_bool socket_up;    /* CONNACK received, no disconnect since */
    atomic_bool stopping;     /* shutdown has begun: never subscribe again */
    atomic_int subscribe_mid; /* the SUBSCRIBE whose SUBACK decides `connected` */
    char client_id[160];
    char subscription[256];
    struct ink_broker_handlers handlers;
    pthread_mutex_t lock;
    struct pending *pending; /* PENDING_SLOTS */
    unsigned in_flight;      /* slots holding a command id */
    atomic_ullong received, published, acked, dropped, refused;
} mq = {.lock = PTHREAD_MUTEX_INITIALIZER};

bool ink_broker_connected(void)
{
    return atomic_load(&mq.connected);
}

bool ink_broker_can_publish(void)
{
    if (!atomic_load(&mq.connected))
        return false;
    pthread_mutex_lock(&mq.lock);
    bool room = mq.in_flight < PENDING_MAX;
    pthread_mutex_unlock(&mq.lock);
    return room;
}

void ink_broker_get_stats(struct ink_broker_stats *out)
{
    pthread_mutex_lock(&mq.lock);
    out->in_flight = mq.in_flight;
    pthread_mutex_unlock(&mq.lock);
    out->refused = atomic_load(&mq.refused);
    out->received = atomic_load(&mq.received);
    out->published = atomic_load(&mq.published);
    out->acked = atomic_load(&mq.acked);
    out->dropped = atomic_load(&mq.dropped);
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)obj;
    if (rc != 0) {
        ink_warn("broker refused the connection: %s", mosquitto_connack_string(rc));
        return;
    }
    atomic_store(&mq.socket_up, true);
    if (atomic_load(&mq.stopping))
        return;
    int mid = 0;
    int src = mosquitto_subscribe(m, &mid, mq.subscription, 1);
    if (src != MOSQ_ERR_SUCCESS) {
        ink_warn("broker subscribe failed: %s", mosquitto_strerror(src));
        return;
    }
    atomic_store(&mq.subscribe_mid, mid);
}

/* The link counts as up only once the broker granted the subscription: a broker that refuses
 * it (SUBACK 0x80, an ACL) would otherwise look healthy while no device message can arrive. It
 * stays down until the next reconnect subscribes again. */
static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qos_count,
                         const int *granted_qos)
{
    (void)m;
    (void)obj;
    if (mid != atomic_load(&mq.subscribe_mid) || atomic_load(&mq.stopping))
        return; /* a late SUBACK must not mark the link up again during shutdown */
    if (qos_count < 1 || !granted_qos || granted_qos[0] < 0 || granted_qos[0] > 2) {
        ink_warn("broker refused the subscription to %s (SUBACK 0x%02x): no device message can "
                 "arrive; check the broker's ACL for client %s",
                 mq.subscription, qos_count >= 1 && granted_qos ? granted_qos[0] & 0xff : 0x80,
                 mq.client_id);
        return;
    }
    atomic_store(&mq.connected, true);
    ink_info("broker connected as %s; subscribed to %s", mq.client_id, mq.subscription);
}

/* After a lost connection nothing in flight is trusted: the commands stay undelivered and go out
 * again at their displays' next heartbeats, and no old packet id can be paired with a new one. */
static void forget_in_flight(void)
{
    pthread_mutex_lock(&mq.lock);
    if (mq.pending)
        memset(mq.pending, 0, PENDING_SLOTS * sizeof *mq.pending);
    mq.in_flight = 0;
    pthread_mutex_unlock(&mq.lock);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    (void)obj;
    atomic_store(&mq.connected, false);
    atomic_store(&mq.socket_up, false);
    forget_in_flight();
    if (rc != 0 && !atomic_load(&mq.stopping))
        ink_warn("broker connection lost; reconnecting with back-off");
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    (void)obj;
    atomic_fetch_add(&mq.received, 1);
    char thing[INK_THING_NAME_MAX + 1];
    enum ink_up_kind kind;
    if (!msg->topic || !ink_topic_parse_up(msg->topic, thing, &kind) || msg->payloadlen < 0 ||
        msg->payloadlen > INK_BROKER_MAX_PAYLOAD) {
        atomic_fetch_add(&mq.dropped, 1);
        ink_debug("dropped a malformed or oversized device message");
        return;
    }
    mq.handlers.message(thing, kind, msg->payload, (size_t)msg->payloadlen);
}

static struct pending *slot_for(int mid)
{
    return &mq.pending[(unsigned)mid % PENDING_SLOTS];
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    (void)m;
    (void)obj;
    atomic_fetch_add(&mq.acked, 1);
    char id[INK_UUID_STRLEN + 1] = "";
    pthread_mutex_lock(&mq.lock);
    struct pending *p = mq.pending ? slot_for(mid) : NULL;
    if (p && p->mid == mid && p->command_id[0]) {
        memcpy(id, p->command_id, sizeof id);
        p->mid = 0;
        p->command_id[0] = '\0';
        mq.in_flight--;
    } else if (p) {
        p->mid = mid;
        p->early_ack_ms = ink_now_mono_ms();
    }
    pthread_mutex_unlock(&mq.lock);
    if (id[0])
        mq.handlers.acked(id);
}

enum ink_status ink_broker_publish_cmd(const char *thing, const char *command_id,
                                       const char *payload, size_t len)
{
    /* publishing needs the connection, not the subscription (so it also works while draining) */
    if (!mq.mosq || !atomic_load(&mq.socket_up))
        return INK_UNAVAILABLE;
    pthread_mutex_lock(&mq.lock);
    bool room = mq.in_flight < PENDING_MAX;
    pthread_mutex_unlock(&mq.lock);
    if (!room) {
        atomic_fetch_add(&mq.refused, 1);
        return INK_UNAVAILABLE;
    }
    char topic[INK_THING_NAME_MAX + 32];
    ink_topic_down_cmd(thing, topic, sizeof topic);
    int mid = 0;
    int rc = mosquitto_publish(mq.mosq, &mid, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        ink_warn("publish to %s failed: %s", topic, mosquitto_strerror(rc));
        return INK_UNAVAILABLE;
    }
    atomic_fetch_add(&mq.published, 1);
    bool acked_already = false;
    pthread_mutex_lock(&mq.lock);
    struct pending *p = slot_for(mid);
    if (p->mid == mid && p->early_ack_ms && ink_now_mono_ms() - p->early_ack_ms < EARLY_ACK_MS) {
        acked_already = true;
        *p = (struct pending){0};
    } else {
        if (p->command_id[0])
            mq.in_flight--; /* a slot left behind (its ack never came): reused */
        *p = (struct pending){.mid = mid};
        snprintf(p->command_id, sizeof p->command_id, "%s", command_id);
        mq.in_flight++;
    }
    pthread_mutex_unlock(&mq.lock);
    if (acked_already)
        mq.handlers.acked(command_id);
    return INK_OK;
}

/* MQTT_CLIENT_ID, or with a share group and no explicit id, "<default>-<host>-<pid>-<random>":
 * two instances with one id would take each other's session over and over. */
static void client_id(const struct ink_config *cfg, char *out, size_t outlen)
{
    if (!cfg->mqtt_client_id_unique) {
        snprintf(out, outlen, "%s", cfg->mqtt_client_id);
        return;
    }
    char host[65] = "host";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "host");
    host[32] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-'))
            *p = '-';
    unsigned char r[4];
    ink_random_bytes(r, sizeof r);
    char hex[9];
    ink_hex_encode(r, sizeof r, hex);
    snprintf(out, outlen, "%s-%s-%ld-%s", cfg->mqtt_client_id, host, (long)getpid(), hex);
}

/* mqtt://host[:port] or mqtts://host[:port] */
static bool parse_url(const char *url, char *host, size_t hostlen, int *port, bool *tls)
{
    const char *rest;
    if (strncmp(url, "mqtts://", 8) == 0) {
        *tls = true;
        *port = 8883;
        rest = url + 8;
    } else if (strncmp(url, "mqtt://", 7) == 0) {
        *tls = false;
        *port = 1883;
        rest = url + 7;
    } else {
        return false;
    }
    size_t n = strcspn(rest, ":/");
    if (n == 0 || n >= hostlen)
        return false;
    memcpy(host, rest, n);
    host[n] = '\0';
    if (rest[n] == ':') {
        char *end;
        long p = strtol(rest + n + 1, &end, 10);
        if (p < 1 || p > 65535 || (*end && *end != '/'))
            return false;
        *port = (int)p;
    }
    return true;
}

bool ink_broker_start(const struct ink_broker_handlers *handlers)
{
    const struct ink_config *cfg = &ink_app.cfg;
    mq.handlers = *handlers;
    mq.pending = ink_calloc(PENDING_SLOTS, sizeof *mq.pending);
    char host[256];
    int port;
    bool tls;
    if (!parse_url(cfg->mqtt_url, host, sizeof host, &port, &tls)) {
        ink_error("MQTT_URL is not mqtt://host[:port] or mqtts://host[:port]");
        return false;
    }
    if (cfg->mqtt_share_group && *cfg->mqtt_share_group)
        snprintf(mq.subscription, sizeof mq.subscription, "$share/%s/inklet/dev/+/up/#",
                 cfg->mqtt_share_group);
    else
        snprintf(mq.subscription, sizeof mq.subscription, "inklet/dev/+/up/#");
    client_id(cfg, mq.client_id, sizeof mq.client_id);
    mosquitto_lib_init();
    mq.mosq = mosquitto_new(mq.client_id, true, NULL);
    if (!mq.mosq) {
        ink_error("cannot create the MQTT client");
        return false;
    }
    mosquitto_int_option(mq.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(mq.mosq, on_connect);
    mosquitto_disconnect_callback_set(mq.mosq, on_disconnect);
    mosquitto_subscribe_callback_set(mq.mosq, on_subscribe);
    mosquitto_message_callback_set(mq.mosq, on_message);
    mosquitto_publish_callback_set(mq.mosq, on_publish);
    mosquitto_reconnect_delay_set(mq.mosq, 1, 30, true);
    /* config guarantees both or neither; libmosquitto keeps its own copies */
    if (cfg->mqtt_username) {
        int rc = mosquitto_username_pw_set(mq.mosq, cfg->mqtt_username, cfg->mqtt_password);
        if (rc != MOSQ_ERR_SUCCESS) {
            ink_error("MQTT_USERNAME/MQTT_PASSWORD rejected by libmosquitto: %s",
                      mosquitto_strerror(rc));
            return false;
        }
    }
    if (tls) {
        int rc = mosquitto_tls_set(mq.mosq, cfg->mqtt_ca_file, NULL, cfg->mqtt_cert_file,
                                   cfg->mqtt_key_file, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            ink_error("MQTT TLS setup failed: %s", mosquitto_strerror(rc));
            return false;
        }
    }
    int rc = mosquitto_connect_async(mq.mosq, host, port, KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS)
        ink_warn("broker not reachable yet (%s); will keep trying", mosquitto_strerror(rc));
    if (mosquitto_loop_start(mq.mosq) != MOSQ_ERR_SUCCESS) {
        ink_error("cannot start the MQTT network thread");
        return false;
    }
    return true;
}

void ink_broker_unsubscribe(void)
{
    if (!mq.mosq)
        return;
    atomic_store(&mq.stopping, true);
    atomic_store(&mq.connected, false);
    if (atomic_load(&mq.socket_up))
        mosquitto_unsubscribe(mq.mosq, NULL, mq.subscription);
}

void ink_broker_stop(void)
{
    if (!mq.mosq)
        return;
    atomic_store(&mq.stopping, true);
    atomic_store(&mq.connected, false);
    /* DISCONNECT goes out after whatever is queued; the network thread then leaves its loop by
     * itself (it also leaves a reconnect back-off: mosquitto_loop_stop wakes it), so it is
     * joined, never cancelled inside a callback. Bounded: a dead broker cannot hold us. */
    mosquitto_disconnect(mq.mosq);
    for (int i = 0; i < 100 && atomic_load(&mq.socket_up); i++)
        usleep(10000);
    mosquitto_loop_stop(mq.mosq, false);
    mosquitto_destroy(mq.mosq);
    mq.mosq = NULL;
    mosquitto_lib_cleanup();
    pthread_mutex_lock(&mq.lock);
    free(mq.pending);
    mq.pending = NULL;
    mq.in_flight = 0;
    pthread_mutex_unlock(&mq.lock);
}
