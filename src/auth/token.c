#include "inklet/token.h"

#include "inklet/alloc.h"

#include <jansson.h>
#include <jwt.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

char *ink_token_issue(const unsigned char *secret, size_t secret_len, const char *user_id,
                      const char *session_id, long long now, unsigned ttl)
{
    jwt_t *jwt = NULL;
    char *out = NULL;
    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grant(jwt, "sub", user_id) || jwt_add_grant(jwt, "sid", session_id) ||
        jwt_add_grant_int(jwt, "iat", (long)now) ||
        jwt_add_grant_int(jwt, "exp", (long)(now + ttl)) ||
        jwt_add_grant(jwt, "iss", INK_TOKEN_ISSUER) ||
        jwt_add_grant(jwt, "aud", INK_TOKEN_AUDIENCE) || jwt_add_grant(jwt, "typ", "access") ||
        jwt_set_alg(jwt, JWT_ALG_HS256, secret, (int)secret_len))
        goto out;
    out = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    return out;
}

static bool string_claim_is(json_t *claims, const char *name, const char *want)
{
    json_t *v = json_object_get(claims, name);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

static bool uuid_claim(json_t *claims, const char *name, char out[INK_UUID_STRLEN + 1])
{
    json_t *v = json_object_get(claims, name);
    if (!json_is_string(v) || !ink_uuid_valid(json_string_value(v)))
        return false;
    memcpy(out, json_string_value(v), INK_UUID_STRLEN + 1);
    return true;
}

/* Three non-empty base64url segments, as we issue them. libjwt 1.10 writes past a zero-size heap
 * buffer when it decodes an empty header or payload segment ("..", "x..y"), so such input must
 * never reach jwt_decode. */
static bool compact_shape_ok(const char *t)
{
    size_t seg_len = 0, dots = 0;
    for (; *t; t++) {
        char c = *t;
        if (c == '.') {
            if (seg_len == 0 || ++dots > 2)
                return false;
            seg_len = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            seg_len++;
        } else {
            return false;
        }
    }
    return dots == 2 && seg_len > 0;
}

enum ink_status ink_token_verify(const unsigned char *secret, size_t secret_len, const char *token,
                                 long long now, struct ink_token_claims *out)
{
    enum ink_status st = INK_UNAUTHORIZED;
    jwt_t *jwt = NULL;
    char *grants = NULL;
    json_t *claims = NULL;
    /* never hand libjwt a NULL or empty key: it would accept alg "none" */
    if (!token || !secret || secret_len == 0 || strlen(token) > INK_TOKEN_MAX_LEN ||
        !compact_shape_ok(token))
        goto out;
    if (jwt_decode(&jwt, token, secret, (int)secret_len) != 0 || !jwt)
        goto out;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        goto out;
    grants = jwt_get_grants_json(jwt, NULL);
    if (!grants)
        goto out;
    claims = json_loads(grants, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims))
        goto out;
    json_t *exp = json_object_get(claims, "exp"), *iat = json_object_get(claims, "iat");
    if (!json_is_integer(exp) || !json_is_integer(iat))
        goto out;
    out->exp = json_integer_value(exp);
    out->iat = json_integer_value(iat);
    if (out->exp <= now || out->iat > now + INK_TOKEN_LEEWAY || out->iat > out->exp)
        goto out;
    if (!string_claim_is(claims, "typ", "access") ||
        !string_claim_is(claims, "iss", INK_TOKEN_ISSUER) ||
        !string_claim_is(claims, "aud", INK_TOKEN_AUDIENCE))
        goto out;
    if (!uuid_claim(claims, "sub", out->sub) || !uuid_claim(claims, "sid", out->sid))
        goto out;
    st = INK_OK;
out:
    json_decref(claims);
    free(grants);
    jwt_free(jwt);
    return st;
}

void ink_refresh_token_new(char out[44])
{
    unsigned char raw[32];
    ink_random_bytes(raw, sizeof raw);
    ink_base64url_encode(raw, sizeof raw, out);
}

void ink_refresh_token_hash(const char *token, unsigned char out[32])
{
    SHA256((const unsigned char *)token, strlen(token), out);
}

bool ink_refresh_token_wellformed(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 43 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return n == 43;
}
