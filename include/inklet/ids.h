/** Identifiers and randomness: UUID v7, CSPRNG bytes, base64url and base64, hex. */
#ifndef INKLET_IDS_H
#define INKLET_IDS_H
#include <stdbool.h>
#include <stddef.h>

#define INK_UUID_STRLEN 36

/** Fills buf with n bytes from the OS CSPRNG; aborts if the kernel cannot supply them. */
void ink_random_bytes(void *buf, size_t n);
/** Writes a new time-ordered UUID v7 (lower case, 36 chars + NUL) into out[37]. */
void ink_uuid_v7(char out[INK_UUID_STRLEN + 1]);
/** True if s is exactly a canonical 8-4-4-4-12 hex UUID (either case). */
bool ink_uuid_valid(const char *s);
/** base64url without padding of n bytes into out; out must hold 4*ceil(n/3)+1. Returns length. */
size_t ink_base64url_encode(const unsigned char *in, size_t n, char *out);
/** Strict base64url decoding (no padding, no whitespace, unused trailing bits zero) of in[0..n)
 *  into out[cap]. False on any other input or when it does not fit; *out_len gets the length. */
bool ink_base64url_decode(const char *in, size_t n, unsigned char *out, size_t cap,
                          size_t *out_len);
/** The same two with the standard alphabet ('+', '/'), still without padding: PHC strings. */
size_t ink_base64_encode(const unsigned char *in, size_t n, char *out);
bool ink_base64_decode(const char *in, size_t n, unsigned char *out, size_t cap, size_t *out_len);
/** Lower-case hex of n bytes into out (2n+1). */
void ink_hex_encode(const unsigned char *in, size_t n, char *out);
/** The value of one hex digit (either case), or -1. */
int ink_hex_digit(char c);
/** Decodes exactly 2n hex chars (either case) into out[n]; false on any bad char/length. */
bool ink_hex_decode(const char *hex, size_t hexlen, unsigned char *out, size_t n);

#endif
