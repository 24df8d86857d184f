/* Per-instance cache of session liveness (sid → user, checked at). Bounded and lossy. */
#ifndef INKLET_SESSION_CACHE_H
#define INKLET_SESSION_CACHE_H
#include <stdbool.h>

#define SESSION_CACHE_TTL_MS 2000

bool session_cache_lookup(const char *sid, const char *uid);
void session_cache_store(const char *sid, const char *uid);
void session_cache_forget_user(const char *uid);
void session_cache_forget(const char *sid);

#endif
