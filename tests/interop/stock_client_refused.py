"""Stock Tahoe 1.20's client against a gbs that requires plugin data (the allow-list
sample plugin): it still reads the version, and every other operation is refused with a
clear status (401). The stock client's exception keeps no body, so the structured
rejection body and headers are checked on the same request sent raw.

Usage: stock_client_refused.py NURL

Prints ``PASS <name>`` or ``FAIL <name>: <reason>`` per check, then ``N passed, M failed``.
"""

from __future__ import annotations

import sys

from hyperlink import DecodedURL
from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from gbs_ops import RawGbs
from nurl import Nurl
from raw_https import RawClient
from allmydata.storage.http_client import (
    ClientException,
    StorageClientFactory,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
)


async def run(reactor, nurl: str) -> None:
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    client = await factory.create_storage_client(DecodedURL.from_text(nurl), reactor)
    results = []

    async def expect_refused(name, awaitable, status):
        try:
            await awaitable
        except ClientException as e:
            if e.code != status:
                results.append((name, "status {} instead of {}".format(e.code, status)))
            else:
                results.append((name, None))
        else:
            results.append((name, "the call succeeded"))

    try:
        try:
            version = await StorageClientGeneral(client).get_version()
            results.append(("version-is-open", None if version else "empty version"))
        except Exception as e:  # noqa: BLE001
            results.append(("version-is-open", repr(e)))
        si = b"\x07" * 16
        await expect_refused(
            "list-immutable-refused", StorageClientImmutables(client).list_shares(si), 401
        )
        await expect_refused(
            "list-mutable-refused", StorageClientMutables(client).list_shares(si), 401
        )
        await expect_refused(
            "lease-refused",
            StorageClientGeneral(client).add_or_renew_lease(si, b"r" * 32, b"c" * 32),
            401,
        )
        raw = RawGbs(RawClient(Nurl.parse(nurl))).list_shares("immutable", si)
        body = raw.cbor() if raw.content_type == "application/cbor" else None
        expected = {"plugin": "allow-list", "code": "token-required"}
        if raw.status != 401 or raw.headers.get("X-Tahoe-Plugin-Rejected") != "allow-list":
            results.append(("raw-rejection", "status {} headers {}".format(raw.status, dict(raw.headers))))
        elif not isinstance(body, dict) or any(body.get(k) != v for k, v in expected.items()):
            results.append(("raw-rejection", "body {!r}".format(body)))
        elif sorted(body) != ["code", "details", "message", "plugin"]:
            results.append(("raw-rejection", "keys {!r}".format(sorted(body))))
        else:
            results.append(("raw-rejection", None))
    finally:
        await client.shutdown()
    failed = 0
    for name, failure in results:
        if failure is None:
            print("PASS " + name, flush=True)
        else:
            failed += 1
            print("FAIL {}: {}".format(name, failure), flush=True)
    print("{} passed, {} failed".format(len(results) - failed, failed), flush=True)
    raise SystemExit(0 if failed == 0 else 1)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    task.react(lambda reactor: ensureDeferred(run(reactor, argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
