/* HTTP glue for contract §2.1. */
#include "inklet/formdata.h"
#include "inklet/handlers.h"
#include "inklet/json.h"
#include "inklet/oauth.h"

#include <strings.h>
#include <string.h>

enum ink_status ink_h_oauth_start(struct ink_req *req)
{
    struct ink_err err = {0};
    char *location = NULL;
    enum ink_status st =
        ink_oauth_begin(req->params[0], ink_req_query(req, "client"), &location, &err);
    if (st == INK_NOT_FOUND)
        return ink_fail(req, st, "not_found", "No such sign-in provider.");
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply_redirect(req, location);
}

static enum ink_status finish_callback(struct ink_req *req, const char *provider,
                                       const struct ink_oauth_reply *reply)
{
    struct ink_client client = {req->user_agent, req->client_ip};
    char *location = NULL;
    ink_oauth_callback(provider, reply, &client, &location);
    return ink_reply_redirect(req, location);
}

enum ink_status ink_h_oauth_google_callback(struct ink_req *req)
{
    struct ink_oauth_reply reply = {ink_req_query(req, "code"), ink_req_query(req, "state"),
                                    ink_req_query(req, "error")};
    return finish_callback(req, "google", &reply);
}

static bool is_form(const char *ct)
{
    static const char form[] = "application/x-www-form-urlencoded";
    size_t n = sizeof form - 1;
    return ct && strncasecmp(ct, form, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Apple posts the answer (response_mode=form_post). Its `id_token` and `user` fields are not
 * read: the ID token that counts comes from the token endpoint, and `user` is unsigned. */
enum ink_status ink_h_oauth_apple_callback(struct ink_req *req)
{
    struct ink_formdata form = {0};
    const char *why = NULL;
    struct ink_oauth_reply reply = {0};
    if (!is_form(req->content_type) ||
        !ink_formdata_parse(req->body ? req->body : "", req->body_len, &form, &why)) {
        /* no state can be trusted out of it: fail to the web target */
        reply.error = "malformed callback body";
    } else {
        reply = (struct ink_oauth_reply){ink_formdata_get(&form, "code"),
                                         ink_formdata_get(&form, "state"),
                                         ink_formdata_get(&form, "error")};
    }
    enum ink_status st = finish_callback(req, "apple", &reply);
    ink_formdata_free(&form);
    return st;
}

enum ink_status ink_h_oauth_token(struct ink_req *req)
{
    const char *id_token = NULL, *nonce = NULL;
    if (ink_json_opt_string(req->json, "idToken", &id_token) != INK_OK || !id_token || !*id_token)
        return ink_fail_field(req, "idToken");
    if (ink_json_opt_string(req->json, "nonce", &nonce) != INK_OK)
        return ink_fail_field(req, "nonce");
    struct ink_client client = {req->user_agent, req->client_ip};
    struct ink_tokens tokens;
    struct ink_err err = {0};
    json_t *user = NULL;
    enum ink_status st =
        ink_oauth_native(req->params[0], id_token, nonce, &client, &tokens, &user, &err);
    if (st == INK_NOT_FOUND)
        return ink_fail(req, st, "not_found", "No such sign-in provider.");
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 200, ink_auth_response(&tokens, user));
}
