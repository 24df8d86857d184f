/** Playing the browser's part of the sign-in flows (test_oauth.c, test_faults.c): requests that
 *  follow no redirect, and reading the auto-submitting form a provider answers with. */
#ifndef INKLET_ITEST_BROWSER_H
#define INKLET_ITEST_BROWSER_H
#include "harness.h"

#include <stdbool.h>
#include <stddef.h>

/* The sign-in configuration the tests give inkletd against tests/fakes/fake_oidc.py. The
 * redirect URLs are the ones the providers are told about; the tests map them onto the daemon's
 * address when they follow a provider's redirect, so they need not know the daemon's port. */
#define GOOGLE_ID "inklet-google-web"
#define GOOGLE_SECRET "g-secret"
#define APPLE_ID "com.iminklet.web"
#define TEAM_ID "TEAM123456"
#define KEY_ID "KEY1234567"
#define API_BASE "https://api.inklet.test"
#define WEB_TARGET "https://portal.inklet.test/auth/callback"
#define ENC_KEY "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/** GET, or POST a form body, to an absolute URL; no redirect is followed. */
void itest_fetch(const char *method, const char *url, const char *form, struct itest_resp *r);
/** The value of attribute `attr` in the HTML tag starting at `tag`, with &amp; &lt; &gt; &quot;
 *  &#x27; &#39; unescaped (malloc'd), or NULL when the tag has no such attribute. */
char *itest_html_attr(const char *tag, const char *attr);
/** The form-urlencoded body a browser submits for the <form> at `formtag`: every <input> after
 *  it, name=value. False when an input has no name or value or the body does not fit. */
bool itest_html_form_body(const char *formtag, char *out, size_t size);

#endif
