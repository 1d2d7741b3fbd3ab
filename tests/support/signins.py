"""Wrong sign-ins arriving at a steady rate at a real server; a process of its own.

    python -m tests.support.signins PORT CAFILE --rate R --seconds S

`R` sign-ins a second (`POST /api/session`), evenly spaced, each on a connection of its own
from one of `ADDRESSES` loopback addresses (127.0.2.1, 127.0.2.2, ...) in turn, each sent on
time whatever the answers to earlier ones take: attackers do not wait for the server.
Every name is one nobody registered, tried once, and no address fails 20 times within
`ADDRESSES * 20 / R` seconds: the throttles let every one through (their free failures are
5 per account and 20 per address), so each costs the server a whole argon2id check, as a
wrong password would (an unknown name is checked against a hash of nothing, for that).

It runs at a lower priority (nice 10): an attacker's CPU is not the server's, and on a
test's machine it must not take the server's share.

Prints `signing in` once the first answer came, then at the end one JSON line: how many
were sent, over how many seconds (until the last answer; and from the first sent to the
last sent), the statuses (0: no answer), the answers' latency, and the most that one was
sent behind its schedule.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import threading
import time
from collections import Counter
from typing import Any

ADDRESSES = 40
NICENESS = 10
FIRST_ADDRESS = (127, 0, 2)  # 127.0.2.N: loopback, and no address the rest of a test uses


class SignIns:
    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.context = context
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.late = 0.0
        self.took = 0.0
        self.sending = 0.0  # from the first sign-in sent to the last
        self.answered = threading.Event()
        self._lock = threading.Lock()

    def sign_in(self, number: int) -> None:
        address = ".".join(map(str, (*FIRST_ADDRESS, number % ADDRESSES + 1)))
        body = json.dumps({"name": f"nobody-{number}", "password": "not the password"})
        started = time.monotonic()
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=60, source_address=(address, 0)
        )
        try:
            connection.request("POST", "/api/session", body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            status = response.status
        except (http.client.HTTPException, OSError):
            status = 0
        finally:
            connection.close()
        with self._lock:
            self.statuses[status] += 1
            self.latencies.append(time.monotonic() - started)
        self.answered.set()

    def run(self, rate: int, seconds: int) -> None:
        """Send them all, each in a thread of its own at its time, and wait for the answers."""
        start = time.monotonic()
        threads = []
        for number in range(rate * seconds):
            delay = start + number / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.late = max(self.late, -delay)
            thread = threading.Thread(target=self.sign_in, args=(number,))
            thread.start()
            threads.append(thread)
        self.sending = time.monotonic() - start
        for thread in threads:
            thread.join()
        self.took = time.monotonic() - start


def main() -> None:
    # An attacker's machine is not the server's: on the test's, it gives way to the server.
    os.nice(NICENESS)
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("cafile")
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    signins = SignIns(args.port, ssl.create_default_context(cafile=args.cafile))
    runner = threading.Thread(target=signins.run, args=(args.rate, args.seconds))
    runner.start()
    signins.answered.wait()
    print("signing in", flush=True)
    runner.join()
    latencies = sorted(signins.latencies)
    report: dict[str, Any] = {
        "sent": sum(signins.statuses.values()),
        "seconds": round(signins.took, 2),
        "sending_seconds": round(signins.sending, 2),
        "statuses": {str(status): count for status, count in sorted(signins.statuses.items())},
        "median_ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        "late_ms": round(1000 * signins.late, 1),
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
