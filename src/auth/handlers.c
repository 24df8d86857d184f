/* HTTP glue for contract §2: read fields, call the account service, shape the reply. */
#include "inklet/accounts.h"
#include "inklet/handlers.h"
#include "inklet/json.h"
#include "inklet/batched.h"

#include <string.h>

/* Reads a required string field; INK_INVALID if absent or not a string. */
static enum ink_status need_string(struct ink_req *req, const char *key, const char **out)
{
    if (ink_json_opt_string(req->json, key, out) != INK_OK || !*out)
        return ink_fail_field(req, key);
    return INK_OK;
}

enum ink_status ink_h_register(struct ink_req *req)
{
    const char *email, *username, *password;
    if (need_string(req, "email", &email) || need_string(req, "username", &username) ||
        need_string(req, "password", &password))
        return INK_INVALID;
    struct ink_client client = {req->user_agent, req->client_ip};
    struct ink_tokens tokens;
    struct ink_err err = {0};
    json_t *user;
    enum ink_status st =
        ink_account_register(email, username, password, &client, &tokens, &user, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 201, ink_auth_response(&tokens, user));
}

enum ink_status ink_h_login(struct ink_req *req)
{
    /* `identifier`, or `email` / `username` as sent by older clients */
    const char *identifier = NULL, *password;
    static const char *const keys[] = {"identifier", "email", "username"};
    for (size_t i = 0; i < 3 && !identifier; i++)
        if (ink_json_opt_string(req->json, keys[i], &identifier) != INK_OK)
            return ink_fail_field(req, keys[i]);
    if (!identifier || !*identifier)
        return ink_fail_field(req, "identifier");
    if (need_string(req, "password", &password))
        return INK_INVALID;
    struct ink_client client = {req->user_agent, req->client_ip};
    struct ink_tokens tokens;
    struct ink_err err = {0};
    json_t *user;
    enum ink_status st =
        ink_account_login(identifier, password, &client, &tokens, &user, &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 200, ink_auth_response(&tokens, user));
}

static enum ink_status refresh_bind(struct ink_req *req, struct ink_batched_call *call)
{
    const char *refresh;
    if (need_string(req, "refreshToken", &refresh))
        return INK_INVALID;
    struct ink_err err;
    enum ink_status st =
        ink_session_rotation_bind(&call->state.rotation, refresh, call->params, &err);
    call->nparams = 3;
    return st == INK_OK ? INK_OK : ink_fail_err(req, st, &err);
}

static enum ink_status refresh_reply(struct ink_req *req, struct ink_batched_call *call,
                                     const PGresult *r)
{
    struct ink_tokens tokens;
    struct ink_err err;
    enum ink_status st = ink_session_rotation_finish(&call->state.rotation, r, &tokens, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    json_t *body =
        json_pack("{s:s,s:s}", "accessToken", tokens.access, "refreshToken", tokens.refresh);
    ink_tokens_free(&tokens);
    return ink_reply(req, 200, body);
}

const struct ink_batched ink_batched_refresh = {
    .sql = &ink_session_rotate_sql, .writes = true, .bind = refresh_bind, .reply = refresh_reply};

enum ink_status ink_h_refresh(struct ink_req *req)
{
    return ink_batched_run(&ink_batched_refresh, req);
}

enum ink_status ink_h_logout(struct ink_req *req)
{
    const char *refresh = NULL;
    if (ink_json_opt_string(req->json, "refreshToken", &refresh) != INK_OK)
        return ink_fail_field(req, "refreshToken");
    enum ink_status st = INK_NOT_FOUND;
    if (refresh)
        st = ink_session_revoke_by_refresh(req->auth.user_id, refresh);
    if (st == INK_NOT_FOUND)
        st = ink_session_revoke(req->auth.user_id, req->auth.session_id);
    if (st != INK_OK && st != INK_NOT_FOUND)
        return st;
    return ink_reply_message(req, 200, "logged out");
}

static enum ink_status me_reply(struct ink_req *req, struct ink_batched_call *call,
                                const PGresult *r)
{
    char *me;
    enum ink_status st = ink_account_me_from(r, call->row, call->nrows, &me);
    return st == INK_OK ? ink_reply_json_text(req, 200, me) : st;
}

const struct ink_batched ink_batched_me = {.sql = &ink_account_me_sql,
                                           .reply = me_reply,
                                           .shared = &ink_account_me_many_sql,
                                           .key_column = INK_ACCOUNT_ME_ID_COLUMN};

enum ink_status ink_h_me(struct ink_req *req)
{
    return ink_batched_run(&ink_batched_me, req);
}

enum ink_status ink_h_me_update(struct ink_req *req)
{
    const char *username, *email, *current;
    if (ink_json_opt_string(req->json, "username", &username) != INK_OK ||
        ink_json_opt_string(req->json, "email", &email) != INK_OK ||
        ink_json_opt_string(req->json, "currentPassword", &current) != INK_OK)
        return ink_fail(req, INK_INVALID, "invalid_request",
                        "username, email and currentPassword must be strings.");
    struct ink_err err = {0};
    char *me;
    enum ink_status st = ink_account_update(req->auth.user_id, username, email, current, &me,
                                            &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_json_text(req, 200, me);
}

enum ink_status ink_h_password(struct ink_req *req)
{
    const char *current, *next;
    if (ink_json_opt_string(req->json, "currentPassword", &current) != INK_OK)
        return ink_fail_field(req, "currentPassword");
    if (need_string(req, "newPassword", &next))
        return INK_INVALID;
    struct ink_err err = {0};
    enum ink_status st = ink_account_change_password(req->auth.user_id, req->auth.session_id,
                                                     current, next, &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_message(req, 200, "password updated");
}

enum ink_status ink_h_me_delete(struct ink_req *req)
{
    const char *password = NULL;
    if (ink_json_opt_string(req->json, "password", &password) != INK_OK)
        return ink_fail_field(req, "password");
    struct ink_err err = {0};
    enum ink_status st = ink_account_delete(req->auth.user_id, password, &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 204, NULL);
}

enum ink_status ink_h_sessions_list(struct ink_req *req)
{
    json_t *list;
    enum ink_status st = ink_session_list(req->auth.user_id, req->auth.session_id, &list);
    return st == INK_OK ? ink_reply(req, 200, list) : st;
}

enum ink_status ink_h_sessions_revoke_all(struct ink_req *req)
{
    long long n = 0;
    enum ink_status st = ink_session_revoke_all(NULL, req->auth.user_id, req->auth.session_id, &n);
    if (st != INK_OK)
        return st;
    return ink_reply(req, 200, json_pack("{s:I}", "revoked", (json_int_t)n));
}

enum ink_status ink_h_session_revoke(struct ink_req *req)
{
    const char *id = req->params[0];
    if (!ink_uuid_valid(id))
        return ink_fail(req, INK_INVALID, "invalid_id", "The id is not a valid UUID.");
    enum ink_status st = ink_session_revoke(req->auth.user_id, id);
    if (st == INK_NOT_FOUND)
        return ink_fail(req, st, "session_not_found", "No such session.");
    return st == INK_OK ? ink_reply(req, 204, NULL) : st;
}

/* ---- recovery by email (§2.2) ------------------------------------------------------------- */

enum ink_status ink_h_password_forgot(struct ink_req *req)
{
    const char *email;
    if (need_string(req, "email", &email))
        return INK_INVALID;
    struct ink_err err = {0};
    enum ink_status st = ink_account_forgot_password(email, &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_message(req, 202,
                             "If that address has an account, a reset link is on its way.");
}

enum ink_status ink_h_password_reset(struct ink_req *req)
{
    const char *token, *password;
    if (need_string(req, "token", &token) || need_string(req, "newPassword", &password))
        return INK_INVALID;
    struct ink_err err = {0};
    enum ink_status st = ink_account_reset_password(token, password, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_message(req, 200, "password updated");
}

enum ink_status ink_h_email_verify(struct ink_req *req)
{
    const char *token;
    if (need_string(req, "token", &token))
        return INK_INVALID;
    struct ink_err err = {0};
    json_t *user;
    enum ink_status st = ink_account_verify_email(token, &user, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 200, user);
}

enum ink_status ink_h_email_verify_resend(struct ink_req *req)
{
    struct ink_err err = {0};
    enum ink_status st =
        ink_account_resend_verification(req->auth.user_id, &req->retry_after, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_message(req, 202, "verification mail sent");
}
