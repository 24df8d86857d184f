/* Apple token revocation on account deletion. Apple requires apps that let people delete their
 * account to revoke the Apple tokens of it. The deletion's transaction copies the sealed refresh
 * tokens of the user's Apple identities into oauth_revocations (the identities go with the
 * user); this background job calls Apple's revoke endpoint for each, retrying with back-off
 * (30 s doubling to 1 h) and giving up after a day. Rows are leased with FOR UPDATE SKIP LOCKED,
 * so several instances never revoke one token twice at once. Best effort: the account is gone
 * whatever Apple says. */
#include "inklet/oauth.h"

#include "oauth_internal.h"
#include "inklet/alloc.h"
#include "inklet/bgjob.h"
#include "inklet/db.h"
#include "inklet/formdata.h"
#include "inklet/http_client.h"
#include "inklet/log.h"

#include <stdlib.h>
#include <string.h>

#define POLL_SECONDS 60
#define LEASE "5 minutes"

static const struct ink_sql SQL_QUEUE = {
    "oauth_revoke_queue",
    "INSERT INTO oauth_revocations (provider, subject, client_id, refresh_token_sealed)"
    " SELECT provider, subject, client_id, refresh_token_sealed FROM oauth_identities"
    " WHERE user_id = $1 AND provider = 'apple' AND refresh_token_sealed IS NOT NULL"
    "  AND client_id IS NOT NULL"};

static const struct ink_sql SQL_CLAIM = {
    "oauth_revoke_claim",
    "UPDATE oauth_revocations SET attempts = attempts + 1,"
    " next_attempt_at = now() + interval '" LEASE "'"
    " WHERE id = (SELECT id FROM oauth_revocations WHERE next_attempt_at <= now()"
    "  ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, subject, client_id, refresh_token_sealed,"
    "  (now() - requested_at > interval '1 day')"};

static const struct ink_sql SQL_DONE = {"oauth_revoke_done",
                                        "DELETE FROM oauth_revocations WHERE id = $1"};

static const struct ink_sql SQL_RETRY = {
    "oauth_revoke_retry",
    "UPDATE oauth_revocations SET next_attempt_at = now()"
    " + make_interval(secs => LEAST(3600, 30 * power(2, LEAST(attempts - 1, 12))))"
    " WHERE id = $1"};

static const struct ink_sql SQL_NEXT_DUE = {
    "oauth_revoke_next_due",
    "SELECT GREATEST(0, ceil(extract(epoch FROM min(next_attempt_at) - now())))::bigint"
    " FROM oauth_revocations"};

static struct ink_bgjob *job;

enum ink_status ink_oauth_on_account_delete(struct ink_db *db, const char *user_id)
{
    return ink_db_exec(db, &SQL_QUEUE, 1, (const char *[]){user_id}, NULL);
}

void ink_oauth_after_account_delete(const char *user_id)
{
    (void)user_id;
    ink_bgjob_kick(job);
}

/* POSTs the revocation. True when Apple took it (200), or the token is no use to anyone (400:
 * already revoked or unknown, which a retry cannot change). */
static bool revoke(struct ink_oauth_provider *p, const char *client_id, const char *token,
                   bool *final)
{
    *final = false;
    char *secret = ink_oauth_client_secret(p);
    if (!secret)
        return false;
    struct ink_form f;
    ink_form_init(&f);
    ink_form_add(&f, "client_id", client_id);
    ink_form_add(&f, "client_secret", secret);
    ink_form_add(&f, "token", token);
    ink_form_add(&f, "token_type_hint", "refresh_token");
    free(secret);
    struct ink_http_response r;
    ink_oauth_post_form(p->revoke_url, &f, 16 * 1024, &r);
    ink_form_free(&f);
    bool ok = r.status == 200;
    if (!ok)
        ink_warn("oauth: Apple revoke answered %ld (%s)", r.status,
                 r.status ? "HTTP" : ink_http_error(&r));
    *final = r.status == 400;
    ink_http_response_free(&r);
    return ok;
}

/* Claims one due row and works it; false when none was due. */
static bool work_one(void)
{
    PGresult *r;
    if (ink_db_query(&SQL_CLAIM, 0, NULL, &r) != INK_OK)
        return false;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return false;
    }
    char id[32];
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    bool overdue = PQgetvalue(r, 0, 4)[0] == 't';
    size_t sealed_len = 0;
    unsigned char *sealed =
        PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 3), &sealed_len);
    const struct ink_secretbox *box = ink_oauth_token_box();
    struct ink_oauth_provider *p = ink_oauth_provider("apple");
    char *token = sealed ? ink_malloc(sealed_len + 1) : NULL;
    size_t token_len = 0;
    bool done = false, final = false;
    if (!box || !p->apple_key) {
        ink_error("oauth: an Apple token revocation is queued but Apple sign-in is not configured"
                  " (APPLE_* / TOKEN_ENCRYPTION_KEY); dropped");
        done = true;
    } else if (!sealed || !ink_secretbox_open(box, sealed, sealed_len, token, &token_len)) {
        ink_error("oauth: a queued Apple token cannot be opened with TOKEN_ENCRYPTION_KEY; "
                  "dropped (was the key changed?)");
        done = true;
    } else {
        done = revoke(p, PQgetvalue(r, 0, 2), token, &final);
        ink_oauth_count_revocation(done);
        if (done)
            ink_info("oauth: revoked the Apple token of deleted subject %s%s", PQgetvalue(r, 0, 1),
                     final ? " (Apple no longer knew it)" : "");
        done = done || final;
        memset(token, 0, token_len);
    }
    free(token);
    PQfreemem(sealed);
    PQclear(r);
    if (done || overdue) {
        if (!done)
            ink_error("oauth: gave up revoking an Apple token after a day of failures");
        ink_db_query(&SQL_DONE, 1, (const char *[]){id}, NULL);
    } else {
        ink_db_query(&SQL_RETRY, 1, (const char *[]){id}, NULL);
    }
    return true;
}

static long revoker_round(void)
{
    for (int i = 0; i < 100 && work_one(); i++)
        ;
    return ink_db_seconds_until(&SQL_NEXT_DUE, POLL_SECONDS) * 1000;
}

bool ink_oauth_revoker_start(void)
{
    if (!ink_oauth_token_box())
        return true; /* nothing is ever stored to revoke */
    job = ink_bgjob_start("Apple token revoker", revoker_round);
    return job != NULL;
}

void ink_oauth_revoker_stop(void)
{
    ink_bgjob_stop(job);
    job = NULL;
}
