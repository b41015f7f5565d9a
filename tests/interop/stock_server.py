"""Run a stock Tahoe-LAFS 1.20 Great Black Swamp storage server on 127.0.0.1.

Usage: stock_server.py STORAGE_DIR [--reserved-space N]

Prints one line, ``NURL <nurl>``, once the TLS listener is up, then serves
until stdin reaches EOF or the process gets SIGTERM/SIGINT, and exits 0.
Nothing else is written to stdout, so callers can read that line and keep
the pipe open as the server's lifetime handle.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python.filepath import FilePath

from allmydata.storage.http_server import HTTPServer, listen_tls
from allmydata.storage.server import StorageServer
from allmydata.util import base32

LISTEN_HOST = "127.0.0.1"


def main() -> int:
    args = parse_args()
    log_errors_to_stderr()
    storage = StorageServer(
        args.storage_dir, nodeid=os.urandom(20), reserved_space=args.reserved_space
    )
    # Stock nodes use 160 random bits rendered as 32 lowercase base32 chars.
    swissnum = base32.b2a(os.urandom(20))
    http_server = HTTPServer(reactor, storage, swissnum)
    startup = Startup()

    # listen_tls() reads the key and certificate from files, as a node reads
    # private/node.pem; a temporary directory stands in for private/.
    with tempfile.TemporaryDirectory(prefix="stock-server-tls-") as tls_dir:
        key_path, cert_path = write_tls_identity(tls_dir)

        def listen() -> None:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface=LISTEN_HOST)
            listening = listen_tls(
                http_server, LISTEN_HOST, endpoint, FilePath(key_path), FilePath(cert_path)
            )
            listening.addCallbacks(announce, startup.failed)

        # Listen (and so announce) only once the reactor runs: by then its
        # SIGINT/SIGTERM handlers, which stop it cleanly, are installed.
        reactor.callWhenRunning(listen)
        stop_on_stdin_eof()
        reactor.run()
    return 0 if startup.ok else 1


class Startup:
    """Remembers whether listening failed, for the exit code."""

    ok = True

    def failed(self, failure) -> None:
        self.ok = False
        sys.stderr.write("stock_server: could not listen: {}\n".format(failure.value))
        reactor.stop()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("storage_dir", help="storage directory (shares/ lives inside)")
    parser.add_argument(
        "--reserved-space",
        type=int,
        default=0,
        metavar="N",
        help="bytes of disk space to keep free, as [storage]reserved_space",
    )
    return parser.parse_args()


def log_errors_to_stderr() -> None:
    """Show tracebacks of stock's 500s as they happen; stdout stays reserved
    for the NURL line, and request logging stays off."""
    only_errors = LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [only_errors])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def announce(result) -> None:
    nurl, _port = result
    sys.stdout.write("NURL {}\n".format(nurl.to_text()))
    sys.stdout.flush()


def stop_on_stdin_eof() -> None:
    """Stop the reactor once stdin is closed, so a parent that dies without
    signalling us does not leave a stray server behind."""

    def wait_for_eof() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered
        # reader would abort interpreter shutdown when a signal ends the run.
        while os.read(sys.stdin.fileno(), 4096):
            pass
        reactor.callFromThread(stop_if_running)

    threading.Thread(target=wait_for_eof, daemon=True).start()


def stop_if_running() -> None:
    if reactor.running:
        reactor.stop()


def write_tls_identity(directory: str) -> tuple[str, str]:
    """Write a fresh RSA-2048 key and a self-signed certificate for it.

    The certificate mimics the Foolscap ``node.pem`` that stock nodes present:
    X.509 version 1 (no extensions), ``CN=newpb_thingy``, serial 1, valid for
    one year, sha256WithRSAEncryption. Version 1 matters because some TLS
    stacks (webpki) refuse it, and clients must cope with it anyway.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_der = version1_certificate(key)
    key_path = os.path.join(directory, "node.key")
    cert_path = os.path.join(directory, "node.crt")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(
            x509.load_der_x509_certificate(cert_der).public_bytes(
                serialization.Encoding.PEM
            )
        )
    return key_path, cert_path


def version1_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """Return the DER of a self-signed X.509 v1 certificate for ``key``.

    ``cryptography`` only builds v3 certificates, so build one without
    extensions, drop the explicit ``[0] version`` field from its
    TBSCertificate (absent means v1), and sign the result again.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newpb_thingy")])
    now = datetime.datetime.now(datetime.timezone.utc)
    v3 = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    tbs_tag, tbs_body, _ = der_read(v3.tbs_certificate_bytes)
    version_field = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (= v3)
    assert tbs_body.startswith(version_field), "unexpected TBSCertificate layout"
    tbs_v1 = der_encode(tbs_tag, tbs_body[len(version_field):])

    # The outer Certificate is SEQUENCE { tbs, signatureAlgorithm, signature }.
    _, cert_body, _ = der_read(v3.public_bytes(serialization.Encoding.DER))
    _, _, after_tbs = der_read(cert_body)
    _, _, after_alg = der_read(after_tbs)
    signature_algorithm = after_tbs[: len(after_tbs) - len(after_alg)]
    signature = key.sign(tbs_v1, padding.PKCS1v15(), hashes.SHA256())
    bit_string = der_encode(0x03, b"\x00" + signature)
    cert = der_encode(0x30, tbs_v1 + signature_algorithm + bit_string)

    parsed = x509.load_der_x509_certificate(cert)
    assert parsed.version == x509.Version.v1
    parsed.verify_directly_issued_by(parsed)
    return cert


def der_read(data: bytes) -> tuple[int, bytes, bytes]:
    """Split one DER TLV off ``data``: (tag, contents, remaining bytes)."""
    tag, first = data[0], data[1]
    if first < 0x80:
        length, start = first, 2
    else:
        n = first & 0x7F
        length, start = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    return tag, data[start : start + length], data[start + length :]


def der_encode(tag: int, contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        header = bytes([tag, length])
    else:
        octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
        header = bytes([tag, 0x80 | len(octets)]) + octets
    return header + contents


if __name__ == "__main__":
    sys.exit(main())
