"""Benchmark the Knox client against the simulator: list and assign 100,000 devices.

Run from the repo root: `.venv/bin/python bench/knox_list.py [--devices N] [--memory]`.
Starts the simulator in a subprocess (a real HTTP server, as in production), by default with a
SQLite state file so persistence is part of the cost. Prints exactly two figures on stdout:
`list_devices_per_s: N devices/s` and `assign_devices_per_s: N devices/s`; details go to stderr.
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

from _simulator import PAGE_SIZE, client_config, seed_tenant, start_simulator  # noqa: E402

from kmeweb.knox import KnoxClient, Profile  # noqa: E402


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
            started = time.perf_counter()
            ids = [d.id for d in client.iter_devices()]
            list_s = time.perf_counter() - started
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
        print(f"list_devices_per_s: {args.devices / list_s:.0f} devices/s")
        print(f"assign_devices_per_s: {args.devices / assign_s:.0f} devices/s")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        tmp.cleanup()


if __name__ == "__main__":
    main()
