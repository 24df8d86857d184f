/** The syntax of mail addresses, From values and SMTP URLs (src/core/mailaddr.c): string rules
 *  only, no I/O. The configuration checks MAIL_FROM and SMTP_URL with them at start; the mail
 *  module (inklet/mail.h) applies the same rules when it composes and sends, so what starts is
 *  what sends. */
#ifndef INKLET_MAILADDR_H
#define INKLET_MAILADDR_H
#include <stdbool.h>
#include <stddef.h>

/** The longest address (RFC 5321 path limit less the brackets). */
#define INK_MAIL_ADDRESS_MAX 254
/** The longest display name of a From value, decoded, in bytes. */
#define INK_MAIL_FROM_NAME_MAX 200

/** RFC 5322 atext: the characters of an atom (a local part, a plain display name). */
bool ink_mail_is_atext(unsigned char c);
/** True when `addr` is a bare address a mail can go to: a dot-atom local part of at most 64
 *  bytes, exactly one '@', a host name of LDH labels (no address literals), at most 254 bytes,
 *  ASCII without spaces or controls. */
bool ink_mail_address_valid(const char *addr);

/** A From value split: "Inklet <no-reply@iminklet.com>" or a bare address. */
struct ink_mail_from {
    char addr[INK_MAIL_ADDRESS_MAX + 1];
    char name[INK_MAIL_FROM_NAME_MAX + 1]; /* the display name, unquoted; "" when none */
    size_t name_len;
};
/** False when the value is unusable: control characters anywhere, an invalid address, a display
 *  name that is not UTF-8 or holds quotes, backslashes or angle brackets outside a quoted
 *  string. */
bool ink_mail_from_parse(const char *from, struct ink_mail_from *out);
/** The bare address inside a From value into out; false (out = "") when ink_mail_from_parse
 *  refuses it. The envelope MAIL FROM, and MAIL_FROM's check at start. */
bool ink_mail_address_of(const char *from, char out[INK_MAIL_ADDRESS_MAX + 1]);

/** SMTP_URL split. */
struct ink_smtp_url {
    bool tls;       /* smtps:// */
    bool bracketed; /* [IPv6] */
    char host[254]; /* without brackets */
};
/** NULL when the URL is acceptable, else a static reason: scheme smtp or smtps (either case), a
 *  host (host name, dotted quad or [IPv6]), an optional port 1-65535, nothing else (no path,
 *  user info, query, fragment, spaces). */
const char *ink_smtp_url_parse(const char *url, struct ink_smtp_url *out);
/** ink_smtp_url_parse without the parts (config validation). */
const char *ink_smtp_url_problem(const char *url);
/** localhost, 127.0.0.0/8 as a dotted quad, ::1 in brackets. Anything else, including forms curl
 *  might also read as loopback ("127.1", "0x7f.0.0.1"), is not: those get STARTTLS. */
bool ink_smtp_url_host_is_loopback(const struct ink_smtp_url *u);
/** The URL is acceptable and names a loopback host. */
bool ink_smtp_url_is_loopback(const char *url);

#endif
