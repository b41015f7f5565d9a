#!/usr/bin/env python3
"""quota: a sample out-of-process gbs storage plugin (protocol version 1).

Each account may allocate at most `quota-bytes` bytes of immutable shares. A client names
its account in its plugin data, a CBOR map {"account": NAME}; usage is kept in
<state dir>/usage.json. The in-process twin, with the same behaviour and file format, is
the Rust crate sample-plugins/quota.

The protocol is plugin-interface/docs/out-of-process.md: HTTP/1.1 with CBOR bodies on a
Unix socket or loopback TCP. Standard library and cbor2 only; Python 3.9 or later.

Started by the host (`command = python3 quota_plugin.py`) it reads GBS_PLUGIN_LISTEN,
GBS_PLUGIN_NAME, GBS_PLUGIN_ROLE, GBS_PLUGIN_STATE_DIR and GBS_PLUGIN_SETTINGS and exits
when its stdin reaches end of file. Run by an operator (`url = ...`) it takes the same
from flags: --listen, --state-dir, --setting KEY=VALUE, --name.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import ipaddress
import json
import os
import re
import socket
import socketserver
import stat
import sys
import tempfile
import threading
import traceback
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler
from typing import Callable, Dict, Optional, Tuple

import cbor2

VERSION = "1.0.0"
PROTOCOL = 1
QUOTA_KEY = "quota-bytes"
USAGE_FILE = "usage.json"
U64_MAX = 2**64 - 1
# Admitted allocations waiting for `committed`. One that never commits (another plugin
# refused it, the store failed) would stay for ever without a bound.
MAX_PENDING = 4096
# A route body is at most 16 MiB; the CBOR map around it adds a little.
MAX_BODY = (16 << 20) + 4096
# ASCII only, so characters are bytes: 1 to 64 bytes.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# The texts the Rust twin uses too, so both answer the same bytes.
NO_ACCOUNT = (
    'allocations here need plugin data {"account": NAME}, '
    "NAME 1 to 64 of A-Z a-z 0-9 _ . -"
)
NOT_PENDING = (
    "an allocation committed that this plugin did not admit (admitted before a restart, "
    "or more than 4096 admitted allocations waited); it is not charged"
)
ROUTE_HELP = "no such quota route; GET usage?account=NAME"


class StartError(Exception):
    """Why the plugin cannot start as configured: one line on stderr, exit status 2."""


class CallError(Exception):
    """A call the plugin refuses: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def quoted(text: str) -> str:
    # Close to Rust's {:?}, so the twins' messages read the same.
    return json.dumps(text, ensure_ascii=False)


def log(message: str) -> None:
    # The host logs each line of stderr as one event, tagged with the plugin's name.
    print(f"quota: {message}", file=sys.stderr, flush=True)


# --- settings ---------------------------------------------------------------------------


def parse_quota(settings: Dict[str, str]) -> int:
    unknown = sorted(key for key in settings if key != QUOTA_KEY)
    if unknown:
        raise StartError(
            f"unknown setting {quoted(unknown[0])}; quota has only {quoted(QUOTA_KEY)}"
        )
    raw = settings.get(QUOTA_KEY)
    if raw is None:
        raise StartError(
            f"missing setting {QUOTA_KEY}: the bytes each account may allocate, "
            f"e.g. {QUOTA_KEY} = 1000000000"
        )
    text = raw.strip()
    # Digits only: int() would also take "+5", "1_000" and non-ASCII digits.
    if not re.fullmatch(r"[0-9]+", text) or not 0 < int(text) <= U64_MAX:
        raise StartError(
            f"{QUOTA_KEY} must be a whole number of bytes from 1 to {U64_MAX}, "
            f"not {quoted(raw)}"
        )
    return int(text)


# --- plugin data and operations ---------------------------------------------------------


def is_account_name(name: object) -> bool:
    return isinstance(name, str) and ACCOUNT_NAME.fullmatch(name) is not None


def decode_cbor(data: bytes) -> object:
    """One CBOR item, and nothing after it (cbor2.loads ignores trailing bytes)."""
    stream = io.BytesIO(data)
    value = cbor2.CBORDecoder(stream).decode()
    if stream.tell() != len(data):
        raise ValueError("bytes after the CBOR item")
    return value


def account_of(data: Optional[bytes]) -> Optional[str]:
    """The account in plugin data {"account": NAME}, or None for anything else."""
    if data is None:
        return None
    try:
        value = decode_cbor(data)
    except Exception:  # cbor2 raises several types for malformed or too deep input
        return None
    # A map of exactly that key. A map repeating it counts as its last value (a dict
    # keeps the last); the Rust twin does the same.
    if not isinstance(value, dict) or len(value) != 1:
        return None
    name = value.get("account")
    return name if is_account_name(name) else None


def is_uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= U64_MAX


def allocation(operation: dict) -> Tuple[Tuple[bytes, bytes], int, int]:
    """((storage index, lease hash), allocated size, number of share numbers)."""
    si = operation.get("storage-index")
    lease = operation.get("lease")
    size = operation.get("allocated-size")
    shares = operation.get("share-numbers")
    if not (
        isinstance(si, bytes)
        and len(si) == 16
        and isinstance(lease, bytes)
        and len(lease) == 32
        and is_uint(size)
        and isinstance(shares, list)
        and all(is_uint(n) for n in shares)
    ):
        raise CallError(400, "an allocate operation without its fields")
    return (si, lease), size, len(shares)


def charge(size: int, shares: int) -> int:
    # Saturates at 2**64 - 1, as the Rust twin's u64 arithmetic does.
    return min(size * shares, U64_MAX)


# --- usage.json -------------------------------------------------------------------------


def load_usage(path: str) -> Dict[str, int]:
    """{account: bytes used} from `path`; empty if there is no such file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise StartError(f"cannot read {path}: {e.strerror}") from e
    try:
        usage = json.loads(raw.decode("utf-8"))
        if not isinstance(usage, dict):
            raise ValueError("not a JSON object")
        for account, used in usage.items():
            if not is_account_name(account):
                raise ValueError(f"{quoted(account)} is not an account name")
            if not is_uint(used):
                raise ValueError(f"the usage of {account} is not a whole number of bytes")
    except ValueError as e:  # also JSONDecodeError and UnicodeDecodeError
        # Never reset silently: that would give every account its quota again.
        raise StartError(
            f"cannot load usage from {path} ({e}); repair it, or move it away to start from zero"
        ) from e
    return usage


def encode_usage(usage: Dict[str, int]) -> bytes:
    # The same bytes serde_json::to_vec_pretty writes for a BTreeMap, plus a newline.
    return (json.dumps(usage, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def save_usage(path: str, usage: Dict[str, int]) -> None:
    """Replaces `path` so that a crash leaves the old file or the new one, whole."""
    directory = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=f".{USAGE_FILE}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(encode_usage(usage))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    # The rename itself is durable only once the directory is.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- the plugin -------------------------------------------------------------------------


class Quota:
    """The hooks. One lock covers usage, the pending charges and the file write, so the
    file always holds the latest usage and writes never interleave."""

    def __init__(self, name: str, limit: int, state_dir: str):
        self.name = name
        self.limit = limit
        self.path = os.path.join(state_dir, USAGE_FILE)
        self.lock = threading.Lock()
        self.used = load_usage(self.path)
        # (storage index, lease hash) -> account, oldest first. `committed` carries no
        # plugin data, so the account is remembered from `admit`.
        self.pending: "OrderedDict[Tuple[bytes, bytes], str]" = OrderedDict()

    def describe(self, _request: dict) -> dict:
        return {
            "protocol": PROTOCOL,
            "name": self.name,
            "version": VERSION,
            "roles": ["server"],
            "interests": ["allocate"],
            "announcement": {QUOTA_KEY: self.limit},
        }

    def admit(self, request: dict) -> dict:
        operation = field(request, "operation", dict)
        data = request.get("data")
        if data is not None and not isinstance(data, bytes):
            raise CallError(400, '"data" must be a byte string or null')
        if operation.get("operation") != "allocate":
            return {"admit": True}
        key, size, shares = allocation(operation)
        account = account_of(data)
        if account is None:
            return rejected(401, "quota-no-account", NO_ACCOUNT)
        requested = charge(size, shares)
        with self.lock:
            used = self.used.get(account, 0)
            if used + requested > self.limit:
                return rejected(
                    413,
                    "quota-exceeded",
                    f"account {account} has {used} of {self.limit} bytes in use; "
                    f"{requested} more would exceed its quota",
                    {"used": used, "limit": self.limit, "requested": requested},
                )
            self.pending.pop(key, None)
            self.pending[key] = account
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
        return {"admit": True}

    def committed(self, request: dict) -> dict:
        operation = field(request, "operation", dict)
        outcome = field(request, "outcome", dict)
        if operation.get("operation") != "allocate":
            return {}
        key, size, _ = allocation(operation)
        with self.lock:
            account = self.pending.pop(key, None)
            if account is None:
                log(NOT_PENDING)
                return {}
            if outcome.get("outcome") != "allocated":
                return {}
            allocated = field(outcome, "allocated", list)
            # Only new shares cost: those in "already-have" were paid for before.
            cost = charge(size, len(allocated))
            if cost == 0:
                return {}
            self.used[account] = min(self.used.get(account, 0) + cost, U64_MAX)
            try:
                save_usage(self.path, self.used)
            except OSError as e:
                log(f"cannot write {self.path}: {e}; the charge is kept in memory")
        return {}

    def route(self, request: dict) -> dict:
        method = field(request, "method", str)
        path = field(request, "path", str)
        query = field(request, "query", str)
        # The host passes what follows /storage/v1/plugin/<name>: with its slash or without.
        if method != "GET" or path not in ("usage", "/usage"):
            return text_answer(404, ROUTE_HELP)
        account = query_value(query, "account")
        if account is None:
            return text_answer(400, "missing account: GET usage?account=NAME")
        if not is_account_name(account):
            return text_answer(400, "account must be 1 to 64 of A-Z a-z 0-9 _ . -")
        with self.lock:
            used = self.used.get(account, 0)
        body = cbor2.dumps({"account": account, "used": used, "limit": self.limit})
        return {"status": 200, "content-type": "application/cbor", "body": body}

    def start(self, _request: dict) -> dict:
        # No background service to begin, but the operator sees the plugin is serving (the
        # node sends `start` again to a process it had to start again).
        log(f"serving: {self.limit} bytes per account")
        return {}

    def nothing(self, _request: dict) -> dict:
        # stop: usage is already on disk.
        return {}


def field(request: dict, key: str, kind: type) -> object:
    value = request.get(key)
    if not isinstance(value, kind):
        raise CallError(400, f"{quoted(key)} missing or not a {kind.__name__}")
    return value


def rejected(status: int, code: str, message: str, details: object = None) -> dict:
    rejection = {"status": status, "code": code, "message": message}
    if details is not None:
        rejection["details"] = details
    return {"admit": False, "rejection": rejection}


def text_answer(status: int, text: str) -> dict:
    return {"status": status, "content-type": "text/plain; charset=utf-8", "body": text.encode()}


def query_value(query: str, key: str) -> Optional[str]:
    """The first value of `key`, as sent: account names need no percent-encoding."""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == key:
            return value
    return None


# --- HTTP -------------------------------------------------------------------------------

CALLS: Dict[Tuple[str, str], Callable[[Quota, dict], dict]] = {
    ("GET", "/gbs-plugin/v1/describe"): Quota.describe,
    ("POST", "/gbs-plugin/v1/server/admit"): Quota.admit,
    ("POST", "/gbs-plugin/v1/server/committed"): Quota.committed,
    ("POST", "/gbs-plugin/v1/server/route"): Quota.route,
    ("POST", "/gbs-plugin/v1/server/start"): Quota.start,
    ("POST", "/gbs-plugin/v1/server/stop"): Quota.nothing,
}


class Handler(BaseHTTPRequestHandler):
    # Keep-alive: the host reuses its connections. Every answer has a Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = f"gbs-quota-py/{VERSION}"

    def address_string(self) -> str:
        # On a Unix socket client_address is a str (often empty), not (host, port).
        if isinstance(self.client_address, tuple):
            return str(self.client_address[0])
        return "unix"

    def log_request(self, code: object = "-", size: object = "-") -> None:
        pass  # one line per call would flood the node's log; errors are still logged

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def dispatch(self, method: str) -> None:
        try:
            body = self.read_body()
            call = CALLS.get((method, self.path.split("?", 1)[0]))
            if call is None:
                raise CallError(404, f"no such call: {method} {self.path}")
            request = {}
            if method == "POST":
                try:
                    request = decode_cbor(body)
                except Exception as e:
                    raise CallError(400, f"the body is not one CBOR item: {e}") from e
                if not isinstance(request, dict):
                    raise CallError(400, "the body is not a CBOR map")
            self.answer(200, call(self.server.plugin, request))
        except CallError as e:
            self.answer(e.status, {"error": e.message})
        except Exception as e:  # a bug costs this call, not the process
            traceback.print_exc(file=sys.stderr)
            self.answer(500, {"error": f"internal error: {e}"})

    def read_body(self) -> bytes:
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise CallError(411, "send a Content-Length, not Transfer-Encoding")
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the body was not read: the stream is lost
            raise CallError(413, f"a body of 0 to {MAX_BODY} bytes, with its Content-Length")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise CallError(400, "the body ended early")
        return body

    def answer(self, status: int, value: object) -> None:
        body = cbor2.dumps(value)
        self.send_response(status)
        self.send_header("Content-Type", "application/cbor")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class UnixServer(socketserver.ThreadingUnixStreamServer):
    # Idle keep-alive connections must not hold the process at exit.
    daemon_threads = True
    block_on_close = False


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class Tcp6Server(TcpServer):
    address_family = socket.AF_INET6


def remove_stale_socket(path: str) -> None:
    """Removes a socket file left by a process that died, but not one still served."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise StartError(f"another process already serves {path}")


def listen(address: str) -> socketserver.BaseServer:
    """A server bound to `unix:PATH` or `tcp:HOST:PORT` (loopback only)."""
    kind, _, rest = address.partition(":")
    try:
        if kind == "unix" and rest:
            remove_stale_socket(rest)
            return UnixServer(rest, Handler)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
                raise ValueError("not a loopback address")
            server_class = Tcp6Server if ":" in host else TcpServer
            return server_class((host, int(port)), Handler)
    except ValueError as e:
        raise StartError(f"bad listen address {address}: {e}") from e
    except OSError as e:
        raise StartError(f"cannot listen on {address}: {e.strerror or e}") from e
    raise StartError(
        f"listen address {quoted(address)}: use unix:PATH or tcp:127.0.0.1:PORT"
    )


def exit_on_stdin_eof(server: socketserver.BaseServer) -> None:
    """The host closes stdin to stop the plugin, and stdin ends too when the node dies."""

    def watch() -> None:
        try:
            while os.read(sys.stdin.fileno(), 65536):
                pass
        except OSError:
            pass
        server.shutdown()

    threading.Thread(target=watch, name="stdin", daemon=True).start()


# --- start-up ---------------------------------------------------------------------------


def configuration(argv: Optional[list]) -> Tuple[str, str, str, Dict[str, str]]:
    """(listen address, name, state dir, settings): the environment, then the flags."""
    parser = argparse.ArgumentParser(description="quota: a gbs storage plugin service")
    parser.add_argument("--listen", help="unix:PATH or tcp:127.0.0.1:PORT")
    parser.add_argument("--state-dir", help="where usage.json is kept")
    parser.add_argument(
        "--setting", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    parser.add_argument("--name", help="the plugin's name in tahoe.cfg (default: quota)")
    args = parser.parse_args(argv)

    env = os.environ
    role = env.get("GBS_PLUGIN_ROLE", "server")
    if role != "server":
        raise StartError(f"quota has only a server side, not {quoted(role)}")
    try:
        settings = json.loads(env.get("GBS_PLUGIN_SETTINGS", "{}"))
    except ValueError as e:
        raise StartError(f"GBS_PLUGIN_SETTINGS is not JSON: {e}") from e
    if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
        raise StartError("GBS_PLUGIN_SETTINGS must be a JSON object of strings")
    for setting in args.setting:
        key, equals, value = setting.partition("=")
        if not equals:
            raise StartError(f"--setting {quoted(setting)}: use KEY=VALUE")
        settings[key.strip()] = value

    address = args.listen or env.get("GBS_PLUGIN_LISTEN")
    state_dir = args.state_dir or env.get("GBS_PLUGIN_STATE_DIR")
    name = args.name or env.get("GBS_PLUGIN_NAME") or "quota"
    if not address:
        raise StartError("nowhere to listen: set GBS_PLUGIN_LISTEN or --listen")
    if not state_dir:
        raise StartError("no state directory: set GBS_PLUGIN_STATE_DIR or --state-dir")
    if not os.path.isdir(state_dir):
        raise StartError(f"state directory {state_dir} does not exist")
    return address, name, state_dir, settings


def main(argv: Optional[list] = None) -> int:
    try:
        address, name, state_dir, settings = configuration(argv)
        plugin = Quota(name, parse_quota(settings), state_dir)
        server = listen(address)
    except StartError as e:
        log(str(e))
        return 2
    server.plugin = plugin
    # Started by the host: stop when it closes stdin. An operator's service may run with
    # stdin at /dev/null, which ends at once, so it does not watch.
    if "GBS_PLUGIN_LISTEN" in os.environ:
        exit_on_stdin_eof(server)
    where = address
    if isinstance(server, TcpServer):  # show the port chosen for tcp:127.0.0.1:0
        host, port = server.server_address[:2]
        where = f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"
    log(
        f"{name} {VERSION} serving {where}: {plugin.limit} bytes per account, "
        f"{len(plugin.used)} accounts in {plugin.path}"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    if isinstance(server, UnixServer):
        with contextlib.suppress(OSError):
            os.unlink(server.server_address)
    # Let a usage.json write in progress finish; later calls wait on the lock until exit.
    plugin.lock.acquire()
    return 0


if __name__ == "__main__":
    sys.exit(main())
