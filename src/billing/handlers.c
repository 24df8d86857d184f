/* HTTP glue for contract §3. */
#include "inklet/billing.h"
#include "inklet/handlers.h"
#include "inklet/json.h"

#include <stdlib.h>

static enum ink_status reply_url(struct ink_req *req, enum ink_status st, char *url,
                                 const struct ink_err *err)
{
    if (st != INK_OK)
        return ink_fail_err(req, st, err);
    json_t *body = json_pack("{s:s}", "url", url);
    free(url);
    return ink_reply(req, 200, body);
}

enum ink_status ink_h_subscription(struct ink_req *req)
{
    json_t *sub;
    enum ink_status st = ink_billing_subscription(req->auth.user_id, &sub);
    return st == INK_OK ? ink_reply(req, 200, sub) : st;
}

enum ink_status ink_h_subscription_checkout(struct ink_req *req)
{
    const char *interval = NULL;
    if (ink_json_opt_string(req->json, "interval", &interval) != INK_OK)
        interval = NULL; /* a non-string is as invalid as a missing one */
    struct ink_err err = {0};
    char *url = NULL;
    enum ink_status st = ink_billing_checkout(req->auth.user_id, interval, &url, &err);
    return reply_url(req, st, url, &err);
}

enum ink_status ink_h_subscription_portal(struct ink_req *req)
{
    struct ink_err err = {0};
    char *url = NULL;
    enum ink_status st = ink_billing_portal(req->auth.user_id, &url, &err);
    return reply_url(req, st, url, &err);
}

enum ink_status ink_h_billing_webhook(struct ink_req *req)
{
    struct ink_err err = {0};
    enum ink_status st = ink_billing_webhook(req->signature, req->body, req->body_len, &err);
    if (st != INK_OK)
        return ink_fail_err(req, st, &err);
    return ink_reply(req, 200, json_pack("{s:b}", "received", 1));
}
