/** Outgoing mail: composing an RFC 5322 message from a kind and its variables (src/mail/message.c)
 *  and handing it to an SMTP server through libcurl (src/mail/smtp.c). Contract §2.2.
 *
 *  Rendering is pure (no I/O, no global state besides the CSPRNG for the MIME boundary), so the
 *  outbox can render a row again on every attempt and get the same headers except Date and the
 *  boundary. The text of each kind lives in src/mail/templates/<kind name>.txt, compiled into the
 *  binary (format: src/mail/templates/README.md).
 *
 *  What reaches a header is only ever the configured From, the recipient's bare address, the
 *  fixed subject and the Message-ID: template variables (username, provider, link) go into the
 *  bodies only, quoted-printable encoded, so no byte of theirs can start a header or a MIME part.
 *  The whole message is 7-bit ASCII with CRLF line ends. */
#ifndef INKLET_MAIL_H
#define INKLET_MAIL_H
#include "inklet/mailaddr.h"
#include "inklet/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum ink_mail_kind {
    INK_MAIL_VERIFY_EMAIL,     /* username, link, ttl_seconds */
    INK_MAIL_PASSWORD_RESET,   /* username, link, ttl_seconds */
    INK_MAIL_RESET_OAUTH_ONLY, /* username, provider: the account has no password; sign in with X */
    INK_MAIL_PASSWORD_CHANGED, /* username */
    INK_MAIL_PASSWORD_WAS_RESET, /* username */
    INK_MAIL_PROVIDER_LINKED,    /* username, provider */
    INK_MAIL_ACCOUNT_DELETED,    /* username */
    INK_MAIL_EMAIL_CHANGED,      /* username; to the address the account had */
    INK_MAIL_KINDS
};

/** The stable snake_case name stored in the outbox ("verify_email", "password_reset",
 *  "reset_oauth_only", "password_changed", "password_was_reset", "provider_linked",
 *  "account_deleted", "email_changed"); NULL for a value outside the enum. */
const char *ink_mail_kind_name(enum ink_mail_kind k);
/** The kind with exactly that name (case-sensitive); false (and *out untouched) otherwise. */
bool ink_mail_kind_from_name(const char *name, enum ink_mail_kind *out);

/** Longest username/provider rendered, in bytes; a longer value is cut at a character boundary
 *  and ends in "…". */
#define INK_MAIL_VAR_MAX 200
/** Longest link accepted, in bytes. */
#define INK_MAIL_LINK_MAX 2048

struct ink_mail_vars {
    const char *username; /* hostile: any bytes; NULL renders as "" */
    const char *link;     /* absolute http(s) URL or NULL */
    unsigned ttl_seconds; /* link lifetime; rendered "30 minutes", "1 hour", "24 hours" */
    const char *provider; /* "Google", "Apple", "Google or Apple"... hostile too; NULL as "" */
};

/** A rendered message: `len` bytes of 7-bit ASCII (NUL-terminated too, for logging). */
struct ink_mail_msg {
    char *data;
    size_t len;
};

/** Renders the whole message for one recipient into *out (free with ink_mail_msg_free).
 *
 *  from: MAIL_FROM as configured ("Inklet <no-reply@iminklet.com>", "\"Inklet, Inc.\" <a@b>" or
 *  a bare address; a non-ASCII display name is RFC 2047-encoded). to: the recipient's bare
 *  address, the only form it takes in the To header. message_id_seed: a UUID (the outbox row
 *  id), giving Message-ID <seed@domain-of-from>, the same on every retry. now: the Date.
 *
 *  In username and provider, invalid UTF-8 becomes U+FFFD and control characters (C0, DEL, C1,
 *  bidirectional overrides, line/paragraph separators) are dropped; the HTML part escapes
 *  & < > " '.
 *
 *  INK_INVALID (and *out = {NULL, 0}) when from or to is unusable (control characters, spaces in
 *  the address, not exactly one @, > 254 bytes, non-ASCII in an address, not a dot-atom local
 *  part and host-name domain), when the seed is not a UUID, when `kind` is out of range, or when
 *  a kind with a link gets no link, a link that is not an http(s) URL of printable ASCII without
 *  spaces (at most INK_MAIL_LINK_MAX bytes) or a ttl of 0. INK_INTERNAL when a template is
 *  malformed (the unit test renders every kind, so that cannot ship). */
enum ink_status ink_mail_render(enum ink_mail_kind kind, const struct ink_mail_vars *vars,
                                const char *from, const char *to, const char *message_id_seed,
                                time_t now, struct ink_mail_msg *out);
/** ink_mail_render with the template text tpl[0..tpl_len) in place of the kind's own (the kind
 *  still decides which variables exist). INK_INTERNAL when the template breaks a rule of
 *  src/mail/templates/README.md. Exposed for tests and the fuzz driver. */
enum ink_status ink_mail_render_template(enum ink_mail_kind kind, const char *tpl, size_t tpl_len,
                                         const struct ink_mail_vars *vars, const char *from,
                                         const char *to, const char *message_id_seed, time_t now,
                                         struct ink_mail_msg *out);
/** Frees the message's bytes; *m becomes {NULL, 0}. Safe on an already freed or zeroed msg. */
void ink_mail_msg_free(struct ink_mail_msg *m);

struct ink_smtp {
    const char *url;             /* smtp://host[:port] or smtps://host[:port] */
    const char *user, *password; /* both or neither (NULL) */
    const char *ca_file;         /* NULL: the system trust store */
    /* 0 means the default: 30 s total, connect min(10 s, total) */
    unsigned connect_timeout_ms, total_timeout_ms;
};

enum ink_smtp_result { INK_SMTP_SENT, INK_SMTP_TRANSIENT, INK_SMTP_PERMANENT };

/** Length of the `why` buffer of ink_smtp_send. */
#define INK_SMTP_WHY_MAX 160

/** Sends one message to one recipient over a new connection (blocking, at most
 *  total_timeout_ms). smtps:// is implicit TLS; smtp:// requires STARTTLS unless the host is
 *  loopback, where it stays plain even when STARTTLS is offered; the certificate and host name
 *  are always verified.
 *
 *  TRANSIENT: connect failure, timeout, TLS failure, a 4xx, a refused login, a dropped
 *  connection, a 5xx before MAIL FROM (greeting, EHLO, AUTH), an unusable configuration (URL,
 *  credentials, envelope_from) — try later. PERMANENT: a 5xx reply to MAIL FROM, RCPT TO or the
 *  message (e.g. 550 no such user), a recipient ink_mail_address_valid refuses, or no message:
 *  retrying cannot help. `why` gets a short printable-ASCII reason (curl's error text,
 *  its code, the SMTP stage and reply code; never the password); "" when SENT. */
enum ink_smtp_result ink_smtp_send(const struct ink_smtp *s, const char *envelope_from,
                                   const char *to, const struct ink_mail_msg *m,
                                   char why[INK_SMTP_WHY_MAX]);

#endif
