/** The device topic contract (§5): inklet/dev/{thingName}/up/{heartbeat|state|request_claim} and
 *  inklet/dev/{thingName}/down/cmd. */
#ifndef INKLET_TOPIC_H
#define INKLET_TOPIC_H
#include <stdbool.h>
#include <stddef.h>

#define INK_THING_NAME_MAX 128

enum ink_up_kind { INK_UP_HEARTBEAT, INK_UP_STATE, INK_UP_REQUEST_CLAIM };

/** Parses an upstream topic. False for anything else (other prefixes, extra levels, wildcards,
 *  thing names outside [A-Za-z0-9_:-]{1,128}). */
bool ink_topic_parse_up(const char *topic, char thing[INK_THING_NAME_MAX + 1],
                        enum ink_up_kind *kind);
/** True if s is a valid thing name. */
bool ink_thing_name_valid(const char *s, size_t len);
/** Writes "inklet/dev/{thing}/down/cmd" into out. */
void ink_topic_down_cmd(const char *thing, char *out, size_t outlen);

#endif
