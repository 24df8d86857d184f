/* bench/argon2_ceiling.c — the hashing ceiling for bench/limits.sh: argon2id hashes per second
 * with the server's parameters, one thread per core, each hashing in a loop for a fixed time.
 *
 *   argon2_ceiling [SECONDS] [THREADS]
 *
 * Parameters: ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_PARALLELISM from the environment,
 * else the server's defaults (src/core/config.c: 19456 KiB, 2, 1). A login costs one
 * verification, which is the same work as one hash with the parameters of the stored hash. Each
 * thread here hashes in one buffer it keeps (malloc hands the same memory back), as each of the
 * server's hashing slots does (src/auth/password.c).
 * Prints key=value lines: argon2_threads, argon2_m_kib, argon2_t, argon2_p, argon2_hashes,
 * argon2_seconds, argon2_hashes_per_s. Build: cc -O2 -pthread argon2_ceiling.c -largon2 */
#include <argon2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SALT_LEN 16
#define HASH_LEN 32

static uint32_t m_kib = 19456, t_cost = 2, par = 1;
static atomic_bool stop;
static atomic_ullong hashes;

static uint32_t env_u32(const char *key, uint32_t dflt)
{
    const char *v = getenv(key);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || n == 0 || n > UINT32_MAX) {
        fprintf(stderr, "argon2_ceiling: bad %s=%s\n", key, v);
        exit(2);
    }
    return (uint32_t)n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    uint8_t salt[SALT_LEN], out[HASH_LEN];
    const char *pw = "BenchPass_ceiling";
    memset(salt, (int)(intptr_t)arg, sizeof salt);
    while (!atomic_load(&stop)) {
        if (argon2id_hash_raw(t_cost, m_kib, par, pw, strlen(pw), salt, SALT_LEN, out, HASH_LEN) !=
            ARGON2_OK) {
            fprintf(stderr, "argon2_ceiling: hashing failed\n");
            exit(1);
        }
        salt[0]++;
        atomic_fetch_add(&hashes, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    long threads = argc > 2 ? atol(argv[2]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (seconds <= 0 || threads < 1 || threads > 1024) {
        fprintf(stderr, "usage: argon2_ceiling [SECONDS] [THREADS]\n");
        return 2;
    }
    m_kib = env_u32("ARGON2_MEMORY_KIB", m_kib);
    t_cost = env_u32("ARGON2_ITERATIONS", t_cost);
    par = env_u32("ARGON2_PARALLELISM", par);

    pthread_t *tids = calloc((size_t)threads, sizeof *tids);
    if (!tids)
        return 1;
    double t0 = now_s();
    for (long i = 0; i < threads; i++)
        if (pthread_create(&tids[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "argon2_ceiling: pthread_create failed\n");
            return 1;
        }
    struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    /* count what finished within the window; the hashes in flight finish after it */
    unsigned long long n = atomic_load(&hashes);
    double elapsed = now_s() - t0;
    atomic_store(&stop, true);
    for (long i = 0; i < threads; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    printf("argon2_threads=%ld\nargon2_m_kib=%u\nargon2_t=%u\nargon2_p=%u\n", threads, m_kib,
           t_cost, par);
    printf("argon2_hashes=%llu\nargon2_seconds=%.2f\nargon2_hashes_per_s=%.1f\n", n, elapsed,
           (double)n / elapsed);
    return 0;
}
