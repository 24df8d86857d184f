#include "inklet/topic.h"

#include <stdio.h>
#include <string.h>

bool ink_thing_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > INK_THING_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

bool ink_topic_parse_up(const char *topic, char thing[INK_THING_NAME_MAX + 1],
                        enum ink_up_kind *kind)
{
    static const char prefix[] = "inklet/dev/";
    if (!topic || strncmp(topic, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *t = topic + sizeof prefix - 1;
    const char *slash = strchr(t, '/');
    if (!slash || !ink_thing_name_valid(t, (size_t)(slash - t)))
        return false;
    const char *rest = slash + 1;
    if (strncmp(rest, "up/", 3) != 0)
        return false;
    rest += 3;
    if (strcmp(rest, "heartbeat") == 0)
        *kind = INK_UP_HEARTBEAT;
    else if (strcmp(rest, "state") == 0)
        *kind = INK_UP_STATE;
    else if (strcmp(rest, "request_claim") == 0)
        *kind = INK_UP_REQUEST_CLAIM;
    else
        return false;
    memcpy(thing, t, (size_t)(slash - t));
    thing[slash - t] = '\0';
    return true;
}

void ink_topic_down_cmd(const char *thing, char *out, size_t outlen)
{
    snprintf(out, outlen, "inklet/dev/%s/down/cmd", thing);
}
