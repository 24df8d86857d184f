#include "inklet/app.h"

#include "inklet/alloc.h"
#include "inklet/text.h"

#include <stdlib.h>
#include <string.h>

struct ink_app ink_app;

void ink_app_init_derived(void)
{
    ink_cidr_list_parse(&ink_app.trusted_proxies,
                        ink_app.cfg.trusted_proxies ? ink_app.cfg.trusted_proxies : "");
    char *copy = ink_strdup(ink_app.cfg.cors_origins ? ink_app.cfg.cors_origins : ""), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = ink_trim(tok);
        if (!*tok)
            continue;
        ink_app.cors_origins =
            ink_realloc(ink_app.cors_origins, (ink_app.cors_count + 1) * sizeof(char *));
        ink_app.cors_origins[ink_app.cors_count++] = ink_strdup(tok);
    }
    free(copy);
}

void ink_app_free(void)
{
    for (size_t i = 0; i < ink_app.cors_count; i++)
        free(ink_app.cors_origins[i]);
    free(ink_app.cors_origins);
    ink_app.cors_origins = NULL;
    ink_app.cors_count = 0;
    ink_cidr_list_free(&ink_app.trusted_proxies);
    ink_config_free(&ink_app.cfg);
}

bool ink_app_origin_allowed(const char *origin)
{
    if (!origin)
        return false;
    for (size_t i = 0; i < ink_app.cors_count; i++)
        if (strcmp(origin, ink_app.cors_origins[i]) == 0)
            return true;
    return false;
}
