/* The sign-in flows (contract §2.1): start, provider callback, native ID token. */
#include "inklet/oauth.h"

#include "oauth_internal.h"
#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/deadline.h"
#include "inklet/formdata.h"
#include "inklet/http_client.h"
#include "inklet/json.h"
#include "inklet/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKEN_RESPONSE_MAX (64 * 1024)
#define REFRESH_TOKEN_MAX 2048

static const struct ink_err NOT_CONFIGURED = {"provider_not_configured",
                                              "Sign-in with this provider is not configured."};

char *ink_oauth_url_with(const char *base, const char *query)
{
    size_t n = strlen(base) + strlen(query) + 2;
    char *url = ink_malloc(n);
    snprintf(url, n, "%s%s%s", base, strchr(base, '?') ? "&" : "?", query);
    return url;
}

/* ---- step 1 -------------------------------------------------------------------------------- */

enum ink_status ink_oauth_begin(const char *provider, const char *client, char **location,
                                struct ink_err *err)
{
    *location = NULL;
    struct ink_oauth_provider *p = ink_oauth_provider(provider);
    if (!p)
        return INK_NOT_FOUND;
    if (!client)
        client = "web";
    if (strcmp(client, "web") != 0 && strcmp(client, "desktop") != 0) {
        *err = (struct ink_err){"invalid_client", "client must be web or desktop."};
        return INK_INVALID;
    }
    if (!p->browser) {
        *err = NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    struct ink_oauth_state st;
    char state[INK_OAUTH_SECRET_LEN + 1];
    enum ink_status s = ink_oauth_state_create(p->name, client, p->pkce, &st, state);
    if (s != INK_OK)
        return s;
    struct ink_form q;
    ink_form_init(&q);
    ink_form_add(&q, "client_id", p->web_client_id);
    ink_form_add(&q, "redirect_uri", p->redirect_url);
    ink_form_add(&q, "response_type", p->form_post ? "code id_token" : "code");
    ink_form_add(&q, "scope", p->scope);
    if (p->form_post)
        ink_form_add(&q, "response_mode", "form_post");
    ink_form_add(&q, "state", state);
    ink_form_add(&q, "nonce", st.nonce);
    if (p->pkce) {
        char challenge[INK_OAUTH_SECRET_LEN + 1];
        ink_oauth_pkce_challenge(st.verifier, challenge);
        ink_form_add(&q, "code_challenge", challenge);
        ink_form_add(&q, "code_challenge_method", "S256");
    }
    *location = ink_oauth_url_with(p->auth_url, q.data);
    ink_form_free(&q);
    return INK_OK;
}

/* ---- ID tokens ----------------------------------------------------------------------------- */

/* Verifies an ID token of provider p. INK_OK fills *id; otherwise *why says what was wrong. */
static enum ink_status verify_id_token(struct ink_oauth_provider *p, const char *token,
                                       const char *nonce, struct ink_identity *id, const char **why)
{
    struct ink_idtoken t;
    enum ink_idtoken_result res = ink_idtoken_parse(token, &t);
    if (res != INK_IDT_OK) {
        *why = res == INK_IDT_ALG ? "the algorithm is not RS256" : "the token is malformed";
        return INK_UNAUTHORIZED;
    }
    /* a JWKS fetch waits on the provider, not on the database */
    int64_t paused = ink_deadline_pause();
    EVP_PKEY *key = ink_jwks_key(p->jwks, t.kid);
    ink_deadline_resume(paused);
    if (!key) {
        *why = "no key of the provider has that kid";
        ink_idtoken_free(&t);
        return INK_UNAUTHORIZED;
    }
    struct ink_idtoken_rules rules = {.issuers = p->issuers,
                                      .issuer_count = p->issuer_count,
                                      .audiences = p->client_ids,
                                      .nonce = nonce,
                                      .now = (long long)time(NULL)};
    res = ink_idtoken_check(&t, key, &rules, id, why);
    EVP_PKEY_free(key);
    ink_idtoken_free(&t);
    return res == INK_IDT_OK ? INK_OK : INK_UNAUTHORIZED;
}

/* ---- the token endpoint -------------------------------------------------------------------- */

struct exchange {
    char *id_token;
    char *refresh_token; /* Apple; NULL when none */
};

static void exchange_free(struct exchange *x)
{
    free(x->id_token);
    free(x->refresh_token);
}

static bool printable(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || (unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
            return false;
    return n > 0;
}

/* Trades the code for tokens: one attempt (a code is single-use), bounded by OAUTH_TIMEOUT. */
static bool exchange_code(struct ink_oauth_provider *p, const char *code, const char *verifier,
                          struct exchange *out, const char **why)
{
    memset(out, 0, sizeof *out);
    char *secret = ink_oauth_client_secret(p);
    if (!secret) {
        *why = "no client secret";
        return false;
    }
    struct ink_form f;
    ink_form_init(&f);
    ink_form_add(&f, "grant_type", "authorization_code");
    ink_form_add(&f, "code", code);
    ink_form_add(&f, "redirect_uri", p->redirect_url);
    ink_form_add(&f, "client_id", p->web_client_id);
    ink_form_add(&f, "client_secret", secret);
    if (p->pkce)
        ink_form_add(&f, "code_verifier", verifier);
    free(secret);
    struct ink_http_response r;
    ink_oauth_post_form(p->token_url, &f, TOKEN_RESPONSE_MAX, &r);
    ink_form_free(&f);
    bool ok = false;
    json_t *body = NULL;
    const char *jwhy = NULL;
    if (r.status != 200) {
        if (r.status)
            ink_warn("oauth: %s token endpoint answered HTTP %ld", p->name, r.status);
        else
            ink_warn("oauth: %s token endpoint failed: %s", p->name, ink_http_error(&r));
        *why = "the token endpoint failed";
    } else if (ink_json_parse_object(r.body.data ? r.body.data : "", r.body.len, &body, &jwhy) !=
               INK_OK) {
        *why = "the token endpoint's answer is not a JSON object";
    } else {
        const char *idt = json_string_value(json_object_get(body, "id_token"));
        const char *rt = json_string_value(json_object_get(body, "refresh_token"));
        if (!idt || strlen(idt) > INK_IDTOKEN_MAX_LEN) {
            *why = "the token endpoint sent no usable id_token";
        } else {
            out->id_token = ink_strdup(idt);
            if (rt && printable(rt, REFRESH_TOKEN_MAX))
                out->refresh_token = ink_strdup(rt);
            ok = true;
        }
    }
    json_decref(body);
    ink_http_response_free(&r);
    return ok;
}

/* ---- steps 2-5 ----------------------------------------------------------------------------- */

static char *target(const char *client, const char *query)
{
    const struct ink_config *c = &ink_app.cfg;
    return ink_oauth_url_with(
        strcmp(client, "desktop") == 0 ? c->oauth_desktop_redirect : c->oauth_web_redirect, query);
}

/* Apple's refresh token sealed for storage, as bytea hex; NULL when there is none to keep. */
static char *seal_refresh_token(const char *token)
{
    const struct ink_secretbox *box = ink_oauth_token_box();
    if (!token || !box)
        return NULL;
    size_t n = strlen(token);
    unsigned char *sealed = ink_malloc(n + INK_SECRETBOX_OVERHEAD);
    size_t len = ink_secretbox_seal(box, token, n, sealed);
    char *hex = NULL;
    if (len) {
        hex = ink_malloc(2 * len + 3);
        hex[0] = '\\';
        hex[1] = 'x';
        ink_hex_encode(sealed, len, hex + 2);
    }
    free(sealed);
    return hex;
}

/* The callback's work; false with *why on any failure. *query gets the token hand-off. */
static bool complete(struct ink_oauth_provider *p, const struct ink_oauth_reply *reply,
                     const struct ink_oauth_state *st, const struct ink_client *client,
                     struct ink_form *query, const char **why)
{
    if (strcmp(st->provider, p->name) != 0) {
        *why = "the state belongs to another provider";
        return false;
    }
    if (st->expired) {
        *why = "the state expired";
        return false;
    }
    if (reply->error) {
        *why = "the provider reported an error (e.g. the user cancelled)";
        return false;
    }
    if (!reply->code || !*reply->code || !printable(reply->code, 2048)) {
        *why = "no code";
        return false;
    }
    if (!p->browser) {
        *why = "the provider is not configured";
        return false;
    }
    struct exchange x;
    if (!exchange_code(p, reply->code, st->verifier, &x, why))
        return false;
    struct ink_identity id;
    enum ink_status s = verify_id_token(p, x.id_token, st->nonce, &id, why);
    if (s != INK_OK) {
        exchange_free(&x);
        return false;
    }
    char *sealed = seal_refresh_token(x.refresh_token);
    exchange_free(&x);
    struct ink_oauth_login login = {.provider = p->name,
                                    .subject = id.sub,
                                    .email = id.email,
                                    .email_verified = id.email_verified,
                                    .client_id = p->web_client_id,
                                    .refresh_sealed_hex = sealed};
    struct ink_tokens tokens;
    json_t *user = NULL;
    struct ink_err err = {0};
    s = ink_account_oauth_signin(&login, client, &tokens, &user, &err);
    free(sealed);
    if (s != INK_OK) {
        *why = err.code ? err.code : "signing in failed";
        return false;
    }
    ink_form_add(query, "accessToken", tokens.access);
    ink_form_add(query, "refreshToken", tokens.refresh);
    ink_tokens_free(&tokens);
    json_decref(user);
    return true;
}

void ink_oauth_callback(const char *provider, const struct ink_oauth_reply *reply,
                        const struct ink_client *client, char **location)
{
    struct ink_oauth_provider *p = ink_oauth_provider(provider);
    struct ink_oauth_state st;
    const char *why = NULL;
    struct ink_form query;
    ink_form_init(&query);
    enum ink_status s = ink_oauth_state_consume(reply->state, &st);
    bool ok = false;
    if (s == INK_NOT_FOUND)
        why = "unknown, used or malformed state";
    else if (s != INK_OK)
        why = "the database is unavailable";
    else
        ok = complete(p, reply, &st, client, &query, &why);
    /* without a state of ours the client type is unknown: the web target */
    const char *kind = s == INK_OK ? st.client : "web";
    ink_oauth_count_signin(p, ok);
    if (ok) {
        ink_info("oauth: %s sign-in completed (%s)", provider, kind);
        *location = target(kind, query.data);
    } else {
        ink_warn("oauth: %s sign-in failed: %s", provider, why);
        *location = target(kind, "error=oauth_failed");
    }
    ink_form_free(&query);
}

/* ---- native -------------------------------------------------------------------------------- */

enum ink_status ink_oauth_native(const char *provider, const char *id_token, const char *nonce,
                                 const struct ink_client *client, struct ink_tokens *tokens,
                                 json_t **user, struct ink_err *err)
{
    memset(tokens, 0, sizeof *tokens);
    *user = NULL;
    struct ink_oauth_provider *p = ink_oauth_provider(provider);
    if (!p)
        return INK_NOT_FOUND;
    if (!p->native) {
        *err = NOT_CONFIGURED;
        return INK_UNAVAILABLE;
    }
    const char *why = NULL;
    struct ink_identity id;
    if (strlen(id_token) > INK_IDTOKEN_MAX_LEN ||
        verify_id_token(p, id_token, nonce, &id, &why) != INK_OK) {
        ink_info("oauth: %s ID token refused: %s", provider, why ? why : "too long");
        *err = (struct ink_err){"invalid_id_token", "The ID token is not valid."};
        ink_oauth_count_signin(p, false);
        return INK_UNAUTHORIZED;
    }
    struct ink_oauth_login login = {.provider = p->name,
                                    .subject = id.sub,
                                    .email = id.email,
                                    .email_verified = id.email_verified};
    enum ink_status st = ink_account_oauth_signin(&login, client, tokens, user, err);
    ink_oauth_count_signin(p, st == INK_OK);
    return st;
}
