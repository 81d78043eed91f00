"""Failover time of an Artemis HA pair: from the kill -9 of the primary until the backup
accepted the first message sent after it.

A client given only the primary's URL (it learns the backup from the broker) sends durable
messages one by one, in a loop; the primary is killed, and the time from the kill to the
first ``Client.send`` that returns on the backup is the failover time. Each kill is made on
a fresh pair (stock JVM options), so that one kill's fail-back does not weigh on the next.

    python benchmarks/failover.py --kills 5 --modes shared-store,replication
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import proton_easy as pe
from proton_easy.testing import ArtemisHAPair


def _one_kill(mode: str) -> float:
    """A fresh pair; the client sends on the primary, which is killed: seconds until the
    backup accepted a send."""
    with ArtemisHAPair(mode, java_options=()) as pair:
        backup_at = f"127.0.0.1:{pair.backup.port}"
        # with proton's public API only (PROTON_EASY_PURE_PROTON=1) nothing is learned from the
        # broker: the backup is named then
        pure = os.environ.get("PROTON_EASY_PURE_PROTON", "") not in ("", "0")
        extra: Dict[str, Any] = {"urls": pair.urls} if pure else {}
        with pe.Client(pair.url, timeout=30, **extra) as client:
            state: Dict[str, Optional[float]] = {"killed": None, "first": None}
            stop = threading.Event()
            errors: List[BaseException] = []

            def sender() -> None:
                n = 0
                try:
                    while not stop.is_set():
                        n += 1
                        client.send("failover-bench", pe.Message(n, durable=True))
                        killed = state["killed"]
                        if (killed is not None and state["first"] is None
                                and backup_at in repr(client)):
                            state["first"] = time.monotonic() - killed
                except BaseException as exc:  # noqa: BLE001 - reported by the caller
                    errors.append(exc)

            thread = threading.Thread(target=sender, daemon=True)
            thread.start()
            try:
                time.sleep(2.0)  # sending steadily on the primary (and the JIT warm)
                state["killed"] = time.monotonic()
                pair.primary.kill()
                while state["first"] is None:
                    if errors:
                        raise errors[0]
                    time.sleep(0.01)
            finally:
                stop.set()
                thread.join(60)
            first = state["first"]
            assert first is not None
            return first


def measure(mode: str, kills: int = 5) -> Dict[str, object]:
    """Kill the primary of a fresh pair ``kills`` times: the failover times in seconds,
    their p50 and max."""
    times: List[float] = []
    for _ in range(kills):
        times.append(_one_kill(mode))
        print(f"  {mode}: failover in {times[-1]:.2f} s", flush=True)
    return {"mode": mode, "kills": kills, "seconds": times,
            "p50_s": statistics.median(times), "max_s": max(times)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--modes", default="shared-store,replication")
    parser.add_argument("--json", help="also write the results there")
    args = parser.parse_args(argv)
    results = [measure(mode, args.kills) for mode in args.modes.split(",")]
    print("\n| HA mode | kills | failover p50 | failover max |\n| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r['mode']} | {r['kills']} | {r['p50_s']:.2f} s | {r['max_s']:.2f} s |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
