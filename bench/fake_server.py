"""One fake destination in its own process, so its CPU never competes with the consumer being measured.

    python -m bench.fake_server <ga4|meta|appsflyer> <latency_seconds>

Prints its base URL on the first line, then answers commands on stdin, one per line:
`stats` -> one JSON line {"requests": n, "accepted_requests": n, "events": n}; `reset`; EOF stops it.
"""

from __future__ import annotations

import json
import sys

from relay_local.fakes.appsflyer import FakeAppsflyer
from relay_local.fakes.base import FakeServer
from relay_local.fakes.ga4 import FakeGa4
from relay_local.fakes.meta import FakeMeta

FAKES: dict[str, type[FakeServer]] = {"ga4": FakeGa4, "meta": FakeMeta, "appsflyer": FakeAppsflyer}


def main() -> None:
    name, latency = sys.argv[1], float(sys.argv[2])
    fake = FAKES[name]().start()
    fake.latency_seconds = latency
    print(fake.url, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            stats = {
                "requests": len(fake.received),
                "accepted_requests": len(fake.accepted),
                "events": len(getattr(fake, "events", [])),
            }
            print(json.dumps(stats), flush=True)
        elif command == "reset":
            fake.reset()
            fake.latency_seconds = latency
            print("{}", flush=True)
    fake.stop()


if __name__ == "__main__":
    main()
