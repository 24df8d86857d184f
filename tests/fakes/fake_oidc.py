#!/usr/bin/python3
"""A local fake of Google's and Apple's sign-in endpoints for inkletd's integration tests.

Scope (contract §2.1 of the API spec; usage in tests/fakes/README.md):

* Google, OpenID Connect authorization code flow with PKCE S256, under ``/google``: the
  authorization endpoint (302 back with ``code`` and ``state``, or ``error=access_denied``),
  the token endpoint (client id/secret in the form or HTTP Basic, single-use codes that expire
  after 10 minutes, the same redirect_uri, ``BASE64URL(SHA256(code_verifier)) ==
  code_challenge``) answering an RS256 ID token, and the JWKS with two published keys.
* Apple, Sign in with Apple, under ``/apple``: the authorization endpoint with
  ``response_mode=form_post`` (an auto-submitting HTML form with ``code``, ``id_token``,
  ``state`` and, on the user's first authorization, the ``user`` JSON), the token endpoint
  whose client secret is an ES256 JWT (raw r||s signature, as JWS requires) checked claim by
  claim, the revoke endpoint and the JWKS.  ID tokens carry Apple's quirks (``email_verified``
  is the string "true").
* A control API under ``/_fake/`` (JSON, no auth): who signs in next, deny, key rotation,
  signing arbitrary (hostile) tokens, fault injection (delay, error status, dropped
  connection), the request log, issued codes, revoked tokens, the JWKS Cache-Control max-age.

Not in scope: consent screens, real accounts, discovery documents, Google's userinfo and
revoke endpoints.  Redirect URIs are not registered: any absolute http(s) URI is accepted
(the real providers want registered ones, Apple only https).

Concurrency: one ThreadingHTTPServer thread per connection; all state sits behind one lock,
which is never held while sleeping for a fault delay or while generating an RSA key.

Python 3.11 standard library plus Debian's python3-cryptography (RSA and EC keys), and
fakelib.py next to this file (the HTTP plumbing it shares with fake_stripe.py).
"""

import argparse
import base64
import binascii
import copy
import email.utils
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fakelib.py is next to us
import fakelib  # noqa: E402
from fakelib import (ALNUM, FORM_TYPE, decode_component, match_route, now,  # noqa: E402
                     to_json)

PROVIDERS = ("google", "apple")
GOOGLE_ISSUER = "https://accounts.google.com"
APPLE_ISSUER = "https://appleid.apple.com"
APPLE_AUDIENCE = "https://appleid.apple.com"  # the `aud` of Apple client secrets
CODE_TTL = {"google": 600, "apple": 300}  # Apple: "valid for five minutes"
ID_TOKEN_TTL = {"google": 3600, "apple": 86400}
ACCESS_TOKEN_TTL = {"google": 3599, "apple": 3600}
CLIENT_SECRET_MAX_LIFETIME = 15777000  # Apple: exp at most six months after iat
CLOCK_SKEW = 60  # seconds an Apple client secret's iat may lie in the future
DEFAULT_JWKS_MAX_AGE = 3600
KEY_MODES = ("current", "unpublished", "hs256-with-public-pem", "none")
GOOGLE_SCOPE_URLS = {"email": "https://www.googleapis.com/auth/userinfo.email",
                     "profile": "https://www.googleapis.com/auth/userinfo.profile"}
GOOGLE_SCOPE_PREFIX = "https://www.googleapis.com/auth/"
GOOGLE_PROMPTS = ("none", "consent", "select_account")
APPLE_SCOPES = ("openid", "name", "email")
APPLE_RESPONSE_MODES = ("query", "fragment", "form_post")
PRIVATE_RELAY = "@privaterelay.appleid.com"
B64URL = re.compile(r"[A-Za-z0-9_-]*")
PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
PKCE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
URL_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII: safe in a Location header
NO_STORE = (("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"),
            ("Pragma", "no-cache"))
APPLE_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


def random_text(length, alphabet=ALNUM):
    return "".join(secrets.choice(alphabet) for _ in range(length))


def compact_json(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    """Strict base64url as JWS uses it: the URL-safe alphabet and no padding."""
    if B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_bytes(value):
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def half_hash(value):
    """at_hash / c_hash (OIDC Core §3.1.3.6, §3.3.2.11): left half of SHA-256, base64url."""
    return b64url(hashlib.sha256(value.encode("ascii")).digest()[:16])


def pkce_challenge(verifier):
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def apple_token_value(prefix):
    """Apple's codes and tokens look like c1a2….0.abcd.XyZ… (prefix c, a or r)."""
    tail = f"{random_text(4).lower()}.{secrets.token_urlsafe(16)}"
    return f"{prefix}{secrets.token_hex(16)}.0.{tail}"


# --------------------------------------------------------------------------------------------
# Errors


class OAuthError(Exception):
    """An answer in OAuth's JSON error shape {"error", "error_description"?} (RFC 6749 §5.2);
    also used by the control API."""

    def __init__(self, status, error, description=None, headers=()):
        super().__init__(description or error)
        self.status = status
        self.error = error
        self.description = description
        self.headers = tuple(headers)

    def reply(self):
        body = {"error": self.error}
        if self.description is not None:
            body["error_description"] = self.description
        return Reply(self.status, to_json(body), JSON_TYPE, self.headers)


class PageError(Exception):
    """An authorization request the provider refuses without redirecting back: it shows an
    HTML error page (400), as Google and Apple do for a bad client or redirect URI."""

    def __init__(self, error, message):
        super().__init__(message)
        self.error = error
        self.message = message


def control_error(message, status=400):
    return OAuthError(status, "invalid_request", message)


# --------------------------------------------------------------------------------------------
# Answers


class Reply:
    """A complete HTTP answer, built under the lock and sent after it is released."""

    def __init__(self, status, body=b"", content_type=None, headers=()):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = tuple(headers)


def json_reply(obj, status=200, headers=NO_STORE):
    return Reply(status, to_json(obj), JSON_TYPE, headers)


def esc(value):
    return html.escape(value, quote=True)


def error_page(provider, error, message):
    title = "Sign in with Google" if provider == "google" else "Sign in with Apple"
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}: Error 400 ({esc(error)})</title></head>\n<body>\n"
            f"<h1>Access blocked: authorization error</h1>\n"
            f"<p id=\"error\">Error 400: {esc(error)}</p>\n"
            f"<p id=\"message\">{esc(message)}</p>\n</body></html>\n")
    return Reply(400, page.encode("utf-8"), HTML_TYPE, NO_STORE)


def with_params(uri, pairs, fragment=False):
    """The redirect URI with the answer's parameters in its query (or fragment)."""
    encoded = urlencode(pairs, quote_via=quote)
    if fragment:
        return f"{uri}#{encoded}"
    if "?" not in uri:
        return f"{uri}?{encoded}"
    return f"{uri}{'' if uri.endswith(('?', '&')) else '&'}{encoded}"


def redirect_reply(location):
    page = (f"<HTML><HEAD><meta http-equiv=\"content-type\" content=\"text/html;charset=utf-8\">"
            f"<TITLE>302 Moved</TITLE></HEAD><BODY><H1>302 Moved</H1>The document has moved "
            f"<A HREF=\"{esc(location)}\">here</A>.</BODY></HTML>\n")
    return Reply(302, page.encode("utf-8"), HTML_TYPE, (("Location", location),) + NO_STORE)


def form_post_reply(action, fields):
    """Apple's response_mode=form_post: a page that POSTs the answer to the redirect URI."""
    inputs = "".join(f"<input type=\"hidden\" name=\"{esc(name)}\" value=\"{esc(value)}\"/>\n"
                     for name, value in fields)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Sign in with Apple</title></head>\n<body>\n"
            f"<form method=\"POST\" action=\"{esc(action)}\">\n{inputs}"
            f"<noscript><button type=\"submit\">Continue</button></noscript>\n</form>\n"
            f"<script>document.forms[0].submit()</script>\n</body></html>\n")
    return Reply(200, page.encode("utf-8"), HTML_TYPE, NO_STORE)


# --------------------------------------------------------------------------------------------
# OAuth's form encoding: flat name=value pairs


def parse_form(text):
    """A flat x-www-form-urlencoded string -> dict; ValueError when malformed (bad escape,
    invalid UTF-8, a field without '=', an empty name, a repeated name: OAuth parameters
    "MUST NOT be included more than once", RFC 6749 §3.1)."""
    fields = {}
    for pair in text.split("&"):
        if pair == "":
            continue
        if "=" not in pair:
            raise ValueError(f"form field without '=': {pair[:40]!r}")
        raw_name, raw_value = pair.split("=", 1)
        name = decode_component(raw_name)
        if name == "":
            raise ValueError("form field with an empty name")
        if name in fields:
            raise ValueError(f"parameter {name[:40]!r} given more than once")
        fields[name] = decode_component(raw_value)
    return fields


def value(params, name):
    """A parameter's value; one sent without a value counts as omitted (RFC 6749 §3.1)."""
    found = params.get(name)
    return found if found else None


def http_url(text):
    """True for an absolute http(s) URL without a fragment, in printable ASCII."""
    if text is None or URL_CHARS.fullmatch(text) is None:
        return False
    try:
        parts = urlsplit(text)
        parts.port  # raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment


def basic_credentials(header):
    """HTTP Basic client credentials, each form-urlencoded (RFC 6749 §2.3.1); None when the
    header is absent or another scheme; ValueError when malformed."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ValueError("Basic credentials without ':'")
    return decode_component(user), decode_component(password)


# --------------------------------------------------------------------------------------------
# Keys and JWTs


class RsaKey:
    """An RS256 signing key and the JWK that publishes it."""

    def __init__(self, kid):
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.private.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                    "n": b64url(int_bytes(numbers.n)), "e": b64url(int_bytes(numbers.e))}
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data):
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def new_kid(provider):
    """Google's kids are 40 hex digits, Apple's short alphanumeric strings."""
    return secrets.token_hex(20) if provider == "google" else random_text(10)


def encode_jwt(header, claims, mode, key):
    """A compact JWS.  mode: "rs256" (key: RsaKey), "hs256" (key: the secret's bytes) or
    "none" (empty signature)."""
    signing_input = f"{b64url(compact_json(header))}.{b64url(compact_json(claims))}"
    data = signing_input.encode("ascii")
    if mode == "none":
        signature = b""
    elif mode == "hs256":
        signature = hmac.new(key, data, hashlib.sha256).digest()
    else:
        signature = key.sign(data)
    return f"{signing_input}.{b64url(signature)}"


def decode_jws(token):
    """(header, claims, signing input bytes, signature bytes) of a compact JWS; ValueError."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS (three dot-separated parts)")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, RecursionError):
        raise ValueError("a part is not base64url (unpadded) JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("the header or the claims are not a JSON object")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


def is_number(item):
    return isinstance(item, (int, float)) and not isinstance(item, bool)


# --------------------------------------------------------------------------------------------
# Control API field helpers (JSON)


FIELDS = fakelib.ControlFields(control_error)
check_fields, field_int, field_typed = FIELDS.check_fields, FIELDS.field_int, FIELDS.field_typed


def field_provider(payload):
    name = payload.get("provider")
    if name not in PROVIDERS:
        raise control_error(f"'provider' must be one of {list(PROVIDERS)}")
    return name


# --------------------------------------------------------------------------------------------
# Users, providers and faults


def default_user(provider):
    if provider == "google":
        return {"sub": "104812345678901234567", "email": "inklet.tester@gmail.com",
                "email_verified": True, "name": "Inklet Tester", "first_time": None}
    return {"sub": "001234.5f3c0e2b9a8d4c7e8f1a2b3c4d5e6f70.1234",
            "email": "inklet.tester@icloud.com", "email_verified": True,
            "name": "Inklet Tester", "first_time": None}


def user_from_payload(payload):
    payload = check_fields(payload, ("provider", "sub", "email", "email_verified", "name",
                                     "first_time"), ("provider", "sub"))
    sub = field_typed(payload, "sub", str, "a string")
    if not 1 <= len(sub) <= 255:
        raise control_error("'sub' must be 1 to 255 characters")
    verified = field_typed(payload, "email_verified", bool, "a boolean")
    return {"sub": sub, "email": field_typed(payload, "email", str, "a string"),
            "email_verified": True if verified is None else verified,
            "name": field_typed(payload, "name", str, "a string"),
            "first_time": field_typed(payload, "first_time", bool, "a boolean")}


def split_name(name):
    first, _, last = (name or "").strip().partition(" ")
    return first, last.strip()


class Provider:
    """One provider's keys, next user and switches."""

    def __init__(self, name, client_id, keys):
        self.name = name
        self.issuer = GOOGLE_ISSUER if name == "google" else APPLE_ISSUER
        self.client_id = client_id
        self.keys = keys  # [current signing key, the other published key]
        self.unpublished = None  # made on first use by /_fake/sign
        self.user = default_user(name)
        self.deny = False
        self.max_age = DEFAULT_JWKS_MAX_AGE

    def header(self, key, alg="RS256"):
        """Google's ID token headers are {alg, kid, typ}; Apple's {kid, alg}."""
        header = {"alg": alg, "kid": key.kid}
        if self.name == "google":
            header["typ"] = "JWT"
        return header

    def sign(self, claims):
        key = self.keys[0]
        return encode_jwt(self.header(key), claims, "rs256", key)

    def jwks_reply(self):
        headers = [("Expires", email.utils.formatdate(time.time() + (self.max_age or 0),
                                                      usegmt=True))]
        if self.max_age is not None:
            headers.append(("Cache-Control",
                            f"public, max-age={self.max_age}, must-revalidate, no-transform"))
        return Reply(200, to_json({"keys": [key.jwk for key in self.keys]}), JSON_TYPE,
                     headers)


class Fault(fakelib.Fault):
    """A /_fake/faults rule for provider requests; a status fault answers `body`."""

    fields = FIELDS
    default_prefix = "/"
    answer_field = "body"

    def parse_answer(self, payload):
        self.body = payload.get("body")

    def check_answer(self):
        if self.body is not None and self.status is None:
            raise control_error("'body' needs 'status'")

    def reply(self):
        """`body`: a string is sent verbatim, anything else as JSON."""
        if isinstance(self.body, str):
            return Reply(self.status, self.body.encode("utf-8"), JSON_TYPE)
        body = self.body if self.body is not None else {"error": "server_error",
                                                         "error_description": "fake fault"}
        return Reply(self.status, to_json(body), JSON_TYPE)


class ProviderRequest:
    """A provider request as the endpoint methods see it; `notes` explain refusals (they go
    to stderr and to the request log)."""

    def __init__(self, method, path, headers):
        self.method, self.path, self.headers = method, path, headers
        self.query, self.form = {}, {}
        self.error = None
        self.notes = []

    def parse(self, query_string, body):
        if query_string and URL_CHARS.fullmatch(query_string) is None:
            self.error = "Invalid query string: not printable ASCII (RFC 3986)"
            return
        try:
            self.query = parse_form(query_string)
        except ValueError as exc:
            self.error = f"Invalid query string: {exc}"
            return
        if not body or self.method == "GET":
            return
        media = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media != FORM_TYPE:
            self.error = f"The body must be {FORM_TYPE} (got {media or 'nothing'})"
            return
        try:
            self.form = parse_form(body.decode("utf-8", errors="strict"))
        except ValueError as exc:
            self.error = f"Invalid request body: {exc}"

    def auth_params(self):
        """The authorization endpoint's parameters: the query, and for POST the form."""
        both = set(self.query) & set(self.form)
        if both:
            raise PageError("invalid_request", f"Parameter {sorted(both)[0]!r} given twice")
        return {**self.query, **self.form}

    def note(self, text):
        self.notes.append(text)


# --------------------------------------------------------------------------------------------
# The fake's state and operations.  The provider endpoints and most control routes run with
# self.lock held; rotate and sign take it themselves (RSA key generation happens outside it).


class FakeOIDC(fakelib.FakeState):
    fault_class = Fault

    def __init__(self, args, keys):
        super().__init__()  # the lock, the fault rules and the request log
        self.google_secret = args.google_client_secret
        self.apple_team_id = args.apple_team_id
        self.apple_key_id = args.apple_key_id
        self.apple_public_key = args.apple_public_key
        self.providers = {
            "google": Provider("google", args.google_client_id, keys["google"]),
            "apple": Provider("apple", args.apple_client_id, keys["apple"]),
        }
        self.codes = {}          # code -> record (see issue_code)
        self.apple_tokens = {}   # access or refresh token -> record (see _remember)
        self.revoked = []        # one entry per revoked token, in order
        self.apple_consents = set()  # (client_id, sub): no `user` field any more

    # ---- shared by both providers

    def issue_code(self, provider, client_id, redirect_uri, scopes, params, challenge=None):
        code = f"4/0A{secrets.token_urlsafe(54)}" if provider == "google" else \
            apple_token_value("c")
        issued = now()
        self.codes[code] = {
            "code": code, "provider": provider, "client_id": client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(scopes),
            "state": value(params, "state"), "nonce": value(params, "nonce"),
            "code_challenge": challenge, "sub": self.providers[provider].user["sub"],
            "user": copy.deepcopy(self.providers[provider].user),
            "auth_time": issued, "issued_at": issued,
            "expires_at": issued + CODE_TTL[provider], "used": False,
        }
        return code

    def redeemable_code(self, req, provider, code, client_id):
        """The code's record, or None (noted) when unknown, used, expired or not the client's."""
        record = self.codes.get(code)
        if record is None or record["provider"] != provider:
            req.note("invalid_grant: unknown code")
        elif record["used"]:
            req.note("invalid_grant: the code was already used")
        elif now() >= record["expires_at"]:
            req.note("invalid_grant: the code expired")
        elif record["client_id"] != client_id:
            req.note(f"invalid_grant: the code was issued to {record['client_id']!r}")
        else:
            return record
        return None

    # ---- Google: authorization endpoint

    def google_authorize(self, req):
        params = req.auth_params()
        google = self.providers["google"]
        client_id = value(params, "client_id")
        if client_id is None:
            raise PageError("invalid_request", "Missing required parameter: client_id")
        if client_id != google.client_id:
            raise PageError("invalid_client", "The OAuth client was not found.")
        redirect_uri = value(params, "redirect_uri")
        if not http_url(redirect_uri):
            raise PageError("invalid_request",
                            f"Invalid parameter value for redirect_uri: {redirect_uri!r}")
        response_type = value(params, "response_type")
        if response_type is None:
            raise PageError("invalid_request", "Required parameter is missing: response_type")
        if response_type != "code":
            raise PageError("unsupported_response_type",
                            f"Unsupported response_type {response_type!r} (only 'code')")
        scopes = self._google_scopes(value(params, "scope"))
        method = value(params, "code_challenge_method")
        if method != "S256":
            raise PageError("invalid_request",
                            f"code_challenge_method must be S256 (got {method!r})")
        challenge = value(params, "code_challenge")
        if challenge is None or PKCE_CHALLENGE.fullmatch(challenge) is None:
            raise PageError("invalid_request",
                            "code_challenge must be 43 base64url characters (S256)")
        prompts = (value(params, "prompt") or "").split()
        if any(p not in GOOGLE_PROMPTS for p in prompts) or ("none" in prompts and
                                                              len(prompts) > 1):
            raise PageError("invalid_request", f"Invalid prompt {value(params, 'prompt')!r}")
        if value(params, "access_type") not in (None, "online", "offline"):
            raise PageError("invalid_request", "access_type must be online or offline")
        state = value(params, "state")
        tail = [("state", state)] if state is not None else []
        if google.deny:
            return redirect_reply(with_params(redirect_uri, [("error", "access_denied")] + tail))
        code = self.issue_code("google", client_id, redirect_uri, scopes, params, challenge)
        return redirect_reply(with_params(redirect_uri, [("code", code)] + tail + [
            ("scope", " ".join(scopes)), ("authuser", "0"),
            ("prompt", "consent" if "consent" in prompts else "none")]))

    @staticmethod
    def _google_scopes(scope):
        """The granted scopes: the requested ones plus the URL forms of email and profile,
        as Google reports them."""
        if scope is None:
            raise PageError("invalid_request", "Missing required parameter: scope")
        requested = scope.split()
        unknown = [s for s in requested if s not in ("openid", *GOOGLE_SCOPE_URLS) and
                   not s.startswith(GOOGLE_SCOPE_PREFIX)]
        if unknown:
            raise PageError("invalid_scope", f"Some requested scopes were invalid: {unknown}")
        if "openid" not in requested:
            raise PageError("invalid_scope", "The openid scope is required (OpenID Connect)")
        granted = list(dict.fromkeys(requested))
        for short, url in GOOGLE_SCOPE_URLS.items():
            if short in granted and url not in granted:
                granted.append(url)
        return granted

    # ---- Google: token endpoint

    def google_token(self, req):
        form = req.form
        grant_type = value(form, "grant_type")
        if grant_type is None:
            raise OAuthError(400, "invalid_request", "Missing required parameter: grant_type")
        if grant_type != "authorization_code":
            raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        client_id = self._google_client(req)
        code = value(form, "code")
        if code is None:
            raise OAuthError(400, "invalid_request", "Missing required parameter: code")
        record = self.redeemable_code(req, "google", code, client_id)
        if record is None:
            raise OAuthError(400, "invalid_grant", "Bad Request")
        redirect_uri = value(form, "redirect_uri")
        if redirect_uri is None:
            raise OAuthError(400, "invalid_request", "Missing parameter: redirect_uri")
        if redirect_uri != record["redirect_uri"]:
            req.note(f"redirect_uri_mismatch: the code was issued for {record['redirect_uri']!r}")
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        verifier = value(form, "code_verifier")
        if verifier is None:
            raise OAuthError(400, "invalid_grant", "Missing code verifier.")
        if PKCE_VERIFIER.fullmatch(verifier) is None or \
                pkce_challenge(verifier) != record["code_challenge"]:
            req.note("invalid_grant: BASE64URL(SHA256(code_verifier)) != code_challenge "
                     "(or the verifier is not 43-128 unreserved characters)")
            raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        record["used"] = True
        access_token = f"ya29.a0{secrets.token_urlsafe(96)}"
        return json_reply({
            "access_token": access_token, "expires_in": ACCESS_TOKEN_TTL["google"],
            "scope": record["scope"], "token_type": "Bearer",
            "id_token": self.providers["google"].sign(
                self._google_claims(record, client_id, access_token)),
        })

    def _google_client(self, req):
        """Client authentication: client_secret_post or client_secret_basic, not both."""
        try:
            basic = basic_credentials(req.headers.get("Authorization"))
        except ValueError as exc:
            raise OAuthError(400, "invalid_request", str(exc)) from None
        client_id, secret = value(req.form, "client_id"), value(req.form, "client_secret")
        if basic is not None:
            if secret is not None or client_id not in (None, basic[0]):
                raise OAuthError(400, "invalid_request",
                                 "Client credentials both in the body and in Authorization")
            client_id, secret = basic
        if client_id is None:
            raise OAuthError(400, "invalid_request", "Could not determine client ID from request.")
        if client_id != self.providers["google"].client_id:
            req.note(f"invalid_client: unknown client_id {client_id!r}")
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if secret is None or not hmac.compare_digest(secret.encode("utf-8"),
                                                     self.google_secret.encode("utf-8")):
            req.note("invalid_client: wrong or missing client_secret")
            raise OAuthError(401, "invalid_client", "Unauthorized")
        return client_id

    @staticmethod
    def _google_claims(record, client_id, access_token):
        user, scopes, issued = record["user"], record["scope"].split(), now()
        claims = {"iss": GOOGLE_ISSUER, "azp": client_id, "aud": client_id, "sub": user["sub"]}
        if user["email"] is not None and ("email" in scopes or
                                          GOOGLE_SCOPE_URLS["email"] in scopes):
            claims["email"] = user["email"]
            claims["email_verified"] = user["email_verified"]
        claims["at_hash"] = half_hash(access_token)
        if record["nonce"] is not None:
            claims["nonce"] = record["nonce"]
        if user["name"] and ("profile" in scopes or GOOGLE_SCOPE_URLS["profile"] in scopes):
            first, last = split_name(user["name"])
            claims["name"] = user["name"]
            claims["given_name"] = first
            if last:
                claims["family_name"] = last
        claims["iat"] = issued
        claims["exp"] = issued + ID_TOKEN_TTL["google"]
        return claims

    def google_jwks(self, req):
        return self.providers["google"].jwks_reply()

    # ---- Apple: authorization endpoint

    def apple_authorize(self, req):
        params = req.auth_params()
        apple = self.providers["apple"]
        client_id = value(params, "client_id")
        if client_id is None or client_id != apple.client_id:
            raise PageError("invalid_client", "Invalid client id or web redirect url.")
        redirect_uri = value(params, "redirect_uri")
        if not http_url(redirect_uri):
            raise PageError("invalid_request", "Invalid web redirect url.")
        types = (value(params, "response_type") or "").split()
        if sorted(types) not in (["code"], ["code", "id_token"]):
            raise PageError("unsupported_response_type",
                            "response_type must be 'code' or 'code id_token'")
        scopes = list(dict.fromkeys((value(params, "scope") or "").split()))
        if any(s not in APPLE_SCOPES for s in scopes):
            raise PageError("invalid_scope", f"Invalid scope; allowed: {list(APPLE_SCOPES)}")
        mode = value(params, "response_mode") or "query"
        if mode not in APPLE_RESPONSE_MODES:
            raise PageError("invalid_request", f"Invalid response_mode {mode!r}")
        if mode != "form_post" and ("name" in scopes or "email" in scopes):
            raise PageError("invalid_request",
                            "response_mode must be form_post when name or email scope is "
                            "requested.")
        if mode == "query" and "id_token" in types:
            raise PageError("invalid_request",
                            "response_mode must be form_post or fragment with id_token")
        state = value(params, "state")
        tail = [("state", state)] if state is not None else []
        if apple.deny:
            fields = [("error", "user_cancelled_authorize")] + tail
        else:
            fields = self._apple_grant(params, client_id, redirect_uri, scopes, types) + tail
            user_json = self._apple_user_json(client_id, scopes)
            if user_json is not None:
                fields.append(("user", user_json))
        if mode == "form_post":
            return form_post_reply(redirect_uri, fields)
        return redirect_reply(with_params(redirect_uri, fields, fragment=mode == "fragment"))

    def _apple_grant(self, params, client_id, redirect_uri, scopes, types):
        code = self.issue_code("apple", client_id, redirect_uri, scopes, params)
        fields = [("code", code)]
        if "id_token" in types:
            record = self.codes[code]
            claims = self._apple_claims(record, client_id, ("c_hash", half_hash(code)),
                                        record["nonce"])
            fields.append(("id_token", self.providers["apple"].sign(claims)))
        return fields

    def _apple_user_json(self, client_id, scopes):
        """The `user` field: only on the user's first authorization for this client, and
        only with the name or email scope; JSON {"name":{"firstName","lastName"},"email"}."""
        user = self.providers["apple"].user
        consent = (client_id, user["sub"])
        first = consent not in self.apple_consents
        self.apple_consents.add(consent)
        if not first:
            return None
        info = {}
        if "name" in scopes and user["name"]:
            first_name, last_name = split_name(user["name"])
            info["name"] = {"firstName": first_name, "lastName": last_name}
        if "email" in scopes and user["email"] is not None:
            info["email"] = user["email"]
        return json.dumps(info, separators=(",", ":"), ensure_ascii=False) if info else None

    @staticmethod
    def _apple_claims(grant, client_id, token_hash, nonce):
        """`grant`: a code's record or a refresh token's; token_hash: (c_hash|at_hash, value)."""
        user, issued = grant["user"], now()
        claims = {"iss": APPLE_ISSUER, "aud": client_id, "exp": issued + ID_TOKEN_TTL["apple"],
                  "iat": issued, "sub": user["sub"]}
        claims[token_hash[0]] = token_hash[1]
        if user["email"] is not None and "email" in grant["scope"].split():
            claims["email"] = user["email"]
            claims["email_verified"] = "true" if user["email_verified"] else "false"
            claims["is_private_email"] = "true" if user["email"].endswith(PRIVATE_RELAY) \
                else "false"
        claims["auth_time"] = grant["auth_time"]
        claims["nonce_supported"] = True
        if nonce is not None:
            claims["nonce"] = nonce
        return claims

    # ---- Apple: client authentication (the client secret is an ES256 JWT)

    def _apple_client(self, req):
        """The client id once its client_secret passes; else 400 invalid_client, as Apple."""
        client_id = value(req.form, "client_id")
        problem = self._client_secret_problem(req, client_id, value(req.form, "client_secret"))
        if problem is not None:
            req.note(f"invalid_client: {problem}")
            raise OAuthError(400, "invalid_client")
        return client_id

    def _client_secret_problem(self, req, client_id, secret):
        expected = self.providers["apple"].client_id
        if client_id is None:
            return "client_id is missing"
        if client_id != expected:
            return f"client_id {client_id!r} is not {expected!r}"
        if secret is None:
            return "client_secret is missing"
        try:
            header, claims, signing_input, signature = decode_jws(secret)
        except ValueError as exc:
            return f"client_secret: {exc}"
        checks = (
            (header.get("alg") == "ES256", f"header alg {header.get('alg')!r} is not ES256"),
            (header.get("kid") == self.apple_key_id,
             f"header kid {header.get('kid')!r} is not the key id {self.apple_key_id!r}"),
            (claims.get("iss") == self.apple_team_id,
             f"iss {claims.get('iss')!r} is not the team id {self.apple_team_id!r}"),
            (claims.get("sub") == client_id, f"sub {claims.get('sub')!r} is not the client id"),
            (claims.get("aud") == APPLE_AUDIENCE,
             f"aud {claims.get('aud')!r} is not {APPLE_AUDIENCE!r}"),
            (is_number(claims.get("iat")) and is_number(claims.get("exp")),
             "iat and exp must be numbers"),
        )
        for passed, problem in checks:
            if not passed:
                return problem
        iat, exp, moment = claims["iat"], claims["exp"], now()
        if exp <= moment:
            return f"expired: exp {exp} is not after now {moment}"
        if iat > moment + CLOCK_SKEW:
            return f"iat {iat} lies in the future (now {moment})"
        if exp - iat > CLIENT_SECRET_MAX_LIFETIME:
            return f"exp - iat = {exp - iat} s exceeds {CLIENT_SECRET_MAX_LIFETIME} s"
        if self.apple_public_key is None:
            req.note("client_secret signature NOT checked (no --apple-public-key-file)")
            return None
        return es256_problem(self.apple_public_key, signing_input, signature)

    # ---- Apple: token and revoke endpoints

    def apple_token(self, req):
        form = req.form
        grant_type = value(form, "grant_type")
        if grant_type is None:
            raise OAuthError(400, "invalid_request")
        if grant_type not in ("authorization_code", "refresh_token"):
            raise OAuthError(400, "unsupported_grant_type")
        client_id = self._apple_client(req)
        if grant_type == "refresh_token":
            return self._apple_refresh(req, client_id)
        code = value(form, "code")
        if code is None:
            raise OAuthError(400, "invalid_request")
        record = self.redeemable_code(req, "apple", code, client_id)
        if record is None:
            raise OAuthError(400, "invalid_grant", "The code has expired or has been revoked.")
        redirect_uri = value(form, "redirect_uri")
        if redirect_uri is not None and redirect_uri != record["redirect_uri"]:
            req.note(f"invalid_grant: the code was issued for {record['redirect_uri']!r}")
            raise OAuthError(400, "invalid_grant")
        record["used"] = True
        refresh_token = apple_token_value("r")
        access_token = apple_token_value("a")
        self._remember(refresh_token, "refresh_token", record)
        self._remember(access_token, "access_token", record, refresh_token)
        return json_reply({
            "access_token": access_token, "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL["apple"], "refresh_token": refresh_token,
            "id_token": self.providers["apple"].sign(self._apple_claims(
                record, client_id, ("at_hash", half_hash(access_token)), record["nonce"])),
        }, headers=APPLE_NO_STORE)

    def _remember(self, token, kind, grant, refresh_token=None):
        """Keeps an Apple token (for refresh and revoke); `grant` is the code's record."""
        self.apple_tokens[token] = {
            "token": token, "type": kind, "client_id": grant["client_id"],
            "sub": grant["sub"], "scope": grant["scope"], "user": grant["user"],
            "auth_time": grant["auth_time"], "issued_at": now(),
            "refresh_token": refresh_token, "revoked": False,
        }

    def _apple_refresh(self, req, client_id):
        """grant_type=refresh_token: a new access token and ID token, no new refresh token."""
        token = value(req.form, "refresh_token")
        if token is None:
            raise OAuthError(400, "invalid_request")
        grant = self.apple_tokens.get(token)
        if grant is None or grant["type"] != "refresh_token" or grant["revoked"] or \
                grant["client_id"] != client_id:
            req.note("invalid_grant: unknown, revoked or another client's refresh token")
            raise OAuthError(400, "invalid_grant")
        access_token = apple_token_value("a")
        self._remember(access_token, "access_token", grant, token)
        return json_reply({
            "access_token": access_token, "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL["apple"],
            "id_token": self.providers["apple"].sign(self._apple_claims(
                grant, client_id, ("at_hash", half_hash(access_token)), None)),
        }, headers=APPLE_NO_STORE)

    def apple_revoke(self, req):
        client_id = self._apple_client(req)
        token = value(req.form, "token")
        if token is None:
            raise OAuthError(400, "invalid_request")
        hint = value(req.form, "token_type_hint")
        if hint not in (None, "refresh_token", "access_token"):
            raise OAuthError(400, "unsupported_token_type")
        record = self.apple_tokens.get(token)
        if record is not None and record["client_id"] != client_id:
            record = None
        if any(entry["token"] == token for entry in self.revoked):
            return Reply(200)
        if record is None:
            req.note("revoke: unknown token (answered 200 as RFC 7009 wants)")
        else:
            self._revoke(record)
        self.revoked.append({
            "token": token, "token_type_hint": hint, "client_id": client_id,
            "known": record is not None, "token_type": record["type"] if record else None,
            "sub": record["sub"] if record else None, "time": time.time()})
        return Reply(200)

    def _revoke(self, record):
        """Revoking a refresh token ends the app's authorization: its access tokens die with it
        and the next sign-in is a first one again (with the `user` field)."""
        record["revoked"] = True
        if record["type"] == "refresh_token":
            for other in self.apple_tokens.values():
                if other["refresh_token"] == record["token"]:
                    other["revoked"] = True
            self.apple_consents.discard((record["client_id"], record["sub"]))

    def apple_jwks(self, req):
        return self.providers["apple"].jwks_reply()

    # ---- control API: each takes (path ids, JSON payload, query) and returns (status, body);
    # health, faults and requests are fakelib.FakeState's

    def set_user(self, ids, payload, query):
        user = user_from_payload(payload)
        name = field_provider(payload)
        self.providers[name].user = user
        if name == "apple" and user["first_time"] is True:  # consent withdrawn: a first time
            self.apple_consents = {c for c in self.apple_consents if c[1] != user["sub"]}
        elif name == "apple" and user["first_time"] is False:  # consented before
            self.apple_consents.add((self.providers["apple"].client_id, user["sub"]))
        return 200, {"provider": name, "user": user}

    def set_deny(self, ids, payload, query):
        payload = check_fields(payload, ("provider", "deny"), ("provider", "deny"))
        name = field_provider(payload)
        self.providers[name].deny = field_typed(payload, "deny", bool, "a boolean")
        return 200, {"provider": name, "deny": self.providers[name].deny}

    def rotate(self, ids, payload, query):
        """Runs without the lock held: a new RSA key takes a while."""
        payload = check_fields(payload, ("provider",), ("provider",))
        name = field_provider(payload)
        key = RsaKey(new_kid(name))
        with self.lock:
            provider = self.providers[name]
            provider.keys = [key, provider.keys[0]]
            return 200, {"kid": key.kid, "published": [k.kid for k in provider.keys]}

    def sign(self, ids, payload, query):
        """Runs without the lock held (the unpublished key is made on first use)."""
        payload = check_fields(payload, ("provider", "claims", "header", "key"),
                               ("provider", "claims"))
        name = field_provider(payload)
        claims = field_typed(payload, "claims", dict, "an object")
        extra = field_typed(payload, "header", dict, "an object") or {}
        mode = field_typed(payload, "key", str, "a string") or "current"
        if mode not in KEY_MODES:
            raise control_error(f"'key' must be one of {list(KEY_MODES)}")
        key = self._unpublished_key(name) if mode == "unpublished" else None
        with self.lock:
            provider = self.providers[name]
            key = key or provider.keys[0]
            alg = {"none": "none", "hs256-with-public-pem": "HS256"}.get(mode, "RS256")
            header = provider.header(key, alg)
        header.update(extra)
        header = {k: v for k, v in header.items() if v is not None}  # null removes a field
        if mode == "none":
            token = encode_jwt(header, claims, "none", None)
        elif mode == "hs256-with-public-pem":
            token = encode_jwt(header, claims, "hs256", key.public_pem)
        else:
            token = encode_jwt(header, claims, "rs256", key)
        return 200, {"token": token}

    def _unpublished_key(self, name):
        with self.lock:
            key = self.providers[name].unpublished
        if key is None:
            key = RsaKey(new_kid(name))
            with self.lock:
                provider = self.providers[name]
                provider.unpublished = key = provider.unpublished or key
        return key

    def list_codes(self, ids, payload, query):
        moment = now()
        return 200, [{**{k: v for k, v in code.items() if k != "user"},
                      "expired": moment >= code["expires_at"]} for code in self.codes.values()]

    def list_revoked(self, ids, payload, query):
        return 200, self.revoked

    def set_jwks_cache(self, ids, payload, query):
        payload = check_fields(payload, ("provider", "max_age"), ("provider",))
        if "max_age" not in payload:
            raise control_error("missing field 'max_age' (an integer, or null: no header)")
        name = field_provider(payload)
        self.providers[name].max_age = field_int(payload, "max_age", 0, 10 ** 9)
        return 200, {"provider": name, "max_age": self.providers[name].max_age}


def es256_problem(public_key, signing_input, signature):
    """None when `signature` is a valid JWS ES256 signature (raw r||s, 64 bytes)."""
    if len(signature) != 64:
        hint = " (it looks DER-encoded)" if signature[:1] == b"\x30" else ""
        return (f"signature is {len(signature)} bytes{hint}; JWS ES256 is raw r||s, "
                "64 bytes (RFC 7518 §3.4)")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "the ES256 signature does not verify with --apple-public-key-file"
    return None


# --------------------------------------------------------------------------------------------
# Routing tables

# (method, path, FakeOIDC method name, how a malformed request is refused: "page" | "json")
PROVIDER_ROUTES = [
    ("GET", r"/google/o/oauth2/v2/auth", "google_authorize", "page"),
    ("POST", r"/google/o/oauth2/v2/auth", "google_authorize", "page"),
    ("POST", r"/google/token", "google_token", "json"),
    ("GET", r"/google/oauth2/v3/certs", "google_jwks", "json"),
    ("GET", r"/apple/auth/authorize", "apple_authorize", "page"),
    ("POST", r"/apple/auth/authorize", "apple_authorize", "page"),
    ("POST", r"/apple/auth/token", "apple_token", "json"),
    ("POST", r"/apple/auth/revoke", "apple_revoke", "json"),
    ("GET", r"/apple/auth/keys", "apple_jwks", "json"),
]
# (method, path, FakeOIDC method name, needs the lock)
CONTROL_ROUTES = [
    ("GET", r"/_fake/health", "health", True),
    ("POST", r"/_fake/user", "set_user", True),
    ("POST", r"/_fake/deny", "set_deny", True),
    ("POST", r"/_fake/rotate", "rotate", False),
    ("POST", r"/_fake/sign", "sign", False),
    ("POST", r"/_fake/faults", "add_fault", True),
    ("GET", r"/_fake/faults", "list_faults", True),
    ("DELETE", r"/_fake/faults", "clear_faults", True),
    ("GET", r"/_fake/requests", "list_requests", True),
    ("DELETE", r"/_fake/requests", "clear_requests", True),
    ("GET", r"/_fake/codes", "list_codes", True),
    ("GET", r"/_fake/revoked", "list_revoked", True),
    ("POST", r"/_fake/jwks_cache", "set_jwks_cache", True),
]


# --------------------------------------------------------------------------------------------
# HTTP


class Handler(fakelib.Handler):
    server_version = "fake-oidc/1.0"
    log_name = "fake_oidc"
    max_body = 1024 * 1024
    control_routes = CONTROL_ROUTES
    error_class = OAuthError
    reject_json_constants = True
    control_error = staticmethod(control_error)

    # ---- fakelib.Handler's hooks

    def internal_error(self):
        return OAuthError(500, "server_error", "fake_oidc internal error")

    def send_fake_error(self, err):
        self.send_reply(err.reply())

    def send_control_answer(self, status, body):
        self.send_reply(Reply(status, body, JSON_TYPE))

    def send_fault_answer(self, fault):
        self.send_reply(fault.reply())

    def serve(self, path, query_string):
        if path.startswith("/_fake/"):
            self.serve_control(path, query_string)
        else:
            self.serve_provider(path, query_string)

    # ---- answers

    def send_reply(self, reply):
        """Sends a complete answer (never called with the lock held)."""
        self.set_logged_status(reply.status)
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, text in reply.headers:
                self.send_header(name, text)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True

    # ---- provider endpoints

    def serve_provider(self, path, query_string):
        received = time.time()
        body, body_error = self.read_logged_body()
        req = ProviderRequest(self.command, path, self.headers)
        req.parse(query_string, body)
        fault = self.log_api_request(path, received, req.query, req.form, body,
                                     notes=req.notes)
        if self.serve_fault(fault):
            return
        if body_error is not None:
            self.send_reply(body_error.reply())
        else:
            self.send_reply(self.run_endpoint(req))

    def run_endpoint(self, req):
        fake = self.server.fake
        route, found = match_route(PROVIDER_ROUTES, req.method, req.path)
        if route is None:
            status = 405 if found else 404
            return OAuthError(status, "invalid_request",
                              f"No endpoint {req.method} {req.path}").reply()
        provider = req.path.split("/", 2)[1]
        with fake.lock:
            try:
                if req.error is not None:
                    if route[3] == "page":
                        raise PageError("invalid_request", req.error)
                    raise OAuthError(400, "invalid_request", req.error)
                reply = getattr(fake, route[2])(req)
            except PageError as err:
                req.note(f"{err.error}: {err.message}")
                reply = error_page(provider, err.error, err.message)
            except OAuthError as err:
                reply = err.reply()
            notes = list(req.notes)
        for note in notes:
            self.log_message("%s %s: %s", req.method, req.path, note)
        return reply


# --------------------------------------------------------------------------------------------
# Command line


def load_apple_public_key(path):
    """The EC P-256 public key from a PEM file; a private key (the .p8 itself) also works."""
    try:
        with open(path, "rb") as pem:
            data = pem.read()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise argparse.ArgumentTypeError(f"{path}: not a PEM public or private key") \
                from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise argparse.ArgumentTypeError(f"{path}: not an EC P-256 key")
    return key


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Local fake of Google's and Apple's sign-in endpoints for tests.")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    parser.add_argument("--port-file", help="written atomically with the port once listening")
    parser.add_argument("--google-client-id", default="inklet-google-web")
    parser.add_argument("--google-client-secret", default="g-secret")
    parser.add_argument("--apple-client-id", default="com.iminklet.web")
    parser.add_argument("--apple-team-id", default="TEAM123456")
    parser.add_argument("--apple-key-id", default="KEY1234567")
    parser.add_argument("--apple-public-key-file", dest="apple_public_key",
                        type=load_apple_public_key, metavar="PATH.pem",
                        help="the EC P-256 key of the client secret; without it the secret's "
                             "signature is not checked (its claims are)")
    return parser.parse_args(argv)


def make_keys():
    """Two published RSA keys per provider, made in parallel (about 0.3 s each)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = list(pool.map(lambda name: RsaKey(new_kid(name)),
                             ("google", "google", "apple", "apple")))
    return {"google": keys[0:2], "apple": keys[2:4]}


def main(argv=None):
    return fakelib.run(Handler, parse_args, lambda args: FakeOIDC(args, make_keys()), argv)


if __name__ == "__main__":
    sys.exit(main())
