/** Encryption at rest of third-party secrets we must keep (Apple refresh tokens): AES-256-GCM
 *  under a key derived with HKDF-SHA256 from TOKEN_ENCRYPTION_KEY and a purpose label, so one
 *  master key can serve several purposes without their ciphertexts being interchangeable.
 *  Sealed form: version byte 1 || 12-byte random nonce || ciphertext || 16-byte tag; the purpose
 *  label is also bound as associated data. */
#ifndef INKLET_SECRETBOX_H
#define INKLET_SECRETBOX_H
#include <stdbool.h>
#include <stddef.h>

#define INK_SECRETBOX_OVERHEAD (1 + 12 + 16)
#define INK_SECRETBOX_MAX_PLAIN 4096

struct ink_secretbox {
    unsigned char key[32];
    char purpose[64];
};

/** Derives the purpose key from a 32-byte master key. False if the KDF fails. */
bool ink_secretbox_init(struct ink_secretbox *box, const unsigned char master[32],
                        const char *purpose);
/** Seals plain[0..n) (n ≤ INK_SECRETBOX_MAX_PLAIN) into out, which holds n +
 *  INK_SECRETBOX_OVERHEAD bytes. Returns the sealed length, 0 on failure. */
size_t ink_secretbox_seal(const struct ink_secretbox *box, const void *plain, size_t n,
                          unsigned char *out);
/** Opens sealed[0..n) into out (at least n bytes) and NUL-terminates it. Returns the plain
 *  length; false (nothing written) if it was not sealed by this box, or was changed. */
bool ink_secretbox_open(const struct ink_secretbox *box, const unsigned char *sealed, size_t n,
                        char *out, size_t *out_len);
/** Zeroes the key. */
void ink_secretbox_wipe(struct ink_secretbox *box);

#endif
