#!/usr/bin/python3
"""A local fake of the Stripe API for inkletd's integration tests.

Scope (the billing design's "fake Stripe" section; usage in tests/fakes/README.md):

* The part of Stripe's HTTP API that inkletd uses, with Stripe's real wire protocol:
  Bearer secret-key auth, form-encoded POST bodies with Stripe's bracket syntax
  (``metadata[userId]=u``, ``line_items[0][price]=p``), JSON answers, Stripe error objects,
  a ``Request-Id`` header, Idempotency-Key semantics (replay, 400 for other parameters,
  409 while the first request is in flight) and cursor pagination (limit, starting_after,
  ending_before, has_more).  Objects: customers, checkout sessions, billing portal sessions,
  subscriptions (list, retrieve, cancel) and invoices (retrieve).
* A control API under ``/_fake/`` (JSON, no auth) for tests: fault injection (delay, error
  status, dropped connection), the log of every /v1 request, direct creation and mutation of
  subscriptions and invoices, completing a checkout, and a webhook sender that signs events
  exactly as Stripe does (``Stripe-Signature: t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``).

Not in scope: anything else Stripe has (prices are fixed at start-up, no payments, no
automatic webhooks: tests send events explicitly with /_fake/send_event).

Concurrency: one ThreadingHTTPServer thread per connection; all state sits behind one lock,
which is never held while sleeping for a fault delay or while delivering a webhook.

Python 3.11 standard library only, and fakelib.py next to this file (the HTTP plumbing it
shares with fake_oidc.py).
"""

import argparse
import copy
import hashlib
import hmac
import http.client
import os
import re
import secrets
import sys
import threading
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fakelib.py is next to us
import fakelib  # noqa: E402
from fakelib import (ALNUM, DIGITS, FORM_TYPE, decode_component, match_route,  # noqa: E402
                     now, to_json)

API_VERSION = "2024-06-20"
WEBHOOK_TIMEOUT = 10.0
MAX_COPIES = 100
PERIOD_SECONDS = {"month": 30 * 86400, "year": 365 * 86400}
SUB_STATUSES = ("incomplete", "incomplete_expired", "trialing", "active", "past_due",
                "canceled", "unpaid", "paused")
ENDED_STATUSES = ("canceled", "incomplete_expired")
PARAM_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
SUBSCRIPT = re.compile(r"\[([^\[\]]*)\]")
INDEX = re.compile(r"[0-9]{1,9}")


def new_id(prefix, length):
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(length))


# --------------------------------------------------------------------------------------------
# Errors


class StripeError(Exception):
    """An answer in Stripe's error shape: {"error": {type, code?, message, param?}}."""

    def __init__(self, status, message, type_="invalid_request_error", code=None, param=None,
                 headers=()):
        super().__init__(message)
        self.status = status
        self.error = {"type": type_, "message": message}
        if code is not None:
            self.error["code"] = code
        if param is not None:
            self.error["param"] = param
        self.headers = tuple(headers)

    def body(self):
        return {"error": self.error}


def invalid(message, param=None, code=None, status=400):
    return StripeError(status, message, code=code, param=param)


def missing(param):
    return StripeError(400, f"Missing required param: {param}.", code="parameter_missing",
                       param=param)


def no_such(kind, ident, param=None):
    return StripeError(404, f"No such {kind}: '{ident}'", code="resource_missing", param=param)


# --------------------------------------------------------------------------------------------
# Stripe's form encoding: a[b][0][c]=v (percent-encoded or literal brackets)


class _Indexed(dict):
    """A list under construction: int index -> value; turned into a list at the end."""


def _is_index(key):
    return key == "" or INDEX.fullmatch(key) is not None


def _child_key(node, key):
    if not isinstance(node, _Indexed):
        return key
    if key == "":
        return max(node, default=-1) + 1
    return int(key)


def _assign(root, name, value):
    match = PARAM_NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"invalid parameter name {name!r}")
    keys = [match.group(1)] + SUBSCRIPT.findall(match.group(2))
    node = root
    for depth, raw_key in enumerate(keys):
        key = _child_key(node, raw_key)
        if depth == len(keys) - 1:
            if key in node:
                raise ValueError(f"parameter {name!r} given more than once")
            node[key] = value
            return
        kind = _Indexed if _is_index(keys[depth + 1]) else dict
        child = node.setdefault(key, kind())
        if type(child) is not kind:
            raise ValueError(f"parameter {name!r} conflicts with another parameter")
        node = child


def _finalize(node):
    if isinstance(node, _Indexed):
        return [_finalize(node[k]) for k in sorted(node)]
    if isinstance(node, dict):
        return {k: _finalize(v) for k, v in node.items()}
    return node


def parse_form(text):
    """Parses a form-encoded string into nested dicts/lists; ValueError when malformed."""
    root = {}
    for pair in text.split("&"):
        if pair == "":
            continue
        if "=" not in pair:
            raise ValueError(f"form field without '=': {pair[:40]!r}")
        raw_name, raw_value = pair.split("=", 1)
        _assign(root, decode_component(raw_name), decode_component(raw_value))
    return _finalize(root)


def parse_form_bytes(data):
    return parse_form(data.decode("utf-8", errors="strict"))


# --------------------------------------------------------------------------------------------
# Parameter helpers (Stripe API)


def opt_str(params, name, label=None, max_len=5000):
    value = params.get(name)
    label = label or name
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {label} must be a string", label)
    if len(value) > max_len:
        raise invalid(f"Invalid string: {label} must be at most {max_len} characters", label)
    return value


def req_str(params, name, label=None, max_len=5000):
    value = opt_str(params, name, label, max_len)
    if value is None:
        raise missing(label or name)
    return value


def url_param(params, name, required):
    value = req_str(params, name) if required else opt_str(params, name)
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise invalid("Not a valid URL", name, code="url_invalid")
    return value


def metadata_param(value, label):
    """Stripe metadata: up to 50 string keys (<= 40 chars) with string values (<= 500)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {label} must be a hash", label)
    if len(value) > 50:
        raise invalid("Invalid metadata: at most 50 keys", label)
    out = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise invalid("Invalid metadata: values must be strings", f"{label}[{key}]")
        if len(key) > 40 or len(item) > 500:
            raise invalid("Invalid metadata: keys <= 40 and values <= 500 characters",
                          f"{label}[{key}]")
        if item != "":
            out[key] = item
    return out


def positive_int(value, label):
    if not isinstance(value, str) or DIGITS.fullmatch(value) is None or int(value) < 1:
        raise invalid(f"Invalid integer: {value}", label, code="parameter_invalid_integer")
    return int(value)


# --------------------------------------------------------------------------------------------
# Control API field helpers (JSON)


def control_error(message, status=400):
    return StripeError(status, message)


FIELDS = fakelib.ControlFields(control_error)
check_fields, field_int, field_typed = FIELDS.check_fields, FIELDS.field_int, FIELDS.field_typed


def field_status(payload, choices=SUB_STATUSES):
    value = field_typed(payload, "status", str, "a string")
    if value is not None and value not in choices:
        raise control_error(f"'status' must be one of {list(choices)}")
    return value


# --------------------------------------------------------------------------------------------
# Object builders


def price_object(price_id, interval):
    return {"id": price_id, "object": "price",
            "recurring": {"interval": interval, "interval_count": 1}}


def subscription_object(customer, price, status, created, metadata, quantity=1):
    period_end = created + PERIOD_SECONDS[price["recurring"]["interval"]]
    sub = {
        "id": new_id("sub_", 14), "object": "subscription", "customer": customer,
        "status": status, "created": created, "start_date": created,
        "current_period_start": created, "current_period_end": period_end,
        "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None,
        "ended_at": None, "livemode": False, "metadata": metadata,
        "items": {"object": "list", "data": [{
            "id": new_id("si_", 14), "object": "subscription_item", "quantity": quantity,
            "current_period_start": created, "current_period_end": period_end,
            "price": price,
        }]},
    }
    if status in ENDED_STATUSES:
        sub["canceled_at"] = sub["ended_at"] = now()
    return sub


def sync_items(sub):
    """The item's period mirrors the subscription's; a scheduled cancel follows the period."""
    for item in sub["items"]["data"]:
        item["current_period_start"] = sub["current_period_start"]
        item["current_period_end"] = sub["current_period_end"]
    if sub["cancel_at_period_end"]:
        sub["cancel_at"] = sub["current_period_end"]


class Fault(fakelib.Fault):
    """A /_fake/faults rule for /v1 requests; a status fault answers Stripe's error shape,
    `error` or a generic api_error."""

    fields = FIELDS
    default_prefix = "/v1"
    answer_field = "error"

    def parse_answer(self, payload):
        self.error = field_typed(payload, "error", dict, "an object")

    def body(self):
        return {"error": self.error or {"type": "api_error", "message": "fake fault"}}


class IdemEntry:
    """One Idempotency-Key: in flight until the first request answers, then its answer."""

    def __init__(self, method, path, params):
        self.method, self.path, self.params = method, path, params
        self.done = False
        self.status = self.body = self.request_id = None


# --------------------------------------------------------------------------------------------
# The fake's state and operations.  Every method except send_event expects self.lock held.


class FakeStripe(fakelib.FakeState):
    fault_class = Fault

    def __init__(self, secret_key, webhook_secret, prices):
        super().__init__()  # the lock, the fault rules and the request log
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.prices = {pid: price_object(pid, interval) for pid, interval in prices}
        self.customers = {}
        self.sessions = {}   # cs id -> {"object", "price", "quantity", "sub_metadata"}
        self.portal_sessions = {}
        self.subscriptions = {}
        self.sub_order = {}  # sub id -> creation sequence number (list tie-break)
        self.invoices = {}
        self.idempotency = {}  # (secret key, Idempotency-Key) -> IdemEntry

    # ---- idempotency

    def idem_claim(self, key, method, path, params):
        """Returns ("new"|"replay", entry); raises the 409/400 idempotency errors."""
        scoped = (self.secret_key, key)
        entry = self.idempotency.get(scoped)
        if entry is None:
            entry = self.idempotency[scoped] = IdemEntry(method, path, params)
            return "new", entry
        if not entry.done:
            raise StripeError(
                409, "There is currently another in-progress request using this Idempotent "
                f"Key (that probably means you submitted twice, and the other request is still "
                f"going through): {key}. Please try again later.",
                type_="idempotency_error", code="idempotency_key_in_use")
        if (entry.method, entry.path) != (method, path):
            raise StripeError(
                400, "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{entry.method} {entry.path}' vs '{method} {path}'). "
                f"Try using a key other than '{key}' if you meant to execute a different "
                "request.", type_="idempotency_error")
        if entry.params != params:
            raise StripeError(
                400, "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you meant "
                "to execute a different request.", type_="idempotency_error")
        return "replay", entry

    def idem_finish(self, key, entry, status, body, request_id):
        """Stores a 2xx answer; anything else (validation errors) frees the key, as at Stripe."""
        if 200 <= status < 300:
            entry.done = True
            entry.status, entry.body, entry.request_id = status, body, request_id
        else:
            self.idem_release(key, entry)

    def idem_release(self, key, entry):
        scoped = (self.secret_key, key)
        if self.idempotency.get(scoped) is entry and not entry.done:
            del self.idempotency[scoped]

    # ---- lookups

    def customer(self, ident, param=None):
        if ident not in self.customers:
            raise no_such("customer", ident, param)
        return self.customers[ident]

    def price(self, ident, param=None):
        if ident not in self.prices:
            raise no_such("price", ident, param)
        return copy.deepcopy(self.prices[ident])

    def subscription(self, ident, param=None):
        if ident not in self.subscriptions:
            raise no_such("subscription", ident, param)
        return self.subscriptions[ident]

    def add_subscription(self, sub):
        self.subscriptions[sub["id"]] = sub
        self.sub_order[sub["id"]] = len(self.sub_order)
        return sub

    def object_by_id(self, ident):
        tables = (("sub_", self.subscriptions), ("cus_", self.customers),
                  ("in_", self.invoices), ("bps_", self.portal_sessions))
        if ident.startswith("cs_") and ident in self.sessions:
            return self.sessions[ident]["object"]
        for prefix, table in tables:
            if ident.startswith(prefix) and ident in table:
                return table[ident]
        raise control_error(f"no object with id {ident!r}", 404)

    # ---- Stripe API: each takes (path ids, form params, query) and returns the 200 body

    def create_customer(self, ids, params, query):
        customer = {
            "id": new_id("cus_", 14), "object": "customer",
            "email": opt_str(params, "email", max_len=512),
            "metadata": metadata_param(params.get("metadata"), "metadata"),
            "created": now(), "livemode": False,
        }
        self.customers[customer["id"]] = customer
        return customer

    def get_customer(self, ids, params, query):
        return self.customer(ids[0])

    def _checkout_line_item(self, params):
        items = params.get("line_items")
        if items is None:
            raise missing("line_items")
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise invalid("Invalid array: line_items", "line_items")
        if len(items) != 1:
            raise invalid("This fake supports exactly one line item", "line_items")
        price_id = req_str(items[0], "price", "line_items[0][price]")
        price = self.price(price_id, "line_items[0][price]")
        quantity = items[0].get("quantity")
        if quantity is None:
            raise missing("line_items[0][quantity]")
        return price, positive_int(quantity, "line_items[0][quantity]")

    def create_checkout_session(self, ids, params, query):
        mode = req_str(params, "mode")
        if mode != "subscription":
            raise invalid(f"Invalid mode: this fake supports only 'subscription', not {mode!r}",
                          "mode")
        customer = self.customer(req_str(params, "customer"), "customer")["id"]
        price, quantity = self._checkout_line_item(params)
        success_url = url_param(params, "success_url", True)
        cancel_url = url_param(params, "cancel_url", True)
        sub_data = params.get("subscription_data") or {}
        if not isinstance(sub_data, dict):
            raise invalid("Invalid object: subscription_data", "subscription_data")
        session_id = new_id("cs_test_", 24)
        session = {
            "id": session_id, "object": "checkout.session",
            "url": f"https://checkout.stripe.com/c/pay/{session_id}", "customer": customer,
            "client_reference_id": opt_str(params, "client_reference_id", max_len=200),
            "mode": "subscription", "status": "open", "payment_status": "unpaid",
            "subscription": None, "success_url": success_url, "cancel_url": cancel_url,
            "created": now(), "metadata": metadata_param(params.get("metadata"), "metadata"),
        }
        self.sessions[session_id] = {
            "object": session, "price": price, "quantity": quantity,
            "sub_metadata": metadata_param(sub_data.get("metadata"),
                                           "subscription_data[metadata]"),
        }
        return session

    def get_checkout_session(self, ids, params, query):
        if ids[0] not in self.sessions:
            raise no_such("checkout.session", ids[0])
        return self.sessions[ids[0]]["object"]

    def create_portal_session(self, ids, params, query):
        customer = self.customer(req_str(params, "customer"), "customer")["id"]
        session = {
            "id": new_id("bps_", 24), "object": "billing_portal.session",
            "url": "https://billing.stripe.com/p/session/" + new_id("test_", 24),
            "customer": customer, "return_url": url_param(params, "return_url", False),
            "created": now(),
        }
        self.portal_sessions[session["id"]] = session
        return session

    def _list_filter(self, query):
        customer = opt_str(query, "customer")
        if customer is not None:
            self.customer(customer, "customer")
        status = opt_str(query, "status")
        allowed = SUB_STATUSES + ("all", "ended")
        if status is not None and status not in allowed:
            raise invalid(f"Invalid status: must be one of {', '.join(allowed)}", "status")

        def wanted(sub):
            if customer is not None and sub["customer"] != customer:
                return False
            if status is None:
                return sub["status"] not in ENDED_STATUSES
            if status == "ended":
                return sub["status"] in ENDED_STATUSES
            return status == "all" or sub["status"] == status
        return wanted

    def _list_limit(self, query):
        raw = query.get("limit")
        if raw is None:
            return 10
        if not isinstance(raw, str) or DIGITS.fullmatch(raw) is None or \
                not 1 <= int(raw) <= 100:
            raise invalid("Invalid limit: must be an integer between 1 and 100", "limit",
                          code="parameter_invalid_integer")
        return int(raw)

    def _cursor(self, query, name):
        ident = opt_str(query, name)
        if ident is None:
            return None
        return self._sort_key(self.subscription(ident, name))

    def _sort_key(self, sub):
        return (sub["created"], self.sub_order[sub["id"]])

    def list_subscriptions(self, ids, params, query):
        wanted = self._list_filter(query)
        limit = self._list_limit(query)
        after = self._cursor(query, "starting_after")
        before = self._cursor(query, "ending_before")
        if after is not None and before is not None:
            raise invalid("starting_after and ending_before exclude each other",
                          "ending_before", code="parameters_exclusive")
        subs = sorted((s for s in self.subscriptions.values() if wanted(s)),
                      key=self._sort_key, reverse=True)
        if after is not None:
            subs = [s for s in subs if self._sort_key(s) < after]
            page, has_more = subs[:limit], len(subs) > limit
        elif before is not None:
            subs = [s for s in subs if self._sort_key(s) > before]
            page, has_more = subs[-limit:], len(subs) > limit
        else:
            page, has_more = subs[:limit], len(subs) > limit
        return {"object": "list", "url": "/v1/subscriptions", "has_more": has_more,
                "data": page}

    def get_subscription(self, ids, params, query):
        return self.subscription(ids[0])

    def cancel_subscription(self, ids, params, query):
        sub = self.subscription(ids[0])
        if sub["status"] not in ENDED_STATUSES:
            stamp = now()
            sub.update(status="canceled", canceled_at=stamp, ended_at=stamp)
        return sub

    def get_invoice(self, ids, params, query):
        if ids[0] not in self.invoices:
            raise no_such("invoice", ids[0])
        return self.invoices[ids[0]]

    # ---- control API: each takes (path ids, JSON payload, query) and returns (status, body);
    # health, faults and requests are fakelib.FakeState's

    def list_customers(self, ids, payload, query):
        return 200, list(self.customers.values())

    def list_fake_subscriptions(self, ids, payload, query):
        return 200, list(self.subscriptions.values())

    def _control_price(self, payload):
        price_id = field_typed(payload, "price", str, "a string")
        if price_id not in self.prices:
            raise control_error(f"unknown price {price_id!r}; known: {sorted(self.prices)}")
        return copy.deepcopy(self.prices[price_id])

    def _ensure_customer(self, ident):
        """Control-created subscriptions may name a customer the fake has not seen."""
        if ident not in self.customers:
            self.customers[ident] = {"id": ident, "object": "customer", "email": None,
                                     "metadata": {}, "created": now(), "livemode": False}

    def create_fake_subscription(self, ids, payload, query):
        payload = check_fields(payload, ("customer", "price", "status", "cancel_at_period_end",
                                         "metadata", "created", "current_period_start",
                                         "current_period_end"), ("customer", "price"))
        customer = field_typed(payload, "customer", str, "a string")
        price = self._control_price(payload)
        status = field_status(payload) or "active"
        metadata = field_typed(payload, "metadata", dict, "an object") or {}
        created = field_int(payload, "created", 0)
        self._ensure_customer(customer)
        sub = subscription_object(customer, price, status,
                                  now() if created is None else created, dict(metadata))
        self._update_subscription(sub, payload)
        return 200, self.add_subscription(sub)

    def update_fake_subscription(self, ids, payload, query):
        payload = check_fields(payload, ("status", "cancel_at_period_end",
                                         "current_period_start", "current_period_end", "price",
                                         "metadata"))
        if ids[0] not in self.subscriptions:
            raise control_error(f"no subscription {ids[0]!r}", 404)
        sub = self.subscriptions[ids[0]]
        scratch = copy.deepcopy(sub)  # validate everything before changing anything
        self._update_subscription(scratch, payload)
        sub.clear()
        sub.update(scratch)
        return 200, sub

    def _update_subscription(self, sub, payload):
        if payload.get("price") is not None:
            for item in sub["items"]["data"]:
                item["price"] = self._control_price(payload)
        for name in ("current_period_start", "current_period_end"):
            value = field_int(payload, name, 0)
            if value is not None:
                sub[name] = value
        metadata = field_typed(payload, "metadata", dict, "an object")
        if metadata is not None:
            sub["metadata"] = dict(metadata)
        status = field_status(payload)
        if status is not None:
            self._set_status(sub, status)
        cancel = field_typed(payload, "cancel_at_period_end", bool, "a boolean")
        if cancel is not None:
            sub["cancel_at_period_end"] = cancel
            sub["cancel_at"] = None
            if cancel and sub["canceled_at"] is None:
                sub["canceled_at"] = now()
            if not cancel and sub["status"] not in ENDED_STATUSES:
                sub["canceled_at"] = None
        sync_items(sub)

    def _set_status(self, sub, status):
        sub["status"] = status
        if status in ENDED_STATUSES:
            stamp = now()
            sub["canceled_at"] = sub["canceled_at"] or stamp
            sub["ended_at"] = sub["ended_at"] or stamp
        else:
            sub["ended_at"] = None
            if not sub["cancel_at_period_end"]:
                sub["canceled_at"] = None

    def complete_checkout(self, ids, payload, query):
        check_fields(payload, ())
        record = self.sessions.get(ids[0])
        if record is None:
            raise control_error(f"no checkout session {ids[0]!r}", 404)
        session = record["object"]
        if session["status"] != "open":
            raise control_error(f"checkout session {ids[0]!r} is {session['status']}, not open")
        sub = self.add_subscription(subscription_object(
            session["customer"], copy.deepcopy(record["price"]), "active", now(),
            dict(record["sub_metadata"]), record["quantity"]))
        session.update(status="complete", payment_status="paid", subscription=sub["id"])
        return 200, {"session": session, "subscription": sub}

    def create_invoice(self, ids, payload, query):
        payload = check_fields(payload, ("subscription", "status", "billing_reason"),
                               ("subscription", "status"))
        sub_id = field_typed(payload, "subscription", str, "a string")
        if sub_id not in self.subscriptions:
            raise control_error(f"no subscription {sub_id!r}", 404)
        status = field_status(payload, ("paid", "open"))
        reason = field_typed(payload, "billing_reason", str, "a string") or "subscription_cycle"
        sub = self.subscriptions[sub_id]
        start, end = sub["current_period_start"], sub["current_period_end"]
        invoice = {
            "id": new_id("in_", 14), "object": "invoice", "customer": sub["customer"],
            "subscription": sub_id, "status": status, "paid": status == "paid",
            "billing_reason": reason, "created": now(), "period_start": start,
            "period_end": end,
            "lines": {"object": "list", "data": [{
                "period": {"start": start, "end": end},
                "price": copy.deepcopy(sub["items"]["data"][0]["price"]),
            }]},
        }
        self.invoices[invoice["id"]] = invoice
        return 200, invoice

    # ---- webhooks (runs WITHOUT the lock; takes it only to read an object)

    def send_event(self, ids, payload, query):
        payload = check_fields(payload, ("url", "type", "object", "object_id", "id", "created",
                                         "secret", "timestamp", "extra_v1", "copies", "body"),
                               ("url",))
        target = webhook_target(field_typed(payload, "url", str, "a string"))
        secret = field_typed(payload, "secret", str, "a string") or self.webhook_secret
        timestamp = payload.get("timestamp", now())
        if not isinstance(timestamp, (int, str)) or isinstance(timestamp, bool):
            raise control_error("'timestamp' must be an integer or a string")
        extra = field_typed(payload, "extra_v1", list, "a list of strings") or []
        if not all(isinstance(item, str) for item in extra):
            raise control_error("'extra_v1' must be a list of strings")
        copies = field_int(payload, "copies", 1, MAX_COPIES) or 1
        event, body = self._event_body(payload)
        header = stripe_signature(secret, timestamp, body, extra)
        return 200, {"event": event, "deliveries": deliver(target, body, header, copies)}

    def _event_body(self, payload):
        raw = field_typed(payload, "body", str, "a string")
        has_object = payload.get("object") is not None or payload.get("object_id") is not None
        if raw is not None:
            if has_object:
                raise control_error("'body' excludes 'object' and 'object_id'")
            return None, raw.encode("utf-8")
        event = {
            "id": field_typed(payload, "id", str, "a string") or new_id("evt_", 24),
            "object": "event", "api_version": API_VERSION,
            "created": field_int(payload, "created") if "created" in payload else now(),
            "type": field_typed(payload, "type", str, "a string"),
            "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": self._event_object(payload)},
        }
        if event["type"] is None:
            raise control_error("missing field 'type' (or give 'body')")
        return event, to_json(event)

    def _event_object(self, payload):
        obj = field_typed(payload, "object", dict, "an object")
        ident = field_typed(payload, "object_id", str, "a string")
        if (obj is None) == (ident is None):
            raise control_error("give exactly one of 'object' and 'object_id' (or 'body')")
        if obj is not None:
            return obj
        with self.lock:
            return copy.deepcopy(self.object_by_id(ident))


# --------------------------------------------------------------------------------------------
# Webhook delivery


def stripe_signature(secret, timestamp, body, extra_v1=()):
    signed = str(timestamp).encode("utf-8") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return ",".join([f"t={timestamp}"] + [f"v1={v}" for v in list(extra_v1) + [digest]])


def webhook_target(url):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise control_error(f"invalid url: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise control_error("'url' must be an http:// or https:// URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def _deliver_one(target, body, header, barrier):
    scheme, host, port, path = target
    cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    conn = cls(host, port, timeout=WEBHOOK_TIMEOUT)
    try:
        try:
            conn.connect()
        finally:
            if barrier is not None:  # release every copy at once for real concurrency
                try:
                    barrier.wait()
                except threading.BrokenBarrierError:
                    pass
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Accept": "*/*; q=0.5, application/xml", "Cache-Control": "no-cache",
            "Stripe-Signature": header})
        response = conn.getresponse()
        return {"status": response.status, "body": response.read().decode("utf-8", "replace")}
    except (OSError, http.client.HTTPException) as exc:
        return {"status": 0, "body": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def deliver(target, body, header, copies):
    """Sends `copies` identical deliveries, one thread each, concurrently; in copy order."""
    results = [None] * copies
    barrier = threading.Barrier(copies, timeout=WEBHOOK_TIMEOUT) if copies > 1 else None

    def run(index):
        results[index] = _deliver_one(target, body, header, barrier)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(copies)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * WEBHOOK_TIMEOUT + 1
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [r if r is not None else {"status": 0, "body": "timed out"} for r in results]


# --------------------------------------------------------------------------------------------
# Routing tables: (method, path regex, FakeStripe method name[, needs the lock])

ID = r"([^/]+)"
STRIPE_ROUTES = [
    ("POST", r"/v1/customers", "create_customer"),
    ("GET", rf"/v1/customers/{ID}", "get_customer"),
    ("POST", r"/v1/checkout/sessions", "create_checkout_session"),
    ("GET", rf"/v1/checkout/sessions/{ID}", "get_checkout_session"),
    ("POST", r"/v1/billing_portal/sessions", "create_portal_session"),
    ("GET", r"/v1/subscriptions", "list_subscriptions"),
    ("GET", rf"/v1/subscriptions/{ID}", "get_subscription"),
    ("DELETE", rf"/v1/subscriptions/{ID}", "cancel_subscription"),
    ("GET", rf"/v1/invoices/{ID}", "get_invoice"),
]
CONTROL_ROUTES = [
    ("GET", r"/_fake/health", "health", True),
    ("POST", r"/_fake/faults", "add_fault", True),
    ("GET", r"/_fake/faults", "list_faults", True),
    ("DELETE", r"/_fake/faults", "clear_faults", True),
    ("GET", r"/_fake/requests", "list_requests", True),
    ("DELETE", r"/_fake/requests", "clear_requests", True),
    ("GET", r"/_fake/customers", "list_customers", True),
    ("GET", r"/_fake/subscriptions", "list_fake_subscriptions", True),
    ("POST", r"/_fake/subscriptions", "create_fake_subscription", True),
    ("POST", rf"/_fake/subscriptions/{ID}", "update_fake_subscription", True),
    ("POST", rf"/_fake/checkout/{ID}/complete", "complete_checkout", True),
    ("POST", r"/_fake/invoices", "create_invoice", True),
    ("POST", r"/_fake/send_event", "send_event", False),
]


def parse_query(query_string):
    """Stripe reads GET parameters with the same bracket syntax as form bodies."""
    return parse_form(query_string)


# --------------------------------------------------------------------------------------------
# HTTP


class Handler(fakelib.Handler):
    server_version = "fake-stripe/1.0"
    log_name = "fake_stripe"
    max_body = 2 * 1024 * 1024
    control_routes = CONTROL_ROUTES
    error_class = StripeError
    control_error = staticmethod(control_error)

    # ---- fakelib.Handler's hooks

    def start_request(self):
        self.request_id = new_id("req_", 14)

    def end_request(self):
        self.request_id = None

    def internal_error(self):
        return StripeError(500, "fake_stripe internal error", type_="api_error")

    def send_fake_error(self, err):
        self.answer_error(err)

    def send_control_answer(self, status, body):
        self.answer(status, body)

    def send_fault_answer(self, fault):
        self.answer(fault.status, to_json(fault.body()))

    def serve(self, path, query_string):
        if path == "/v1" or path.startswith("/v1/"):
            self.serve_stripe(path, query_string)
        elif path.startswith("/_fake/"):
            self.serve_control(path, query_string)
        else:
            self.read_body()
            self.answer_error(invalid(f"Unknown path {path}", status=404))

    # ---- answers

    def answer(self, status, body, headers=()):
        """Sends a complete JSON answer (never called with the lock held)."""
        self.set_logged_status(status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Request-Id", getattr(self, "request_id", None) or new_id("req_", 14))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def answer_error(self, err):
        self.answer(err.status, to_json(err.body()), err.headers)

    # ---- Stripe API

    def serve_stripe(self, path, query_string):
        fake = self.server.fake
        received = time.time()
        body, body_error = self.read_logged_body()
        query, params, parse_error = self.stripe_inputs(query_string, body)
        fault = self.log_api_request(path, received, query, params, body)
        plan = Plan(self, fake, path, query, params, body_error or parse_error)
        try:
            plan.prepare()
            if not self.serve_fault(fault):
                plan.run()
        finally:
            plan.release()

    def stripe_inputs(self, query_string, body):
        """Returns (query, params, StripeError or None) with both dicts parsed when possible."""
        query, params = {}, {}
        try:
            query = parse_query(query_string)
        except ValueError as exc:
            return query, params, invalid(f"Invalid query string: {exc}")
        if not body:
            return query, params, None
        media = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media != FORM_TYPE:
            return query, params, invalid(
                f"Invalid request: the body must be {FORM_TYPE} (got {media or 'nothing'})")
        try:
            params = parse_form_bytes(body)
        except ValueError as exc:
            return query, params, invalid(f"Invalid request body: {exc}")
        return query, params, None


class Plan:
    """What a /v1 request will get, decided on arrival (before any fault delay), so a second
    request with the same Idempotency-Key sees the first one in flight."""

    def __init__(self, handler, fake, path, query, params, early_error):
        self.handler, self.fake = handler, fake
        self.path, self.query, self.params = path, query, params
        self.error = early_error
        self.route = self.ids = None
        self.idem_key = self.idem_entry = None
        self.replay = False

    def prepare(self):
        if self.error is None:
            try:
                self._check()
            except StripeError as err:
                self.error = err

    def _check(self):
        handler, fake = self.handler, self.fake
        if bearer_key(handler.headers) != fake.secret_key:
            raise StripeError(401, "Invalid API Key provided: " +
                              masked(bearer_key(handler.headers) or ""))
        self.route, self.ids = match_route(STRIPE_ROUTES, handler.command, self.path)
        if self.route is None:
            raise invalid(f"Unrecognized request URL ({handler.command}: {self.path}). Please "
                          "see https://stripe.com/docs or we can help at "
                          "https://support.stripe.com/.", status=404)
        key = handler.headers.get("Idempotency-Key")
        if handler.command == "POST" and key:
            if len(key) > 255:
                raise invalid("Idempotency-Key must be at most 255 characters")
            with fake.lock:
                kind, entry = fake.idem_claim(key, handler.command, self.path, self.params)
            self.idem_key, self.idem_entry, self.replay = key, entry, kind == "replay"

    def run(self):
        handler, fake = self.handler, self.fake
        if self.error is not None:
            handler.answer_error(self.error)
            return
        if self.replay:
            entry = self.idem_entry
            handler.answer(entry.status, entry.body, self._idem_headers(
                ("Idempotent-Replayed", "true"), ("Original-Request", entry.request_id)))
            return
        func = getattr(fake, self.route[2])
        with fake.lock:
            try:
                status, body = 200, to_json(func(self.ids, self.params, self.query))
            except StripeError as err:
                status, body = err.status, to_json(err.body())
            if self.idem_entry is not None:
                fake.idem_finish(self.idem_key, self.idem_entry, status, body,
                                 handler.request_id)
                self.idem_entry = None
        handler.answer(status, body, self._idem_headers())

    def _idem_headers(self, *extra):
        if self.idem_key is None:
            return extra
        return (("Idempotency-Key", self.idem_key),) + extra

    def release(self):
        """A claimed key whose request never ran (fault, drop, crash) is freed."""
        if self.idem_entry is not None and not self.replay:
            with self.fake.lock:
                self.fake.idem_release(self.idem_key, self.idem_entry)
            self.idem_entry = None


def bearer_key(headers):
    scheme, _, key = headers.get("Authorization", "").strip().partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def masked(key):
    return key[:8] + "*" * 4 + key[-4:] if len(key) > 12 else "*" * len(key)


# --------------------------------------------------------------------------------------------
# Command line


def price_arg(text):
    price_id, sep, interval = text.rpartition(":")
    if not sep or not price_id or interval not in PERIOD_SECONDS:
        raise argparse.ArgumentTypeError(f"expected ID:month or ID:year, got {text!r}")
    return price_id, interval


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Local fake of the Stripe API for tests.")
    parser.add_argument("--port", type=int, default=0, help="0: an ephemeral port")
    parser.add_argument("--port-file", help="written atomically with the port once listening")
    parser.add_argument("--secret-key", default="sk_test_inklet_fake")
    parser.add_argument("--webhook-secret", default="whsec_inklet_fake")
    parser.add_argument("--price", type=price_arg, action="append", metavar="ID:INTERVAL",
                        help="repeatable; default price_inklet_monthly:month and "
                             "price_inklet_yearly:year")
    args = parser.parse_args(argv)
    if not args.price:
        args.price = [("price_inklet_monthly", "month"), ("price_inklet_yearly", "year")]
    return args


def main(argv=None):
    return fakelib.run(Handler, parse_args, lambda args: FakeStripe(
        args.secret_key, args.webhook_secret, args.price), argv)


if __name__ == "__main__":
    sys.exit(main())
