/** The integration harness: spawns the real inkletd against the test database and talks to it
 *  like a client does (libcurl, raw sockets). Tests are black-box: nothing here links against
 *  the inklet library.
 *
 *  Memory and cleanup: daemons started with itest_daemon_start() are owned by the harness and
 *  are killed and freed by itest_teardown() (the per-test teardown), so a failing test never
 *  leaves a process behind. Responses (struct itest_resp) are owned by the caller and released
 *  with itest_resp_free(). */
#ifndef INKLET_ITEST_HARNESS_H
#define INKLET_ITEST_HARNESS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <sys/types.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#define ITEST_ARRAY_LEN(a) (sizeof(a) / sizeof *(a))
#define ITEST_MAX_HEADERS 64
#define ITEST_ORIGIN "http://localhost:5173"
#define ITEST_USER_AGENT "inklet-itest/1"
#define ITEST_FACTORY_SECRET "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/** Run-wide settings read from the INKLET_ITEST_* environment. */
struct itest_config {
    const char *inkletd;
    const char *database_url;
    const char *pg_stop;     /* NULL when not provided */
    const char *pg_start;    /* NULL when not provided */
    const char *pg_freeze;   /* SIGSTOPs the whole cluster (a hung host); NULL when not provided */
    const char *pg_thaw;     /* SIGCONTs it */
    const char *mqtt_url;    /* NULL when not provided */
    const char *fake_stripe; /* tests/fakes/fake_stripe.py (run with /usr/bin/python3); NULL when
                                not provided */
    const char *fake_oidc;   /* tests/fakes/fake_oidc.py; NULL when not provided */
    const char *wrapper;     /* NULL when not provided */
    unsigned slow;           /* multiplier for every wait: 1, or 20 under a wrapper */
    char jwt_secret[65];     /* random, shared by every daemon of this run */
    char tmpdir[64];         /* logs and captured output of this run */
    char run_tag[8];         /* random, makes user names unique across runs on one database */
};

extern struct itest_config itest;

/** Reads the environment, initialises libcurl and the temp dir. False (with a message) when a
 *  required variable is missing. */
bool itest_init(void);
/** Removes the temp dir unless something failed (keep_logs) or INKLET_ITEST_KEEP_LOGS is set. */
void itest_finish(bool keep_logs);

/* ---- time --------------------------------------------------------------------------------- */

int64_t itest_now_ms(void);
/** `ms` scaled by the slowness factor (wrapper runs). */
unsigned itest_scaled(unsigned ms);
/** An observation window of `ms` (how long something must stay true, or stay absent): what it
 *  watches runs on wall-clock timers (back-off, retry rounds), which valgrind does not stretch
 *  by its CPU factor, so under a wrapper it grows 3×, not itest_scaled()'s 20×. */
unsigned itest_window(unsigned ms);
void itest_sleep_ms(unsigned ms);

/* ---- small helpers ------------------------------------------------------------------------ */

/** The whole file as a NUL-terminated malloc'd string ("" when it cannot be read); its length in
 *  *len when len is not NULL. */
char *itest_read_file(const char *path, size_t *len);
/** A random (v4) UUID in canonical lower-case form. */
void itest_random_uuid(char out[37]);

/* ---- processes ---------------------------------------------------------------------------- */

/** Result of a finished inkletd command (migrate, check-config, ...). */
struct itest_proc {
    int status; /* exit code; 128+signal when killed by a signal; -1 when it timed out */
    char *out;  /* captured stdout (NUL-terminated, owned) */
    char *err;  /* captured stderr (NUL-terminated, owned) */
};

/** Starts argv[0] (searched in PATH) with `envp` (NULL: this process's environment), stdin from
 *  /dev/null and output appended to out_path / err_path (may be the same file). The child dies
 *  with the test runner. Returns the pid or -1. */
pid_t itest_spawn_program(const char *const argv[], char *const envp[], const char *out_path,
                          const char *err_path);
/** Starts inkletd (through the wrapper) with `args` (NULL-terminated) and the base environment
 *  plus `env` overrides ("KEY=VALUE"; "KEY" alone unsets), without waiting. Returns the pid or
 *  -1. Output goes to the files named by out_path / err_path. */
pid_t itest_spawn(const char *const args[], const char *const env[], const char *out_path,
                  const char *err_path);
/** Waits for `pid` up to `timeout_ms` (scaled); kills it after that. Returns like status. */
int itest_wait_pid(pid_t pid, unsigned timeout_ms);
/** Runs inkletd with args and env to completion; captures output into *res (free with
 *  itest_proc_free). Returns res->status. */
int itest_run_inkletd(const char *const args[], const char *const env[], unsigned timeout_ms,
                      struct itest_proc *res);
void itest_proc_free(struct itest_proc *res);
/** Runs `sh -c cmdline`; returns its exit status (-1 on timeout). */
int itest_sh(const char *cmdline, unsigned timeout_ms);

/** A running inkletd on a loopback port. */
struct itest_daemon {
    pid_t pid;
    unsigned port;
    char url[64]; /* http://127.0.0.1:PORT */
    char log_path[160];
    bool exited;
    int status; /* valid once exited */
    bool shared;
};

/** Starts inkletd serving with the base environment plus `env` overrides (NULL-terminated, may
 *  be NULL) and waits until GET /health answers 200. Returns NULL after printing the daemon's
 *  log if it does not come up. The harness owns the result. */
struct itest_daemon *itest_daemon_start(const char *const env[]);
/** SIGTERM, wait (bounded), reap. Returns the exit status (see struct itest_proc); prints the
 *  log when the status is not 0 or the log shows a sanitizer report. */
int itest_daemon_stop(struct itest_daemon *d);
/** Waits (without signalling) until the daemon exits, up to timeout_ms (scaled; then it is
 *  killed). Returns like itest_daemon_stop. */
int itest_daemon_wait_exit(struct itest_daemon *d, unsigned timeout_ms);
/** Polls GET /health/ready every 50 ms until it answers 200 or `timeout_ms` (scaled) pass;
 *  returns the last status (200 when ready). */
long itest_wait_ready(const struct itest_daemon *d, unsigned timeout_ms);
/** True while the process has not exited (reaps it if it has). */
bool itest_daemon_alive(struct itest_daemon *d);
/** Prints the daemon's log to stderr. */
void itest_daemon_dump_log(const struct itest_daemon *d, const char *why);
/** True if the daemon's log holds an AddressSanitizer/UBSan/LeakSanitizer report. */
bool itest_daemon_log_has_sanitizer_report(const struct itest_daemon *d);

/** Group fixture failures (cmocka does not count them in its return value). */
extern int itest_fixture_failures;

/** The daemon shared by the tests of a group (started by itest_group_setup). */
extern struct itest_daemon *itest_shared;
/** cmocka group fixtures: start / stop the shared daemon (teardown fails if its exit status is
 *  not 0 or it printed a sanitizer report). */
int itest_group_setup(void **state);
int itest_group_teardown(void **state);
/** cmocka per-test teardown: kills and frees every non-shared daemon still registered. */
int itest_teardown(void **state);

/* ---- HTTP --------------------------------------------------------------------------------- */

struct itest_header {
    char *name;
    char *value;
};

struct itest_resp {
    long status;        /* 0 when the transfer failed */
    CURLcode curl_code; /* CURLE_OK on success */
    char *body;         /* NUL-terminated, owned */
    size_t body_len;
    json_t *json; /* parsed body or NULL */
    size_t nheaders;
    struct itest_header headers[ITEST_MAX_HEADERS];
    long num_connects; /* CURLINFO_NUM_CONNECTS of this transfer */
    double seconds;    /* total time */
};

/** Performs one request. `handle` may be NULL (a fresh easy handle) or a handle the caller
 *  keeps to reuse its connection. `headers` is NULL-terminated "Name: value" lines (may be
 *  NULL). `body` (may contain NUL) is sent when non-NULL. Fills *out (always; check status). */
void itest_request(CURL *handle, const char *method, const char *url, const char *const headers[],
                   const void *body, size_t body_len, struct itest_resp *out);
void itest_resp_free(struct itest_resp *r);
/** The last value of a header (case-insensitive name), or NULL. */
const char *itest_header(const struct itest_resp *r, const char *name);
/** How many times a header occurs. */
size_t itest_header_count(const struct itest_resp *r, const char *name);
/** True if the header's comma-separated value list contains `token` (case-insensitive). */
bool itest_header_has_token(const struct itest_resp *r, const char *name, const char *token);

/** JSON request to daemon `d`: Content-Type application/json when `json_body` is non-NULL,
 *  Authorization: Bearer `token` when non-NULL, User-Agent ITEST_USER_AGENT. */
void itest_call(const struct itest_daemon *d, const char *method, const char *path,
                const char *token, const char *json_body, struct itest_resp *out);
/** Like itest_call with a body built by json_pack(fmt, ...). */
void itest_callf(const struct itest_daemon *d, const char *method, const char *path,
                 const char *token, struct itest_resp *out, const char *fmt, ...);
/** GET `path` on `d`, no auth. */
void itest_get(const struct itest_daemon *d, const char *path, struct itest_resp *out);

/** The value of the sample `name` (with its labels, e.g. `x_total{result="ok"}`) on d's
 *  /metrics page; asserts the page and the sample are there. */
unsigned long long itest_metric(const struct itest_daemon *d, const char *name);

/* ---- races ------------------------------------------------------------------------------- */

/** One request of a race (itest_race_posts). */
struct itest_race {
    const char *url;  /* in: POST here */
    const char *body; /* in: the JSON body */
    long status;      /* out: 0 on a transport failure */
    char code[64];    /* out: the error body's code, "" when none */
    json_t *json;     /* out: the parsed answer (itest_race_free), NULL when not JSON */
};
/** POSTs every race[i] from its own thread, all released together by a barrier (the threads
 *  assert nothing), and waits for them all. */
void itest_race_posts(struct itest_race *race, size_t n);
void itest_race_free(struct itest_race *race, size_t n);
/** The string `key` of race->json, or "" (for reading a winner's answer). */
const char *itest_race_str(const struct itest_race *race, const char *key);

/** The first IPv4 address of an up, non-loopback interface (for peers that must not look local:
 *  /metrics, STARTTLS to a relay). False when the machine has none. */
bool itest_non_loopback_ipv4(char out[64]);

/* ---- the database, directly (for what the API cannot do: age a row) ------------------------ */

/** Runs one statement with one parameter on its own connection; asserts it worked and touched
 *  exactly one row. */
void itest_db_exec1(const char *sql, const char *param);
/** Runs SQL without parameters (one or more statements: DDL) on its own connection; asserts it
 *  worked. */
void itest_db_run(const char *sql);
/** A SELECT with one parameter: the first column of the first row as a malloc'd string, NULL
 *  when there is no row or it is NULL. */
char *itest_db_value(const char *sql, const char *param);

/* ---- fake providers (tests/fakes/) ---------------------------------------------------------- */

/** A fake provider process: /usr/bin/python3 SCRIPT --port 0 --port-file F [args...], with a
 *  /_fake/health control route. */
struct itest_fake {
    pid_t pid;
    unsigned port;
    char name[32];
    char log[192];
};

/** Starts `script` with the extra `args` (NULL-terminated; may be NULL) and waits for its port
 *  file and /_fake/health. No cmocka assertions (for group set-ups): false, with the fake's log
 *  on stderr, when it did not come up. */
bool itest_fake_start(struct itest_fake *f, const char *name, const char *script,
                      const char *const args[]);
/** SIGTERM and reap; returns the exit status (0 expected). */
int itest_fake_stop(struct itest_fake *f);
void itest_fake_dump_log(const struct itest_fake *f, const char *why);
/** `method` `path` at the fake's control API with a JSON body (NULL: "{}" for POST); asserts
 *  200 and returns the parsed answer (new reference, NULL when it is not JSON). */
json_t *itest_fake_call(const struct itest_fake *f, const char *method, const char *path,
                        const json_t *body);
/** itest_fake_call with a body built by json_vpack_ex(fmt, ap). */
json_t *itest_fake_vcallf(const struct itest_fake *f, const char *method, const char *path,
                          const char *fmt, va_list ap);
/** itest_fake_call with a body built by json_pack(fmt, ...). */
json_t *itest_fake_callf(const struct itest_fake *f, const char *method, const char *path,
                         const char *fmt, ...);

/* ---- assertions on responses -------------------------------------------------------------- */

/** Asserts the transfer worked and returned `status` (prints the body otherwise). */
void itest_expect_status(const struct itest_resp *r, long status);
/** Asserts `status` and an error body {"message": non-empty string, "code": code}, JSON
 *  content type, and nothing else in the body. */
void itest_expect_error(const struct itest_resp *r, long status, const char *code);
/** Asserts `v` is an object with exactly the given keys (NULL-terminated list). */
void itest_expect_keys(const json_t *v, const char *const keys[]);
/** Asserts obj[key] is a string and returns it. */
const char *itest_str(const json_t *obj, const char *key);
/** Asserts obj[key] is an RFC 3339 UTC second-precision timestamp ("...Z") and returns its
 *  epoch seconds. */
long long itest_timestamp(const json_t *obj, const char *key);
/** Asserts obj[key] is a lower-case UUID v7 whose embedded time is near now. */
const char *itest_uuid_v7(const json_t *obj, const char *key);
bool itest_is_uuid_v7(const char *s);
/** Asserts a Retry-After header of digits only, value >= 1; returns it. */
unsigned itest_expect_retry_after(const struct itest_resp *r);

/* ---- users -------------------------------------------------------------------------------- */

struct itest_session {
    char access[1024];
    char refresh[128];
    char sid[40];
};

struct itest_user {
    char email[96];
    char username[40];
    char password[64];
    char id[40];
    struct itest_session s; /* the session opened by register */
};

/** Fills unique credentials without registering. */
void itest_user_new(struct itest_user *u);
/** Registers `u` (fresh credentials if u->email is empty) on `d`; asserts 201. */
void itest_register(const struct itest_daemon *d, struct itest_user *u);
/** Logs in (identifier = username) and fills *s; asserts 200. */
void itest_login(const struct itest_daemon *d, const struct itest_user *u, struct itest_session *s);
/** POST /auth/refresh with `refresh` on `d`; asserts `status` (and the error `code` when not
 *  NULL); when `out` is not NULL, asserts the pair's keys and fills *out from the body. */
void itest_refresh_expect(const struct itest_daemon *d, const char *refresh, long status,
                          const char *code, struct itest_session *out);
/** Fills *s from an auth/refresh response body (accessToken, refreshToken; sid from the JWT). */
void itest_session_from(const json_t *body, struct itest_session *s);
/** GET /auth/me with `token` and returns the status (0 on a transport failure). */
long itest_me_status(const struct itest_daemon *d, const char *token);
/** Polls GET /auth/me with `token` until it is 401; asserts that happens within `limit_ms`
 *  (not scaled) measured from `since_ms`. Returns the elapsed milliseconds. */
int64_t itest_expect_token_dies(const struct itest_daemon *d, const char *token, int64_t since_ms,
                                unsigned limit_ms);

/* ---- tokens ------------------------------------------------------------------------------- */

/** The decoded payload (claims) of a JWT; new reference or NULL. */
json_t *itest_jwt_claims(const char *jwt);
/** The decoded header of a JWT; new reference or NULL. */
json_t *itest_jwt_header(const char *jwt);
/** Builds a JWT from header and payload objects. alg "HS256"/"HS384"/"HS512" sign with HMAC over
 *  `key`; "none" leaves the signature empty. Returns malloc'd text. */
char *itest_jwt_make(const json_t *header, const json_t *payload, const char *alg, const char *key);

/* ---- raw sockets -------------------------------------------------------------------------- */

/** Connects to 127.0.0.1:port (blocking, CLOEXEC); -1 if refused. */
int itest_raw_connect(unsigned port);
/** Sends everything; false on error (never raises SIGPIPE). */
bool itest_raw_send(int fd, const void *data, size_t len);
bool itest_raw_send_str(int fd, const char *s);

struct itest_raw_resp {
    int status;
    size_t nheaders;
    struct itest_header headers[ITEST_MAX_HEADERS];
    char *body;
    size_t body_len;
};

/** Reads one HTTP/1.1 response (Content-Length framed). Returns 0, -1 on timeout, -2 when the
 *  peer closed before a whole response arrived. */
int itest_raw_read_response(int fd, unsigned timeout_ms, struct itest_raw_resp *out);
void itest_raw_resp_free(struct itest_raw_resp *r);
const char *itest_raw_header(const struct itest_raw_resp *r, const char *name);
/** Waits until the peer closes the connection; true if it did within timeout_ms. */
bool itest_raw_wait_closed(int fd, unsigned timeout_ms);

/* ---- groups ------------------------------------------------------------------------------- */

int itest_group_auth(void);
int itest_group_sessions(void);
int itest_group_throttle(void);
int itest_group_clientip(void);
int itest_group_http(void);
int itest_group_ops(void);
int itest_group_outage(void);

/** Results of the two concurrent `inkletd migrate` runs made at start-up. */
extern int itest_migrate_status[2];

#endif
