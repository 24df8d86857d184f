/** NFC pairing payloads: "inklet:1:{hwId}:{sig}", sig = first 16 lower-case hex characters of
 *  HMAC-SHA256(key = 32 bytes decoded from FACTORY_SECRET, message = hwId). */
#ifndef INKLET_NFC_H
#define INKLET_NFC_H
#include "inklet/ids.h"
#include "inklet/status.h"

#include <stdbool.h>

#define INK_NFC_SIG_LEN 16

/** Splits and checks the shape: exactly 4 ':'-parts, "inklet", version "1", a UUID hwId and 16
 *  hex characters (either case). On success copies hwId (as given) and the signature (lower-cased).
 *  INK_INVALID otherwise. */
enum ink_status ink_nfc_parse(const char *payload, char hw_id[INK_UUID_STRLEN + 1],
                              char sig[INK_NFC_SIG_LEN + 1]);
/** Computes the signature for hw_id into sig (lower-case hex). */
void ink_nfc_sign(const unsigned char key[32], const char *hw_id, char sig[INK_NFC_SIG_LEN + 1]);
/** Constant-time check of a parsed signature. */
bool ink_nfc_verify(const unsigned char key[32], const char *hw_id, const char *sig);

#endif
