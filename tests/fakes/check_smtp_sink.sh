#!/usr/bin/env bash
# tests/fakes/check_smtp_sink.sh — checks tests/fakes/smtp_sink.py against real clients: curl's
# CLI (libcurl, as inkletd uses) and Python's smtplib, plus a raw-socket dialogue for the answers
# a client library would hide. Exits non-zero when a check fails. Needs /usr/bin/python3, curl and
# openssl; the STARTTLS-on-a-non-loopback-address checks are skipped (with a note) on a machine
# without one. Takes about ten seconds.
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SINK="$HERE/smtp_sink.py"
WORK="$(mktemp -d /tmp/check_smtp_sink.XXXXXX)"
PIDS=()
failures=0
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ((failures == 0)); then rm -rf "$WORK"; else echo "check_smtp_sink: logs kept in $WORK" >&2; fi
}
trap cleanup EXIT

ok() { printf 'ok   %s\n' "$1"; }
bad() {
  printf 'FAIL %s\n' "$1" >&2
  failures=$((failures + 1))
}
check() { # check NAME COMMAND...: the command must succeed
  local name="$1"
  shift
  if "$@" >>"$WORK/checks.log" 2>&1; then ok "$name"; else bad "$name (see $WORK/checks.log)"; fi
}
refused() { # refused NAME COMMAND...: the command must fail
  local name="$1"
  shift
  if "$@" >>"$WORK/checks.log" 2>&1; then bad "$name (it succeeded)"; else ok "$name"; fi
}

# start_sink NAME ARGS...: starts a sink, waits for its port file; sets CTL (control base URL),
# SMTP, SMTPS (ports), CA (file) and SINK_PID.
start_sink() {
  local name="$1" i
  shift
  rm -f "$WORK/$name.port"
  /usr/bin/python3 "$SINK" --port 0 --port-file "$WORK/$name.port" "$@" >"$WORK/$name.log" 2>&1 &
  SINK_PID=$!
  PIDS+=("$SINK_PID")
  for ((i = 0; i < 100; i++)); do
    [[ -s "$WORK/$name.port" ]] && break
    sleep 0.05
  done
  [[ -s "$WORK/$name.port" ]] || { cat "$WORK/$name.log" >&2; bad "$name started"; exit 1; }
  CTL="http://127.0.0.1:$(cat "$WORK/$name.port")"
  local info
  info="$(curl -fsS "$CTL/_fake/info")"
  SMTP="$(jget "$info" smtpPort)"
  SMTPS="$(jget "$info" smtpsPort)"
  CA="$(jget "$info" caFile)"
}
jget() { /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
mode() { curl -fsS -X POST "$CTL/_fake/mode" -H 'Content-Type: application/json' -d "$1" >/dev/null; }
count_messages() {
  curl -fsS "$CTL/_fake/messages" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["messages"]))'
}
expect_messages() { # expect_messages N
  [[ "$(count_messages)" == "$1" ]]
}
last_session_has() { # last_session_has TEXT: the newest session's log mentions TEXT
  curl -fsS "$CTL/_fake/sessions" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)["sessions"][-1]
sys.exit(0 if sys.argv[1] in json.dumps(s) else 1)' "$1"
}

# A well-formed mail: CRLF line ends, a dot-led line (curl stuffs it), RFC 2047 subject.
printf '%s\r\n' 'From: Inklet <no-reply@localhost>' 'To: b@y.test' \
  'Subject: =?UTF-8?B?UsOpaW5pdGlhbGlzZXI=?=' 'Date: Mon, 01 Jan 2024 00:00:00 +0000' \
  'Message-ID: <check@localhost>' 'MIME-Version: 1.0' \
  'Content-Type: text/plain; charset=utf-8' '' 'Hello.' '.a dot-led line' >"$WORK/msg.eml"

send() { # send URL [curl args...]: one mail with curl
  local url="$1"
  shift
  curl -sS --max-time 10 "$url" --mail-from a@x.test --mail-rcpt b@y.test -T "$WORK/msg.eml" "$@"
}

# ------------------------------------------------------------------ loopback: curl
start_sink plain --smtps-port 0 --maildir "$WORK/mail"
check "curl: plain SMTP on loopback" send "smtp://127.0.0.1:$SMTP"
check "curl: STARTTLS (--ssl-reqd) verifies the CA" send "smtp://127.0.0.1:$SMTP" --ssl-reqd --cacert "$CA"
check "curl: smtps verifies the CA" send "smtps://127.0.0.1:$SMTPS" --cacert "$CA"
check "curl: smtps as localhost (DNS SAN)" send "smtps://localhost:$SMTPS" --cacert "$CA"
refused "curl: smtps without the CA is refused" send "smtps://127.0.0.1:$SMTPS"
check "four messages kept" expect_messages 4
check "maildir has 1.eml .. 4.eml" test -s "$WORK/mail/1.eml" -a -s "$WORK/mail/4.eml"
check "messages: parsed fields, tls flags, no defects" /usr/bin/python3 - "$CTL" "$WORK/mail" <<'PY'
import json, sys, urllib.request
ctl, maildir = sys.argv[1], sys.argv[2]
msgs = json.load(urllib.request.urlopen(ctl + "/_fake/messages"))["messages"]
assert [m["id"] for m in msgs] == [1, 2, 3, 4], msgs
assert [m["tls"] for m in msgs] == [False, True, True, True]
for m in msgs:
    assert m["mailFrom"] == "a@x.test" and m["rcptTo"] == ["b@y.test"], m
    assert m["subject"] == "Réinitialiser", m["subject"]
    assert m["from"] == "Inklet <no-reply@localhost>" and m["to"] == "b@y.test"
    assert m["messageId"] == "<check@localhost>" and m["contentType"] == "text/plain"
    assert m["text"] == "Hello.\n.a dot-led line\n", repr(m["text"])
    assert m["html"] is None and m["defects"] == [], m["defects"]
    assert ["Subject", "Réinitialiser"] in m["headers"]
    with open(f"{maildir}/{m['id']}.eml", "rb") as f:
        assert f.read().decode() == m["raw"]
PY

# ------------------------------------------------------------------ loopback: faults with curl
for fault in tempfail permfail drop; do
  for stage in connect ehlo mail rcpt data dot; do
    mode "{\"mode\":\"$fault\",\"stage\":\"$stage\"}"
    refused "curl: $fault at $stage fails the send" send "smtp://127.0.0.1:$SMTP"
    check "  ... and the session log shows it" last_session_has "$fault at $stage"
  done
done
mode '{"mode":"accept"}'
check "  ... and nothing was stored" expect_messages 4

mode '{"mode":"tempfail","stage":"mail","count":2}'
refused "count 2: first session fails" send "smtp://127.0.0.1:$SMTP"
refused "count 2: second session fails" send "smtp://127.0.0.1:$SMTP"
check "count 2: third session is accepted" send "smtp://127.0.0.1:$SMTP"
check "count 2: the mode is accept again" sh -c "curl -fsS $CTL/_fake/mode | grep -q '\"accept\"'"

mode '{"mode":"down"}'
refused "down: connection refused" send "smtp://127.0.0.1:$SMTP"
refused "down: smtps refused too" send "smtps://127.0.0.1:$SMTPS" --cacert "$CA"
mode '{"mode":"accept"}'
check "accept again: same port listens" send "smtp://127.0.0.1:$SMTP"
check "accept again: same smtps port" send "smtps://127.0.0.1:$SMTPS" --cacert "$CA"

mode '{"mode":"stall","stage":"data"}'
refused "stall at data: curl times out" send "smtp://127.0.0.1:$SMTP" --max-time 2
check "  ... the stalled session is still open" sh -c "curl -fsS $CTL/_fake/sessions | /usr/bin/python3 -c 'import json,sys; s=json.load(sys.stdin)[\"sessions\"][-1]; sys.exit(s[\"ended\"] is not None)'"
mode '{"mode":"accept"}'
sleep 0.2
check "  ... and ends when the mode changes" last_session_has "closed when the mode changed"

check "control API refuses bad modes" /usr/bin/python3 - "$CTL" <<'PY'
import json, sys, urllib.error, urllib.request
ctl = sys.argv[1]
for body in ({"mode": "bogus"}, {"mode": "tempfail"}, {"mode": "stall", "stage": "later"},
             {"mode": "down", "count": 1}, {"mode": "accept", "typo": 1}, {"stage": "mail"},
             {"mode": "drop", "stage": "rcpt", "count": 0}):
    req = urllib.request.Request(ctl + "/_fake/mode", json.dumps(body).encode(), method="POST")
    try:
        urllib.request.urlopen(req)
        raise SystemExit(f"accepted {body}")
    except urllib.error.HTTPError as err:
        assert err.code == 400, (body, err.code)
answer = json.load(urllib.request.urlopen(urllib.request.Request(
    ctl + "/_fake/mode", b'{"mode":"permfail","stage":"rcpt"}', method="POST")))
assert answer["mode"] == "permfail" and answer["stage"] == "rcpt", answer
urllib.request.urlopen(urllib.request.Request(ctl + "/_fake/mode", b'{"mode":"accept"}',
                                              method="POST"))
PY

# ------------------------------------------------------------------ loopback: the dialogue
check "smtplib and raw SMTP: replies, dot-unstuffing, defects, STARTTLS reset" \
  /usr/bin/python3 - "$CTL" "$SMTP" "$CA" <<'PY'
import json, smtplib, socket, ssl, sys, urllib.request
ctl, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def control(method, path):
    req = urllib.request.Request(ctl + path, method=method)
    return json.load(urllib.request.urlopen(req))

control("DELETE", "/_fake/messages")

class Raw:
    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")
        assert self.reply()[0] == 220

    def reply(self):
        lines = []
        while True:
            line = self.file.readline().decode()
            assert line.endswith("\r\n"), repr(line)
            lines.append(line[4:-2])
            if line[3] == " ":
                return int(line[:3]), lines

    def cmd(self, data, want):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode() + b"\r\n")
        code, lines = self.reply()
        assert code == want, (data[:60], want, code, lines)
        return lines

r = Raw()
r.cmd("MAIL FROM:<a@x.test>", 503)              # EHLO first
r.cmd("FOO", 500)
ext = r.cmd("EHLO client.test", 250)
assert "8BITMIME" in ext and "SIZE 10485760" in ext and "STARTTLS" in ext, ext
assert not any(e.startswith("AUTH") for e in ext), ext   # no --user: no AUTH
assert "PIPELINING" not in ext
r.cmd("AUTH PLAIN AGZvbwBiYXI=", 502)
r.cmd("RCPT TO:<b@y.test>", 503)                 # MAIL first
r.cmd("DATA", 503)
r.cmd("NOOP", 250)
r.cmd("VRFY someone", 252)
r.cmd("MAIL FROM:<a@x.test> SIZE=99999999", 552)
r.cmd("MAIL FROM:<a@x.test> SMTPUTF8", 555)
r.cmd("MAIL FROM:<not an address>", 501)
r.cmd("MAIL FROM:<>", 250)                       # the null reverse path
r.cmd("MAIL FROM:<a@x.test>", 503)               # nested
r.cmd("RSET", 250)
r.cmd("MAIL FROM:<a@x.test>", 250)
r.cmd("DATA", 554)                               # no recipients
r.cmd("RCPT TO:<b@y.test>", 250)
r.cmd("RCPT TO:<c@y.test>", 250)
r.cmd("RCPT TO:<ü@y.test>", 553)                 # no SMTPUTF8
r.cmd("DATA", 354)
# dot-stuffed lines, a bare LF and a fake end of data "\n.\n" that must not end it
r.cmd(b"Subject: one\r\n\r\n..stuffed\r\nx\n.\ny\r\n.\r\n", 250)
r.cmd("X" * 1200, 500)                           # a command line over 998 octets
r.cmd("MAIL FROM:<a@x.test>", 250)
r.cmd("RCPT TO:<b@y.test>", 250)
r.cmd("DATA", 354)
r.cmd(b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n.\r\n", 500)   # refused, not stored
r.cmd("MAIL FROM:<a@x.test>", 250)
r.cmd("RCPT TO:<b@y.test>", 250)
r.cmd("DATA", 354)
r.cmd("Subject: 8bit\r\n\r\ncaf\u00e9\r\n.\r\n".encode(), 250)      # no BODY=8BITMIME
r.cmd("MAIL FROM:<a@x.test> BODY=8BITMIME", 250)
r.cmd("RCPT TO:<b@y.test>", 250)
r.cmd("DATA", 354)
r.cmd("Subject: 8bit ok\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
      "caf\u00e9\r\n.\r\n".encode(), 250)
r.cmd("HELO again.test", 250)
r.cmd("QUIT", 221)

msgs = control("GET", "/_fake/messages")["messages"]
assert len(msgs) == 3, [m["subject"] for m in msgs]
one, eight, eight_ok = msgs
assert one["mailFrom"] == "a@x.test" and one["rcptTo"] == ["b@y.test", "c@y.test"], one
assert one["raw"] == "Subject: one\r\n\r\n.stuffed\r\nx\n.\ny\r\n", repr(one["raw"])
assert one["text"] == ".stuffed\nx\n.\ny\n", repr(one["text"])
assert one["defects"] == ["bare LF in DATA"], one["defects"]
assert eight["defects"] == ["8-bit data without BODY=8BITMIME"], eight["defects"]
assert eight_ok["defects"] == [] and eight_ok["text"] == "café\n", eight_ok
session = control("GET", "/_fake/sessions")["sessions"][-1]
assert session["ended"] == "quit" and session["ehlo"] == "again.test", session
assert "command line over 998 octets" in session["defects"], session["defects"]
assert "line over 998 octets in DATA" in session["defects"], session["defects"]
assert any(c.startswith("AUTH PLAIN ...") for c in session["commands"]), session["commands"]
assert not any("AGZvbwBiYXI" in c for c in session["commands"])   # credentials not logged

# STARTTLS: commands pipelined behind it are dropped, and the state is forgotten
r = Raw()
r.cmd("EHLO client.test", 250)
r.cmd("MAIL FROM:<a@x.test>", 250)
r.sock.sendall(b"STARTTLS\r\nRSET\r\n")
assert r.reply()[0] == 220
ctx = ssl.create_default_context(cafile=ca)
r.sock = ctx.wrap_socket(r.sock, server_hostname="127.0.0.1")
r.file = r.sock.makefile("rb")
r.cmd("RCPT TO:<b@y.test>", 503)                 # the MAIL before TLS is gone
r.cmd("MAIL FROM:<a@x.test>", 503)               # so is the EHLO
ext = r.cmd("EHLO client.test", 250)
assert "STARTTLS" not in ext, ext
r.cmd("STARTTLS", 503)
r.cmd("QUIT", 221)
session = control("GET", "/_fake/sessions")["sessions"][-1]
assert session["tls"] and session["tlsVersion"].startswith("TLSv1."), session
assert session["defects"] == ["data pipelined after STARTTLS (discarded)"], session

# smtplib: what Python's client does (dot-stuffing, STARTTLS, several recipients)
control("DELETE", "/_fake/messages")
with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
    client.starttls(context=ssl.create_default_context(cafile=ca))
    client.ehlo("smtplib.test")
    refused = client.sendmail("a@x.test", ["b@y.test", "c@y.test"],
                              "Subject: smtplib\r\n\r\n.one\r\n..two\r\n")
    assert refused == {}, refused
(msg,) = control("GET", "/_fake/messages")["messages"]
assert msg["tls"] and msg["rcptTo"] == ["b@y.test", "c@y.test"] and msg["subject"] == "smtplib"
assert msg["text"] == ".one\n..two\n", repr(msg["text"])

# exact codes of each fault
for mode, code in (("tempfail", 451), ("permfail", 550)):
    for stage in ("mail", "rcpt", "data", "dot"):
        urllib.request.urlopen(urllib.request.Request(
            ctl + "/_fake/mode", json.dumps({"mode": mode, "stage": stage}).encode(),
            method="POST"))
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.sendmail("a@x.test", ["b@y.test"], "Subject: f\r\n\r\nx\r\n")
            raise AssertionError(f"{mode} at {stage} was accepted")
        except smtplib.SMTPRecipientsRefused as err:
            assert stage == "rcpt" and err.recipients["b@y.test"][0] == code, err
        except smtplib.SMTPResponseException as err:
            assert err.smtp_code == code, (mode, stage, err.smtp_code)
for mode, code in (("tempfail", 421), ("permfail", 554)):
    urllib.request.urlopen(urllib.request.Request(
        ctl + "/_fake/mode", json.dumps({"mode": mode, "stage": "connect"}).encode(),
        method="POST"))
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=5)
        raise AssertionError(f"{mode} at connect was accepted")
    except smtplib.SMTPConnectError as err:
        assert err.smtp_code == code, err
urllib.request.urlopen(urllib.request.Request(ctl + "/_fake/mode", b'{"mode":"accept"}',
                                              method="POST"))
assert len(control("GET", "/_fake/messages")["messages"]) == 1
PY

# ------------------------------------------------------------------ AUTH on loopback (no TLS needed)
start_sink auth-lo --user u --password 'p w' --no-starttls
check "curl: AUTH on loopback without TLS" send "smtp://127.0.0.1:$SMTP" --user 'u:p w'
refused "curl: wrong password is refused" send "smtp://127.0.0.1:$SMTP" --user 'u:nope'
refused "curl: --ssl-reqd without STARTTLS offered fails" send "smtp://127.0.0.1:$SMTP" \
  --user 'u:p w' --ssl-reqd --cacert "$CA"
check "AUTH PLAIN/LOGIN dialogue, 530 without AUTH" /usr/bin/python3 - "$CTL" "$SMTP" <<'PY'
import base64, json, smtplib, sys, urllib.request
ctl, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
    c.ehlo("t")
    assert c.has_extn("auth") and not c.has_extn("starttls"), c.esmtp_features
    assert c.docmd("MAIL FROM:<a@x.test>")[0] == 530
    assert c.docmd("STARTTLS")[0] == 502
    code, text = c.docmd("AUTH PLAIN " + base64.b64encode(b"\0u\0wrong").decode())
    assert code == 535 and text.startswith(b"5.7.8"), (code, text)
    assert c.docmd("AUTH PLAIN")[0] == 334                   # the continuation form
    assert c.docmd(base64.b64encode(b"\0u\0p w").decode())[0] == 235
    assert c.docmd("AUTH PLAIN =")[0] == 503                 # already authenticated
    c.sendmail("a@x.test", ["b@y.test"], "Subject: plain\r\n\r\nx\r\n")
with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
    c.ehlo("t")
    assert c.docmd("AUTH LOGIN")[0] == 334
    assert c.docmd(base64.b64encode(b"u").decode())[0] == 334
    assert c.docmd(base64.b64encode(b"p w").decode())[0] == 235
    c.sendmail("a@x.test", ["b@y.test"], "Subject: login\r\n\r\nx\r\n")
with smtplib.SMTP("127.0.0.1", port, timeout=5) as c:
    c.login("u", "p w")                                       # smtplib's own choice of mechanism
    c.sendmail("a@x.test", ["b@y.test"], "Subject: smtplib login\r\n\r\nx\r\n")
msgs = json.load(urllib.request.urlopen(ctl + "/_fake/messages"))["messages"]
assert [m["authUser"] for m in msgs] == ["u"] * 4, msgs   # curl's mail first
assert all(not m["tls"] for m in msgs)
PY

# ------------------------------------------------------------------ STARTTLS on a non-loopback address
ADDR="$(ip -4 -o addr show up scope global 2>/dev/null | awk '{sub(/\/.*/, "", $4); print $4; exit}')"
if [[ -z "$ADDR" ]]; then
  echo "skip STARTTLS on a non-loopback address: this machine has none"
else
  start_sink auth-net --listen "$ADDR" --san "IP:$ADDR" --smtps-port 0 --user u --password p
  check "curl: STARTTLS + AUTH on $ADDR" send "smtp://$ADDR:$SMTP" --ssl-reqd --cacert "$CA" --user u:p
  check "curl: smtps + AUTH on $ADDR" send "smtps://$ADDR:$SMTPS" --cacert "$CA" --user u:p
  refused "curl: without TLS no AUTH is offered, so MAIL gets 530" send "smtp://$ADDR:$SMTP" --user u:p
  refused "curl: wrong password over STARTTLS" send "smtp://$ADDR:$SMTP" --ssl-reqd --cacert "$CA" --user u:x
  check "only the two TLS sends were stored, with authUser" /usr/bin/python3 - "$CTL" "$ADDR" "$SMTP" <<'PY'
import json, smtplib, sys, urllib.request
ctl, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
msgs = json.load(urllib.request.urlopen(ctl + "/_fake/messages"))["messages"]
assert [(m["tls"], m["authUser"]) for m in msgs] == [(True, "u"), (True, "u")], msgs
with smtplib.SMTP(addr, port, timeout=5) as c:
    c.ehlo("t")
    assert c.has_extn("starttls") and not c.has_extn("auth"), c.esmtp_features
    assert c.docmd("AUTH PLAIN AHUAcA==")[0] == 538             # encryption required
sessions = json.load(urllib.request.urlopen(ctl + "/_fake/sessions"))["sessions"]
assert sessions[0]["auth"] == "ok (PLAIN)" and sessions[0]["tls"], sessions[0]
assert [s["auth"] for s in sessions[2:4]] == [None, "failed"], sessions
PY
  refused "the sink does not listen on loopback then" send "smtp://127.0.0.1:$SMTP"
fi

# ------------------------------------------------------------------ SIGTERM while a session stalls
start_sink stall
mode '{"mode":"stall","stage":"connect"}'
exec 3<>"/dev/tcp/127.0.0.1/$SMTP"
sleep 0.3
kill -TERM "$SINK_PID"
exited=0
for ((i = 0; i < 20; i++)); do
  kill -0 "$SINK_PID" 2>/dev/null || { exited=1; break; }
  sleep 0.1
done
exec 3>&-
if ((exited)) && wait "$SINK_PID"; then ok "SIGTERM exits 0 at once while stalled"; else bad "SIGTERM while stalled"; fi

if ((failures)); then
  echo "check_smtp_sink: $failures check(s) failed" >&2
  exit 1
fi
echo "check_smtp_sink: all checks passed"
