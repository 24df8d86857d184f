#!/usr/bin/env python3
"""Writes signed Stripe webhook deliveries for the `webhook` bench scenario.

One line per delivery: the Stripe-Signature header, a tab, the raw JSON body. Every event has
its own id and its own subscription (customer.subscription.updated for CUSTOMER), signed the way
Stripe signs (HMAC-SHA256 over "<t>.<body>" with the whole endpoint secret), t = now.

usage: webhook_events.py SECRET CUSTOMER COUNT > events.tsv
"""
import hashlib
import hmac
import json
import secrets
import sys
import time


def main():
    secret, customer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = int(time.time())
    tag = secrets.token_hex(4)
    out = sys.stdout
    for i in range(count):
        sub = {
            "id": f"sub_bench{tag}{i}", "object": "subscription", "customer": customer,
            "status": "active", "created": now - 86400, "current_period_start": now - 86400,
            "current_period_end": now + 29 * 86400, "cancel_at_period_end": False,
            "items": {"object": "list", "data": [{"id": f"si_bench{tag}{i}",
                      "price": {"id": "price_inklet_monthly",
                                "recurring": {"interval": "month", "interval_count": 1}}}]},
        }
        event = {"id": f"evt_bench{tag}{i}", "object": "event", "api_version": "2024-06-20",
                 "created": now, "type": "customer.subscription.updated", "livemode": False,
                 "pending_webhooks": 1, "data": {"object": sub}}
        body = json.dumps(event, separators=(",", ":"))
        mac = hmac.new(secret.encode(), f"{now}.{body}".encode(), hashlib.sha256).hexdigest()
        out.write(f"t={now},v1={mac}\t{body}\n")


if __name__ == "__main__":
    main()
