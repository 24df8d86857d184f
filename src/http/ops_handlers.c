/* Contract §1: health, readiness and metrics. */
#include "inklet/alloc.h"
#include "inklet/app.h"
#include "inklet/broker.h"
#include "inklet/db.h"
#include "inklet/handlers.h"
#include "inklet/metrics.h"
#include "inklet/netaddr.h"

#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

enum ink_status ink_h_health(struct ink_req *req)
{
    /* no database work here: the load balancer calls this constantly */
    if (atomic_load(&ink_app.draining)) {
        req->retry_after = 5;
        return ink_reply(req, 503, json_pack("{s:s}", "status", "draining"));
    }
    static const char ok[] = "{\"status\":\"ok\"}";
    return ink_reply_static(req, 200, "application/json; charset=utf-8", ok, sizeof ok - 1);
}

enum ink_status ink_h_ready(struct ink_req *req)
{
    bool db_ok = ink_db_ready(), broker_ok = ink_broker_connected();
    bool ok = db_ok && broker_ok && !atomic_load(&ink_app.draining);
    json_t *checks = json_pack("{s:s,s:s}", "database", db_ok ? "ok" : "unavailable", "broker",
                               broker_ok ? "ok" : "unavailable");
    json_t *body =
        json_pack("{s:s,s:o}", "status",
                  ok ? "ok" : (atomic_load(&ink_app.draining) ? "draining" : "unavailable"),
                  "checks", checks);
    if (!ok)
        req->retry_after = 2;
    return ink_reply(req, ok ? 200 : 503, body);
}

/* Loopback means the client after the trusted-proxy rule, not the socket peer: behind a local
 * reverse proxy every request arrives from loopback. */
static bool metrics_allowed(struct ink_req *req)
{
    unsigned char addr[16];
    static const unsigned char v6_loopback[16] = {[15] = 1};
    if (ink_ip_parse(req->client_ip, addr) &&
        ((addr[10] == 0xff && addr[11] == 0xff && addr[12] == 127) ||
         memcmp(addr, v6_loopback, 16) == 0))
        return true;
    const char *token = ink_app.cfg.metrics_token;
    const char *auth = req->authorization;
    if (!token || !*token || !auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    size_t n = strlen(token);
    return strlen(auth + 7) == n && CRYPTO_memcmp(auth + 7, token, n) == 0;
}

enum ink_status ink_h_metrics(struct ink_req *req)
{
    if (!metrics_allowed(req))
        return ink_fail(req, INK_NOT_FOUND, "not_found", "No such route.");
    return ink_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                          ink_metrics_render());
}

enum ink_status ink_h_openapi(struct ink_req *req)
{
    return ink_reply_static(req, 200, "application/json; charset=utf-8", ink_openapi_json,
                            ink_openapi_json_len);
}
