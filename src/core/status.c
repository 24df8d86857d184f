#include "inklet/status.h"

static const struct {
    unsigned http;
    const char *code;
    const char *message;
} STATUS_TABLE[INK_STATUS_COUNT] = {
    [INK_OK] = {200, "ok", "OK"},
    [INK_INVALID] = {400, "invalid_request", "The request is invalid."},
    [INK_UNAUTHORIZED] = {401, "unauthorized", "Authentication is required."},
    [INK_FORBIDDEN] = {403, "forbidden", "You do not have access to this resource."},
    [INK_NOT_FOUND] = {404, "not_found", "Not found."},
    [INK_METHOD] = {405, "method_not_allowed", "Method not allowed."},
    [INK_CONFLICT] = {409, "conflict", "The request conflicts with the current state."},
    [INK_GONE] = {410, "gone", "The resource is no longer available."},
    [INK_TOO_LARGE] = {413, "payload_too_large", "The request body is too large."},
    [INK_UNSUPPORTED] = {415, "unsupported_media_type", "The request body must be JSON."},
    [INK_RATE_LIMITED] = {429, "rate_limited", "Too many requests; retry later."},
    [INK_INTERNAL] = {500, "internal_error", "Internal server error."},
    [INK_UPSTREAM] = {502, "upstream_error", "An upstream service failed."},
    [INK_UNAVAILABLE] = {503, "service_unavailable",
                         "The service is temporarily unavailable; retry later."},
};

static enum ink_status clamp(enum ink_status st)
{
    return (unsigned)st < INK_STATUS_COUNT ? st : INK_INTERNAL;
}

unsigned ink_status_http(enum ink_status st)
{
    return STATUS_TABLE[clamp(st)].http;
}

const char *ink_status_code(enum ink_status st)
{
    return STATUS_TABLE[clamp(st)].code;
}

const char *ink_status_message(enum ink_status st)
{
    return STATUS_TABLE[clamp(st)].message;
}
