"""Benchmark the Knox client against the simulator: list and assign 100,000 devices.

Run from the repo root: `.venv/bin/python bench/knox_list.py [--devices N] [--memory]`.
Starts the simulator in a subprocess (a real HTTP server, as in production), by default with a
SQLite state file so persistence is part of the cost. Prints on stdout:
  list_devices_per_s: devices listed per second by the client (typed Device objects)
  list_bare_100k_s: seconds to fetch the same devices with bare `requests` + `json.loads`
  list_vs_bare_ratio: the client's listing time over the bare one (goal: under 1.5)
  assign_devices_per_s: devices assigned per second
Both listings run in the same run, page by page interleaved (so load from elsewhere on the
machine hits both alike), best of ROUNDS each; details go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _simulator import (  # noqa: E402
    PAGE_SIZE,
    BarePager,
    client_config,
    seed_tenant,
    start_simulator,
)

from kmeweb.knox import KnoxClient, Profile  # noqa: E402

ROUNDS = 3


def paired_listing(client: KnoxClient, bare: BarePager, expected: int) -> tuple[float, float]:
    """Seconds for the client and for bare requests to list every device, page by page
    interleaved, so both see the same machine (other load on it hits both alike). Who asks
    first alternates from page to page: the second request of a page finds it warm in the
    simulator (its SQLite pages, its serialized rows), which would otherwise favour one side."""
    client_s = bare_s = 0.0
    pages = client.iter_device_pages(page_size=PAGE_SIZE)
    seen_client = seen_bare = page_num = 0

    def client_page() -> float:
        nonlocal seen_client
        started = time.perf_counter()
        page = next(pages)
        seen_client += len([d.id for d in page.devices])
        return time.perf_counter() - started

    def bare_page() -> float:
        nonlocal seen_bare
        started = time.perf_counter()
        seen_bare += bare.page(page_num)
        return time.perf_counter() - started

    while seen_client < expected:
        if page_num % 2:
            bare_s += bare_page()
            client_s += client_page()
        else:
            client_s += client_page()
            bare_s += bare_page()
        page_num += 1
    assert seen_client == seen_bare == expected, (seen_client, seen_bare)
    return client_s, bare_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--memory", action="store_true", help="no SQLite state file")
    args = parser.parse_args()

    tmp = tempfile.TemporaryDirectory()
    proc, url = start_simulator(None if args.memory else os.path.join(tmp.name, "sim.sqlite"))
    try:
        started = time.perf_counter()
        creds = seed_tenant(url, args.devices)
        print(f"seeded {args.devices} devices in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)  # fmt: skip

        config = client_config(creds, url, page_size=PAGE_SIZE, batch_size=PAGE_SIZE)
        with KnoxClient(config) as client:
            client.check_connection()  # token fetched outside the timed part
            bare = BarePager(url, creds)
            paired_listing(client, bare, args.devices)  # warm the simulator's serialized rows
            list_times, bare_times = [], []
            for _ in range(ROUNDS):
                client_s, bare_s = paired_listing(client, bare, args.devices)
                list_times.append(client_s)
                bare_times.append(bare_s)
            list_s, bare_s = min(list_times), min(bare_times)
            ids = [d.id for d in client.iter_devices()]
            assert len(ids) == args.devices, len(ids)

            profile = client.create_profile(
                Profile(
                    name="Bench profile",
                    do_enabled=True,
                    skip_setup_wizard=True,
                    supported_mdm="kmeweb",
                    allow_user_cancel=False,
                )
            )
            started = time.perf_counter()
            result = client.assign_profile(profile.id, ids)
            assign_s = time.perf_counter() - started
            assert result.ok and len(result.succeeded) == args.devices, result.counts()

        print(f"list: {list_s:.2f} s, assign: {assign_s:.2f} s ({result.batches} batches), "
              f"state: {'memory' if args.memory else 'sqlite'}", file=sys.stderr)  # fmt: skip
        print(f"client list rounds: {[round(t, 2) for t in list_times]}, bare: "
              f"{[round(t, 2) for t in bare_times]}", file=sys.stderr)  # fmt: skip
        print(f"list_devices_per_s: {args.devices / list_s:.0f} devices/s")
        print(f"list_bare_100k_s: {bare_s * 100_000 / args.devices:.2f} s")
        print(f"list_vs_bare_ratio: {list_s / bare_s:.2f}")
        print(f"assign_devices_per_s: {args.devices / assign_s:.0f} devices/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
