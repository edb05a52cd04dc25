"""Soak: the scale-out layout under a long mixed load (issue 15, case 5 at full size).

Starts a PostgreSQL cluster of its own (Debian's binaries, a temp dir, a loopback port), two
API processes (``serve --no-worker``) and two ``worker`` processes on it (TEST DOUBLE
provider), then runs N clients for S seconds mixing create, list, show, wait, extend and
delete across 20 experiments; with ``--kill-api``, one API process is SIGKILLed halfway and
its clients go on with the other. Prints the requests, server errors, p50/p99 per operation
and phase, and the ledger once every task is final: lost, duplicated, orphaned (all must be 0).

Usage: PYTHONPATH=src python bench/soak.py [--clients 200] [--seconds 60] [--kill-api]
The CI runs the short variant: tests/faults/test_load.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import fresh_database
from tests.faults.support import (
    check_accepted,
    make_catalog,
    own_postgres,
    print_latencies,
    print_table,
    run_load,
    site,
    wait_settled,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--kill-api", action="store_true", help="SIGKILL one API process halfway")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sb-soak-") as data, own_postgres() as server, \
            fresh_database(server.url) as url, site(Path(data), url) as running:
        bases = [running.start_api(), running.start_api()]
        for name in ("worker-1", "worker-2"):
            running.start_worker(name)
        flavor, image = make_catalog(bases[0], running.token())
        load = run_load(running, bases, flavor, image, clients=args.clients, seconds=args.seconds,
                        kill_at=args.seconds / 2 if args.kill_api else None)
        finished = time.monotonic()
        ledger = wait_settled(running.database_url, running.data_dir, 600, "every task final after the soak")
        total = load.merged()
        lost = ledger.lost + check_accepted(total, ledger)
        errors = total.server_errors()
        print_table(f"soak: {args.clients} clients, {args.seconds:g} s, 2 API processes + 2 workers", [{
            "injected": f"SIGKILL of one API process at {args.seconds / 2:g} s" if args.kill_api else "none",
            "requests": sum(total.statuses.values()),
            "per second": f"{sum(total.statuses.values()) / args.seconds:.0f}",
            "server errors": sum(errors.values()),
            "accepted": f"{len(total.accepted_creates)} creates, {len(total.accepted_deletes)} deletes",
            "final states": ledger.final_states(),
            "lost/dup/orphaned": f"{lost}/{ledger.duplicated}/{ledger.orphaned}",
            "settled": f"{time.monotonic() - finished:.1f} s after the load",
        }])
        if errors:
            print(f"server errors (operation, status): {dict(errors)}")
        for phase, tally in load.phases.items():
            print(f"\n[{phase}]", end="")
            print_latencies(tally)
        return 0 if not errors and (lost, ledger.duplicated, ledger.orphaned, ledger.missing) == (0, 0, 0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
