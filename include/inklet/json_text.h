/** JSON written as text into an ink_sb (inklet/strbuf.h), for hot routes that skip building a
 *  jansson tree: the device objects and the GET /auth/me object. Keys are our constants; every
 *  string value is escaped (INK_ESC_JSON). The caller sizes the buffer so that nothing is cut
 *  (INK_JT_ESCAPED_MAX bytes for each outside value) and treats sb.truncated as a bug. */
#ifndef INKLET_JSON_TEXT_H
#define INKLET_JSON_TEXT_H
#include "inklet/strbuf.h"

#include <stdbool.h>

/** The most bytes a value of n bytes takes once escaped (\u00XX for a control byte). */
#define INK_JT_ESCAPED_MAX(n) (6 * (n))

/** "key": with the comma before it unless it opens the object. */
void ink_jt_key(struct ink_sb *sb, const char *key);
/** "key":"value" escaped, or "key":null for NULL. */
void ink_jt_str(struct ink_sb *sb, const char *key, const char *value);
/** "key":"RFC 3339 UTC time", or "key":null for an epoch <= 0 (ink_json_time's rule). */
void ink_jt_time(struct ink_sb *sb, const char *key, long long epoch);
void ink_jt_bool(struct ink_sb *sb, const char *key, bool value);

#endif
