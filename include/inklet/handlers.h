/** Every HTTP handler, by area; the route table in src/http/routes.c refers to these. */
#ifndef INKLET_HANDLERS_H
#define INKLET_HANDLERS_H
#include "inklet/http.h"

/* operations (src/http/ops_handlers.c) */
enum ink_status ink_h_health(struct ink_req *req);
enum ink_status ink_h_ready(struct ink_req *req);
enum ink_status ink_h_metrics(struct ink_req *req);
enum ink_status ink_h_openapi(struct ink_req *req);

/** docs/openapi.json, embedded at build time. */
extern const char ink_openapi_json[];
extern const size_t ink_openapi_json_len;

/* accounts (src/auth/handlers.c) */
enum ink_status ink_h_register(struct ink_req *req);
enum ink_status ink_h_login(struct ink_req *req);
enum ink_status ink_h_refresh(struct ink_req *req);
extern const struct ink_batched ink_batched_refresh; /* the same, batched */
enum ink_status ink_h_logout(struct ink_req *req);
enum ink_status ink_h_me(struct ink_req *req);
extern const struct ink_batched ink_batched_me; /* ink_h_me, batched (inklet/batched.h) */
enum ink_status ink_h_me_update(struct ink_req *req);
enum ink_status ink_h_me_delete(struct ink_req *req);
enum ink_status ink_h_password(struct ink_req *req);
enum ink_status ink_h_password_forgot(struct ink_req *req);
enum ink_status ink_h_password_reset(struct ink_req *req);
enum ink_status ink_h_email_verify(struct ink_req *req);
enum ink_status ink_h_email_verify_resend(struct ink_req *req);
enum ink_status ink_h_sessions_list(struct ink_req *req);
enum ink_status ink_h_sessions_revoke_all(struct ink_req *req);
enum ink_status ink_h_session_revoke(struct ink_req *req);

/* sign-in with Google/Apple (src/oauth/handlers.c) */
enum ink_status ink_h_oauth_start(struct ink_req *req);
enum ink_status ink_h_oauth_google_callback(struct ink_req *req);
enum ink_status ink_h_oauth_apple_callback(struct ink_req *req);
enum ink_status ink_h_oauth_token(struct ink_req *req);

/* billing (src/billing/handlers.c) */
enum ink_status ink_h_subscription(struct ink_req *req);
enum ink_status ink_h_subscription_checkout(struct ink_req *req);
enum ink_status ink_h_subscription_portal(struct ink_req *req);
enum ink_status ink_h_billing_webhook(struct ink_req *req);

/* devices (src/devices/handlers.c) */
enum ink_status ink_h_devices_list(struct ink_req *req);
extern const struct ink_batched ink_batched_devices; /* the same, batched */
enum ink_status ink_h_device_get(struct ink_req *req);
enum ink_status ink_h_bind(struct ink_req *req);
enum ink_status ink_h_bind_code(struct ink_req *req);
enum ink_status ink_h_bind_nfc(struct ink_req *req);
enum ink_status ink_h_device_unbind(struct ink_req *req);
enum ink_status ink_h_device_nickname(struct ink_req *req);
enum ink_status ink_h_device_command(struct ink_req *req);
enum ink_status ink_h_device_commands(struct ink_req *req);
enum ink_status ink_h_device_command_cancel(struct ink_req *req);
enum ink_status ink_h_device_state(struct ink_req *req);

#endif
