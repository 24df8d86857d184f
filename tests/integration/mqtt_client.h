/** A small test-side MQTT client (libmosquitto, its own network thread) for the device tests.
 *
 *  It records every message received on `inklet/dev/+/down/cmd`, per thing, so a test can wait
 *  (bounded, polling) for a command of a given kind for a given thing, and it publishes what a
 *  display would publish (heartbeat, state, request_claim) or any raw bytes on any topic.
 *  It reconnects by itself (1-2 s) after a broker restart and then subscribes again.
 *
 *  Thread-safe; never asserts (callers assert on the results). */
#ifndef INKLET_ITEST_MQTT_CLIENT_H
#define INKLET_ITEST_MQTT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct itest_mqtt;

/** Connects to `url` (mqtt://host:port), subscribes to inklet/dev/+/down/cmd and waits (bounded)
 *  for the subscription. NULL (with a message) on failure. */
struct itest_mqtt *itest_mqtt_new(const char *url, const char *client_id);
void itest_mqtt_free(struct itest_mqtt *c);

/** True once connected and subscribed, waiting up to timeout_ms. */
bool itest_mqtt_wait_ready(struct itest_mqtt *c, unsigned timeout_ms);

/** Publishes with QoS 1 and waits (bounded) for the broker's PUBACK. */
bool itest_mqtt_publish(struct itest_mqtt *c, const char *topic, const void *payload, size_t len);
/** Publishes `body` (compact JSON; the reference is stolen) on inklet/dev/{thing}/up/{kind}. */
bool itest_mqtt_publish_up(struct itest_mqtt *c, const char *thing, const char *kind, json_t *body);
/** Convenience for the device side of the contract. firmware NULL and battery < -1000 omit the
 *  field. */
bool itest_mqtt_heartbeat(struct itest_mqtt *c, const char *thing, const char *hw_id,
                          const char *firmware, int battery);
bool itest_mqtt_request_claim(struct itest_mqtt *c, const char *thing, const char *hw_id);

/** Waits up to timeout_ms for the first not yet taken command of `kind` (any kind when NULL) for
 *  `thing`, marks it taken and returns it (new reference), or NULL on timeout. */
json_t *itest_mqtt_take(struct itest_mqtt *c, const char *thing, const char *kind,
                        unsigned timeout_ms);
/** How many commands of `kind` (any when NULL) were received for `thing`, taken or not. */
size_t itest_mqtt_count(struct itest_mqtt *c, const char *thing, const char *kind);
/** How many times the command with this id arrived for `thing` (redeliveries count). */
size_t itest_mqtt_count_id(struct itest_mqtt *c, const char *thing, const char *id);
/** Waits up to timeout_ms until it arrived `n` times; returns the count then. */
size_t itest_mqtt_wait_count_id(struct itest_mqtt *c, const char *thing, const char *id, size_t n,
                                unsigned timeout_ms);
/** Waits up to timeout_ms for a command with this id for `thing` (taken or not); new reference
 *  or NULL. */
json_t *itest_mqtt_find_id(struct itest_mqtt *c, const char *thing, const char *id,
                           unsigned timeout_ms);

#endif
