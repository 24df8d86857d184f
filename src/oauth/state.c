/* The browser flow's single-use states (contract §2.1 step 1): random, stored hashed with the
 * client type, PKCE verifier and nonce, consumed with one DELETE … RETURNING. */
#include "oauth_internal.h"

#include "inklet/db.h"
#include "inklet/ids.h"
#include "inklet/oauth.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

void ink_oauth_secret(char out[INK_OAUTH_SECRET_LEN + 1])
{
    unsigned char raw[32];
    ink_random_bytes(raw, sizeof raw);
    ink_base64url_encode(raw, sizeof raw, out);
}

void ink_oauth_pkce_challenge(const char *verifier, char out[INK_OAUTH_SECRET_LEN + 1])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)verifier, strlen(verifier), digest);
    ink_base64url_encode(digest, sizeof digest, out);
}

bool ink_oauth_state_key(const char *state, char out[2 + 64 + 1])
{
    unsigned char raw[33];
    size_t n = 0;
    if (!state || strlen(state) != INK_OAUTH_SECRET_LEN ||
        !ink_base64url_decode(state, INK_OAUTH_SECRET_LEN, raw, sizeof raw, &n) || n != 32)
        return false;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)state, INK_OAUTH_SECRET_LEN, digest);
    out[0] = '\\';
    out[1] = 'x';
    ink_hex_encode(digest, sizeof digest, out + 2);
    return true;
}

static const struct ink_sql SQL_CREATE = {
    "oauth_state_create",
    "INSERT INTO oauth_states (state_hash, provider, client, code_verifier, nonce, expires_at)"
    " VALUES ($1::bytea, $2, $3, NULLIF($4, ''), $5, now() + make_interval(secs => $6::int))"};

static const struct ink_sql SQL_CONSUME = {
    "oauth_state_consume",
    "DELETE FROM oauth_states WHERE state_hash = $1::bytea"
    " RETURNING provider, client, COALESCE(code_verifier, ''), nonce, expires_at <= now()"};

static const struct ink_sql SQL_PRUNE = {"oauth_state_prune",
                                         "DELETE FROM oauth_states WHERE expires_at < now()"};

enum ink_status ink_oauth_state_create(const char *provider, const char *client, bool pkce,
                                       struct ink_oauth_state *st,
                                       char state[INK_OAUTH_SECRET_LEN + 1])
{
    memset(st, 0, sizeof *st);
    snprintf(st->provider, sizeof st->provider, "%s", provider);
    snprintf(st->client, sizeof st->client, "%s", client);
    ink_oauth_secret(state);
    ink_oauth_secret(st->nonce);
    if (pkce)
        ink_oauth_secret(st->verifier);
    char key[2 + 64 + 1], ttl[16];
    ink_oauth_state_key(state, key);
    snprintf(ttl, sizeof ttl, "%d", INK_OAUTH_STATE_TTL);
    return ink_db_query(&SQL_CREATE, 6,
                        (const char *[]){key, provider, client, st->verifier, st->nonce, ttl},
                        NULL);
}

enum ink_status ink_oauth_state_consume(const char *state, struct ink_oauth_state *out)
{
    memset(out, 0, sizeof *out);
    char key[2 + 64 + 1];
    if (!ink_oauth_state_key(state, key))
        return INK_NOT_FOUND;
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_CONSUME, 1, (const char *[]){key}, &r);
    if (st != INK_OK)
        return st;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return INK_NOT_FOUND;
    }
    snprintf(out->provider, sizeof out->provider, "%s", PQgetvalue(r, 0, 0));
    snprintf(out->client, sizeof out->client, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->verifier, sizeof out->verifier, "%s", PQgetvalue(r, 0, 2));
    snprintf(out->nonce, sizeof out->nonce, "%s", PQgetvalue(r, 0, 3));
    out->expired = PQgetvalue(r, 0, 4)[0] == 't';
    PQclear(r);
    return INK_OK;
}

enum ink_status ink_oauth_prune(long long *count)
{
    return ink_db_affected(&SQL_PRUNE, count);
}
