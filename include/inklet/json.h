/** Strict JSON input: length-aware parsing with duplicate keys, NUL bytes and invalid UTF-8
 *  rejected, and typed field access that never coerces. */
#ifndef INKLET_JSON_H
#define INKLET_JSON_H
#include "inklet/status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/** Parses buf[0..len) as one JSON object. On INK_OK *out is a new reference (caller decrefs).
 *  Anything else (not an object, NUL byte, bad UTF-8, duplicate key, trailing data) → INK_INVALID
 *  with *why set to a static description. */
enum ink_status ink_json_parse_object(const char *buf, size_t len, json_t **out, const char **why);

/** Reads an optional string field. Absent or null → *out = NULL and INK_OK; present with another
 *  type → INK_INVALID. The string is borrowed from obj. */
enum ink_status ink_json_opt_string(json_t *obj, const char *key, const char **out);
/** Like ink_json_opt_string but also reports whether the key was present with a JSON null. */
enum ink_status ink_json_opt_string_or_null(json_t *obj, const char *key, const char **out,
                                            bool *is_null);

/** Serializes compactly; returns a new malloc'd string and its length. */
char *ink_json_dump(const json_t *v, size_t *len);

/** json_string for timestamps: RFC 3339 from epoch seconds; 0 → JSON null. New reference. */
json_t *ink_json_time(long long epoch);
/** json_string or json_null for a possibly NULL C string. New reference. */
json_t *ink_json_str_or_null(const char *s);

#endif
