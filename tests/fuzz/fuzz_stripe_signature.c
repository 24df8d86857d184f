/* libFuzzer driver: ink_stripe_verify_signature on a hostile Stripe-Signature header and body.
 * Input: header, a NUL byte, body. Accepted ⇒ a field of the header is t= with a timestamp inside
 * the tolerance, and a v1= equals HMAC-SHA256(secret, "t.body") computed here independently. The
 * first byte chooses whether the driver first plants a correct signature into the header (so the
 * acceptance path is reached, with the rest of the header hostile). */
#include "inklet/ids.h"
#include "inklet/stripe.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "whsec_fuzz"
#define NOW ((time_t)1700000000)

static void sign(long long t, const char *body, size_t len, char out[65])
{
    char *msg = malloc(len + 32);
    int n = snprintf(msg, 32, "%lld.", t);
    memcpy(msg + n, body, len);
    unsigned char md[32];
    unsigned mdlen = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)msg, (size_t)n + len, md,
         &mdlen);
    ink_hex_encode(md, mdlen, out);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool plant = data[0] & 1;
    data++, size--;
    const uint8_t *nul = memchr(data, 0, size);
    size_t hlen = nul ? (size_t)(nul - data) : size;
    const char *body = nul ? (const char *)nul + 1 : "";
    size_t blen = nul ? size - hlen - 1 : 0;
    char *header = malloc(hlen + 128);
    memcpy(header, data, hlen);
    header[hlen] = '\0';
    if (plant) {
        char v1[65];
        sign(NOW, body, blen, v1);
        snprintf(header + hlen, 128, ",t=%lld,v1=%s", (long long)NOW, v1);
    }
    enum ink_stripe_sig r =
        ink_stripe_verify_signature(header, body, blen, SECRET, NOW, INK_STRIPE_SIG_TOLERANCE);
    if (r == INK_SIG_OK) {
        /* some comma-separated field must be t=<digits> inside the tolerance whose HMAC is one
         * of the v1 fields */
        bool found = false;
        for (char *p = header; *p && !found;) {
            size_t n = strcspn(p, ",");
            char *f = p;
            if (f[0] == 't' && f[1] == '=' && f[2] >= '0' && f[2] <= '9') {
                long long ts = strtoll(f + 2, NULL, 10);
                char want[65], needle[70];
                sign(ts, body, blen, want);
                snprintf(needle, sizeof needle, "v1=%s", want);
                found = ts >= NOW - INK_STRIPE_SIG_TOLERANCE &&
                        ts <= NOW + INK_STRIPE_SIG_TOLERANCE && strstr(header, needle);
            }
            p += n + (p[n] == ',');
        }
        if (!found)
            __builtin_trap();
    }
    free(header);
    return 0;
}
