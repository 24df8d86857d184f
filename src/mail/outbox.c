/* The mail outbox and its sender (inklet/outbox.h). A row is claimed with FOR UPDATE SKIP LOCKED
 * and leased for longer than one SMTP attempt can take, so no two instances ever hold one mail;
 * a crash mid-send leaves the lease to expire and the mail goes out later. The only way to send
 * one twice is a crash between the SMTP server's 250 and the UPDATE after it; the Message-ID is
 * the row id, the same on every attempt. */
#include "inklet/outbox.h"

#include "inklet/app.h"
#include "inklet/bgjob.h"
#include "inklet/ids.h"
#include "inklet/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_SECONDS 30    /* rows another instance left behind are found this often */
#define MAILS_PER_ROUND 50 /* then the thread looks at the clock and its stop flag again */
#define DEFAULT_LIFETIME_S 86400
#define CONNECT_TIMEOUT_MS 10000u

static atomic_ullong n_queued, n_sent, n_retried, n_given_up;
static atomic_bool stopping;
static struct ink_bgjob *job;
static struct ink_smtp smtp;
static char envelope_from[INK_MAIL_ADDRESS_MAX + 1];

bool ink_mail_configured(void)
{
    return ink_app.cfg.smtp_url && *ink_app.cfg.smtp_url;
}

/* ---- queueing ----------------------------------------------------------------------------- */

static const struct ink_sql SQL_QUEUE = {
    "mail_queue",
    "INSERT INTO mail_outbox (id, kind, to_address, payload, not_after)"
    " SELECT $1::uuid, $2, COALESCE($7::text, email), "
    "jsonb_strip_nulls(jsonb_build_object('username', username,"
    "  'token', $4::text, 'provider', $5::text)), now() + make_interval(secs => $6::int)"
    " FROM users WHERE id = $3::uuid"};

static enum ink_status queue(struct ink_db *db, enum ink_mail_kind kind, const char *user_id,
                             const char *to, const char *token, const char *provider,
                             unsigned lifetime_s, bool *queued)
{
    if (queued)
        *queued = false;
    if (!ink_mail_configured())
        return INK_OK;
    char id[INK_UUID_STRLEN + 1], life[16];
    ink_uuid_v7(id);
    snprintf(life, sizeof life, "%u", lifetime_s ? lifetime_s : DEFAULT_LIFETIME_S);
    PGresult *r;
    enum ink_status st = ink_db_exec(
        db, &SQL_QUEUE, 7,
        (const char *[]){id, ink_mail_kind_name(kind), user_id, token, provider, life, to}, &r);
    if (st != INK_OK)
        return st;
    bool wrote = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (wrote)
        atomic_fetch_add(&n_queued, 1);
    if (queued)
        *queued = wrote;
    return INK_OK;
}

enum ink_status ink_outbox_queue(struct ink_db *db, enum ink_mail_kind kind, const char *user_id,
                                 const char *token, const char *provider, unsigned lifetime_s,
                                 bool *queued)
{
    return queue(db, kind, user_id, NULL, token, provider, lifetime_s, queued);
}

enum ink_status ink_outbox_queue_to(struct ink_db *db, enum ink_mail_kind kind, const char *user_id,
                                    const char *to)
{
    return queue(db, kind, user_id, to, NULL, NULL, 0, NULL);
}

void ink_outbox_kick(void)
{
    ink_bgjob_kick(job);
}

/* A fixed one-hour window per address; the key is a hash, so the table holds no addresses. */
#define MAILS_PER_ADDRESS_HOUR "3"
static const struct ink_sql SQL_THROTTLE = {
    "mail_throttle",
    "INSERT INTO mail_throttle AS m (key, window_start, count)"
    " VALUES (sha256(convert_to($1, 'UTF8')), now(), 1)"
    " ON CONFLICT (key) DO UPDATE SET"
    "  count = CASE WHEN m.window_start > now() - interval '1 hour' THEN m.count + 1 ELSE 1 END,"
    "  window_start = CASE WHEN m.window_start > now() - interval '1 hour' THEN m.window_start"
    "   ELSE now() END"
    " RETURNING CASE WHEN count > " MAILS_PER_ADDRESS_HOUR " THEN GREATEST(1, ceil(extract(epoch"
    "  FROM window_start + interval '1 hour' - now())))::bigint ELSE 0 END"};

enum ink_status ink_mail_throttle_take(struct ink_db *db, const char *address,
                                       unsigned *retry_after)
{
    PGresult *r;
    *retry_after = 0;
    enum ink_status st = ink_db_exec(db, &SQL_THROTTLE, 1, (const char *[]){address}, &r);
    if (st != INK_OK)
        return st;
    long long wait = ink_db_ll(r, 0, 0);
    PQclear(r);
    *retry_after = wait > 0 ? (unsigned)(wait > 3600 ? 3600 : wait) : 0;
    return INK_OK;
}

/* ---- sending ------------------------------------------------------------------------------ */

/* One due row, leased for longer than one attempt can take; the last column says whether it is
 * past its time (the daemon was down, or a link in it has expired). */
static const struct ink_sql SQL_CLAIM = {
    "mail_claim",
    "UPDATE mail_outbox SET attempts = attempts + 1,"
    " next_attempt_at = now() + make_interval(secs => $1::int)"
    " WHERE id = (SELECT id FROM mail_outbox WHERE state = 'queued' AND next_attempt_at <= now()"
    "  ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING id, kind, to_address, payload->>'username', payload->>'token',"
    "  payload->>'provider', now() > not_after"};

static const struct ink_sql SQL_SENT = {
    "mail_sent", "UPDATE mail_outbox SET state = 'sent', finished_at = now(), payload = NULL,"
                 " last_error = NULL WHERE id = $1"};

static const struct ink_sql SQL_GIVE_UP = {
    "mail_give_up", "UPDATE mail_outbox SET state = 'given_up', finished_at = now(),"
                    " payload = NULL, last_error = $2 WHERE id = $1"};

/* Doubling from MAIL_RETRY_BASE up to 60 x base; given up once the next try would come after
 * not_after. Answers whether it was given up. */
static const struct ink_sql SQL_RETRY = {
    "mail_retry", "WITH n AS (SELECT now() + make_interval(secs => LEAST(60 * $3::bigint,"
                  "  $3::bigint * power(2, LEAST(attempts - 1, 20))::bigint)) AS at, not_after"
                  "  FROM mail_outbox WHERE id = $1)"
                  " UPDATE mail_outbox o SET last_error = $2, next_attempt_at = n.at,"
                  "  state = CASE WHEN n.at > n.not_after THEN 'given_up' ELSE o.state END,"
                  "  finished_at = CASE WHEN n.at > n.not_after THEN now() END,"
                  "  payload = CASE WHEN n.at > n.not_after THEN NULL ELSE o.payload END"
                  " FROM n WHERE o.id = $1 RETURNING o.state = 'given_up'"};

static const struct ink_sql SQL_NEXT_DUE = {
    "mail_next_due",
    "SELECT GREATEST(0, ceil(extract(epoch FROM min(next_attempt_at) - now())))::bigint"
    " FROM mail_outbox WHERE state = 'queued'"};

static const struct ink_sql SQL_PRUNE = {
    "mail_prune",
    "DELETE FROM mail_outbox WHERE state <> 'queued' AND finished_at < now() - interval '30 days'"};

static const struct ink_sql SQL_PRUNE_THROTTLE = {
    "mail_throttle_prune",
    "DELETE FROM mail_throttle WHERE window_start < now() - interval '1 hour'"};

enum ink_status ink_outbox_prune(long long *count)
{
    long long windows = 0;
    enum ink_status st = ink_db_affected(&SQL_PRUNE, count);
    if (st == INK_OK)
        st = ink_db_affected(&SQL_PRUNE_THROTTLE, &windows); /* not counted: no mails */
    return st;
}

static void give_up(const char *id, const char *kind, const char *why)
{
    ink_db_query(&SQL_GIVE_UP, 2, (const char *[]){id, why}, NULL);
    atomic_fetch_add(&n_given_up, 1);
    ink_warn("mail: gave up on %s mail %s: %s", kind, id, why);
}

/* {PORTAL_URL}/<path>?token=<token>, without a doubled slash. */
static void make_link(const char *path, const char *token, char *out, size_t n)
{
    const char *base = ink_app.cfg.portal_url;
    size_t len = strlen(base);
    while (len && base[len - 1] == '/')
        len--;
    snprintf(out, n, "%.*s%s?token=%s", (int)len, base, path, token);
}

/* Renders and sends the claimed row r[0]. */
static void deliver(PGresult *r)
{
    const char *id = PQgetvalue(r, 0, 0), *kind_name = PQgetvalue(r, 0, 1);
    const char *to = PQgetvalue(r, 0, 2), *token = ink_db_str(r, 0, 4);
    enum ink_mail_kind kind;
    if (!ink_mail_kind_from_name(kind_name, &kind)) {
        give_up(id, kind_name, "unknown kind");
        return;
    }
    if (PQgetvalue(r, 0, 6)[0] == 't') {
        give_up(id, kind_name, "too late: past its lifetime");
        return;
    }
    char link[2048] = "";
    const char *path = kind == INK_MAIL_PASSWORD_RESET ? "/reset-password"
                       : kind == INK_MAIL_VERIFY_EMAIL ? "/verify-email"
                                                       : NULL;
    if (path && !token) {
        give_up(id, kind_name, "its link token is missing");
        return;
    }
    if (path)
        make_link(path, token, link, sizeof link);
    struct ink_mail_vars vars = {
        .username = ink_db_str(r, 0, 3),
        .link = path ? link : NULL,
        .ttl_seconds = kind == INK_MAIL_PASSWORD_RESET ? ink_app.cfg.password_reset_ttl
                                                       : ink_app.cfg.email_verify_ttl,
        .provider = ink_db_str(r, 0, 5),
    };
    struct ink_mail_msg msg;
    if (ink_mail_render(kind, &vars, ink_app.cfg.mail_from, to, id, time(NULL), &msg) != INK_OK) {
        give_up(id, kind_name, "the message cannot be composed for this address");
        return;
    }
    char why[160] = "";
    enum ink_smtp_result res = ink_smtp_send(&smtp, envelope_from, to, &msg, why);
    ink_mail_msg_free(&msg);
    if (res == INK_SMTP_SENT) {
        ink_db_query(&SQL_SENT, 1, (const char *[]){id}, NULL);
        atomic_fetch_add(&n_sent, 1);
        ink_info("mail: sent %s mail %s", kind_name, id);
        return;
    }
    if (res == INK_SMTP_PERMANENT) {
        give_up(id, kind_name, why);
        return;
    }
    char base[16];
    snprintf(base, sizeof base, "%u", ink_app.cfg.mail_retry_base);
    PGresult *rr;
    bool gone = false;
    if (ink_db_query(&SQL_RETRY, 3, (const char *[]){id, why, base}, &rr) == INK_OK) {
        gone = PQntuples(rr) == 1 && PQgetvalue(rr, 0, 0)[0] == 't';
        PQclear(rr);
    }
    if (gone) {
        atomic_fetch_add(&n_given_up, 1);
        ink_warn("mail: gave up on %s mail %s after its last attempt: %s", kind_name, id, why);
    } else {
        atomic_fetch_add(&n_retried, 1);
        ink_warn("mail: %s mail %s not sent, will retry: %s", kind_name, id, why);
    }
}

static long sender_round(void)
{
    char lease[16];
    /* one attempt's connect + transfer, and a margin for the database */
    snprintf(lease, sizeof lease, "%u", ink_app.cfg.smtp_timeout + 60);
    for (int i = 0; i < MAILS_PER_ROUND && !atomic_load(&stopping); i++) {
        PGresult *r;
        if (ink_db_query(&SQL_CLAIM, 1, (const char *[]){lease}, &r) != INK_OK)
            break;
        if (PQntuples(r) != 1) {
            PQclear(r);
            break;
        }
        deliver(r);
        PQclear(r);
        if (i == MAILS_PER_ROUND - 1)
            return 1; /* more may be due: go on at once */
    }
    return ink_db_seconds_until(&SQL_NEXT_DUE, POLL_SECONDS) * 1000;
}

bool ink_outbox_start(void)
{
    if (!ink_mail_configured())
        return true;
    const struct ink_config *cfg = &ink_app.cfg;
    if (!ink_mail_address_of(cfg->mail_from, envelope_from)) {
        ink_error("MAIL_FROM has no usable address");
        return false;
    }
    unsigned total = cfg->smtp_timeout * 1000;
    smtp = (struct ink_smtp){
        .url = cfg->smtp_url,
        .user = cfg->smtp_user,
        .password = cfg->smtp_password,
        .ca_file = cfg->smtp_ca_file,
        .connect_timeout_ms = total < CONNECT_TIMEOUT_MS ? total : CONNECT_TIMEOUT_MS,
        .total_timeout_ms = total,
    };
    atomic_store(&stopping, false);
    job = ink_bgjob_start("mail sender", sender_round);
    return job != NULL;
}

void ink_outbox_stop(void)
{
    atomic_store(&stopping, true);
    ink_bgjob_stop(job);
    job = NULL;
}

void ink_outbox_stats(struct ink_outbox_stats *out)
{
    out->queued = atomic_load(&n_queued);
    out->sent = atomic_load(&n_sent);
    out->retried = atomic_load(&n_retried);
    out->given_up = atomic_load(&n_given_up);
}
