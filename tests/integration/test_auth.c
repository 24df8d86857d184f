/* Contract §2: registration, login, profile, password change and account deletion. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define D itest_shared

static const char *const USER_KEYS[] = {"id", "email", "username", "createdAt", "updatedAt", NULL};
static const char *const ME_KEYS[] = {"id",        "email",         "username",    "createdAt",
                                      "updatedAt", "emailVerified", "hasPassword", "providers",
                                      "plan",      "subscription",  NULL};

/* Upper-cases the ASCII letters of s in place. */
static void upper_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* Checks the contract's user object and that its timestamps are recent. */
static void expect_user_object(const json_t *user, const struct itest_user *u)
{
    itest_expect_keys(user, USER_KEYS);
    itest_uuid_v7(user, "id");
    assert_string_equal(itest_str(user, "email"), u->email);
    assert_string_equal(itest_str(user, "username"), u->username);
    long long now = (long long)time(NULL);
    long long created = itest_timestamp(user, "createdAt");
    long long updated = itest_timestamp(user, "updatedAt");
    assert_true(llabs(created - now) < 300);
    assert_true(updated >= created);
}

static void expect_auth_response(const json_t *body, const struct itest_user *u)
{
    itest_expect_keys(body, (const char *const[]){"accessToken", "refreshToken", "user", NULL});
    expect_user_object(json_object_get(body, "user"), u);
    const char *refresh = itest_str(body, "refreshToken");
    size_t n = strlen(refresh);
    assert_true(n >= 43); /* >= 256 bits of base64url */
    for (size_t i = 0; i < n; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", refresh[i]));
}

static void login_expect(const char *body, long status, const char *code)
{
    struct itest_resp r;
    itest_call(D, "POST", "/auth/login", NULL, body, &r);
    if (code)
        itest_expect_error(&r, status, code);
    else
        itest_expect_status(&r, status);
    itest_resp_free(&r);
}

static void register_expect(const char *email, const char *username, const char *password,
                            long status, const char *code)
{
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", email, "username",
                username, "password", password);
    if (code)
        itest_expect_error(&r, status, code);
    else
        itest_expect_status(&r, status);
    itest_resp_free(&r);
}

/* ---- register ----------------------------------------------------------------------------- */

static void test_register_returns_201_with_tokens_and_user(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", u.email,
                "username", u.username, "password", u.password);
    itest_expect_status(&r, 201);
    assert_string_equal(itest_header(&r, "Content-Type"), "application/json; charset=utf-8");
    expect_auth_response(r.json, &u);

    /* the access token: HS256 with the documented claims, 15 minutes */
    const char *access = itest_str(r.json, "accessToken");
    json_t *claims = itest_jwt_claims(access);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "typ")), "access");
    assert_string_equal(json_string_value(json_object_get(claims, "sub")),
                        itest_str(json_object_get(r.json, "user"), "id"));
    assert_true(itest_is_uuid_v7(json_string_value(json_object_get(claims, "sid"))));
    assert_non_null(json_string_value(json_object_get(claims, "iss")));
    assert_non_null(json_object_get(claims, "aud"));
    json_t *iat = json_object_get(claims, "iat"), *exp = json_object_get(claims, "exp");
    assert_true(json_is_integer(iat) && json_is_integer(exp));
    assert_int_equal(json_integer_value(exp) - json_integer_value(iat), 900);
    json_decref(claims);
    json_t *header = itest_jwt_header(access);
    assert_non_null(header);
    assert_string_equal(json_string_value(json_object_get(header, "alg")), "HS256");
    json_decref(header);

    /* and it works */
    assert_int_equal(itest_me_status(D, access), 200);
    itest_resp_free(&r);
}

static void test_register_trims_and_lowercases_email(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    char messy[128];
    snprintf(messy, sizeof messy, "  %s  ", u.email);
    upper_ascii(messy);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", messy, "username",
                u.username, "password", u.password);
    itest_expect_status(&r, 201);
    assert_string_equal(itest_str(json_object_get(r.json, "user"), "email"), u.email);
    itest_resp_free(&r);
}

static void test_register_rejects_bad_email(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "no-at-sign",      "a@", "@example.com", "a b@example.com", "a@@example.com",
        "a@b@example.com", "",   "   "};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        struct itest_user u;
        itest_user_new(&u);
        register_expect(bad[i], u.username, u.password, 400, "invalid_email");
    }
    /* over 254 bytes */
    char longmail[300];
    memset(longmail, 'a', sizeof longmail);
    memcpy(longmail + 250, "@x.io", 6);
    struct itest_user u;
    itest_user_new(&u);
    register_expect(longmail, u.username, u.password, 400, "invalid_email");
}

static void test_register_rejects_bad_username(void **state)
{
    (void)state;
    static const char *const bad[] = {"ab",
                                      "abcdefghijklmnopqrstuvwxyz0123456",
                                      "bad name",
                                      "bad/name",
                                      "b\xc3\xa4"
                                      "d_name",
                                      "bad@name",
                                      ""};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(bad); i++) {
        struct itest_user u;
        itest_user_new(&u);
        register_expect(u.email, bad[i], u.password, 400, "invalid_username");
    }
}

static void test_register_accepts_boundary_lengths_and_never_truncates(void **state)
{
    (void)state;
    /* a 32-character username and a 1024-byte password are the largest allowed */
    struct itest_user u;
    itest_user_new(&u);
    size_t n = strlen(u.username);
    assert_true(n <= 32);
    memset(u.username + n, 'x', 32 - n);
    u.username[32] = '\0';
    char long_pw[1025];
    memset(long_pw, 'p', 1024);
    long_pw[1024] = '\0';
    register_expect(u.email, u.username, long_pw, 201, NULL);
    /* only the last byte differs: a hasher that truncates would accept it */
    char almost[1025];
    memcpy(almost, long_pw, sizeof almost);
    almost[1023] = 'q';
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", almost);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", long_pw);
    itest_expect_status(&r, 200);
    itest_resp_free(&r);

    /* 8 bytes of UTF-8 with spaces is a valid password, used exactly as given */
    struct itest_user v;
    itest_user_new(&v);
    snprintf(v.password, sizeof v.password, "\xc3\xa4 \xc3\xb6 \xc3\xbc");
    assert_int_equal(strlen(v.password), 8);
    itest_register(D, &v);
    struct itest_session s;
    itest_login(D, &v, &s);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", v.username,
                "password", "\xc3\x84 \xc3\x96 \xc3\x9c"); /* upper-case umlauts */
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
}

static void test_register_ignores_unknown_and_server_owned_fields(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s,s:s,s:s,s:s,s:b,s:s,s:{s:s}}",
                "email", u.email, "username", u.username, "password", u.password, "id",
                "01900000-0000-7000-8000-000000000001", "createdAt", "2001-01-01T00:00:00Z", "plan",
                "pro", "hasPassword", 0, "role", "admin", "subscription", "status", "active");
    itest_expect_status(&r, 201);
    expect_auth_response(r.json, &u);
    const char *id = itest_str(json_object_get(r.json, "user"), "id");
    assert_string_not_equal(id, "01900000-0000-7000-8000-000000000001");
    snprintf(u.id, sizeof u.id, "%s", id);
    itest_session_from(r.json, &u.s);
    itest_resp_free(&r);
    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s,s:s,s:b}", "id",
                "01900000-0000-7000-8000-000000000002", "plan", "pro", "createdAt",
                "2001-01-01T00:00:00Z", "hasPassword", 0);
    /* nothing updatable was sent */
    itest_expect_status(&r, 400);
    itest_resp_free(&r);
    itest_call(D, "GET", "/auth/me", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    assert_string_equal(itest_str(r.json, "id"), u.id);
    assert_string_equal(itest_str(r.json, "plan"), "free");
    assert_true(json_is_true(json_object_get(r.json, "hasPassword")));
    assert_true(json_is_null(json_object_get(r.json, "subscription")));
    assert_true(itest_timestamp(r.json, "createdAt") > 1600000000);
    itest_resp_free(&r);
}

static void test_register_rejects_bad_password(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    register_expect(u.email, u.username, "seven77", 400, "invalid_password");
    char big[1100];
    memset(big, 'p', 1025);
    big[1025] = '\0';
    register_expect(u.email, u.username, big, 400, "invalid_password");
    /* nothing was created: the same data registers fine */
    register_expect(u.email, u.username, u.password, 201, NULL);
}

static void test_register_rejects_missing_fields(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s}", "username", u.username,
                "password", u.password);
    itest_expect_error(&r, 400, "invalid_request");
    assert_non_null(strstr(itest_str(r.json, "message"), "email"));
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s}", "email", u.email, "password",
                u.password);
    itest_expect_error(&r, 400, "invalid_request");
    assert_non_null(strstr(itest_str(r.json, "message"), "username"));
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s}", "email", u.email, "username",
                u.username);
    itest_expect_error(&r, 400, "invalid_request");
    assert_non_null(strstr(itest_str(r.json, "message"), "password"));
    itest_resp_free(&r);
}

static void test_register_rejects_wrong_types(void **state)
{
    (void)state;
    struct itest_user u;
    itest_user_new(&u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:i}", "email", u.email,
                "username", u.username, "password", 12345678);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:n,s:s,s:s}", "email", "username",
                u.username, "password", u.password);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:[s],s:s}", "email", u.email,
                "username", u.username, "password", u.password);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:b}", "email", u.email,
                "username", u.username, "password", 1);
    itest_expect_error(&r, 400, "invalid_request");
    itest_resp_free(&r);
    /* none of these created the account */
    register_expect(u.email, u.username, u.password, 201, NULL);
}

static void test_register_duplicate_email_is_409_email_taken(void **state)
{
    (void)state;
    struct itest_user a = {0}, b;
    itest_register(D, &a);
    itest_user_new(&b);
    register_expect(a.email, b.username, b.password, 409, "email_taken");
    /* the same address in other case and with spaces is the same address */
    char upper[128];
    snprintf(upper, sizeof upper, " %s", a.email);
    upper_ascii(upper);
    register_expect(upper, b.username, b.password, 409, "email_taken");
}

static void test_register_duplicate_username_is_409_case_insensitive(void **state)
{
    (void)state;
    struct itest_user a = {0}, b;
    itest_register(D, &a);
    itest_user_new(&b);
    register_expect(b.email, a.username, b.password, 409, "username_taken");
    char upper[64];
    snprintf(upper, sizeof upper, "%s", a.username);
    upper_ascii(upper);
    register_expect(b.email, upper, b.password, 409, "username_taken");
}

/* ---- login -------------------------------------------------------------------------------- */

static void login_with(const char *field, const char *value, const char *password,
                       const struct itest_user *u)
{
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", field, value, "password",
                password);
    itest_expect_status(&r, 200);
    expect_auth_response(r.json, u);
    assert_string_equal(itest_str(json_object_get(r.json, "user"), "id"), u->id);
    assert_int_equal(itest_me_status(D, itest_str(r.json, "accessToken")), 200);
    itest_resp_free(&r);
}

static void test_login_by_identifier_email(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    login_with("identifier", u.email, u.password, &u);
}

static void test_login_by_identifier_username(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    login_with("identifier", u.username, u.password, &u);
    char upper[64];
    snprintf(upper, sizeof upper, "%s", u.username);
    upper_ascii(upper);
    login_with("identifier", upper, u.password, &u); /* usernames are case-insensitive */
}

static void test_login_by_email_field(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    login_with("email", u.email, u.password, &u);
}

static void test_login_by_username_field(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    login_with("username", u.username, u.password, &u);
}

static void test_login_wrong_password_is_401_invalid_credentials(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.email, "password",
                "Wrong-password-1");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    /* passwords are not case-folded */
    char upper[64];
    snprintf(upper, sizeof upper, "%s", u.password);
    upper_ascii(upper);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.email, "password",
                upper);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
}

static void test_login_unknown_user_answers_like_wrong_password(void **state)
{
    (void)state;
    struct itest_user u = {0}, ghost;
    itest_register(D, &u);
    itest_user_new(&ghost);
    struct itest_resp wrong, unknown_mail, unknown_name;
    itest_callf(D, "POST", "/auth/login", NULL, &wrong, "{s:s,s:s}", "identifier", u.email,
                "password", "Wrong-password-1");
    itest_callf(D, "POST", "/auth/login", NULL, &unknown_mail, "{s:s,s:s}", "identifier",
                ghost.email, "password", "Wrong-password-1");
    itest_callf(D, "POST", "/auth/login", NULL, &unknown_name, "{s:s,s:s}", "identifier",
                ghost.username, "password", "Wrong-password-1");
    itest_expect_error(&wrong, 401, "invalid_credentials");
    itest_expect_error(&unknown_mail, 401, "invalid_credentials");
    itest_expect_error(&unknown_name, 401, "invalid_credentials");
    assert_string_equal(wrong.body, unknown_mail.body);
    assert_string_equal(wrong.body, unknown_name.body);
    itest_resp_free(&wrong);
    itest_resp_free(&unknown_mail);
    itest_resp_free(&unknown_name);
}

static void test_login_missing_fields_is_400(void **state)
{
    (void)state;
    login_expect("{}", 400, "invalid_request");
    login_expect("{\"identifier\":\"someone@example.com\"}", 400, "invalid_request");
    login_expect("{\"password\":\"Some-password-1\"}", 400, "invalid_request");
    login_expect("{\"identifier\":\"\",\"password\":\"Some-password-1\"}", 400, "invalid_request");
    login_expect("{\"identifier\":42,\"password\":\"Some-password-1\"}", 400, "invalid_request");
    login_expect("{\"identifier\":\"someone\",\"password\":null}", 400, "invalid_request");
}

/* ---- profile ------------------------------------------------------------------------------ */

static void expect_me(const json_t *me, const struct itest_user *u)
{
    itest_expect_keys(me, ME_KEYS);
    assert_string_equal(itest_uuid_v7(me, "id"), u->id);
    assert_string_equal(itest_str(me, "email"), u->email);
    assert_string_equal(itest_str(me, "username"), u->username);
    itest_timestamp(me, "createdAt");
    itest_timestamp(me, "updatedAt");
    assert_true(json_is_true(json_object_get(me, "hasPassword")));
    /* nobody has clicked a verification link (this daemon sends no mail) */
    assert_true(json_is_false(json_object_get(me, "emailVerified")));
    json_t *providers = json_object_get(me, "providers");
    assert_true(json_is_array(providers));
    assert_int_equal(json_array_size(providers), 0);
    assert_string_equal(itest_str(me, "plan"), "free");
    assert_true(json_is_null(json_object_get(me, "subscription")));
}

static void test_me_returns_profile(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_call(D, "GET", "/auth/me", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    expect_me(r.json, &u);
    itest_resp_free(&r);
}

/* No SMTP_URL (this group's daemon): the mail routes are 503 mail_not_configured, and
 * registration works without queueing anything. */
static void test_mail_routes_without_smtp_are_503_and_registration_still_works(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password/forgot", NULL, &r, "{s:s}", "email", u.email);
    itest_expect_error(&r, 503, "mail_not_configured");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/password/reset", NULL, &r, "{s:s,s:s}", "token",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "newPassword", "Whatever-pass-1");
    itest_expect_error(&r, 503, "mail_not_configured");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/email/verify", NULL, &r, "{s:s}", "token",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    itest_expect_error(&r, 503, "mail_not_configured");
    itest_resp_free(&r);
    itest_call(D, "POST", "/auth/email/verify/resend", u.s.access, NULL, &r);
    itest_expect_error(&r, 503, "mail_not_configured");
    itest_resp_free(&r);
    char *queued = itest_db_value("SELECT count(*) FROM mail_outbox o JOIN users u"
                                  " ON u.email = o.to_address WHERE u.id = $1",
                                  u.id);
    assert_string_equal(queued, "0");
    free(queued);
}

static void test_patch_me_changes_username(void **state)
{
    (void)state;
    struct itest_user u = {0}, fresh;
    itest_register(D, &u);
    itest_user_new(&fresh);
    struct itest_resp r;
    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s}", "username", fresh.username);
    itest_expect_status(&r, 200);
    snprintf(u.username, sizeof u.username, "%s", fresh.username);
    expect_me(r.json, &u);
    itest_resp_free(&r);
    itest_call(D, "GET", "/auth/me", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    expect_me(r.json, &u);
    itest_resp_free(&r);
    /* the new name logs in */
    struct itest_session s;
    itest_login(D, &u, &s);
}

static void test_patch_me_email_change_needs_current_password(void **state)
{
    (void)state;
    struct itest_user u = {0}, fresh;
    itest_register(D, &u);
    itest_user_new(&fresh);
    struct itest_resp r;
    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s}", "email", fresh.email);
    itest_expect_error(&r, 400, "current_password_required");
    itest_resp_free(&r);
    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", fresh.email,
                "currentPassword", "Wrong-password-1");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    /* still the old address */
    itest_call(D, "GET", "/auth/me", u.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    expect_me(r.json, &u);
    itest_resp_free(&r);

    itest_callf(D, "PATCH", "/auth/me", u.s.access, &r, "{s:s,s:s}", "email", fresh.email,
                "currentPassword", u.password);
    itest_expect_status(&r, 200);
    char old_email[96];
    snprintf(old_email, sizeof old_email, "%s", u.email);
    snprintf(u.email, sizeof u.email, "%s", fresh.email);
    expect_me(r.json, &u);
    itest_resp_free(&r);
    login_with("identifier", u.email, u.password, &u);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", old_email,
                "password", u.password);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
}

static void test_patch_me_taken_name_or_email_is_409(void **state)
{
    (void)state;
    struct itest_user a = {0}, b = {0};
    itest_register(D, &a);
    itest_register(D, &b);
    char upper[64];
    snprintf(upper, sizeof upper, "%s", a.username);
    upper_ascii(upper);
    struct itest_resp r;
    itest_callf(D, "PATCH", "/auth/me", b.s.access, &r, "{s:s}", "username", upper);
    itest_expect_error(&r, 409, "username_taken");
    itest_resp_free(&r);
    itest_callf(D, "PATCH", "/auth/me", b.s.access, &r, "{s:s,s:s}", "email", a.email,
                "currentPassword", b.password);
    itest_expect_error(&r, 409, "email_taken");
    itest_resp_free(&r);
    itest_callf(D, "PATCH", "/auth/me", b.s.access, &r, "{s:s}", "username", "x");
    itest_expect_error(&r, 400, "invalid_username");
    itest_resp_free(&r);
    itest_call(D, "GET", "/auth/me", b.s.access, NULL, &r);
    itest_expect_status(&r, 200);
    expect_me(r.json, &b);
    itest_resp_free(&r);
}

/* ---- password ----------------------------------------------------------------------------- */

static void test_password_change_wrong_current_is_401(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                "Wrong-password-1", "newPassword", "Another-password-2");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s}", "newPassword",
                "Another-password-2");
    itest_expect_status(&r, 400);
    itest_resp_free(&r);
    struct itest_session s;
    itest_login(D, &u, &s); /* unchanged */
}

static void test_password_change_short_new_is_400(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                u.password, "newPassword", "short");
    itest_expect_error(&r, 400, "invalid_password");
    itest_resp_free(&r);
    struct itest_session s;
    itest_login(D, &u, &s);
}

static void test_password_change_revokes_other_sessions(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session other;
    itest_login(D, &u, &other);
    assert_int_equal(itest_me_status(D, other.access), 200);
    const char *next = "Brand-new-password-9";
    struct itest_resp r;
    itest_callf(D, "POST", "/auth/password", u.s.access, &r, "{s:s,s:s}", "currentPassword",
                u.password, "newPassword", next);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 200);
    itest_expect_keys(r.json, (const char *const[]){"message", NULL});
    assert_string_equal(itest_str(r.json, "message"), "password updated");
    itest_resp_free(&r);

    itest_expect_token_dies(D, other.access, t0, 5000);
    assert_int_equal(itest_me_status(D, u.s.access), 200); /* the current session survives */
    /* the other session's refresh token died with it */
    itest_callf(D, "POST", "/auth/refresh", NULL, &r, "{s:s}", "refreshToken", other.refresh);
    itest_expect_status(&r, 401);
    itest_resp_free(&r);

    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.username,
                "password", u.password);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    snprintf(u.password, sizeof u.password, "%s", next);
    login_with("identifier", u.username, u.password, &u);
}

/* ---- delete ------------------------------------------------------------------------------- */

static void test_delete_me_wrong_password_is_401(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_resp r;
    itest_callf(D, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", "Wrong-password-1");
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    assert_int_equal(itest_me_status(D, u.s.access), 200);
}

static void test_delete_me_removes_the_account(void **state)
{
    (void)state;
    struct itest_user u = {0};
    itest_register(D, &u);
    struct itest_session other;
    itest_login(D, &u, &other);
    struct itest_resp r;
    itest_callf(D, "DELETE", "/auth/me", u.s.access, &r, "{s:s}", "password", u.password);
    int64_t t0 = itest_now_ms();
    itest_expect_status(&r, 204);
    assert_int_equal(r.body_len, 0);
    itest_resp_free(&r);
    itest_expect_token_dies(D, u.s.access, t0, 5000);
    itest_expect_token_dies(D, other.access, t0, 5000);
    itest_callf(D, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u.email, "password",
                u.password);
    itest_expect_error(&r, 401, "invalid_credentials");
    itest_resp_free(&r);
    itest_callf(D, "POST", "/auth/refresh", NULL, &r, "{s:s}", "refreshToken", other.refresh);
    itest_expect_error(&r, 401, "invalid_refresh_token");
    itest_resp_free(&r);
    /* the name and address are free again */
    register_expect(u.email, u.username, u.password, 201, NULL);
}

#define T(f) cmocka_unit_test_teardown(f, itest_teardown)

int itest_group_auth(void)
{
    const struct CMUnitTest tests[] = {
        T(test_register_returns_201_with_tokens_and_user),
        T(test_register_trims_and_lowercases_email),
        T(test_register_rejects_bad_email),
        T(test_register_rejects_bad_username),
        T(test_register_rejects_bad_password),
        T(test_register_accepts_boundary_lengths_and_never_truncates),
        T(test_register_ignores_unknown_and_server_owned_fields),
        T(test_register_rejects_missing_fields),
        T(test_register_rejects_wrong_types),
        T(test_register_duplicate_email_is_409_email_taken),
        T(test_register_duplicate_username_is_409_case_insensitive),
        T(test_login_by_identifier_email),
        T(test_login_by_identifier_username),
        T(test_login_by_email_field),
        T(test_login_by_username_field),
        T(test_login_wrong_password_is_401_invalid_credentials),
        T(test_login_unknown_user_answers_like_wrong_password),
        T(test_login_missing_fields_is_400),
        T(test_me_returns_profile),
        T(test_mail_routes_without_smtp_are_503_and_registration_still_works),
        T(test_patch_me_changes_username),
        T(test_patch_me_email_change_needs_current_password),
        T(test_patch_me_taken_name_or_email_is_409),
        T(test_password_change_wrong_current_is_401),
        T(test_password_change_short_new_is_400),
        T(test_password_change_revokes_other_sessions),
        T(test_delete_me_wrong_password_is_401),
        T(test_delete_me_removes_the_account),
    };
    return cmocka_run_group_tests_name("auth", tests, itest_group_setup, itest_group_teardown);
}
