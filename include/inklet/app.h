/** Process-wide state shared by the modules: the loaded configuration and what is derived from
 *  it once at start. Written only before the HTTP server starts, read-only afterwards (except
 *  the atomic flags). */
#ifndef INKLET_APP_H
#define INKLET_APP_H
#include "inklet/config.h"
#include "inklet/netaddr.h"

#include <stdatomic.h>
#include <stddef.h>

struct ink_app {
    struct ink_config cfg;
    struct ink_cidr_list trusted_proxies;
    char **cors_origins;
    size_t cors_count;
    atomic_bool draining; /* shutdown has begun: /health answers 503 */
};

extern struct ink_app ink_app;

/** Derives the CORS list and proxy list from ink_app.cfg. */
void ink_app_init_derived(void);
void ink_app_free(void);
/** True if `origin` is in the CORS allowlist. */
bool ink_app_origin_allowed(const char *origin);

#endif
