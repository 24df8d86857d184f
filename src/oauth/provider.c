/* The two providers as configured: endpoints, client ids, keys, the JWKS caches, and the Apple
 * client secret (signed here, cached). */
#include "oauth_internal.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/apple.h"
#include "inklet/deadline.h"
#include "inklet/formdata.h"
#include "inklet/http_client.h"
#include "inklet/ids.h"
#include "inklet/log.h"
#include "inklet/oauth.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const GOOGLE_ISSUERS[] = {"https://accounts.google.com", "accounts.google.com"};
static const char *const APPLE_ISSUERS[] = {"https://appleid.apple.com"};

static struct ink_oauth_provider providers[] = {
    {.name = "google",
     .issuers = GOOGLE_ISSUERS,
     .issuer_count = 2,
     .scope = "openid email profile",
     .pkce = true},
    {.name = "apple",
     .issuers = APPLE_ISSUERS,
     .issuer_count = 1,
     .scope = "name email",
     .form_post = true},
};
#define NPROVIDERS (sizeof providers / sizeof *providers)

static struct ink_secretbox token_box;
static bool token_box_ready;

static bool set(const char *v)
{
    return v && *v;
}

static atomic_ullong signin_ok[NPROVIDERS], signin_failed[NPROVIDERS], revoked, revoke_failed;

void ink_oauth_count_signin(const struct ink_oauth_provider *p, bool ok)
{
    if (!p)
        return;
    size_t i = (size_t)(p - providers);
    if (i < NPROVIDERS)
        atomic_fetch_add(ok ? &signin_ok[i] : &signin_failed[i], 1);
}

void ink_oauth_count_revocation(bool ok)
{
    atomic_fetch_add(ok ? &revoked : &revoke_failed, 1);
}

void ink_oauth_get_stats(struct ink_oauth_stats *out)
{
    for (size_t i = 0; i < NPROVIDERS; i++) {
        out->signin_ok[i] = atomic_load(&signin_ok[i]);
        out->signin_failed[i] = atomic_load(&signin_failed[i]);
        out->jwks_fetches[i] = providers[i].jwks ? ink_jwks_fetches(providers[i].jwks) : 0;
    }
    out->revoked = atomic_load(&revoked);
    out->revoke_failed = atomic_load(&revoke_failed);
}

void ink_oauth_post_form(const char *url, const struct ink_form *form, size_t max_response,
                         struct ink_http_response *out)
{
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    struct ink_http_request rq = {.method = "POST",
                                  .url = url,
                                  .headers = headers,
                                  .body = form->data,
                                  .body_len = form->len,
                                  .timeout_ms = (int64_t)ink_app.cfg.oauth_timeout * 1000,
                                  .max_response = max_response};
    int64_t paused = ink_deadline_pause();
    ink_http_perform(&rq, out);
    ink_deadline_resume(paused);
}

struct ink_oauth_provider *ink_oauth_provider(const char *name)
{
    for (size_t i = 0; name && i < NPROVIDERS; i++)
        if (strcmp(providers[i].name, name) == 0)
            return &providers[i];
    return NULL;
}

const struct ink_secretbox *ink_oauth_token_box(void)
{
    return token_box_ready ? &token_box : NULL;
}

static void setup_common(struct ink_oauth_provider *p, const char *ids, const char *jwks_url)
{
    p->client_ids = ids;
    p->native = set(ids);
    if (p->native) {
        size_t n = strcspn(ids, ",");
        p->web_client_id = ink_malloc(n + 1);
        memcpy(p->web_client_id, ids, n);
        p->web_client_id[n] = '\0';
        p->jwks = ink_jwks_new(jwks_url, (int64_t)ink_app.cfg.oauth_timeout * 1000);
    }
    pthread_mutex_init(&p->secret_lock, NULL);
}

bool ink_oauth_init(void)
{
    const struct ink_config *c = &ink_app.cfg;
    struct ink_oauth_provider *g = ink_oauth_provider("google"), *a = ink_oauth_provider("apple");

    setup_common(g, c->google_client_ids, c->google_jwks_url);
    g->auth_url = c->google_auth_url;
    g->token_url = c->google_token_url;
    g->redirect_url = c->google_redirect_url;
    g->client_secret = c->google_client_secret;
    /* config.c made the browser setup all or nothing */
    g->browser = g->native && set(c->google_client_secret) && set(c->google_redirect_url);

    setup_common(a, c->apple_client_ids, c->apple_jwks_url);
    a->auth_url = c->apple_auth_url;
    a->token_url = c->apple_token_url;
    a->redirect_url = c->apple_redirect_url;
    a->revoke_url = c->apple_revoke_url;
    a->team_id = c->apple_team_id;
    a->key_id = c->apple_key_id;
    if (set(c->token_encryption_key)) {
        unsigned char master[32];
        if (!ink_hex_decode(c->token_encryption_key, strlen(c->token_encryption_key), master,
                            sizeof master) ||
            !ink_secretbox_init(&token_box, master, "inklet/apple-refresh-token/v1")) {
            ink_error("config: TOKEN_ENCRYPTION_KEY cannot be used");
            return false;
        }
        token_box_ready = true;
    }
    if (a->native && set(c->apple_private_key_file)) {
        const char *why = NULL;
        a->apple_key = ink_apple_load_key(c->apple_private_key_file, &why);
        if (!a->apple_key) {
            ink_error("config: APPLE_PRIVATE_KEY_FILE %s: %s", c->apple_private_key_file, why);
            return false;
        }
        a->browser = set(c->apple_redirect_url) && token_box_ready;
    }
    for (size_t i = 0; i < NPROVIDERS; i++)
        ink_info("oauth: %s sign-in: %s", providers[i].name,
                 providers[i].browser  ? "browser and native"
                 : providers[i].native ? "native only"
                                       : "not configured");
    return true;
}

void ink_oauth_shutdown(void)
{
    for (size_t i = 0; i < NPROVIDERS; i++) {
        struct ink_oauth_provider *p = &providers[i];
        ink_jwks_free(p->jwks);
        EVP_PKEY_free(p->apple_key);
        free(p->web_client_id);
        free(p->secret_cache);
        pthread_mutex_destroy(&p->secret_lock);
        *p = (struct ink_oauth_provider){.name = p->name,
                                         .issuers = p->issuers,
                                         .issuer_count = p->issuer_count,
                                         .scope = p->scope,
                                         .pkce = p->pkce,
                                         .form_post = p->form_post};
    }
    ink_secretbox_wipe(&token_box);
    token_box_ready = false;
}

char *ink_oauth_client_secret(struct ink_oauth_provider *p)
{
    if (!p->apple_key)
        return p->client_secret ? ink_strdup(p->client_secret) : NULL;
    long long now = (long long)time(NULL);
    pthread_mutex_lock(&p->secret_lock);
    if (!p->secret_cache || now >= p->secret_expires - INK_APPLE_SECRET_RENEW) {
        char *fresh = ink_apple_client_secret(p->apple_key, p->key_id, p->team_id, p->web_client_id,
                                              now, INK_APPLE_SECRET_TTL);
        if (fresh) {
            free(p->secret_cache);
            p->secret_cache = fresh;
            p->secret_expires = now + INK_APPLE_SECRET_TTL;
        } else {
            ink_error("oauth: signing the Apple client secret failed");
        }
    }
    char *out = p->secret_cache && now < p->secret_expires ? ink_strdup(p->secret_cache) : NULL;
    pthread_mutex_unlock(&p->secret_lock);
    return out;
}
