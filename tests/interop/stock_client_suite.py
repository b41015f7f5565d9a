"""GBS conformance suite: stock Tahoe 1.20's client plus raw HTTPS requests.

Usage: stock_client_suite.py NURL --target {gbs,stock} [--case NAME ...]
       stock_client_suite.py --list

Prints ``PASS <name>`` or ``FAIL <name>: <reason>`` per case (and
``NOTE <name>: <text>`` where a check was skipped), then ``N passed, M failed``.
Exits 0 only when nothing failed.

``--target stock`` expects stock Tahoe's known bugs (500s for some client
mistakes, secrets echoed in error bodies); ``--target gbs`` expects the clean
4xx answers the protocol reference names instead.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from hyperlink import DecodedURL
from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from allmydata.storage.http_client import (
    ClientException,
    StorageClientFactory,
    StorageClientGeneral,
    StorageClientImmutables,
    StorageClientMutables,
)

# Importing the case modules registers their cases, in this order.
import cases_client  # noqa: F401
import cases_raw_access  # noqa: F401
import cases_raw_immutable  # noqa: F401
import cases_raw_mutable  # noqa: F401
import cases_raw_requests  # noqa: F401
from checks import CaseFailure
from gbs_ops import RawGbs
from nurl import Nurl
from raw_https import RawClient
from suite import CASES, TARGETS, Case, Context

# A stuck server must fail one case, not hang the run.
CASE_TIMEOUT_SECONDS = 30


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nurl", nargs="?", help="pb://<spki-hash>@<host>:<port>/<swissnum>#v=1")
    parser.add_argument("--target", choices=TARGETS, help="which server's behaviour to expect")
    parser.add_argument(
        "--case", action="append", default=[], metavar="NAME", help="run only this case (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    args = parser.parse_args(argv)
    if not args.list and (args.nurl is None or args.target is None):
        parser.error("NURL and --target are required unless --list is given")
    if args.nurl is not None:
        try:
            Nurl.parse(args.nurl)
        except ValueError as e:
            parser.error(str(e))
    unknown = [name for name in args.case if name not in CASES]
    if unknown:
        parser.error("unknown case(s): {} (see --list)".format(", ".join(unknown)))
    return args


async def make_context(reactor, nurl_text: str, target: str) -> Context:
    nurl = Nurl.parse(nurl_text)
    # Plain TCP, no Tor: the same settings a default stock node uses.
    factory = StorageClientFactory({"tcp": "tcp"}, None)
    client = await factory.create_storage_client(DecodedURL.from_text(nurl_text), reactor)
    return Context(
        target=target,
        nurl=nurl,
        raw=RawGbs(RawClient(nurl)),
        client=client,
        general=StorageClientGeneral(client),
        immutables=StorageClientImmutables(client),
        mutables=StorageClientMutables(client),
    )


async def run_case(reactor, ctx: Context, case: Case) -> bool:
    """Run one case and print its NOTE lines and outcome line; True if it passed."""
    ctx.notes.clear()
    failure = None
    try:
        await ensureDeferred(case.run(ctx)).addTimeout(CASE_TIMEOUT_SECONDS, reactor)
    except CaseFailure as e:
        failure = str(e)
    except Exception as e:  # the server misbehaved in a way no check anticipated
        failure = "unexpected " + describe(e)
    for text in ctx.notes:
        print("NOTE {}: {}".format(case.name, text))
    if failure is None:
        print("PASS " + case.name, flush=True)
    else:
        # One line per case, whatever the message holds.
        print("FAIL {}: {}".format(case.name, failure.replace("\n", " | ")), flush=True)
    return failure is None


def describe(error: Exception) -> str:
    if isinstance(error, ClientException):
        return "HTTP {} from the server (stock client error, body {!r})".format(error.code, error.body)
    return "".join(traceback.format_exception_only(type(error), error)).strip()


async def run(reactor, args: argparse.Namespace) -> None:
    selected = [CASES[name] for name in args.case] or list(CASES.values())
    ctx = await make_context(reactor, args.nurl, args.target)
    passed = failed = 0
    try:
        for case in selected:
            if await run_case(reactor, ctx, case):
                passed += 1
            else:
                failed += 1
    finally:
        # Idle persistent connections would otherwise keep the reactor busy.
        await ctx.client.shutdown()
    print("{} passed, {} failed".format(passed, failed), flush=True)
    raise SystemExit(0 if failed == 0 else 1)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return
    task.react(lambda reactor: ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main(sys.argv[1:])
