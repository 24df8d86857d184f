#!/usr/bin/python3
"""A local SMTP server that keeps what it receives, for inkletd's mail tests and scripts/run.sh.

Scope (usage in tests/fakes/README.md):

* Real SMTP (RFC 5321) on loopback, or on the address given with ``--listen``: EHLO/HELO,
  STARTTLS (RFC 3207) and implicit TLS ("smtps") with a throwaway CA made by the ``openssl``
  command, AUTH PLAIN and LOGIN (RFC 4954), MAIL/RCPT/DATA with dot-unstuffing, RSET, NOOP,
  VRFY, QUIT.  It is strict where a lenient server would hide a client's mistake: lines over
  998 octets, bare CR or LF, 8-bit data without BODY=8BITMIME, commands pipelined ahead of
  STARTTLS, and the end of data is only ever CRLF "." CRLF (no SMTP smuggling).
* Every accepted message is kept (and, with ``--maildir``, written as ``<n>.eml``) and served
  parsed by the control API under ``/_fake/`` (fakelib's HTTP plumbing, JSON, no auth), with a
  log of every SMTP session.
* Faults on demand (``POST /_fake/mode``): refuse connections, answer 4xx or 5xx, stall or drop
  the connection at a chosen stage of the dialogue, for every session or the next k.

Concurrency: one thread per SMTP connection and per listening socket, fakelib's threading HTTP
server for the control API; all state sits behind one lock (with a condition on it that stalled
sessions wait on), never held while talking to a socket.

Python 3.11 standard library only, the ``openssl`` command, and fakelib.py next to this file.
"""

import argparse
import base64
import binascii
import email
import email.policy
import hmac
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # fakelib.py is next to us
import fakelib  # noqa: E402
from fakelib import to_json  # noqa: E402

MAX_SIZE = 10485760  # advertised with SIZE; bigger messages get 552
MAX_LINE = 998  # octets before CRLF (RFC 5321 4.5.3.1.6); longer lines are refused
MAX_RCPT = 100  # RFC 5321 4.5.3.1.8's minimum
IDLE_TIMEOUT = 300  # seconds a session may be silent (RFC 5321 4.5.3.2.7)
TLS_TIMEOUT = 30  # seconds for a TLS handshake
MAX_KEPT_MESSAGES = 1000  # in memory; the maildir keeps everything
MAX_KEPT_SESSIONS = 1000
MAX_LOGGED_COMMANDS = 200  # per session
MODES = ("accept", "down", "tempfail", "permfail", "stall", "drop")
STAGES = ("connect", "ehlo", "auth", "mail", "rcpt", "data", "dot")
CRLF = b"\r\n"

# A mailbox as RFC 5321 4.1.2 spells it (dot-string or quoted local part; a domain or an
# address literal); loose on purpose about what a domain may look like.
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+"
QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[\x20-\x7e])*"'
DOMAIN = r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Za-z:.]+\])"
MAILBOX = re.compile(rf"(?:{ATOM}|{QUOTED})@{DOMAIN}")
PATH_ARG = re.compile(r"(FROM|TO):\s*<([^<>]*)>(.*)", re.IGNORECASE | re.DOTALL)
PARAM = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:=([\x21-\x3c\x3e-\x7e]+))?")
EML_NAME = re.compile(r"([0-9]{1,9})\.eml")
SAN = re.compile(r"(IP:[0-9A-Fa-f:.]+|DNS:[A-Za-z0-9*.-]+)")


def now():
    return time.time()


def clean_text(text):
    """A str that JSON (and UTF-8) can carry: the email package keeps undecodable bytes as lone
    surrogates, which would make the whole answer fail to encode."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def printable(data, limit=200):
    """A command line as it goes into the session log and stderr: no control characters."""
    text = data.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------------------------
# Errors (control API)


class SinkError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status

    def body(self):
        return {"error": str(self)}


def control_error(message, status=400):
    return SinkError(status, message)


FIELDS = fakelib.ControlFields(control_error)


# --------------------------------------------------------------------------------------------
# The throwaway certificate authority


def run_openssl(*args):
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"smtp_sink: openssl {args[0]} failed: {done.stderr.strip()}")


def make_certificates(directory, sans):
    """A self-signed CA and a server certificate it signs, valid for 127.0.0.1, localhost and
    every extra SAN; returns (ca.pem, server.pem, server.key).  Made fresh at every start so
    that the SANs always match the command line."""
    ca_key, ca_pem = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr = os.path.join(directory, "server.key"), os.path.join(directory, "server.csr")
    pem, ext = os.path.join(directory, "server.pem"), os.path.join(directory, "server.ext")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    old_umask = os.umask(0o077)  # the keys are secrets of this run only
    try:
        run_openssl("req", "-x509", *curve, "-keyout", ca_key, "-out", ca_pem, "-days", "30",
                    "-subj", "/CN=inklet smtp_sink throwaway CA",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run_openssl("req", *curve, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
        with open(ext, "w", encoding="ascii") as out:
            out.write("basicConstraints=critical,CA:FALSE\n"
                      "keyUsage=critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage=serverAuth\n"
                      f"subjectAltName={','.join(['IP:127.0.0.1', 'DNS:localhost', *sans])}\n")
        run_openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                    "-CAcreateserial", "-days", "30", "-out", pem, "-extfile", ext)
    finally:
        os.umask(old_umask)
    os.chmod(ca_pem, 0o644)  # inkletd may run as another user (scripts/run.sh does not)
    return ca_pem, pem, key


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


# --------------------------------------------------------------------------------------------
# Messages


def parse_headers(msg, defects):
    """[[name, decoded value], ...] in order; a header the email package cannot decode keeps
    its raw value and becomes a defect instead of failing the whole message."""
    out = []
    for name, raw in msg.raw_items():
        try:
            value = msg.policy.header_fetch_parse(name, raw)
            defects.extend(f"{name}: {type(d).__name__}: {d}" for d in value.defects)
            value = str(value)
        except Exception as exc:  # the email package raises many kinds on hostile input
            defects.append(f"{name}: cannot be decoded: {exc}")
            value = str(raw)
        out.append([name, value])
    return out


def body_text(msg, subtype, defects):
    try:
        part = msg.get_body(preferencelist=(subtype,))
        # SMTP's CRLF is transport framing; a test searching the text wants plain lines
        return None if part is None else part.get_content().replace("\r\n", "\n")
    except Exception as exc:
        defects.append(f"text/{subtype} part cannot be decoded: {exc}")
        return None


def first_header(headers, name):
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def describe_message(ident, raw, mail_from, rcpts, tls, auth_user, transport_defects):
    """The /_fake/messages entry for one accepted message."""
    defects = list(transport_defects)
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as exc:
        msg = None
        defects.append(f"cannot be parsed: {exc}")
    entry = {"id": ident, "mailFrom": mail_from, "rcptTo": list(rcpts), "tls": tls,
             "authUser": auth_user, "size": len(raw),
             "raw": raw.decode("utf-8", "replace"), "headers": [], "subject": None,
             "from": None, "to": None, "messageId": None, "date": None, "text": None,
             "html": None, "contentType": None, "parts": [], "defects": defects,
             "received": now()}
    if msg is None:
        return entry
    headers = parse_headers(msg, defects)
    entry["headers"] = headers
    for key, name in (("subject", "subject"), ("from", "from"), ("to", "to"),
                      ("messageId", "message-id"), ("date", "date")):
        entry[key] = first_header(headers, name)
    entry["contentType"] = msg.get_content_type()
    entry["text"] = body_text(msg, "plain", defects)
    entry["html"] = body_text(msg, "html", defects)
    for part in msg.walk():
        defects.extend(f"{part.get_content_type()}: {type(d).__name__}: {d}"
                       for d in part.defects)
        cte = part.get("Content-Transfer-Encoding")
        entry["parts"].append({"contentType": part.get_content_type(),
                               "charset": part.get_content_charset(),
                               "transferEncoding": None if cte is None else str(cte)})
    return entry


def sanitize(obj):
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, list):
        return [sanitize(v) for v in obj]
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    return obj


def last_maildir_id(directory):
    """The highest <n>.eml in `directory` (0 if none): scripts/run.sh keeps its maildir from one
    run to the next, and numbering on after it keeps `ls -t` and the ids telling the truth."""
    if not directory:
        return 0
    names = (EML_NAME.fullmatch(name) for name in os.listdir(directory))
    return max((int(found.group(1)) for found in names if found), default=0)


def write_maildir(directory, ident, raw):
    """<n>.eml appears whole (temp file + rename), so `ls -t` never shows half a message."""
    final = os.path.join(directory, f"{ident}.eml")
    tmp = os.path.join(directory, f".{ident}.eml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(raw)
    os.replace(tmp, final)


# --------------------------------------------------------------------------------------------
# Listening sockets


class Listener:
    """One listening SMTP socket ("smtp" or "smtps") with its accept thread.  `close` makes
    connections to its port refused, `open` listens on the same port again."""

    def __init__(self, sink, kind, address, port):
        self.sink, self.kind, self.address, self.port = sink, kind, address, port
        self.sock = self.thread = None

    def open(self):
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True,
                                       name=f"{self.kind}-accept")
        self.thread.start()

    def close(self):
        """Returns once the port is closed.  shutdown() wakes the thread blocked in accept()
        (close() alone would not on Linux); the thread closes the socket itself."""
        sock, thread = self.sock, self.thread
        self.sock = self.thread = None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        thread.join(5)
        sock.close()

    def _accept_loop(self, sock):
        while True:
            try:
                conn, peer = sock.accept()
            except OSError:
                break
            threading.Thread(target=Session(self.sink, conn, peer, self.kind).run,
                             daemon=True, name=f"{self.kind}-session").start()
        try:
            sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# The state


class Fault:
    """The fault a POST /_fake/mode set; `gen` tells one setting from the next."""

    def __init__(self, gen, mode, stage, count):
        self.gen, self.mode, self.stage, self.remaining = gen, mode, stage, count
        self.counted = count is not None


class Sink(fakelib.FakeState):
    """Everything the sessions and the control API share.  Methods expect self.lock held
    unless they say otherwise."""

    def __init__(self, args, ca_file, cert, key):
        super().__init__()
        self.cond = threading.Condition(self.lock)  # stalled sessions wait for a mode change
        self.mode_lock = threading.Lock()
        self.args = args
        self.user, self.password = args.user, args.password
        self.ca_file = ca_file
        self.tls = server_context(cert, key)
        self.starttls = not args.no_starttls
        self.maildir = args.maildir
        self.mode_gen = 0
        self.fault = None  # None: accept (or down)
        self.down = False
        self.messages = []
        self.message_seq = last_maildir_id(self.maildir)  # a kept maildir is never overwritten
        self.dropped_messages = 0  # fell out of memory (MAX_KEPT_MESSAGES)
        self.sessions = []
        self.session_seq = 0
        self.listeners = [Listener(self, "smtp", args.listen, args.smtp_port)]
        if args.smtps_port is not None:
            self.listeners.append(Listener(self, "smtps", args.listen, args.smtps_port))
        for listener in self.listeners:
            listener.open()

    def port_of(self, kind):
        for listener in self.listeners:
            if listener.kind == kind:
                return listener.port
        return None

    # ---- used by the sessions

    def new_session(self, record):
        self.session_seq += 1
        record["id"] = self.session_seq
        self.sessions.append(record)
        del self.sessions[:-MAX_KEPT_SESSIONS]
        return self.session_seq

    def claim_fault(self, session):
        """The fault that applies to `session` now, or None.  A counted fault is claimed by a
        session the first time it looks after the fault was set (so a connection the client
        keeps open between mails counts too); it keeps the claim until the mode changes."""
        fault = self.fault
        if fault is not None and fault.counted and session.seen_gen != fault.gen:
            session.seen_gen = fault.gen
            if fault.remaining > 0:
                fault.remaining -= 1
                session.claim = fault
                if fault.remaining == 0:
                    self.fault = None  # the next sessions are accepted again
        if fault is not None and not fault.counted:
            return fault
        claim = session.claim
        return claim if claim is not None and claim.gen == self.mode_gen else None

    def store(self, raw, mail_from, rcpts, tls, auth_user, defects):
        """Keeps an accepted message; returns its id.  The lock is taken here: parsing and
        the maildir write happen outside it."""
        with self.lock:
            self.message_seq += 1
            ident = self.message_seq
        entry = sanitize(describe_message(ident, raw, mail_from, rcpts, tls, auth_user,
                                          defects))
        if self.maildir:
            write_maildir(self.maildir, ident, raw)
        with self.lock:
            self.messages.append(entry)
            self.messages.sort(key=lambda m: m["id"])  # two sessions may finish out of order
            if len(self.messages) > MAX_KEPT_MESSAGES:
                self.dropped_messages += len(self.messages) - MAX_KEPT_MESSAGES
                del self.messages[:-MAX_KEPT_MESSAGES]
        return ident

    # ---- control API: (path ids, JSON payload, query) -> (status, body)

    def info(self, ids, payload, query):
        return 200, {"smtpPort": self.port_of("smtp"), "smtpsPort": self.port_of("smtps"),
                     "caFile": self.ca_file, "listen": self.args.listen,
                     "auth": self.user is not None, "starttls": self.starttls,
                     "maildir": self.maildir, "droppedMessages": self.dropped_messages}

    def list_messages(self, ids, payload, query):
        return 200, {"messages": self.messages}

    def clear_messages(self, ids, payload, query):
        self.messages.clear()
        return 200, {"ok": True}

    def list_sessions(self, ids, payload, query):
        return 200, {"sessions": self.sessions}

    def clear_sessions(self, ids, payload, query):
        self.sessions.clear()
        return 200, {"ok": True}

    def get_mode(self, ids, payload, query):
        fault = self.fault
        if self.down:
            return 200, {"mode": "down", "stage": None, "count": None}
        if fault is None:
            return 200, {"mode": "accept", "stage": None, "count": None}
        return 200, {"mode": fault.mode, "stage": fault.stage,
                     "count": fault.remaining if fault.counted else None}

    def set_mode(self, ids, payload, query):
        """Called without the lock: opening and closing listeners must not block sessions."""
        with self.mode_lock:  # one mode change at a time, listeners included
            return self._set_mode(payload)

    def _set_mode(self, payload):
        payload = FIELDS.check_fields(payload, ("mode", "stage", "count"), ("mode",))
        mode = FIELDS.field_typed(payload, "mode", str, "a string")
        stage = FIELDS.field_typed(payload, "stage", str, "a string")
        count = FIELDS.field_int(payload, "count", 1)
        if mode not in MODES:
            raise control_error(f"'mode' must be one of {list(MODES)}")
        if mode in ("accept", "down"):
            if stage is not None or count is not None:
                raise control_error(f"mode {mode!r} takes no 'stage' or 'count'")
        elif stage not in STAGES:
            raise control_error(f"mode {mode!r} needs a 'stage', one of {list(STAGES)}")
        with self.lock:
            self.mode_gen += 1
            self.fault = None if mode in ("accept", "down") else \
                Fault(self.mode_gen, mode, stage, count)
            want_down = mode == "down"
            change = want_down != self.down
            self.down = want_down
            self.cond.notify_all()  # stalled sessions end now
        if change:
            for listener in self.listeners:
                if want_down:
                    listener.close()
                else:
                    try:
                        listener.open()
                    except OSError as exc:
                        raise control_error(f"cannot listen on {listener.port} again: {exc}",
                                            500) from None
        sys.stderr.write(f"smtp_sink mode {mode} stage {stage} count {count}\n")
        return 200, {"mode": mode, "stage": stage, "count": count}


# --------------------------------------------------------------------------------------------
# SMTP sessions


class SessionEnd(Exception):
    """Ends a session; the message says how (it goes into the session log)."""


class LineReader:
    """CRLF-terminated lines from a socket with a length cap.  Only CRLF ends a line: a bare LF
    or CR stays inside it (the callers report it), so "\\n.\\n" can never end DATA."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def read_line(self, limit):
        """(line without CRLF, too_long) or None at EOF.  An over-long line is consumed to its
        CRLF but only its first `limit` octets are returned (bounded memory)."""
        while True:
            end = self.buf.find(CRLF)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[:end + 2]
                return (line[:limit], True) if len(line) > limit else (line, False)
            if len(self.buf) > limit + 1:  # keep a trailing CR: it may start the CRLF
                del self.buf[limit + 1:-1]
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data


class Session:
    def __init__(self, sink, sock, peer, kind):
        self.sink, self.sock, self.kind = sink, sock, kind
        self.peer = f"{peer[0]}:{peer[1]}"
        self.loopback = is_loopback(peer[0])
        self.reader = LineReader(sock)
        self.seen_gen, self.claim = -1, None
        self.tls = False
        self.ehlo = None  # the name given with EHLO/HELO; None before it (and after STARTTLS)
        self.esmtp = False
        self.auth_user = None
        self.refusing = False  # after a 554 greeting only QUIT is served
        self.reset()
        self.record = {"id": None, "peer": self.peer, "listener": kind, "start": now(),
                       "end": None, "ehlo": None, "tls": False, "tlsVersion": None,
                       "auth": None, "authUser": None, "commands": [], "messages": [],
                       "faults": [], "defects": [], "ended": None}
        with sink.lock:
            self.id = sink.new_session(self.record)

    def reset(self):
        self.mail_from = None
        self.rcpts = []
        self.body_8bit = False

    # ---- plumbing

    def note(self, key, value):
        with self.sink.lock:
            if isinstance(self.record[key], list):
                if key != "commands" or len(self.record[key]) < MAX_LOGGED_COMMANDS:
                    self.record[key].append(value)
            else:
                self.record[key] = value

    def reply(self, *lines):
        """One reply; several lines make a multi-line reply (code-text, last code text)."""
        out = b""
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += (line[:3] + sep + line[4:]).encode("ascii", "replace") + CRLF
        self.sock.sendall(out)

    def read_line(self, limit=MAX_LINE):
        try:
            got = self.reader.read_line(limit)
        except TimeoutError:
            self.reply("421 4.4.2 Idle too long, closing")
            raise SessionEnd("idle timeout") from None
        if got is None:
            raise SessionEnd("client closed the connection")
        return got

    def fault(self, stage):
        """Applies the fault set for `stage`: stalls (returns only by ending the session) or
        drops; returns "tempfail" / "permfail" for the caller to answer, or None."""
        sink = self.sink
        with sink.lock:
            fault = sink.claim_fault(self)
            if fault is None or fault.stage != stage:
                return None
            self.record["faults"].append(f"{fault.mode} at {stage}")
            if fault.mode == "stall":
                gen = sink.mode_gen
                while sink.mode_gen == gen:
                    sink.cond.wait()
                raise SessionEnd(f"stalled at {stage}; closed when the mode changed")
        if fault.mode == "drop":
            raise SessionEnd(f"dropped at {stage} (fault)")
        return fault.mode

    def fault_reply(self, mode, stage):
        if mode == "tempfail":
            self.reply(f"451 4.3.0 Temporary failure (smtp_sink fault at {stage})")
        else:
            self.reply(f"550 5.0.0 Permanent failure (smtp_sink fault at {stage})")

    # ---- the session

    def run(self):
        ended = "error"
        try:
            self.sock.settimeout(IDLE_TIMEOUT)
            self.serve()
        except SessionEnd as end:
            ended = str(end)
        except ssl.SSLError as exc:
            ended = f"TLS error: {exc}"
        except OSError as exc:
            ended = f"connection error: {exc}"
        except Exception as exc:  # a bug in the sink: report it, keep serving others
            traceback.print_exc()
            ended = f"internal error: {exc!r}"
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            with self.sink.lock:
                self.record["ended"], self.record["end"] = ended, now()
                line = (f"smtp_sink {self.peer} session {self.id} {self.kind} "
                        f"ehlo={self.ehlo or '-'} tls={'yes' if self.tls else 'no'} "
                        f"auth={self.record['auth'] or '-'} "
                        f"messages={len(self.record['messages'])} "
                        f"faults={','.join(self.record['faults']) or '-'} ended: {ended}")
            sys.stderr.write(printable(line.encode(), 1000) + "\n")

    def serve(self):
        if self.kind == "smtps":
            self.start_tls()
        mode = self.fault("connect")
        if mode == "tempfail":
            self.reply("421 4.3.0 Service not available (smtp_sink fault at connect)")
            raise SessionEnd("tempfail at connect")
        if mode == "permfail":
            self.refusing = True
            self.reply("554 5.3.0 No SMTP service here (smtp_sink fault at connect)")
        else:
            self.reply("220 localhost ESMTP inklet smtp_sink")
        while True:
            line, too_long = self.read_line()
            self.command(line, too_long)

    def command(self, line, too_long):
        verb, _, arg = line.partition(b" ")
        verb = verb.upper().decode("ascii", "replace")
        if verb == "AUTH":  # never log credentials
            self.note("commands", printable(b"AUTH " + arg.split(b" ")[0] + b" ..."))
        else:
            self.note("commands", printable(line))
        if too_long:
            self.defect(f"command line over {MAX_LINE} octets")
            self.reply("500 5.5.2 Line too long")
            return
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line):
            self.defect("control character (bare CR or LF, NUL, ...) in a command line")
            self.reply("500 5.5.2 Control character in command")
            return
        if self.refusing and verb != "QUIT":
            self.reply("503 5.5.1 No service, only QUIT")
            return
        handler = COMMANDS.get(verb)
        if handler is None:
            self.reply("500 5.5.2 Command unrecognized")
            return
        handler(self, arg.decode("utf-8", "surrogateescape").strip())

    def defect(self, text):
        self.note("defects", text)

    # ---- commands

    def cmd_ehlo(self, arg, esmtp=True):
        if not arg:
            self.reply("501 5.5.4 Syntax: EHLO domain" if esmtp else
                       "501 5.5.4 Syntax: HELO domain")
            return
        mode = self.fault("ehlo")
        if mode:
            self.fault_reply(mode, "ehlo")
            return
        self.reset()  # EHLO implies RSET (RFC 5321 4.1.4)
        self.ehlo, self.esmtp = arg, esmtp
        self.note("ehlo", arg)
        if not esmtp:
            self.reply(f"250 localhost greets {arg}")
            return
        lines = [f"250 localhost greets {arg}", "250 8BITMIME", f"250 SIZE {MAX_SIZE}"]
        if self.starttls_offered():
            lines.append("250 STARTTLS")
        if self.auth_offered():
            lines.append("250 AUTH PLAIN LOGIN")
        lines.append("250 ENHANCEDSTATUSCODES")
        self.reply(*lines)

    def cmd_helo(self, arg):
        self.cmd_ehlo(arg, esmtp=False)

    def starttls_offered(self):
        return self.sink.starttls and not self.tls

    def auth_offered(self):
        return self.sink.user is not None and (self.tls or self.loopback)

    def cmd_starttls(self, arg):
        if arg:
            self.reply("501 5.5.4 Syntax: STARTTLS")
            return
        if self.tls:
            self.reply("503 5.5.1 TLS already active")
            return
        if not self.sink.starttls:
            self.reply("502 5.5.1 STARTTLS not offered")
            return
        if self.ehlo is None or not self.esmtp:
            self.reply("503 5.5.1 EHLO first")
            return
        if self.reader.buf:  # RFC 3207 5: commands sent ahead of TLS are thrown away
            self.defect("data pipelined after STARTTLS (discarded)")
            self.reader.buf.clear()
        self.reply("220 2.0.0 Ready to start TLS")
        self.start_tls()
        # RFC 3207 4.2: forget everything the client said before TLS
        self.ehlo, self.esmtp, self.auth_user = None, False, None
        self.reset()

    def start_tls(self):
        self.sock.settimeout(TLS_TIMEOUT)
        try:
            self.sock = self.sink.tls.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise SessionEnd(f"TLS handshake failed: {exc}") from None
        self.sock.settimeout(IDLE_TIMEOUT)
        self.reader = LineReader(self.sock)
        self.tls = True
        self.note("tls", True)
        self.note("tlsVersion", self.sock.version())

    def cmd_auth(self, arg):
        if self.sink.user is None:
            self.reply("502 5.5.1 AUTH not available")
            return
        if not self.auth_offered():
            self.reply("538 5.7.11 Encryption required for requested authentication mechanism")
            return
        if self.ehlo is None or not self.esmtp:
            self.reply("503 5.5.1 EHLO first")
            return
        if self.auth_user is not None:
            self.reply("503 5.5.1 Already authenticated")
            return
        if self.mail_from is not None:
            self.reply("503 5.5.1 AUTH not allowed during a mail transaction")
            return
        mech, _, initial = arg.partition(" ")
        mech, initial = mech.upper(), initial.strip() or None
        if mech not in ("PLAIN", "LOGIN"):
            self.reply("504 5.5.4 Unrecognized authentication type")
            return
        mode = self.fault("auth")
        if mode:
            self.fault_reply(mode, "auth")
            return
        creds = self.auth_plain(initial) if mech == "PLAIN" else self.auth_login(initial)
        if creds is None:
            return
        user, password = creds
        good = (hmac.compare_digest(user.encode("utf-8", "surrogateescape"),
                                    self.sink.user.encode())
                & hmac.compare_digest(password.encode("utf-8", "surrogateescape"),
                                      self.sink.password.encode()))
        if not good:
            self.note("auth", "failed")
            self.reply("535 5.7.8 Authentication credentials invalid")
            return
        self.auth_user = user
        self.note("auth", f"ok ({mech})")
        self.note("authUser", user)
        self.reply("235 2.7.0 Authentication successful")

    def auth_response(self, initial, challenge):
        """The client's base64 answer: the initial response, or one line after a 334 challenge;
        None (answered already) when cancelled or malformed."""
        if initial is None:
            self.reply(f"334 {challenge}")
            line, too_long = self.read_line(12288)  # RFC 4954 4
            self.note("commands", "<auth data>")
            if too_long:
                self.reply("500 5.5.6 Authentication exchange line is too long")
                return None
            initial = line.decode("ascii", "replace").strip()
            if initial == "*":
                self.reply("501 5.7.0 Authentication cancelled")
                return None
        if initial == "=":
            return b""
        try:
            return base64.b64decode(initial, validate=True)
        except (binascii.Error, ValueError):
            self.reply("501 5.5.2 Cannot decode the response")
            return None

    def auth_plain(self, initial):
        data = self.auth_response(initial, "")
        if data is None:
            return None
        parts = data.split(b"\0")
        if len(parts) != 3:
            self.reply("501 5.5.2 PLAIN needs authzid NUL authcid NUL password")
            return None
        authz, user, password = (p.decode("utf-8", "surrogateescape") for p in parts)
        if authz and authz != user:
            self.note("auth", "failed")
            self.reply("535 5.7.8 Authentication credentials invalid")
            return None
        return user, password

    def auth_login(self, initial):
        user = self.auth_response(initial, "VXNlcm5hbWU6")  # "Username:"
        if user is None:
            return None
        password = self.auth_response(None, "UGFzc3dvcmQ6")  # "Password:"
        if password is None:
            return None
        return (user.decode("utf-8", "surrogateescape"),
                password.decode("utf-8", "surrogateescape"))

    def path_arg(self, arg, keyword):
        """(address, params) of MAIL FROM:<a> / RCPT TO:<a>, or None (answered already)."""
        found = PATH_ARG.fullmatch(arg)
        if found is None or found.group(1).upper() != keyword:
            self.reply(f"501 5.5.4 Syntax: {'MAIL FROM' if keyword == 'FROM' else 'RCPT TO'}"
                       ":<address>")
            return None
        address, rest = found.group(2), found.group(3).split()
        if not address.isascii():
            self.defect(f"non-ASCII address without SMTPUTF8: {clean_text(address)!r}")
            self.reply("553 5.6.7 Non-ASCII address, and SMTPUTF8 was not offered")
            return None
        params = {}
        for item in rest:
            param = PARAM.fullmatch(item)
            if param is None or not self.esmtp:
                self.reply(f"555 5.5.4 Unsupported parameter {item[:40]}")
                return None
            params[param.group(1).upper()] = param.group(2)
        return address, params

    def cmd_mail(self, arg):
        if self.ehlo is None:
            self.reply("503 5.5.1 EHLO first")
            return
        if self.sink.user is not None and self.auth_user is None:
            self.reply("530 5.7.0 Authentication required")
            return
        if self.mail_from is not None:
            self.reply("503 5.5.1 Nested MAIL command")
            return
        parsed = self.path_arg(arg, "FROM")
        if parsed is None:
            return
        address, params = parsed
        if address and MAILBOX.fullmatch(address) is None:
            self.reply("501 5.1.7 Bad sender address syntax")
            return
        for name, value in params.items():
            if name == "SIZE" and (value is None or not value.isdigit()):
                self.reply("501 5.5.4 Bad SIZE parameter")
                return
            if name == "SIZE" and int(value) > MAX_SIZE:
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
                return
            if name == "BODY" and (value or "").upper() not in ("7BIT", "8BITMIME"):
                self.reply("501 5.5.4 Bad BODY parameter")
                return
            if name not in ("SIZE", "BODY", "AUTH"):
                self.reply(f"555 5.5.4 Unsupported parameter {name}")
                return
        mode = self.fault("mail")
        if mode:
            self.fault_reply(mode, "mail")
            return
        self.mail_from = address
        self.body_8bit = (params.get("BODY") or "").upper() == "8BITMIME"
        self.reply("250 2.1.0 Ok")

    def cmd_rcpt(self, arg):
        if self.mail_from is None:
            self.reply("503 5.5.1 MAIL first")
            return
        parsed = self.path_arg(arg, "TO")
        if parsed is None:
            return
        address, params = parsed
        if params:
            self.reply(f"555 5.5.4 Unsupported parameter {next(iter(params))}")
            return
        if MAILBOX.fullmatch(address) is None and address.lower() != "postmaster":
            self.reply("501 5.1.3 Bad recipient address syntax")
            return
        if len(self.rcpts) >= MAX_RCPT:
            self.reply("452 4.5.3 Too many recipients")
            return
        mode = self.fault("rcpt")
        if mode:
            self.fault_reply(mode, "rcpt")
            return
        self.rcpts.append(address)
        self.reply("250 2.1.5 Ok")

    def cmd_data(self, arg):
        if arg:
            self.reply("501 5.5.4 Syntax: DATA")
            return
        if self.mail_from is None:
            self.reply("503 5.5.1 MAIL first")
            return
        if not self.rcpts:
            self.reply("554 5.5.1 No valid recipients")
            return
        mode = self.fault("data")
        if mode:
            self.fault_reply(mode, "data")
            return
        self.reply("354 End data with <CR><LF>.<CR><LF>")
        raw, defects, too_long, too_big = self.read_body()
        mode = self.fault("dot")
        if mode:
            self.fault_reply(mode, "dot")
            self.reset()
            return
        if too_long:
            for text in defects:
                self.defect(text)
            self.reply(f"500 5.5.2 Line over {MAX_LINE} octets in the message; not accepted")
        elif too_big:
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
        else:
            ident = self.sink.store(raw, self.mail_from, self.rcpts, self.tls, self.auth_user,
                                    defects)
            self.note("messages", ident)
            self.reply(f"250 2.0.0 Ok: queued as {ident}")
        self.reset()

    def read_body(self):
        """The message up to CRLF.CRLF, dot-unstuffed: (raw bytes, defects, a line was too
        long, over MAX_SIZE).  Reading goes on to the end even when it will be refused."""
        body, defects = bytearray(), []
        too_long = too_big = False
        seen = set()

        def once(kind, text):
            if kind not in seen:
                seen.add(kind)
                defects.append(text)

        while True:
            line, long_line = self.read_line()
            if line == b"." and not long_line:
                return bytes(body), defects, too_long, too_big
            if long_line:
                too_long = True
                once("long", f"line over {MAX_LINE} octets in DATA")
            if line.startswith(b"."):
                line = line[1:]
            if b"\n" in line:
                once("lf", "bare LF in DATA")
            if b"\r" in line:
                once("cr", "bare CR in DATA")
            if b"\0" in line:
                once("nul", "NUL octet in DATA")
            if not self.body_8bit and not line.isascii():
                once("8bit", "8-bit data without BODY=8BITMIME")
            if len(body) + len(line) + 2 > MAX_SIZE:
                too_big = True
            else:
                body += line + CRLF

    def cmd_rset(self, arg):
        self.reset()
        self.reply("250 2.0.0 Ok")

    def cmd_noop(self, arg):
        self.reply("250 2.0.0 Ok")

    def cmd_vrfy(self, arg):
        self.reply("252 2.5.0 Cannot VRFY user, but will accept message")

    def cmd_quit(self, arg):
        self.reply("221 2.0.0 Bye")
        raise SessionEnd("quit")


COMMANDS = {"EHLO": Session.cmd_ehlo, "HELO": Session.cmd_helo,
            "STARTTLS": Session.cmd_starttls, "AUTH": Session.cmd_auth,
            "MAIL": Session.cmd_mail, "RCPT": Session.cmd_rcpt, "DATA": Session.cmd_data,
            "RSET": Session.cmd_rset, "NOOP": Session.cmd_noop, "VRFY": Session.cmd_vrfy,
            "QUIT": Session.cmd_quit}


def is_loopback(host):
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


# --------------------------------------------------------------------------------------------
# HTTP (control API only)

CONTROL_ROUTES = [
    ("GET", r"/_fake/health", "health", True),
    ("GET", r"/_fake/info", "info", True),
    ("GET", r"/_fake/messages", "list_messages", True),
    ("DELETE", r"/_fake/messages", "clear_messages", True),
    ("GET", r"/_fake/sessions", "list_sessions", True),
    ("DELETE", r"/_fake/sessions", "clear_sessions", True),
    ("GET", r"/_fake/mode", "get_mode", True),
    ("POST", r"/_fake/mode", "set_mode", False),
]


class Handler(fakelib.Handler):
    server_version = "smtp-sink/1.0"
    log_name = "smtp_sink"
    max_body = 64 * 1024
    control_routes = CONTROL_ROUTES
    error_class = SinkError
    control_error = staticmethod(control_error)
    reject_json_constants = True

    def internal_error(self):
        return SinkError(500, "smtp_sink internal error")

    def send_fake_error(self, err):
        self.answer(err.status, to_json(err.body()))

    def send_control_answer(self, status, body):
        self.answer(status, body)

    def send_fault_answer(self, fault):  # the HTTP side has no fault rules
        raise AssertionError("unreachable")

    def serve(self, path, query_string):
        if path.startswith("/_fake/"):
            self.serve_control(path, query_string)
        else:
            self.read_body()
            self.send_fake_error(control_error(f"Unknown path {path}", 404))

    def answer(self, status, body):
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True


# --------------------------------------------------------------------------------------------
# Command line


def san_arg(text):
    if SAN.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"expected IP:<address> or DNS:<name>, got {text!r}")
    if text.startswith("IP:"):
        try:
            ipaddress.ip_address(text[3:])
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IP address: {text!r}") from None
    return text


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Local SMTP sink for tests.")
    parser.add_argument("--port", type=int, default=0, help="control API; 0: an ephemeral port")
    parser.add_argument("--port-file", help="written atomically with the port once listening")
    parser.add_argument("--smtp-port", type=int, default=0, help="0: an ephemeral port")
    parser.add_argument("--smtps-port", type=int, help="implicit TLS; only when given")
    parser.add_argument("--listen", default="127.0.0.1", help="address of the SMTP listeners")
    parser.add_argument("--user", help="AUTH is required before MAIL")
    parser.add_argument("--password")
    parser.add_argument("--cert-dir", help="where the throwaway CA goes (default: a temp dir)")
    parser.add_argument("--san", type=san_arg, action="append", default=[],
                        help="extra subjectAltName, IP:1.2.3.4 or DNS:name; repeatable")
    parser.add_argument("--maildir", help="also write every accepted message as DIR/<n>.eml")
    parser.add_argument("--no-starttls", action="store_true",
                        help="do not offer STARTTLS (a relay without TLS)")
    args = parser.parse_args(argv)
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")
    try:
        ipaddress.ip_address(args.listen)
    except ValueError:
        parser.error(f"--listen needs an IP address, got {args.listen!r}")
    return args


def main(argv=None):
    temp_dir = None

    def make_sink(args):
        nonlocal temp_dir
        cert_dir = args.cert_dir
        if cert_dir is None:
            cert_dir = temp_dir = tempfile.mkdtemp(prefix="smtp_sink-")
        os.makedirs(cert_dir, exist_ok=True)
        if args.maildir:
            os.makedirs(args.maildir, exist_ok=True)
        ca_file, cert, key = make_certificates(os.path.abspath(cert_dir), args.san)
        sink = Sink(args, ca_file, cert, key)
        tls_port = sink.port_of("smtps")
        sys.stderr.write(f"smtp_sink smtp on {args.listen}:{sink.port_of('smtp')}"
                         f"{f', smtps on {args.listen}:{tls_port}' if tls_port else ''}"
                         f", CA {ca_file}\n")
        return sink

    try:
        return fakelib.run(Handler, parse_args, make_sink, argv)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
