"""The plumbing shared by the test fakes in this directory (fake_stripe.py, fake_oidc.py).

Each fake is one script run as ``/usr/bin/python3 tests/fakes/fake_X.py``; it puts its own
directory on ``sys.path`` and imports this module.  What lives here is what the fakes do the
same way, so that it behaves the same in all of them:

* the HTTP server: a ThreadingHTTPServer on 127.0.0.1 with daemon threads, the atomic port
  file, SIGTERM/SIGINT exiting 0 at once (also while a request sleeps in a fault delay) and
  one stderr log line per request (``run``, ``Server``);
* reading request bodies (Content-Length or chunked, with a size limit) and the request
  plumbing of ``Handler``: dispatch, the JSON control API under ``/_fake/``, logging a
  provider request and applying the fault rule it matches;
* the state that plumbing uses (``FakeState``): one lock, the fault rules and the request
  log, with the control routes for them (health, faults, requests);
* the control API's JSON field checks (``ControlFields``) and small helpers.

What each fake says stays in the fake: its error shapes and answers (a ``Handler`` subclass
fills in the hooks listed on it), its routes, and its provider-specific logic.

Python 3.11 standard library only.
"""

import json
import os
import re
import signal
import socket
import string
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

FORM_TYPE = "application/x-www-form-urlencoded"
ALNUM = string.ascii_letters + string.digits
BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
DIGITS = re.compile(r"[0-9]{1,10}")
HEX_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")


def now():
    return int(time.time())


def to_json(obj):
    """Pretty-printed JSON and a newline, as Stripe's and Google's answers are."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def decode_component(text):
    """One form-encoded name or value; ValueError for a bad % escape or invalid UTF-8."""
    if BAD_PERCENT.search(text):
        raise ValueError("malformed percent-encoding")
    return unquote_plus(text, encoding="utf-8", errors="strict")


def match_route(routes, method, path):
    """Returns (route, ids), or (None, path_known) when nothing matches.  A route is a tuple
    (method, path regex, ...); ids are its groups, percent-decoded."""
    path_known = False
    for route in routes:
        found = re.fullmatch(route[1], path)
        if found:
            if route[0] == method:
                return route, tuple(unquote(g) for g in found.groups())
            path_known = True
    return None, path_known


def reject_constant(name):
    """json.loads' parse_constant for a strict parser: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


# --------------------------------------------------------------------------------------------
# Errors


class BodyError(Exception):
    """The request body could not be read as framed; the connection is closed after it."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ClientGone(Exception):
    """The client closed the connection (or timed out) before sending its whole request."""


# --------------------------------------------------------------------------------------------
# Control API field helpers (JSON)


class ControlFields:
    """Checks of control API JSON bodies.  `error(message, status=400)` makes the exception a
    fake answers control errors with (each fake has its own error shape)."""

    def __init__(self, error):
        self.error = error

    def check_fields(self, payload, allowed, required=()):
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise self.error("the body must be a JSON object")
        unknown = sorted(set(payload) - set(allowed))
        if unknown:
            raise self.error(f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")
        for name in required:
            if payload.get(name) is None:
                raise self.error(f"missing field {name!r}")
        return payload

    def field_int(self, payload, name, minimum=None, maximum=None):
        found = payload.get(name)
        if found is None:
            return None
        if not isinstance(found, int) or isinstance(found, bool):
            raise self.error(f"{name!r} must be an integer")
        if (minimum is not None and found < minimum) or \
                (maximum is not None and found > maximum):
            raise self.error(f"{name!r} must be in [{minimum}, {maximum}]")
        return found

    def field_typed(self, payload, name, kind, what):
        found = payload.get(name)
        if found is not None and (not isinstance(found, kind) or
                                  (kind is not bool and isinstance(found, bool))):
            raise self.error(f"{name!r} must be {what}")
        return found


# --------------------------------------------------------------------------------------------
# Fault rules, the request log


class Fault:
    """One rule of /_fake/faults: requests it matches (method, path prefix) sleep `delay_ms`,
    then have their connection dropped, or get `status`, or (delay only) are served normally;
    `count` requests, or until cleared.

    A fake subclasses it and sets `fields` (its ControlFields), `default_prefix` and
    `answer_field`, the name of the field that gives a status fault's answer (read by
    `parse_answer` into the attribute of that name, checked by `check_answer`)."""

    fields = None
    default_prefix = "/"
    answer_field = None

    def __init__(self, ident, payload):
        fields = self.fields
        self.id = ident
        method = fields.field_typed(payload, "method", str, "a string")
        self.method = method.upper() if method else None
        self.path_prefix = fields.field_typed(payload, "path_prefix", str, "a string") or \
            self.default_prefix
        self.delay_ms = fields.field_int(payload, "delay_ms", 0, 600000) or 0
        self.status = fields.field_int(payload, "status", 100, 599)
        self.parse_answer(payload)
        self.drop = bool(fields.field_typed(payload, "drop", bool, "a boolean"))
        self.remaining = fields.field_int(payload, "count", 1)
        if self.drop and self.status is not None:
            raise fields.error("'drop' and 'status' exclude each other")
        self.check_answer()
        if not (self.drop or self.status is not None or self.delay_ms):
            raise fields.error("a fault needs 'delay_ms', 'status' or 'drop'")

    @classmethod
    def payload_fields(cls):
        return ("method", "path_prefix", "delay_ms", "status", cls.answer_field, "drop",
                "count")

    def parse_answer(self, payload):
        pass

    def check_answer(self):
        pass

    def matches(self, method, path):
        return (self.method in (None, method)) and path.startswith(self.path_prefix)

    def describe(self):
        return {"id": self.id, "method": self.method, "path_prefix": self.path_prefix,
                "delay_ms": self.delay_ms, "status": self.status,
                self.answer_field: getattr(self, self.answer_field), "drop": self.drop,
                "count": self.remaining}


class FakeState:
    """What the plumbing needs of a fake's state: one lock (never held while sleeping for a
    fault delay), the fault rules and the request log.  A fake's state class derives from it
    and sets `fault_class`.  The methods expect the lock held; the control routes among them
    take (path ids, JSON payload, query) and return (status, body)."""

    fault_class = Fault

    def __init__(self):
        self.lock = threading.Lock()
        self.faults = []
        self.fault_seq = 0
        self.requests = []

    def log_request(self, entry):
        self.requests.append(entry)

    def take_fault(self, method, path):
        for fault in self.faults:
            if fault.matches(method, path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def health(self, ids, payload, query):
        return 200, {"ok": True}

    def add_fault(self, ids, payload, query):
        cls = self.fault_class
        cls.fields.check_fields(payload, cls.payload_fields())
        fault = cls(self.fault_seq + 1, payload or {})
        self.fault_seq = fault.id
        self.faults.append(fault)
        return 200, {"id": fault.id}

    def list_faults(self, ids, payload, query):
        return 200, [f.describe() for f in self.faults]

    def clear_faults(self, ids, payload, query):
        self.faults.clear()
        return 200, {"ok": True}

    def list_requests(self, ids, payload, query):
        prefix = query.get("path_prefix", "")
        return 200, [r for r in self.requests if r["path"].startswith(prefix)]

    def clear_requests(self, ids, payload, query):
        self.requests.clear()
        return 200, {"ok": True}


# --------------------------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    """The request plumbing.  A fake's subclass sets the class attributes and the hooks:

    * `serve(path, query_string)`: answers a request (the target is already split);
    * `control_error(message, status=400)` (a staticmethod): the exception for a bad request
      or control call, of the fake's `error_class`;
    * `internal_error()`: the exception answered when the fake itself fails;
    * `send_fake_error(err)`: sends an `error_class` exception as the answer;
    * `send_control_answer(status, body)`: sends a control route's JSON bytes;
    * `send_fault_answer(fault)`: sends a status fault's answer;
    * optionally `start_request()` / `end_request()` around each request."""

    protocol_version = "HTTP/1.1"
    server_version = "fake/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    log_name = "fake"  # the first word of every log line
    max_body = 1024 * 1024
    control_routes = []  # (method, path regex, state method name, needs the lock)
    error_class = Exception
    reject_json_constants = False  # NaN / Infinity in a control body: a 400

    # ---- hooks

    def start_request(self):
        pass

    def end_request(self):
        pass

    # ---- plumbing

    def do_GET(self):
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = do_GET

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        line = fmt % args
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
        sys.stderr.write(f"{self.log_name} {self.address_string()} {line}\n")

    def send_error(self, code, message=None, explain=None):
        """Errors found by http.server itself (bad request line, headers): JSON as well."""
        self.close_connection = True
        self.send_fake_error(self.control_error(
            message or self.responses.get(code, ("",))[0], code))

    def set_logged_status(self, status):
        entry = getattr(self, "log_entry", None)
        if entry is not None:
            with self.server.fake.lock:
                entry["status"] = status

    def drop(self):
        self.set_logged_status(0)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.log_message('"%s" dropped (fault)', self.requestline)

    def dispatch(self):
        self.start_request()
        self.log_entry = None
        try:
            try:
                parts = urlsplit(self.path)
            except ValueError as exc:  # a hostile request target
                self.close_connection = True
                self.send_fake_error(self.control_error(f"Invalid request target: {exc}"))
                return
            self.serve(parts.path, parts.query)
        except ClientGone:
            self.close_connection = True
        except BodyError as exc:
            self.close_connection = True
            self.send_fake_error(self.control_error(str(exc), exc.status))
        except Exception:  # a bug in the fake: report it, keep serving
            traceback.print_exc()
            self.close_connection = True
            self.send_fake_error(self.internal_error())
        finally:  # the handler object lives as long as the keep-alive connection
            self.end_request()
            self.log_entry = None

    # ---- body

    def read_body(self):
        try:
            if "Transfer-Encoding" in self.headers:
                if self.headers["Transfer-Encoding"].strip().lower() != "chunked":
                    raise BodyError(501, "Unsupported Transfer-Encoding")
                return self._read_chunked()
            lengths = set(v.strip() for v in self.headers.get_all("Content-Length", []))
            if not lengths:
                return b""
            if len(lengths) != 1 or DIGITS.fullmatch(next(iter(lengths))) is None:
                raise BodyError(400, "Invalid Content-Length")
            length = int(lengths.pop())
            if length > self.max_body:
                raise BodyError(413, f"Request body over {self.max_body} bytes")
            return self._read_exactly(length)
        except (TimeoutError, ConnectionError):
            raise ClientGone() from None

    def _read_exactly(self, length):
        data = self.rfile.read(length)
        if len(data) != length:
            raise ClientGone()
        return data

    def _read_chunked(self):
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise ClientGone() if not line else BodyError(400, "Invalid chunk header")
            size = line.split(b";", 1)[0].strip()
            if HEX_SIZE.fullmatch(size) is None:
                raise BodyError(400, "Invalid chunk size")
            size = int(size, 16)
            if size == 0:
                break
            if len(body) + size > self.max_body:
                raise BodyError(413, f"Request body over {self.max_body} bytes")
            body += self._read_exactly(size)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BodyError(400, "Invalid chunk terminator")
        for _ in range(100):  # trailers
            if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                return bytes(body)
        raise BodyError(400, "Too many trailers")

    def header_dict(self):
        headers = {}
        for name, text in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {text}" if name in headers else text
        return headers

    # ---- provider requests: logged, then subject to the fault rules

    def read_logged_body(self):
        """(body, None), or (b"", the error to answer) when the body is badly framed: such a
        request is still logged and faults still apply to it."""
        try:
            return self.read_body(), None
        except BodyError as exc:
            self.close_connection = True
            return b"", self.control_error(str(exc), exc.status)

    def log_api_request(self, path, received, query, params, body, **extra):
        """Adds the request to the log (its status is filled in when it is answered) and
        returns the fault rule it takes, or None."""
        fake = self.server.fake
        with fake.lock:
            self.log_entry = {
                "method": self.command, "path": path, "query": query, "params": params,
                "raw_body": body.decode("utf-8", "replace"), "headers": self.header_dict(),
                "time": received, "status": None, **extra,
            }
            fake.log_request(self.log_entry)
            return fake.take_fault(self.command, path)

    def serve_fault(self, fault):
        """Applies `fault` (or None): sleeps its delay (the lock is not held), then drops the
        connection or sends the fault's answer.  True when the request is done with."""
        if fault is not None and fault.delay_ms:
            time.sleep(fault.delay_ms / 1000.0)
        if fault is not None and fault.drop:
            self.drop()
            return True
        if fault is not None and fault.status is not None:
            self.send_fault_answer(fault)
            return True
        return False

    # ---- control API

    def serve_control(self, path, query_string):
        fake = self.server.fake
        body = self.read_body()
        route, found = match_route(self.control_routes, self.command, path)
        if route is None:
            status = 405 if found else 404
            self.send_fake_error(self.control_error(f"No control route {self.command} {path}",
                                                    status))
            return
        try:
            query = dict(parse_qsl(query_string, keep_blank_values=True, errors="strict"))
            constant = reject_constant if self.reject_json_constants else None
            payload = json.loads(body, parse_constant=constant) if body.strip() else None
        except (ValueError, RecursionError) as exc:
            self.send_fake_error(self.control_error(f"Invalid JSON or query: {exc}"))
            return
        func = getattr(fake, route[2])
        try:
            if route[3]:
                with fake.lock:
                    status, result = func(found, payload, query)
                    out = to_json(result)
            else:
                status, result = func(found, payload, query)
                out = to_json(result)
        except self.error_class as err:
            self.send_fake_error(err)
            return
        self.send_control_answer(status, out)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, fake):
        self.fake = fake
        super().__init__(address, handler)

    def handle_error(self, request, client_address):
        """A client that vanished mid-request is routine; anything else is a bug worth a trace."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            sys.stderr.write(f"{self.RequestHandlerClass.log_name} {client_address[0]} "
                             "connection lost\n")
        else:
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------------------------
# Command line


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(f"{port}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class Stop(BaseException):
    """Raised by the signal handler; a BaseException so that socketserver's per-request
    `except Exception` (the main thread accepts and starts threads) cannot swallow it."""


def on_signal(signum, frame):
    raise Stop()


def run(handler, parse_args, make_fake, argv=None):
    """A fake's main(): parses the command line (`--port`, `--port-file` and the fake's own
    flags), makes the fake's state, listens on 127.0.0.1, writes the port file and serves
    until SIGTERM or SIGINT; returns the exit status (0)."""
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        args = parse_args(argv)
        server = Server(("127.0.0.1", args.port), handler, make_fake(args))
        try:
            port = server.server_address[1]
            if args.port_file:
                write_port_file(args.port_file, port)
            sys.stderr.write(f"{handler.log_name} listening on 127.0.0.1:{port}\n")
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
    except Stop:
        sys.stderr.write(f"{handler.log_name} stopping on signal\n")
    return 0
