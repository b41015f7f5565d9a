"""Follow a Tahoe-LAFS introducer's storage announcements for `gbs gateway`.

Run by the gateway with the Python of a stock Tahoe installation (the introducer speaks
Foolscap, which only Tahoe's own code speaks):

    python -c SCRIPT CACHE_FILE < (INTRODUCER_FURL, newline, then nothing until the end)

Writes one JSON object per line on stdout: first {"ready": true} once Tahoe's modules are
loaded and the introducer is being dialled, then {"server_id": "v0-...", "announcement":
{...}} for every storage announcement, as the introducer relays it (signature already
checked by Tahoe's introducer client; repeated ones are dropped by it). The FURL comes on
stdin, not in the arguments, which other local users can read. Exits when stdin reaches
EOF, which is how the gateway stops it. Errors go to stderr.
"""

import json
import sys
import threading


def main() -> int:
    cache = sys.argv[1]
    furl = sys.stdin.buffer.readline().decode("ascii").strip()
    import allmydata
    from allmydata.introducer.client import IntroducerClient
    from foolscap.api import Tub
    from twisted.internet import reactor
    from twisted.python.filepath import FilePath

    def emit(record) -> None:
        sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
        sys.stdout.flush()

    def announced(key_s, announcement) -> None:
        emit({"server_id": key_s.decode("ascii"), "announcement": announcement})

    def start() -> None:
        tub = Tub()
        tub.startService()
        client = IntroducerClient(
            tub,
            furl.encode("ascii"),
            "gbs-gateway",
            str(allmydata.__full_version__),
            "1.0",
            lambda: (0, ""),  # for publishing, which this client never does
            FilePath(cache),
        )
        client.subscribe_to("storage", announced)
        client.startService()
        emit({"ready": True})

    def stop_at_stdin_eof() -> None:
        sys.stdin.buffer.read()
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=stop_at_stdin_eof, daemon=True).start()
    reactor.callWhenRunning(start)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
