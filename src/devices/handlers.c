/* HTTP glue for contract §4 (/api/devices). */
#include "inklet/devices.h"
#include "inklet/handlers.h"
#include "inklet/json.h"
#include "inklet/ratelimit.h"
#include "inklet/batched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The service's error, or the device routes' wording of 403 and 404. */
static enum ink_status fail_err(struct ink_req *req, enum ink_status st, const struct ink_err *err)
{
    if (err->code)
        return ink_fail_err(req, st, err);
    if (st == INK_FORBIDDEN)
        return ink_fail(req, st, "forbidden", "That device belongs to another account.");
    if (st == INK_NOT_FOUND)
        return ink_fail(req, st, "device_not_found", "No such device.");
    return st;
}

/* The {id} path parameter must be a UUID. */
static const char *device_id(struct ink_req *req)
{
    return ink_uuid_valid(req->params[0]) ? req->params[0] : NULL;
}

static enum ink_status bad_id(struct ink_req *req)
{
    return ink_fail(req, INK_INVALID, "invalid_id", "The id is not a valid UUID.");
}

/* Per-user bucket on top of the per-IP one the route table applies. */
static enum ink_status bind_allowed(struct ink_req *req)
{
    char key[64];
    snprintf(key, sizeof key, "user:%s", req->auth.user_id);
    unsigned wait = ink_ratelimit_take(INK_RATE_BIND, key);
    if (!wait)
        return INK_OK;
    req->retry_after = wait;
    return ink_fail(req, INK_RATE_LIMITED, "rate_limited", "Too many bind attempts; retry later.");
}

static enum ink_status devices_reply(struct ink_req *req, struct ink_batched_call *call,
                                     const PGresult *r)
{
    return ink_reply_json_text(req, 200, ink_devices_json_rows(r, call->row, call->nrows));
}

const struct ink_batched ink_batched_devices = {.sql = &ink_devices_of_sql,
                                                .reply = devices_reply,
                                                .shared = &ink_devices_of_many_sql,
                                                .key_column = INK_DEVICES_OWNER_COLUMN};

enum ink_status ink_h_devices_list(struct ink_req *req)
{
    return ink_batched_run(&ink_batched_devices, req);
}

enum ink_status ink_h_device_get(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    char *dev;
    struct ink_err err = {0};
    enum ink_status st = ink_device_get(req->auth.user_id, id, &dev);
    return st == INK_OK ? ink_reply_json_text(req, 200, dev) : fail_err(req, st, &err);
}

static enum ink_status bind_code(struct ink_req *req, const char *code)
{
    char *dev;
    struct ink_err err = {0};
    enum ink_status st = ink_device_bind_code(req->auth.user_id, code, &dev, &err);
    return st == INK_OK ? ink_reply_json_text(req, 200, dev) : fail_err(req, st, &err);
}

static enum ink_status bind_nfc(struct ink_req *req, const char *payload)
{
    char *dev;
    struct ink_err err = {0};
    enum ink_status st = ink_device_bind_nfc(req->auth.user_id, payload, &dev, &err);
    return st == INK_OK ? ink_reply_json_text(req, 200, dev) : fail_err(req, st, &err);
}

/* Reads the first present string among `keys`; INK_INVALID on a wrong type. */
static enum ink_status first_string(struct ink_req *req, const char *const *keys, size_t n,
                                    const char **out)
{
    *out = NULL;
    for (size_t i = 0; i < n && !*out; i++)
        if (ink_json_opt_string(req->json, keys[i], out) != INK_OK)
            return ink_fail_field(req, keys[i]);
    return INK_OK;
}

enum ink_status ink_h_bind(struct ink_req *req)
{
    static const char *const code_keys[] = {"claimCode", "code"};
    static const char *const nfc_keys[] = {"nfcPayload", "payload"};
    const char *code, *nfc;
    enum ink_status st;
    if ((st = first_string(req, code_keys, 2, &code)) != INK_OK ||
        (st = first_string(req, nfc_keys, 2, &nfc)) != INK_OK)
        return st;
    if (!code && !nfc)
        return ink_fail(req, INK_INVALID, "invalid_request", "Send claimCode or nfcPayload.");
    if ((st = bind_allowed(req)) != INK_OK)
        return st;
    return code ? bind_code(req, code) : bind_nfc(req, nfc);
}

enum ink_status ink_h_bind_code(struct ink_req *req)
{
    const char *code;
    if (ink_json_opt_string(req->json, "claimCode", &code) != INK_OK || !code)
        return ink_fail(req, INK_INVALID, "invalid_claim_code",
                        "A claim code is 6 characters from the code alphabet.");
    enum ink_status st = bind_allowed(req);
    return st == INK_OK ? bind_code(req, code) : st;
}

enum ink_status ink_h_bind_nfc(struct ink_req *req)
{
    const char *payload;
    if (ink_json_opt_string(req->json, "payload", &payload) != INK_OK || !payload)
        return ink_fail(req, INK_INVALID, "invalid_nfc_payload",
                        "The NFC payload is not inklet:1:{hwId}:{signature}.");
    enum ink_status st = bind_allowed(req);
    return st == INK_OK ? bind_nfc(req, payload) : st;
}

enum ink_status ink_h_device_unbind(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    struct ink_err err = {0};
    enum ink_status st = ink_device_unbind(req->auth.user_id, id);
    return st == INK_OK ? ink_reply_message(req, 200, "device unbound") : fail_err(req, st, &err);
}

enum ink_status ink_h_device_nickname(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    const char *nickname;
    bool is_null = false;
    if (ink_json_opt_string_or_null(req->json, "nickname", &nickname, &is_null) != INK_OK ||
        (!nickname && !is_null))
        return ink_fail(req, INK_INVALID, "invalid_nickname",
                        "A nickname is 1-64 characters, or null to clear it.");
    char *dev;
    struct ink_err err = {0};
    enum ink_status st = ink_device_set_nickname(req->auth.user_id, id, nickname, &dev, &err);
    return st == INK_OK ? ink_reply_json_text(req, 200, dev) : fail_err(req, st, &err);
}

enum ink_status ink_h_device_command(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    const char *kind, *text;
    if (ink_json_opt_string(req->json, "kind", &kind) != INK_OK ||
        ink_json_opt_string(req->json, "text", &text) != INK_OK || !kind ||
        strcmp(kind, "text") != 0 || !text)
        return ink_fail(
            req, INK_INVALID, "invalid_command",
            "Send {\"kind\":\"text\",\"text\":\"...\"}; only text commands can be sent.");
    json_t *cmd = NULL;
    struct ink_err err = {0};
    enum ink_status st = ink_device_send_text(req->auth.user_id, id, text, &cmd, &err);
    return st == INK_OK ? ink_reply(req, 202, cmd) : fail_err(req, st, &err);
}

enum ink_status ink_h_device_commands(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    int limit = 20;
    const char *q = ink_req_query(req, "limit");
    if (q) {
        char *end;
        long v = strtol(q, &end, 10);
        if (!*q || *end || v < 1 || v > 100)
            return ink_fail(req, INK_INVALID, "invalid_limit", "limit must be 1 to 100.");
        limit = (int)v;
    }
    json_t *list;
    struct ink_err err = {0};
    enum ink_status st = ink_device_commands(req->auth.user_id, id, limit, &list);
    return st == INK_OK ? ink_reply(req, 200, list) : fail_err(req, st, &err);
}

enum ink_status ink_h_device_command_cancel(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id || !ink_uuid_valid(req->params[1]))
        return bad_id(req);
    json_t *cmd = NULL;
    struct ink_err err = {0};
    enum ink_status st =
        ink_device_cancel_command(req->auth.user_id, id, req->params[1], &cmd, &err);
    return st == INK_OK ? ink_reply(req, 200, cmd) : fail_err(req, st, &err);
}

enum ink_status ink_h_device_state(struct ink_req *req)
{
    const char *id = device_id(req);
    if (!id)
        return bad_id(req);
    json_t *state;
    struct ink_err err = {0};
    enum ink_status st = ink_device_state(req->auth.user_id, id, &state);
    return st == INK_OK ? ink_reply(req, 200, state) : fail_err(req, st, &err);
}
