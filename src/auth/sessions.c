#include "inklet/auth.h"

#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/json.h"
#include "inklet/log.h"
#include "inklet/text.h"
#include "inklet/token.h"
#include "session_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const unsigned char *secret, *previous;
static size_t secret_len, previous_len;

void ink_auth_init(void)
{
    secret = (const unsigned char *)ink_app.cfg.jwt_secret;
    secret_len = strlen(ink_app.cfg.jwt_secret);
    /* during a key rotation, tokens signed with the old key stay valid until they expire;
     * new tokens are always signed with JWT_SECRET */
    previous = (const unsigned char *)ink_app.cfg.jwt_previous_secret;
    previous_len = previous ? strlen(ink_app.cfg.jwt_previous_secret) : 0;
}

void ink_tokens_free(struct ink_tokens *t)
{
    free(t->access);
    t->access = NULL;
}

void ink_session_cache_forget_user(const char *user_id)
{
    session_cache_forget_user(user_id);
}

static void hash_hex(const char *token, char out[65])
{
    unsigned char h[32];
    ink_refresh_token_hash(token, h);
    ink_hex_encode(h, sizeof h, out);
}

static enum ink_status issue_access(const char *uid, const char *sid, struct ink_tokens *out)
{
    out->access = ink_token_issue(secret, secret_len, uid, sid, (long long)time(NULL),
                                  ink_app.cfg.access_token_ttl);
    return out->access ? INK_OK : INK_INTERNAL;
}

/* ---- authentication ----------------------------------------------------------------------- */

static const struct ink_sql SQL_SESSION_LIVE = {
    "session_live", "SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"
                    " AND expires_at > now()"};

enum ink_status ink_auth_authenticate(const char *authorization, struct ink_auth *out)
{
    memset(out, 0, sizeof *out);
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
        return INK_UNAUTHORIZED;
    const char *token = authorization + 7;
    while (*token == ' ')
        token++;
    struct ink_token_claims c;
    long long now = (long long)time(NULL);
    if (ink_token_verify(secret, secret_len, token, now, &c) != INK_OK &&
        (!previous || ink_token_verify(previous, previous_len, token, now, &c) != INK_OK))
        return INK_UNAUTHORIZED;
    if (!session_cache_lookup(c.sid, c.sub)) {
        PGresult *r;
        const char *params[] = {c.sid, c.sub};
        enum ink_status st = ink_db_query(&SQL_SESSION_LIVE, 2, params, &r);
        if (st != INK_OK)
            return st;
        bool live = PQntuples(r) == 1;
        PQclear(r);
        if (!live)
            return INK_UNAUTHORIZED;
        session_cache_store(c.sid, c.sub);
    }
    memcpy(out->user_id, c.sub, sizeof out->user_id);
    memcpy(out->session_id, c.sid, sizeof out->session_id);
    return INK_OK;
}

/* ---- sessions ----------------------------------------------------------------------------- */

static const struct ink_sql SQL_SESSION_START = {
    "session_start",
    "WITH s AS (INSERT INTO sessions (id, user_id, user_agent, ip, expires_at)"
    "  VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::int))"
    "  RETURNING id, user_id, expires_at)"
    " INSERT INTO refresh_tokens (token_hash, session_id, user_id, idle_expires_at)"
    " SELECT decode($6, 'hex'), id, user_id,"
    "  LEAST(now() + make_interval(secs => $7::int), expires_at) FROM s"};

enum ink_status ink_session_start(struct ink_db *db, const char *user_id, const char *user_agent,
                                  const char *ip, struct ink_tokens *out)
{
    memset(out, 0, sizeof *out);
    ink_uuid_v7(out->session_id);
    ink_refresh_token_new(out->refresh);
    char hash[65], max_ttl[16], idle_ttl[16];
    hash_hex(out->refresh, hash);
    snprintf(max_ttl, sizeof max_ttl, "%u", ink_app.cfg.session_max_ttl);
    snprintf(idle_ttl, sizeof idle_ttl, "%u", ink_app.cfg.refresh_idle_ttl);
    /* a hostile User-Agent is stored, but as bounded, well-formed UTF-8: PostgreSQL refuses
     * invalid UTF-8, and a header value must never fail a sign-in */
    char ua[256];
    ink_utf8_sanitize(user_agent, ua, sizeof ua);
    const char *params[] = {out->session_id, user_id, user_agent ? ua : NULL, ip, max_ttl, hash,
                            idle_ttl};
    enum ink_status st = ink_db_exec(db, &SQL_SESSION_START, 7, params, NULL);
    if (st == INK_OK)
        st = issue_access(user_id, out->session_id, out);
    return st;
}

/* One statement: the conditional UPDATE on used_at is what makes a refresh token single-use even
 * with concurrent requests on several instances. In a batch (inklet/batched.h) several run in
 * one transaction: a second rotation of the same token there sees the first one's used_at and
 * matches nothing, as it would after the first one's commit. */
const struct ink_sql ink_session_rotate_sql = {
    "session_rotate",
    "WITH used AS ("
    "  UPDATE refresh_tokens SET used_at = now()"
    "  WHERE token_hash = decode($1, 'hex') AND used_at IS NULL AND idle_expires_at > now()"
    "  RETURNING session_id),"
    " sess AS ("
    "  UPDATE sessions s SET last_active_at = now() FROM used"
    "  WHERE s.id = used.session_id AND s.revoked_at IS NULL AND s.expires_at > now()"
    "  RETURNING s.id, s.user_id, s.expires_at),"
    " ins AS ("
    "  INSERT INTO refresh_tokens (token_hash, session_id, user_id, idle_expires_at)"
    "  SELECT decode($2, 'hex'), id, user_id,"
    "   LEAST(now() + make_interval(secs => $3::int), expires_at) FROM sess)"
    " SELECT id, user_id FROM sess"};

/* Why a rotation matched nothing. The reuse grace is decided here, by the database's clock and
 * the row's own used_at, so every instance reaches the same verdict. */
static const struct ink_sql SQL_CLASSIFY = {
    "session_classify",
    "SELECT rt.used_at IS NOT NULL, rt.idle_expires_at <= now() OR s.expires_at <= now(),"
    " s.revoked_at IS NOT NULL, rt.user_id,"
    " rt.used_at > now() - make_interval(secs => $2::int)"
    " FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id"
    " WHERE rt.token_hash = decode($1, 'hex')"};

static const struct ink_sql SQL_REVOKE_ALL = {
    "session_revoke_all",
    "UPDATE sessions SET revoked_at = now()"
    " WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2::uuid)"};

static enum ink_status classify_failure(const char *hash, struct ink_err *err)
{
    PGresult *r;
    char grace[16];
    snprintf(grace, sizeof grace, "%u", ink_app.cfg.refresh_reuse_grace);
    enum ink_status st = ink_db_query(&SQL_CLASSIFY, 2, (const char *[]){hash, grace}, &r);
    if (st != INK_OK)
        return st;
    *err = (struct ink_err){"invalid_refresh_token", "The refresh token is invalid."};
    if (PQntuples(r) == 1) {
        bool used = PQgetvalue(r, 0, 0)[0] == 't';
        bool expired = PQgetvalue(r, 0, 1)[0] == 't';
        bool revoked = PQgetvalue(r, 0, 2)[0] == 't';
        bool within_grace = PQgetvalue(r, 0, 4)[0] == 't';
        if (revoked) {
            /* stays invalid_refresh_token */
        } else if (used && within_grace) {
            /* two tabs or a retry lost a race against its own rotation: not theft */
            *err = (struct ink_err){"refresh_token_rotated",
                                    "The refresh token was just rotated by another request; use "
                                    "the newest token."};
        } else if (used) {
            char uid[INK_UUID_STRLEN + 1];
            snprintf(uid, sizeof uid, "%s", PQgetvalue(r, 0, 3));
            long long n = 0;
            st = ink_session_revoke_all(NULL, uid, NULL, &n);
            ink_warn("refresh token reuse detected; revoked %lld session(s) of user %s", n, uid);
            *err = (struct ink_err){"refresh_token_reused",
                                    "The refresh token was already used; every session of this "
                                    "account has been signed out."};
        } else if (expired) {
            *err = (struct ink_err){"refresh_token_expired", "The refresh token has expired."};
        }
    }
    PQclear(r);
    return st == INK_OK ? INK_UNAUTHORIZED : st;
}

enum ink_status ink_session_rotation_bind(struct ink_rotation *rot, const char *refresh_token,
                                          const char *params[3], struct ink_err *err)
{
    *err = (struct ink_err){"invalid_refresh_token", "The refresh token is invalid."};
    if (!refresh_token || !ink_refresh_token_wellformed(refresh_token))
        return INK_UNAUTHORIZED;
    hash_hex(refresh_token, rot->old_hash);
    ink_refresh_token_new(rot->refresh);
    hash_hex(rot->refresh, rot->new_hash);
    snprintf(rot->idle_ttl, sizeof rot->idle_ttl, "%u", ink_app.cfg.refresh_idle_ttl);
    params[0] = rot->old_hash;
    params[1] = rot->new_hash;
    params[2] = rot->idle_ttl;
    *err = (struct ink_err){0};
    return INK_OK;
}

enum ink_status ink_session_rotation_finish(const struct ink_rotation *rot, const PGresult *r,
                                            struct ink_tokens *out, struct ink_err *err)
{
    memset(out, 0, sizeof *out);
    *err = (struct ink_err){0};
    if (PQntuples(r) != 1) {
        enum ink_status st = classify_failure(rot->old_hash, err);
        if (st == INK_UNAVAILABLE || st == INK_INTERNAL)
            *err = (struct ink_err){0}; /* an outage is not a token problem */
        return st;
    }
    char uid[INK_UUID_STRLEN + 1];
    snprintf(out->session_id, sizeof out->session_id, "%s", PQgetvalue(r, 0, 0));
    snprintf(uid, sizeof uid, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->refresh, sizeof out->refresh, "%s", rot->refresh);
    return issue_access(uid, out->session_id, out);
}

enum ink_status ink_session_revoke_all(struct ink_db *db, const char *user_id, const char *keep,
                                       long long *count)
{
    PGresult *r;
    const char *params[] = {user_id, keep};
    enum ink_status st = db ? ink_db_exec(db, &SQL_REVOKE_ALL, 2, params, &r)
                            : ink_db_query(&SQL_REVOKE_ALL, 2, params, &r);
    if (st != INK_OK)
        return st;
    if (count)
        *count = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    session_cache_forget_user(user_id);
    return INK_OK;
}

static const struct ink_sql SQL_REVOKE_ONE = {
    "session_revoke_one", "UPDATE sessions SET revoked_at = now()"
                          " WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"};

enum ink_status ink_session_revoke(const char *user_id, const char *session_id)
{
    PGresult *r;
    const char *params[] = {session_id, user_id};
    enum ink_status st = ink_db_query(&SQL_REVOKE_ONE, 2, params, &r);
    if (st != INK_OK)
        return st;
    bool hit = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    session_cache_forget(session_id);
    return hit ? INK_OK : INK_NOT_FOUND;
}

static const struct ink_sql SQL_REVOKE_BY_REFRESH = {
    "session_revoke_by_refresh",
    "UPDATE sessions s SET revoked_at = now() FROM refresh_tokens rt"
    " WHERE rt.token_hash = decode($1, 'hex') AND s.id = rt.session_id AND s.user_id = $2"
    " AND s.revoked_at IS NULL RETURNING s.id"};

enum ink_status ink_session_revoke_by_refresh(const char *user_id, const char *refresh_token)
{
    if (!ink_refresh_token_wellformed(refresh_token))
        return INK_NOT_FOUND;
    char hash[65];
    hash_hex(refresh_token, hash);
    PGresult *r;
    const char *params[] = {hash, user_id};
    enum ink_status st = ink_db_query(&SQL_REVOKE_BY_REFRESH, 2, params, &r);
    if (st != INK_OK)
        return st;
    bool hit = PQntuples(r) == 1;
    if (hit)
        session_cache_forget(PQgetvalue(r, 0, 0));
    PQclear(r);
    return hit ? INK_OK : INK_NOT_FOUND;
}

static const struct ink_sql SQL_LIST = {
    "session_list",
    "SELECT s.id, s.user_agent, s.ip, extract(epoch FROM s.created_at)::bigint,"
    " extract(epoch FROM s.last_active_at)::bigint,"
    " extract(epoch FROM LEAST(s.expires_at, (SELECT max(idle_expires_at) FROM refresh_tokens"
    "  WHERE session_id = s.id AND used_at IS NULL)))::bigint"
    " FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()"
    " ORDER BY s.created_at DESC, s.id DESC"};

enum ink_status ink_session_list(const char *user_id, const char *current_sid, json_t **out)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_LIST, 1, (const char *[]){user_id}, &r);
    if (st != INK_OK)
        return st;
    json_t *arr = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        const char *id = PQgetvalue(r, i, 0);
        json_array_append_new(arr, json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:b}", "id", id, "userAgent",
                                             ink_json_str_or_null(ink_db_str(r, i, 1)), "ip",
                                             ink_json_str_or_null(ink_db_str(r, i, 2)), "createdAt",
                                             ink_json_time(ink_db_ll(r, i, 3)), "lastActiveAt",
                                             ink_json_time(ink_db_ll(r, i, 4)), "expiresAt",
                                             ink_json_time(ink_db_ll(r, i, 5)), "current",
                                             strcmp(id, current_sid) == 0));
    }
    PQclear(r);
    *out = arr;
    return INK_OK;
}

/* Revoked sessions are kept a week so a late refresh with their tokens is still recognised as
 * belonging to a signed-out session rather than unknown. */
static const struct ink_sql SQL_PRUNE = {
    "session_prune",
    "WITH s AS (DELETE FROM sessions WHERE expires_at < now() - interval '7 days'"
    "  OR revoked_at < now() - interval '7 days' RETURNING 1),"
    " t AS (DELETE FROM refresh_tokens WHERE idle_expires_at < now() - interval '1 day'"
    "  RETURNING 1),"
    " f AS (DELETE FROM login_failures WHERE updated_at < now() - interval '1 day'"
    "  AND (blocked_until IS NULL OR blocked_until < now()) RETURNING 1)"
    " SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM t) + (SELECT count(*) FROM f)"};

enum ink_status ink_session_prune(long long *count)
{
    PGresult *r;
    enum ink_status st = ink_db_query(&SQL_PRUNE, 0, NULL, &r);
    if (st != INK_OK)
        return st;
    *count = ink_db_ll(r, 0, 0);
    PQclear(r);
    return INK_OK;
}
