/* libFuzzer driver: the MQTT topic of an incoming device message (ink_topic_parse_up). Accepted
 * ⇒ the topic is exactly inklet/dev/{thing}/up/{kind} with a valid thing name, and writing the
 * down topic for that thing gives inklet/dev/{thing}/down/cmd. */
#include "inklet/topic.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const KINDS[] = {"heartbeat", "state", "request_claim"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512)
        return 0;
    char topic[513];
    memcpy(topic, data, size);
    topic[size] = '\0'; /* MQTT topics are NUL-free UTF-8; a NUL ends the C string here */
    char thing[INK_THING_NAME_MAX + 1];
    enum ink_up_kind kind;
    if (!ink_topic_parse_up(topic, thing, &kind))
        return 0;
    size_t n = strlen(thing);
    if (n < 1 || n > INK_THING_NAME_MAX || !ink_thing_name_valid(thing, n))
        abort();
    if ((unsigned)kind > INK_UP_REQUEST_CLAIM)
        abort();
    char expect[INK_THING_NAME_MAX + 64];
    strcpy(expect, "inklet/dev/");
    strcat(expect, thing);
    strcat(expect, "/up/");
    strcat(expect, KINDS[kind]);
    if (strcmp(expect, topic) != 0)
        abort();
    char down[INK_THING_NAME_MAX + 32];
    ink_topic_down_cmd(thing, down, sizeof down);
    strcpy(expect, "inklet/dev/");
    strcat(expect, thing);
    strcat(expect, "/down/cmd");
    if (strcmp(expect, down) != 0)
        abort();
    return 0;
}
