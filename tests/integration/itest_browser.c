#include "itest_browser.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void itest_fetch(const char *method, const char *url, const char *form, struct itest_resp *r)
{
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
                             "User-Agent: " ITEST_USER_AGENT, NULL};
    itest_request(NULL, method, url, form ? headers : headers + 1, form, form ? strlen(form) : 0,
                  r);
}

static void html_unescape(char *s)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'},  {"&lt;", '<'},    {"&gt;", '>'},
                {"&quot;", '"'}, {"&#x27;", '\''}, {"&#39;", '\''}};
    char *w = s;
    for (char *r = s; *r;) {
        size_t i = 0;
        while (i < ITEST_ARRAY_LEN(ents) && strncmp(r, ents[i].ent, strlen(ents[i].ent)) != 0)
            i++;
        if (i < ITEST_ARRAY_LEN(ents)) {
            *w++ = ents[i].c;
            r += strlen(ents[i].ent);
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
}

char *itest_html_attr(const char *tag, const char *attr)
{
    const char *end = strchr(tag, '>');
    char pat[32];
    snprintf(pat, sizeof pat, "%s=\"", attr);
    const char *a = strstr(tag, pat);
    if (!a || (end && a > end))
        return NULL;
    a += strlen(pat);
    const char *q = strchr(a, '"');
    if (!q)
        return NULL;
    char *v = strndup(a, (size_t)(q - a));
    html_unescape(v);
    return v;
}

bool itest_html_form_body(const char *formtag, char *out, size_t size)
{
    size_t len = 0;
    out[0] = '\0';
    bool ok = true;
    for (const char *in = strstr(formtag, "<input"); in && ok; in = strstr(in + 1, "<input")) {
        char *name = itest_html_attr(in, "name"), *value = itest_html_attr(in, "value");
        char *enc = value ? curl_easy_escape(NULL, value, 0) : NULL;
        ok = name && enc;
        if (ok) {
            int n = snprintf(out + len, size - len, "%s%s=%s", len ? "&" : "", name, enc);
            ok = n >= 0 && (size_t)n < size - len;
            if (ok)
                len += (size_t)n;
        }
        curl_free(enc);
        free(name);
        free(value);
    }
    return ok;
}
