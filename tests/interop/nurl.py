"""NURL parsing and SPKI pinning, as the GBS client side needs them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hyperlink import DecodedURL


@dataclass(frozen=True)
class Nurl:
    """The parts of ``pb://<spki-hash>@<host>:<port>/<swissnum>#v=1``."""

    text: str
    spki_hash: str
    host: str
    port: int
    swissnum: str

    @classmethod
    def parse(cls, text: str) -> "Nurl":
        url = DecodedURL.from_text(text)
        if url.scheme != "pb" or url.fragment != "v=1":
            raise ValueError("not an HTTP NURL (need pb://...#v=1): {}".format(text))
        if not url.user or not url.path or not url.port:
            raise ValueError("NURL lacks hash, swissnum or port: {}".format(text))
        return cls(text, url.user, url.host, url.port, url.path[0])

    def authorization(self) -> str:
        """The ``Authorization`` value: base64 of the swissnum's ASCII text."""
        return "Tahoe-LAFS " + base64.b64encode(self.swissnum.encode("ascii")).decode()

    def matches_certificate(self, cert_der: bytes) -> bool:
        return hmac.compare_digest(spki_hash(cert_der), self.spki_hash)


def spki_hash(cert_der: bytes) -> str:
    """Unpadded URL-safe base64 of SHA-256 over the DER SubjectPublicKeyInfo."""
    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
