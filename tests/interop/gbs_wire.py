"""GBS wire vocabulary for raw requests: paths, secret headers, CBOR bodies.

Everything here builds *correct* requests; cases that need malformed input
start from these and break one thing.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Iterable, Optional

import cbor2

CBOR = "application/cbor"
OCTET_STREAM = "application/octet-stream"
SET_TAG = 258
MAX_MUTABLE_SHARE_SIZE = 69105 * 1000 * 1000 * 1000 * 1000


def si_text(si: bytes) -> str:
    """Storage index as it appears in paths: 26 lowercase base32 chars."""
    return base64.b32encode(si).decode("ascii").rstrip("=").lower()


# --- paths -----------------------------------------------------------------

PREFIX = "/storage/v1"


def version_path() -> str:
    return PREFIX + "/version"


def allocate_path(si: bytes) -> str:
    return "{}/immutable/{}".format(PREFIX, si_text(si))


def immutable_share_path(si: bytes, shnum: int) -> str:
    """PATCH (upload) and GET (read) share."""
    return "{}/immutable/{}/{}".format(PREFIX, si_text(si), shnum)


def abort_path(si: bytes, shnum: int) -> str:
    return immutable_share_path(si, shnum) + "/abort"


def immutable_shares_path(si: bytes) -> str:
    return "{}/immutable/{}/shares".format(PREFIX, si_text(si))


def immutable_corrupt_path(si: bytes, shnum: int) -> str:
    return immutable_share_path(si, shnum) + "/corrupt"


def lease_path(si: bytes) -> str:
    return "{}/lease/{}".format(PREFIX, si_text(si))


def rtw_path(si: bytes) -> str:
    return "{}/mutable/{}/read-test-write".format(PREFIX, si_text(si))


def mutable_share_path(si: bytes, shnum: int) -> str:
    return "{}/mutable/{}/{}".format(PREFIX, si_text(si), shnum)


def mutable_shares_path(si: bytes) -> str:
    return "{}/mutable/{}/shares".format(PREFIX, si_text(si))


def mutable_corrupt_path(si: bytes, shnum: int) -> str:
    return mutable_share_path(si, shnum) + "/corrupt"


# Endpoints that exist for both kinds; ``kind`` is "immutable" or "mutable".


def share_path(kind: str, si: bytes, shnum: int) -> str:
    return immutable_share_path(si, shnum) if kind == "immutable" else mutable_share_path(si, shnum)


def shares_path(kind: str, si: bytes) -> str:
    return immutable_shares_path(si) if kind == "immutable" else mutable_shares_path(si)


def corrupt_path(kind: str, si: bytes, shnum: int) -> str:
    return immutable_corrupt_path(si, shnum) if kind == "immutable" else mutable_corrupt_path(si, shnum)


# --- secrets ---------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """Per-request secrets; ``None`` means "do not send this one"."""

    renew: Optional[bytes] = None
    cancel: Optional[bytes] = None
    upload: Optional[bytes] = None
    write_enabler: Optional[bytes] = None

    @classmethod
    def for_allocate(cls) -> "Secrets":
        """Fresh lease secrets and a 20-byte upload secret, as Tahoe's client."""
        return cls(renew=os.urandom(32), cancel=os.urandom(32), upload=os.urandom(20))

    @classmethod
    def for_lease(cls) -> "Secrets":
        return cls(renew=os.urandom(32), cancel=os.urandom(32))

    @classmethod
    def for_rtw(cls, write_enabler: Optional[bytes] = None) -> "Secrets":
        """Fresh lease secrets with the given (or a fresh) write enabler."""
        return cls(os.urandom(32), os.urandom(32), write_enabler=write_enabler or os.urandom(32))

    def only(self, *names: str) -> "Secrets":
        """A copy with just the named fields, e.g. ``only("upload")``."""
        return Secrets(**{name: getattr(self, name) for name in names})

    def header_lines(self) -> list[tuple[str, str]]:
        """One ``X-Tahoe-Authorization`` line per secret, in the stock
        client's order (renew, cancel, upload, write-enabler)."""
        named = [
            ("lease-renew-secret", self.renew),
            ("lease-cancel-secret", self.cancel),
            ("upload-secret", self.upload),
            ("write-enabler", self.write_enabler),
        ]
        return [secret_header(name, value) for name, value in named if value is not None]

    def encoded_values(self) -> list[str]:
        """The base64 strings that go on the wire (to look for leaks)."""
        return [line.split(" ", 1)[1] for _, line in self.header_lines()]


def secret_header(name: str, value: bytes) -> tuple[str, str]:
    return ("X-Tahoe-Authorization", "{} {}".format(name, base64.b64encode(value).decode()))


# --- CBOR bodies -----------------------------------------------------------


def cbor_set(items: Iterable[int]) -> cbor2.CBORTag:
    return cbor2.CBORTag(SET_TAG, sorted(items))


def allocate_body(share_numbers: Iterable[int], allocated_size: int) -> bytes:
    return cbor2.dumps(
        {"share-numbers": cbor_set(share_numbers), "allocated-size": allocated_size}
    )


def test_write_vector(
    test: Iterable[tuple[int, int, bytes]] = (),
    write: Iterable[tuple[int, bytes]] = (),
    new_length: Optional[int] = None,
) -> dict:
    """One share's entry of ``test-write-vectors``."""
    return {
        "test": [{"offset": o, "size": s, "specimen": spec} for o, s, spec in test],
        "write": [{"offset": o, "data": d} for o, d in write],
        "new-length": new_length,
    }


def rtw_body(test_write_vectors: dict, read_vector: Iterable[tuple[int, int]] = ()) -> bytes:
    return cbor2.dumps(
        {
            "test-write-vectors": test_write_vectors,
            "read-vector": [{"offset": o, "size": s} for o, s in read_vector],
        }
    )


def corrupt_body(reason: str) -> bytes:
    return cbor2.dumps({"reason": reason})
