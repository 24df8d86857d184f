/* The one route table. Adding a route is adding a line. */
#include "inklet/handlers.h"

#define AUTH INK_ROUTE_AUTH
#define JSON INK_ROUTE_JSON
#define JSON_REQ INK_ROUTE_JSON_REQ
#define SLOW INK_ROUTE_SLOW
#define INLINE INK_ROUTE_INLINE
#define UPSTREAM INK_ROUTE_UPSTREAM
#define RAW INK_ROUTE_RAW_1MB

const struct ink_route ink_routes[] = {
    {"GET", "/health", ink_h_health, INLINE, INK_RATE_NONE, NULL},
    {"GET", "/health/ready", ink_h_ready, INLINE, INK_RATE_NONE, NULL},
    {"GET", "/metrics", ink_h_metrics, INLINE, INK_RATE_NONE, NULL},
    {"GET", "/openapi.json", ink_h_openapi, INLINE, INK_RATE_NONE, NULL},

    {"POST", "/auth/register", ink_h_register, JSON_REQ | SLOW, INK_RATE_REGISTER, NULL},
    {"POST", "/auth/login", ink_h_login, JSON_REQ | SLOW, INK_RATE_LOGIN, NULL},
    {"POST", "/auth/refresh", ink_h_refresh, JSON_REQ, INK_RATE_REFRESH, &ink_batched_refresh},
    {"POST", "/auth/logout", ink_h_logout, AUTH | JSON, INK_RATE_NONE, NULL},
    {"GET", "/auth/me", ink_h_me, AUTH, INK_RATE_NONE, &ink_batched_me},
    {"PATCH", "/auth/me", ink_h_me_update, AUTH | JSON_REQ | SLOW, INK_RATE_NONE, NULL},
    {"DELETE", "/auth/me", ink_h_me_delete, AUTH | JSON | SLOW, INK_RATE_NONE, NULL},
    {"POST", "/auth/password", ink_h_password, AUTH | JSON_REQ | SLOW, INK_RATE_NONE, NULL},
    {"POST", "/auth/password/forgot", ink_h_password_forgot, JSON_REQ, INK_RATE_MAIL, NULL},
    {"POST", "/auth/password/reset", ink_h_password_reset, JSON_REQ | SLOW, INK_RATE_NONE, NULL},
    {"POST", "/auth/email/verify", ink_h_email_verify, JSON_REQ, INK_RATE_NONE, NULL},
    {"POST", "/auth/email/verify/resend", ink_h_email_verify_resend, AUTH, INK_RATE_MAIL, NULL},
    {"GET", "/auth/sessions", ink_h_sessions_list, AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/auth/sessions", ink_h_sessions_revoke_all, AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/auth/sessions/{id}", ink_h_session_revoke, AUTH, INK_RATE_NONE, NULL},

    {"GET", "/auth/oauth/{provider}", ink_h_oauth_start, 0, INK_RATE_LOGIN, NULL},
    {"GET", "/auth/oauth/google/callback", ink_h_oauth_google_callback, UPSTREAM, INK_RATE_NONE,
     NULL},
    {"POST", "/auth/oauth/apple/callback", ink_h_oauth_apple_callback, UPSTREAM, INK_RATE_NONE,
     NULL},
    {"POST", "/auth/oauth/{provider}/token", ink_h_oauth_token, JSON_REQ | UPSTREAM, INK_RATE_LOGIN,
     NULL},

    {"GET", "/auth/subscription", ink_h_subscription, AUTH, INK_RATE_NONE, NULL},
    {"POST", "/auth/subscription/checkout", ink_h_subscription_checkout, AUTH | JSON | UPSTREAM,
     INK_RATE_NONE, NULL},
    {"POST", "/auth/subscription/portal", ink_h_subscription_portal, AUTH | JSON | UPSTREAM,
     INK_RATE_NONE, NULL},
    {"POST", "/auth/subscription/webhook", ink_h_billing_webhook, RAW, INK_RATE_NONE, NULL},
    {"POST", "/billing/webhook", ink_h_billing_webhook, RAW, INK_RATE_NONE, NULL},

    {"GET", "/api/devices", ink_h_devices_list, AUTH, INK_RATE_NONE, &ink_batched_devices},
    {"POST", "/api/devices/bind", ink_h_bind, AUTH | JSON_REQ, INK_RATE_BIND, NULL},
    {"POST", "/api/devices/bind/code", ink_h_bind_code, AUTH | JSON_REQ, INK_RATE_BIND, NULL},
    {"POST", "/api/devices/bind/nfc", ink_h_bind_nfc, AUTH | JSON_REQ, INK_RATE_BIND, NULL},
    {"GET", "/api/devices/{id}", ink_h_device_get, AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/api/devices/{id}", ink_h_device_unbind, AUTH, INK_RATE_NONE, NULL},
    {"POST", "/api/devices/{id}/unbind", ink_h_device_unbind, AUTH, INK_RATE_NONE, NULL},
    {"PUT", "/api/devices/{id}/nickname", ink_h_device_nickname, AUTH | JSON_REQ, INK_RATE_NONE,
     NULL},
    {"POST", "/api/devices/{id}/commands", ink_h_device_command, AUTH | JSON_REQ, INK_RATE_NONE,
     NULL},
    {"GET", "/api/devices/{id}/commands", ink_h_device_commands, AUTH, INK_RATE_NONE, NULL},
    {"DELETE", "/api/devices/{id}/commands/{commandId}", ink_h_device_command_cancel, AUTH,
     INK_RATE_NONE, NULL},
    {"GET", "/api/devices/{id}/state", ink_h_device_state, AUTH, INK_RATE_NONE, NULL},
};

const size_t ink_routes_count = sizeof ink_routes / sizeof *ink_routes;
