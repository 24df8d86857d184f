/* The integration harness: processes, HTTP client, users, tokens and raw sockets. */
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_DAEMONS 64
#define HEALTH_WAIT_MS 15000
#define STOP_WAIT_MS 30000

struct itest_config itest;
struct itest_daemon *itest_shared;
int itest_fixture_failures;
int itest_migrate_status[2] = {-1, -1};

static struct itest_daemon *daemons[MAX_DAEMONS];
static unsigned daemon_seq;

/* ---- small utilities ---------------------------------------------------------------------- */

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "itest: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *itest_read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    size_t n;
    while (f && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb)
                abort();
            buf = nb;
        }
    }
    buf[len] = '\0';
    if (f)
        fclose(f);
    if (len_out)
        *len_out = len;
    return buf;
}

void itest_random_uuid(char out[37])
{
    unsigned char b[16];
    assert_int_equal(RAND_bytes(b, sizeof b), 1);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int64_t itest_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

unsigned itest_scaled(unsigned ms)
{
    return ms * itest.slow;
}

unsigned itest_window(unsigned ms)
{
    return itest.slow > 1 ? 3 * ms : ms;
}

void itest_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- set-up ------------------------------------------------------------------------------- */

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

bool itest_init(void)
{
    itest.inkletd = env_nonempty("INKLET_ITEST_INKLETD");
    itest.database_url = env_nonempty("INKLET_ITEST_DATABASE_URL");
    itest.pg_stop = env_nonempty("INKLET_ITEST_PG_STOP");
    itest.pg_start = env_nonempty("INKLET_ITEST_PG_START");
    itest.pg_freeze = env_nonempty("INKLET_ITEST_PG_FREEZE");
    itest.pg_thaw = env_nonempty("INKLET_ITEST_PG_THAW");
    itest.mqtt_url = env_nonempty("INKLET_ITEST_MQTT_URL");
    itest.fake_stripe = env_nonempty("INKLET_ITEST_FAKE_STRIPE");
    itest.fake_oidc = env_nonempty("INKLET_ITEST_FAKE_OIDC");
    itest.wrapper = env_nonempty("INKLET_ITEST_WRAPPER");
    itest.slow = itest.wrapper ? 20 : 1;
    if (!itest.inkletd || !itest.database_url) {
        fprintf(stderr, "inklet-itest: INKLET_ITEST_INKLETD and INKLET_ITEST_DATABASE_URL must be "
                        "set (scripts/test.sh does this)\n");
        return false;
    }
    if (access(itest.inkletd, X_OK) != 0) {
        fprintf(stderr, "inklet-itest: %s is not executable\n", itest.inkletd);
        return false;
    }
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        fprintf(stderr, "inklet-itest: RAND_bytes failed\n");
        return false;
    }
    hex_encode(raw, sizeof raw, itest.jwt_secret);
    if (RAND_bytes(raw, 2) != 1)
        return false;
    hex_encode(raw, 2, itest.run_tag);
    snprintf(itest.tmpdir, sizeof itest.tmpdir, "/tmp/inklet-itest.XXXXXX");
    if (!mkdtemp(itest.tmpdir)) {
        perror("inklet-itest: mkdtemp");
        return false;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "inklet-itest: curl_global_init failed\n");
        return false;
    }
    fprintf(stderr, "inklet-itest: inkletd %s%s%s, logs in %s\n", itest.inkletd,
            itest.wrapper ? " via " : "", itest.wrapper ? itest.wrapper : "", itest.tmpdir);
    return true;
}

void itest_finish(bool keep_logs)
{
    for (size_t i = 0; i < MAX_DAEMONS; i++) {
        struct itest_daemon *d = daemons[i];
        if (d && !d->exited) {
            kill(d->pid, SIGKILL);
            itest_wait_pid(d->pid, 5000);
        }
        free(d);
        daemons[i] = NULL;
    }
    if (keep_logs || env_nonempty("INKLET_ITEST_KEEP_LOGS")) {
        fprintf(stderr, "inklet-itest: logs kept in %s\n", itest.tmpdir);
    } else {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", itest.tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "inklet-itest: could not remove %s\n", itest.tmpdir);
    }
    curl_global_cleanup();
}

/* ---- environment for inkletd -------------------------------------------------------------- */

struct envb {
    char **v;
    size_t n, cap;
};

static size_t key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

/* "KEY=VALUE" sets (replacing), "KEY" unsets. */
static void env_put(struct envb *e, const char *kv)
{
    size_t kl = key_len(kv);
    for (size_t i = 0; i < e->n; i++) {
        if (key_len(e->v[i]) == kl && strncmp(e->v[i], kv, kl) == 0) {
            free(e->v[i]);
            if (kv[kl] == '=') {
                e->v[i] = xstrdup(kv);
            } else {
                e->v[i] = e->v[--e->n];
            }
            return;
        }
    }
    if (kv[kl] != '=')
        return;
    if (e->n + 2 > e->cap) {
        e->cap = e->cap ? e->cap * 2 : 64;
        char **nv = realloc(e->v, e->cap * sizeof *nv);
        if (!nv)
            abort();
        e->v = nv;
    }
    e->v[e->n++] = xstrdup(kv);
    e->v[e->n] = NULL;
}

static void env_putf(struct envb *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void env_putf(struct envb *e, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    env_put(e, buf);
}

static void env_free(struct envb *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
}

extern char **environ;

/* Only the process basics and tool settings pass through: a stray PORT or DATABASE_URL in the
 * caller's environment must never reach the daemon under test. */
static bool passes_through(const char *kv)
{
    static const char *const prefixes[] = {"PATH=",
                                           "HOME=",
                                           "LANG=",
                                           "LC_",
                                           "TZ=",
                                           "TMPDIR=",
                                           "ASAN_",
                                           "UBSAN_",
                                           "LSAN_",
                                           "VALGRIND",
                                           "LD_LIBRARY_PATH=",
                                           "LD_PRELOAD="};
    for (size_t i = 0; i < ITEST_ARRAY_LEN(prefixes); i++)
        if (strncmp(kv, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

static void env_base(struct envb *e)
{
    for (char **p = environ; *p; p++)
        if (passes_through(*p))
            env_put(e, *p);
    env_putf(e, "DATABASE_URL=%s", itest.database_url);
    env_putf(e, "JWT_SECRET=%s", itest.jwt_secret);
    env_put(e, "FACTORY_SECRET=" ITEST_FACTORY_SECRET);
    env_put(e, "LISTEN_ADDR=127.0.0.1");
    env_put(e, "CORS_ORIGINS=" ITEST_ORIGIN);
    env_put(e, "RATE_LIMIT_LOGIN=100000/1");
    env_put(e, "RATE_LIMIT_REGISTER=100000/1");
    env_put(e, "RATE_LIMIT_REFRESH=100000/1");
    env_put(e, "RATE_LIMIT_BIND=100000/1");
    /* the production parameters, except under valgrind: there one 19 MiB hash costs 0.6 s of
     * CPU and the suite hashes hundreds of passwords, while memcheck looks for memory errors,
     * which a 1 MiB hash takes through the same code. Tests about the parameters set them. */
    env_put(e, itest.wrapper ? "ARGON2_MEMORY_KIB=1024" : "ARGON2_MEMORY_KIB=19456");
    /* the production defaults (LOG_FORMAT=json, LOG_LEVEL=info): a defect of the default path
     * must show up here (a 1 KiB HTTP method once crashed only the JSON request log) */
    if (itest.mqtt_url)
        env_putf(e, "MQTT_URL=%s", itest.mqtt_url);
}

/* ---- processes ---------------------------------------------------------------------------- */

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

pid_t itest_spawn_program(const char *const argv[], char *const envp[], const char *out_path,
                          const char *err_path)
{
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int err = strcmp(out_path, err_path) == 0
                  ? out
                  : open(err_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t parent = getpid();
    pid_t pid = (out < 0 || err < 0 || devnull < 0) ? -1 : fork();
    if (pid == 0) {
        /* never outlive the test runner */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(devnull, 0);
        dup2(out, 1);
        dup2(err, 2);
        close_range(3, ~0U, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        execvpe(argv[0], (char *const *)argv, envp ? envp : environ);
        _exit(127);
    }
    if (pid < 0)
        perror("inklet-itest: spawn");
    if (out >= 0)
        close(out);
    if (err >= 0 && err != out)
        close(err);
    if (devnull >= 0)
        close(devnull);
    return pid;
}

pid_t itest_spawn(const char *const args[], const char *const env[], const char *out_path,
                  const char *err_path)
{
    /* everything is built before fork: the child only dup2s and execs */
    char *wrapper = itest.wrapper ? xstrdup(itest.wrapper) : NULL;
    const char *argv[64];
    size_t argc = 0;
    char *save = NULL;
    for (char *tok = wrapper ? strtok_r(wrapper, " \t", &save) : NULL; tok && argc < 40;
         tok = strtok_r(NULL, " \t", &save))
        argv[argc++] = tok;
    argv[argc++] = itest.inkletd;
    for (size_t i = 0; args && args[i] && argc < 62; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    struct envb e = {0};
    env_base(&e);
    for (size_t i = 0; env && env[i]; i++)
        env_put(&e, env[i]);

    pid_t pid = itest_spawn_program(argv, e.v, out_path, err_path);
    env_free(&e);
    free(wrapper);
    return pid;
}

int itest_wait_pid(pid_t pid, unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + itest_scaled(timeout_ms);
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return decode_status(st);
        if (r < 0 && errno != EINTR)
            return -1;
        if (itest_now_ms() > deadline)
            break;
        itest_sleep_ms(5);
    }
    fprintf(stderr, "inklet-itest: pid %d did not exit in time; killing it\n", (int)pid);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return -1;
}

int itest_run_inkletd(const char *const args[], const char *const env[], unsigned timeout_ms,
                      struct itest_proc *res)
{
    char out_path[160], err_path[160];
    unsigned seq = ++daemon_seq;
    snprintf(out_path, sizeof out_path, "%s/cmd-%u.out", itest.tmpdir, seq);
    snprintf(err_path, sizeof err_path, "%s/cmd-%u.err", itest.tmpdir, seq);
    memset(res, 0, sizeof *res);
    pid_t pid = itest_spawn(args, env, out_path, err_path);
    res->status = pid < 0 ? -1 : itest_wait_pid(pid, timeout_ms);
    res->out = itest_read_file(out_path, NULL);
    res->err = itest_read_file(err_path, NULL);
    return res->status;
}

void itest_proc_free(struct itest_proc *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

int itest_sh(const char *cmdline, unsigned timeout_ms)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(2, 1); /* progress lines belong to stderr */
        close_range(3, ~0U, 0);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmdline, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -1;
    return itest_wait_pid(pid, timeout_ms);
}

/* ---- daemons ------------------------------------------------------------------------------ */

static unsigned free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    unsigned port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void registry_add(struct itest_daemon *d)
{
    for (size_t i = 0; i < MAX_DAEMONS; i++) {
        if (!daemons[i]) {
            daemons[i] = d;
            return;
        }
    }
    fprintf(stderr, "inklet-itest: too many daemons\n");
    abort();
}

static void registry_remove(struct itest_daemon *d)
{
    for (size_t i = 0; i < MAX_DAEMONS; i++)
        if (daemons[i] == d)
            daemons[i] = NULL;
}

void itest_daemon_dump_log(const struct itest_daemon *d, const char *why)
{
    char *log = itest_read_file(d->log_path, NULL);
    size_t n = strlen(log);
    const char *from = n > 24000 ? log + n - 24000 : log;
    fprintf(stderr, "----- inkletd pid %d port %u (%s): %s%s -----\n%s%s----- end of log -----\n",
            (int)d->pid, d->port, why, d->log_path, n > 24000 ? ", last 24000 bytes" : "", from,
            n && log[n - 1] != '\n' ? "\n" : "");
    free(log);
}

bool itest_daemon_log_has_sanitizer_report(const struct itest_daemon *d)
{
    char *log = itest_read_file(d->log_path, NULL);
    bool bad = strstr(log, "Sanitizer") || strstr(log, "runtime error:");
    free(log);
    return bad;
}

long itest_wait_ready(const struct itest_daemon *d, unsigned timeout_ms)
{
    int64_t until = itest_now_ms() + itest_scaled(timeout_ms);
    for (;;) {
        struct itest_resp r;
        itest_get(d, "/health/ready", &r);
        long status = r.status;
        itest_resp_free(&r);
        if (status == 200 || itest_now_ms() > until)
            return status;
        itest_sleep_ms(50);
    }
}

bool itest_daemon_alive(struct itest_daemon *d)
{
    if (d->exited)
        return false;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        d->exited = true;
        d->status = decode_status(st);
        return false;
    }
    return true;
}

static bool health_ok(const struct itest_daemon *d)
{
    CURL *h = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "%s/health", d->url);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)itest_scaled(1000));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)itest_scaled(2000));
    curl_easy_setopt(h, CURLOPT_NOBODY, 0L);
    FILE *sink = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
    if (sink)
        fclose(sink);
    return code == 200;
}

struct itest_daemon *itest_daemon_start(const char *const env[])
{
    for (int attempt = 0; attempt < 3; attempt++) {
        struct itest_daemon *d = calloc(1, sizeof *d);
        if (!d)
            abort();
        registry_add(d);
        d->port = free_port();
        snprintf(d->url, sizeof d->url, "http://127.0.0.1:%u", d->port);
        snprintf(d->log_path, sizeof d->log_path, "%s/inkletd-%u.log", itest.tmpdir, ++daemon_seq);
        const char *merged[64];
        char port_kv[32], client_kv[64];
        snprintf(port_kv, sizeof port_kv, "PORT=%u", d->port);
        /* one broker identity per instance, or instances take each other's session over */
        snprintf(client_kv, sizeof client_kv, "MQTT_CLIENT_ID=inklet-itest-%s-%u", itest.run_tag,
                 d->port);
        size_t n = 0;
        merged[n++] = port_kv;
        merged[n++] = client_kv;
        for (size_t i = 0; env && env[i] && n < 63; i++)
            merged[n++] = env[i];
        merged[n] = NULL;
        d->pid = itest_spawn((const char *const[]){NULL}, merged, d->log_path, d->log_path);
        if (d->pid < 0) {
            d->exited = true;
            return NULL;
        }
        int64_t deadline = itest_now_ms() + itest_scaled(HEALTH_WAIT_MS);
        while (itest_daemon_alive(d) && itest_now_ms() < deadline) {
            if (health_ok(d))
                return d;
            itest_sleep_ms(20);
        }
        if (itest_daemon_alive(d)) {
            kill(d->pid, SIGKILL);
            d->status = itest_wait_pid(d->pid, 5000);
            d->exited = true;
            itest_daemon_dump_log(d, "did not become healthy");
            return NULL;
        }
        char *log = itest_read_file(d->log_path, NULL);
        bool port_taken = strstr(log, "cannot listen") != NULL;
        free(log);
        if (!port_taken || attempt == 2) {
            itest_daemon_dump_log(d, "exited during start-up");
            return NULL;
        }
        /* someone took the port between probing and binding: try another */
    }
    return NULL;
}

int itest_daemon_stop(struct itest_daemon *d)
{
    if (!d)
        return -1;
    if (itest_daemon_alive(d)) {
        kill(d->pid, SIGTERM);
        d->status = itest_wait_pid(d->pid, STOP_WAIT_MS);
        d->exited = true;
    }
    if (d->status != 0) {
        itest_daemon_dump_log(d, "non-zero exit status");
        return d->status;
    }
    if (itest_daemon_log_has_sanitizer_report(d)) {
        itest_daemon_dump_log(d, "sanitizer report");
        return -2;
    }
    return 0;
}

int itest_daemon_wait_exit(struct itest_daemon *d, unsigned timeout_ms)
{
    if (!d->exited) {
        d->status = itest_wait_pid(d->pid, timeout_ms);
        d->exited = true;
    }
    return itest_daemon_stop(d); /* reports the status and any sanitizer output */
}

int itest_group_setup(void **state)
{
    (void)state;
    itest_shared = itest_daemon_start(NULL);
    if (!itest_shared) {
        itest_fixture_failures++;
        return -1;
    }
    itest_shared->shared = true;
    return 0;
}

int itest_group_teardown(void **state)
{
    (void)state;
    if (!itest_shared)
        return 0;
    int st = itest_daemon_stop(itest_shared);
    if (st != 0) {
        fprintf(stderr, "inklet-itest: the shared inkletd exited with status %d\n", st);
        itest_fixture_failures++;
    }
    registry_remove(itest_shared);
    free(itest_shared);
    itest_shared = NULL;
    return st == 0 ? 0 : -1;
}

int itest_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < MAX_DAEMONS; i++) {
        struct itest_daemon *d = daemons[i];
        if (!d || d->shared)
            continue;
        if (itest_daemon_alive(d)) {
            itest_daemon_dump_log(d, "still running after the test; killed");
            kill(d->pid, SIGKILL);
            itest_wait_pid(d->pid, 5000);
        }
        daemons[i] = NULL;
        free(d);
    }
    return 0;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

struct sink {
    char *data;
    size_t len, cap;
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *nd = realloc(s->data, cap);
        if (!nd)
            return 0;
        s->data = nd;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

static void headers_clear(struct itest_header *h, size_t *n)
{
    for (size_t i = 0; i < *n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    *n = 0;
}

/* Parses one "Name: value" line (without CRLF requirements) into the list. */
static void header_add(struct itest_header *h, size_t *n, const char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
        len--;
    const char *colon = memchr(line, ':', len);
    if (!colon || *n >= ITEST_MAX_HEADERS)
        return;
    size_t nl = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    h[*n].name = xmalloc(nl + 1);
    memcpy(h[*n].name, line, nl);
    h[*n].name[nl] = '\0';
    h[*n].value = xmalloc(vl + 1);
    memcpy(h[*n].value, v, vl);
    h[*n].value[vl] = '\0';
    (*n)++;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct itest_resp *r = arg;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        headers_clear(r->headers, &r->nheaders); /* a new response (e.g. after 100 Continue) */
    else
        header_add(r->headers, &r->nheaders, p, n);
    return n;
}

void itest_request(CURL *handle, const char *method, const char *url, const char *const headers[],
                   const void *body, size_t body_len, struct itest_resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *h = handle ? handle : curl_easy_init();
    if (!h)
        abort();
    if (handle)
        curl_easy_reset(h); /* keeps the connection cache */
    struct sink s = {0};
    struct curl_slist *list = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    list = curl_slist_append(list, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)itest_scaled(5000));
    /* generous: a slow answer under a loaded machine is not a failure; a hang still is */
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)itest_scaled(90000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    if (strcmp(method, "GET") == 0 && !body) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    out->curl_code = curl_easy_perform(h);
    if (out->curl_code == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        fprintf(stderr, "inklet-itest: %s %s failed: %s\n", method, url,
                curl_easy_strerror(out->curl_code));
    }
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->num_connects);
    curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &out->seconds);
    out->body = s.data ? s.data : xstrdup("");
    out->body_len = s.len;
    if (s.len)
        out->json = json_loadb(s.data, s.len, JSON_REJECT_DUPLICATES, NULL);
    curl_slist_free_all(list);
    if (!handle)
        curl_easy_cleanup(h);
}

void itest_resp_free(struct itest_resp *r)
{
    headers_clear(r->headers, &r->nheaders);
    free(r->body);
    json_decref(r->json);
    r->body = NULL;
    r->json = NULL;
}

static const char *header_lookup(const struct itest_header *h, size_t n, const char *name)
{
    const char *found = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            found = h[i].value;
    return found;
}

const char *itest_header(const struct itest_resp *r, const char *name)
{
    return header_lookup(r->headers, r->nheaders, name);
}

size_t itest_header_count(const struct itest_resp *r, const char *name)
{
    size_t c = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, name) == 0)
            c++;
    return c;
}

bool itest_header_has_token(const struct itest_resp *r, const char *name, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcasecmp(r->headers[i].name, name) != 0)
            continue;
        const char *v = r->headers[i].value;
        while (*v) {
            while (*v == ' ' || *v == ',')
                v++;
            size_t l = strcspn(v, ",");
            size_t t = l;
            while (t && v[t - 1] == ' ')
                t--;
            if (t == tl && strncasecmp(v, token, tl) == 0)
                return true;
            v += l;
        }
    }
    return false;
}

void itest_call(const struct itest_daemon *d, const char *method, const char *path,
                const char *token, const char *json_body, struct itest_resp *out)
{
    char url[512], auth[1200];
    const char *headers[4];
    size_t n = 0;
    snprintf(url, sizeof url, "%s%s", d->url, path);
    headers[n++] = "User-Agent: " ITEST_USER_AGENT;
    if (json_body)
        headers[n++] = "Content-Type: application/json";
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers[n++] = auth;
    }
    headers[n] = NULL;
    itest_request(NULL, method, url, headers, json_body, json_body ? strlen(json_body) : 0, out);
}

void itest_callf(const struct itest_daemon *d, const char *method, const char *path,
                 const char *token, struct itest_resp *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t err;
    json_t *v = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (!v) {
        fprintf(stderr, "inklet-itest: json_pack(%s): %s\n", fmt, err.text);
        abort();
    }
    char *body = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    itest_call(d, method, path, token, body, out);
    free(body);
}

void itest_get(const struct itest_daemon *d, const char *path, struct itest_resp *out)
{
    itest_call(d, "GET", path, NULL, NULL, out);
}

/* ---- assertions --------------------------------------------------------------------------- */

static void print_resp(const struct itest_resp *r)
{
    fprintf(stderr, "  response: status %ld (%s), body: %.2000s\n", r->status,
            r->curl_code == CURLE_OK ? "ok" : curl_easy_strerror(r->curl_code),
            r->body ? r->body : "");
}

void itest_expect_status(const struct itest_resp *r, long status)
{
    if (r->status != status) {
        fprintf(stderr, "  expected status %ld\n", status);
        print_resp(r);
    }
    assert_int_equal(r->status, status);
}

void itest_expect_keys(const json_t *v, const char *const keys[])
{
    size_t n = 0;
    bool ok = json_is_object(v);
    for (; keys[n]; n++)
        if (ok && !json_object_get(v, keys[n])) {
            fprintf(stderr, "  missing key \"%s\"\n", keys[n]);
            ok = false;
        }
    if (ok && json_object_size(v) != n) {
        fprintf(stderr, "  expected exactly %zu keys\n", n);
        ok = false;
    }
    if (!ok) {
        char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        fprintf(stderr, "  object: %s\n", s ? s : "(null)");
        free(s);
    }
    assert_true(ok);
}

void itest_expect_error(const struct itest_resp *r, long status, const char *code)
{
    itest_expect_status(r, status);
    const char *ct = itest_header(r, "Content-Type");
    assert_non_null(ct);
    assert_true(strncasecmp(ct, "application/json", 16) == 0);
    if (!json_is_object(r->json))
        print_resp(r);
    itest_expect_keys(r->json, (const char *const[]){"message", "code", NULL});
    const char *msg = itest_str(r->json, "message");
    assert_true(strlen(msg) > 0);
    const char *got = itest_str(r->json, "code");
    if (strcmp(got, code) != 0)
        print_resp(r);
    assert_string_equal(got, code);
}

const char *itest_str(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        fprintf(stderr, "  \"%s\" is not a string\n", key);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static bool regex_match(const char *pattern, const char *s)
{
    regex_t re;
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0)
        abort();
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

long long itest_timestamp(const json_t *obj, const char *key)
{
    const char *s = itest_str(obj, key);
    bool ok = regex_match("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", s);
    if (!ok)
        fprintf(stderr, "  \"%s\" = \"%s\" is not an RFC 3339 UTC timestamp\n", key, s);
    assert_true(ok);
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    assert_non_null(end);
    return (long long)timegm(&tm);
}

bool itest_is_uuid_v7(const char *s)
{
    return regex_match("^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", s);
}

const char *itest_uuid_v7(const json_t *obj, const char *key)
{
    const char *s = itest_str(obj, key);
    bool ok = itest_is_uuid_v7(s);
    if (!ok)
        fprintf(stderr, "  \"%s\" = \"%s\" is not a UUID v7\n", key, s);
    assert_true(ok);
    /* the first 48 bits are Unix milliseconds */
    char hex[13];
    memcpy(hex, s, 8);
    memcpy(hex + 8, s + 9, 4);
    hex[12] = '\0';
    long long ms = strtoll(hex, NULL, 16);
    long long now = (long long)time(NULL) * 1000;
    if (llabs(ms - now) > 24LL * 3600 * 1000)
        fprintf(stderr, "  \"%s\" = \"%s\" has a time far from now\n", key, s);
    assert_true(llabs(ms - now) <= 24LL * 3600 * 1000);
    return s;
}

unsigned itest_expect_retry_after(const struct itest_resp *r)
{
    const char *ra = itest_header(r, "Retry-After");
    if (!ra)
        print_resp(r);
    assert_non_null(ra);
    size_t n = strlen(ra);
    assert_true(n > 0 && n < 10);
    for (size_t i = 0; i < n; i++)
        assert_true(isdigit((unsigned char)ra[i]));
    unsigned long v = strtoul(ra, NULL, 10);
    assert_true(v >= 1);
    return (unsigned)v;
}

/* ---- users -------------------------------------------------------------------------------- */

void itest_user_new(struct itest_user *u)
{
    static atomic_uint counter;
    unsigned n = atomic_fetch_add(&counter, 1) + 1;
    memset(u, 0, sizeof *u);
    snprintf(u->username, sizeof u->username, "it%s_%d_%u", itest.run_tag, (int)getpid(), n);
    snprintf(u->email, sizeof u->email, "%s@itest.example", u->username);
    snprintf(u->password, sizeof u->password, "Pw-%s-correct", u->username);
}

void itest_session_from(const json_t *body, struct itest_session *s)
{
    memset(s, 0, sizeof *s);
    const char *a = itest_str(body, "accessToken");
    const char *r = itest_str(body, "refreshToken");
    assert_true(strlen(a) < sizeof s->access);
    assert_true(strlen(r) < sizeof s->refresh);
    snprintf(s->access, sizeof s->access, "%s", a);
    snprintf(s->refresh, sizeof s->refresh, "%s", r);
    json_t *claims = itest_jwt_claims(a);
    assert_non_null(claims);
    const char *sid = json_string_value(json_object_get(claims, "sid"));
    assert_non_null(sid);
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    json_decref(claims);
}

void itest_register(const struct itest_daemon *d, struct itest_user *u)
{
    if (!u->email[0])
        itest_user_new(u);
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/register", NULL, &r, "{s:s,s:s,s:s}", "email", u->email,
                "username", u->username, "password", u->password);
    itest_expect_status(&r, 201);
    json_t *user = json_object_get(r.json, "user");
    snprintf(u->id, sizeof u->id, "%s", itest_str(user, "id"));
    itest_session_from(r.json, &u->s);
    itest_resp_free(&r);
}

void itest_login(const struct itest_daemon *d, const struct itest_user *u, struct itest_session *s)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/login", NULL, &r, "{s:s,s:s}", "identifier", u->username,
                "password", u->password);
    itest_expect_status(&r, 200);
    itest_session_from(r.json, s);
    itest_resp_free(&r);
}

long itest_me_status(const struct itest_daemon *d, const char *token)
{
    struct itest_resp r;
    itest_call(d, "GET", "/auth/me", token, NULL, &r);
    long st = r.status;
    itest_resp_free(&r);
    return st;
}

int64_t itest_expect_token_dies(const struct itest_daemon *d, const char *token, int64_t since_ms,
                                unsigned limit_ms)
{
    long st = 0;
    int64_t now;
    do {
        st = itest_me_status(d, token);
        now = itest_now_ms();
        if (st == 401)
            break;
        if (st != 200)
            fprintf(stderr, "  unexpected status %ld while waiting for a token to die\n", st);
        assert_int_equal(st, 200);
        itest_sleep_ms(50);
    } while (now - since_ms < (int64_t)limit_ms + 1000);
    int64_t elapsed = now - since_ms;
    if (st != 401 || elapsed >= (int64_t)limit_ms)
        fprintf(stderr, "  token still accepted after %lld ms (limit %u ms)\n", (long long)elapsed,
                limit_ms);
    assert_int_equal(st, 401);
    assert_true(elapsed < (int64_t)limit_ms);
    return elapsed;
}

/* ---- JWT ---------------------------------------------------------------------------------- */

static char *b64url_encode(const unsigned char *in, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes n base64url chars; returns a NUL-terminated malloc'd buffer or NULL. */
static char *b64url_decode(const char *in, size_t n, size_t *out_len)
{
    char *out = xmalloc(n * 3 / 4 + 3);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xff);
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

json_t *itest_jwt_claims(const char *jwt)
{
    const char *dot1 = strchr(jwt, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2)
        return NULL;
    size_t len;
    char *payload = b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &len);
    if (!payload)
        return NULL;
    json_t *v = json_loadb(payload, len, 0, NULL);
    free(payload);
    return v;
}

json_t *itest_jwt_header(const char *jwt)
{
    const char *dot = strchr(jwt, '.');
    if (!dot)
        return NULL;
    size_t len;
    char *text = b64url_decode(jwt, (size_t)(dot - jwt), &len);
    if (!text)
        return NULL;
    json_t *v = json_loadb(text, len, 0, NULL);
    free(text);
    return v;
}

char *itest_jwt_make(const json_t *header, const json_t *payload, const char *alg, const char *key)
{
    char *h = json_dumps(header, JSON_COMPACT);
    char *p = json_dumps(payload, JSON_COMPACT);
    char *h64 = b64url_encode((const unsigned char *)h, strlen(h));
    char *p64 = b64url_encode((const unsigned char *)p, strlen(p));
    size_t in_len = strlen(h64) + 1 + strlen(p64);
    char *signing_input = xmalloc(in_len + 1);
    snprintf(signing_input, in_len + 1, "%s.%s", h64, p64);
    char *sig = NULL;
    const EVP_MD *md = strcmp(alg, "HS256") == 0   ? EVP_sha256()
                       : strcmp(alg, "HS384") == 0 ? EVP_sha384()
                       : strcmp(alg, "HS512") == 0 ? EVP_sha512()
                                                   : NULL;
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        if (!HMAC(md, key, (int)strlen(key), (const unsigned char *)signing_input, in_len, mac,
                  &mac_len))
            abort();
        sig = b64url_encode(mac, mac_len);
    } else {
        sig = xstrdup("");
    }
    size_t total = in_len + 1 + strlen(sig) + 1;
    char *jwt = xmalloc(total);
    snprintf(jwt, total, "%s.%s", signing_input, sig);
    free(h);
    free(p);
    free(h64);
    free(p64);
    free(signing_input);
    free(sig);
    return jwt;
}

/* ---- raw sockets -------------------------------------------------------------------------- */

int itest_raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool itest_raw_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool itest_raw_send_str(int fd, const char *s)
{
    return itest_raw_send(fd, s, strlen(s));
}

/* Parses a complete response in buf if there is one; returns bytes used or 0. */
static size_t raw_parse(const char *buf, size_t len, struct itest_raw_resp *out)
{
    const char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i;
            break;
        }
    }
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - buf) + 4;
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = -1;
    struct itest_raw_resp tmp = {.status = status};
    const char *line = memchr(buf, '\n', head_len);
    while (line && line + 1 < end) {
        const char *s = line + 1;
        const char *e = memchr(s, '\n', (size_t)(end + 2 - s));
        if (!e)
            break;
        header_add(tmp.headers, &tmp.nheaders, s, (size_t)(e - s));
        line = e;
    }
    const char *cl = header_lookup(tmp.headers, tmp.nheaders, "Content-Length");
    size_t body_len = cl ? (size_t)strtoull(cl, NULL, 10) : 0;
    if (len < head_len + body_len) {
        headers_clear(tmp.headers, &tmp.nheaders);
        return 0;
    }
    tmp.body = xmalloc(body_len + 1);
    memcpy(tmp.body, buf + head_len, body_len);
    tmp.body[body_len] = '\0';
    tmp.body_len = body_len;
    *out = tmp;
    return head_len + body_len;
}

int itest_raw_read_response(int fd, unsigned timeout_ms, struct itest_raw_resp *out)
{
    memset(out, 0, sizeof *out);
    char buf[65536];
    size_t len = 0;
    int64_t deadline = itest_now_ms() + itest_scaled(timeout_ms);
    for (;;) {
        int64_t left = deadline - itest_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        /* read only what is there; responses are framed by Content-Length */
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -2;
        len += (size_t)n;
        if (raw_parse(buf, len, out))
            return 0;
        if (len >= sizeof buf - 1)
            return -2;
    }
}

void itest_raw_resp_free(struct itest_raw_resp *r)
{
    headers_clear(r->headers, &r->nheaders);
    free(r->body);
    r->body = NULL;
}

const char *itest_raw_header(const struct itest_raw_resp *r, const char *name)
{
    return header_lookup(r->headers, r->nheaders, name);
}

bool itest_raw_wait_closed(int fd, unsigned timeout_ms)
{
    int64_t deadline = itest_now_ms() + itest_scaled(timeout_ms);
    char buf[4096];
    for (;;) {
        int64_t left = deadline - itest_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return true;
    }
}

/* ---- fake providers ------------------------------------------------------------------------ */

void itest_fake_dump_log(const struct itest_fake *f, const char *why)
{
    char *log = itest_read_file(f->log, NULL);
    size_t n = strlen(log);
    fprintf(stderr, "----- %s pid %d (%s): %s -----\n%s\n----- end of log -----\n", f->name,
            (int)f->pid, why, f->log, n > 16000 ? log + n - 16000 : log);
    free(log);
}

static bool fake_healthy(const struct itest_fake *f)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/_fake/health", f->port);
    struct itest_resp r;
    itest_request(NULL, "GET", url, NULL, NULL, 0, &r);
    bool ok = r.status == 200 && json_is_true(json_object_get(r.json, "ok"));
    itest_resp_free(&r);
    return ok;
}

bool itest_fake_start(struct itest_fake *f, const char *name, const char *script,
                      const char *const args[])
{
    memset(f, 0, sizeof *f);
    f->pid = -1;
    snprintf(f->name, sizeof f->name, "%s", name);
    char port_file[192];
    snprintf(port_file, sizeof port_file, "%s/%s.port", itest.tmpdir, name);
    snprintf(f->log, sizeof f->log, "%s/%s.log", itest.tmpdir, name);
    unlink(port_file);
    const char *argv[32] = {"/usr/bin/python3", script, "--port", "0", "--port-file", port_file};
    size_t n = 6;
    for (size_t i = 0; args && args[i] && n < ITEST_ARRAY_LEN(argv) - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    f->pid = itest_spawn_program(argv, NULL, f->log, f->log);
    if (f->pid < 0)
        return false;
    int64_t deadline = itest_now_ms() + itest_scaled(15000);
    while (itest_now_ms() < deadline) {
        size_t len;
        char *text = itest_read_file(port_file, &len);
        char *end = NULL;
        unsigned long port = len > 1 && text[len - 1] == '\n' ? strtoul(text, &end, 10) : 0;
        bool complete = end && end != text && *end == '\n' && port > 0 && port < 65536;
        free(text);
        if (complete) {
            f->port = (unsigned)port;
            if (fake_healthy(f))
                return true;
            itest_fake_dump_log(f, "wrote its port but /_fake/health did not answer");
            return false;
        }
        int st;
        if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
            f->pid = -1;
            itest_fake_dump_log(f, "exited during start-up");
            return false;
        }
        itest_sleep_ms(20);
    }
    itest_fake_dump_log(f, "wrote no port file in time");
    return false;
}

int itest_fake_stop(struct itest_fake *f)
{
    if (f->pid < 0)
        return 0;
    kill(f->pid, SIGTERM);
    int st = itest_wait_pid(f->pid, 10000);
    if (st != 0)
        itest_fake_dump_log(f, "did not exit 0 on SIGTERM");
    f->pid = -1;
    return st;
}

json_t *itest_fake_call(const struct itest_fake *f, const char *method, const char *path,
                        const json_t *body)
{
    char url[600];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", f->port, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    const char *send = text ? text : strcmp(method, "POST") == 0 ? "{}" : NULL;
    const char *headers[] = {"Content-Type: application/json", NULL};
    struct itest_resp r;
    itest_request(NULL, method, url, send ? headers : NULL, send, send ? strlen(send) : 0, &r);
    if (r.status != 200)
        fprintf(stderr, "  %s control call %s %s (body %s)\n", f->name, method, path,
                send ? send : "-");
    itest_expect_status(&r, 200);
    json_t *v = json_incref(r.json);
    itest_resp_free(&r);
    free(text);
    return v;
}

json_t *itest_fake_vcallf(const struct itest_fake *f, const char *method, const char *path,
                          const char *fmt, va_list ap)
{
    json_error_t err;
    json_t *body = json_vpack_ex(&err, 0, fmt, ap);
    if (!body)
        fail_msg("json_pack(%s): %s", fmt, err.text);
    json_t *v = itest_fake_call(f, method, path, body);
    json_decref(body);
    assert_non_null(v);
    return v;
}

json_t *itest_fake_callf(const struct itest_fake *f, const char *method, const char *path,
                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *v = itest_fake_vcallf(f, method, path, fmt, ap);
    va_end(ap);
    return v;
}

unsigned long long itest_metric(const struct itest_daemon *d, const char *name)
{
    struct itest_resp r;
    itest_get(d, "/metrics", &r);
    itest_expect_status(&r, 200);
    char needle[160];
    snprintf(needle, sizeof needle, "\n%s ", name);
    const char *hit = strstr(r.body, needle);
    if (!hit)
        fail_msg("no sample %s on /metrics", name);
    unsigned long long v = strtoull(hit + strlen(needle), NULL, 10);
    itest_resp_free(&r);
    return v;
}

void itest_refresh_expect(const struct itest_daemon *d, const char *refresh, long status,
                          const char *code, struct itest_session *out)
{
    struct itest_resp r;
    itest_callf(d, "POST", "/auth/refresh", NULL, &r, "{s:s}", "refreshToken", refresh);
    if (code)
        itest_expect_error(&r, status, code);
    else
        itest_expect_status(&r, status);
    if (out) {
        itest_expect_keys(r.json, (const char *const[]){"accessToken", "refreshToken", NULL});
        itest_session_from(r.json, out);
    }
    itest_resp_free(&r);
}

/* ---- the database, directly ------------------------------------------------------------- */

void itest_db_exec1(const char *sql, const char *param)
{
    PGconn *pg = PQconnectdb(itest.database_url);
    if (PQstatus(pg) != CONNECTION_OK)
        fprintf(stderr, "  database: %s\n", PQerrorMessage(pg));
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexecParams(pg, sql, 1, NULL, (const char *const[]){param}, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "  database: %s\n", PQresultErrorMessage(res));
    bool one = ok && strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    PQfinish(pg);
    assert_true(ok);
    assert_true(one);
}

void itest_db_run(const char *sql)
{
    PGconn *pg = PQconnectdb(itest.database_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexec(pg, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "  database: %s\n", PQresultErrorMessage(res));
    PQclear(res);
    PQfinish(pg);
    assert_true(ok);
}

char *itest_db_value(const char *sql, const char *param)
{
    PGconn *pg = PQconnectdb(itest.database_url);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    PGresult *res = PQexecParams(pg, sql, 1, NULL, (const char *const[]){param}, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "  database: %s\n", PQresultErrorMessage(res));
    char *v =
        ok && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0) ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    PQfinish(pg);
    assert_true(ok);
    return v;
}

/* ---- this machine's addresses -------------------------------------------------------------- */

bool itest_non_loopback_ipv4(char out[64])
{
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return false;
    bool found = false;
    for (const struct ifaddrs *ifa = list; ifa && !found; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET || !(ifa->ifa_flags & IFF_UP) ||
            (ifa->ifa_flags & IFF_LOOPBACK))
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ifa->ifa_addr;
        if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127)
            continue;
        found = inet_ntop(AF_INET, &sin->sin_addr, out, 64) != NULL;
    }
    freeifaddrs(list);
    return found;
}

/* ---- races ------------------------------------------------------------------------------- */

struct race_thread {
    struct itest_race *race;
    pthread_barrier_t *barrier;
};

/* No cmocka assertions in a thread: it records, the main thread checks. */
static void *race_post(void *arg)
{
    struct race_thread *t = arg;
    struct itest_race *r = t->race;
    const char *headers[] = {"Content-Type: application/json", "User-Agent: " ITEST_USER_AGENT,
                             NULL};
    pthread_barrier_wait(t->barrier);
    struct itest_resp resp;
    itest_request(NULL, "POST", r->url, headers, r->body, strlen(r->body), &resp);
    r->status = resp.status;
    const char *code = json_string_value(json_object_get(resp.json, "code"));
    snprintf(r->code, sizeof r->code, "%s", code ? code : "");
    r->json = resp.json ? json_incref(resp.json) : NULL;
    itest_resp_free(&resp);
    return NULL;
}

void itest_race_posts(struct itest_race *race, size_t n)
{
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    struct race_thread *t = calloc(n, sizeof *t);
    pthread_t *threads = calloc(n, sizeof *threads);
    assert_non_null(t);
    assert_non_null(threads);
    for (size_t i = 0; i < n; i++) {
        race[i].status = 0;
        race[i].code[0] = '\0';
        race[i].json = NULL;
        t[i] = (struct race_thread){&race[i], &barrier};
        assert_int_equal(pthread_create(&threads[i], NULL, race_post, &t[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    free(threads);
    free(t);
}

void itest_race_free(struct itest_race *race, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(race[i].json);
        race[i].json = NULL;
    }
}

const char *itest_race_str(const struct itest_race *race, const char *key)
{
    const char *v = json_string_value(json_object_get(race->json, key));
    return v ? v : "";
}
