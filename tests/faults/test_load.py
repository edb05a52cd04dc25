"""Issue 15, case 5: load on the scale-out layout (README: ``serve --no-worker`` processes and
``worker`` processes on one PostgreSQL).

Two API processes and two workers on one PostgreSQL (a cluster of the test's own: the load's
connections would crowd the machine's shared server); concurrent clients mix create, list,
show, wait, extend and delete across 20 experiments; halfway through one API process is
SIGKILLed and its clients go on with the other. No server error, every accepted resource
final and consistent with the provider; p50/p99 per operation printed for both phases.
The long run (200 clients, 60 s) is ``bench/soak.py``.
"""

from __future__ import annotations

import time

import pytest

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

CLIENTS = 40
SECONDS = 16


@pytest.fixture()
def scaled_out(tmp_path):
    with own_postgres() as server, fresh_database(server.url) as url, site(tmp_path, url) as running:
        yield running


def test_two_apis_two_workers_under_mixed_load_one_api_killed_halfway(scaled_out) -> None:
    running = scaled_out
    bases = [running.start_api(), running.start_api()]
    for name in ("worker-1", "worker-2"):
        running.start_worker(name)
    flavor, image = make_catalog(bases[0], running.token())

    load = run_load(running, bases, flavor, image, clients=CLIENTS, seconds=SECONDS, kill_at=SECONDS / 2)
    finished = time.monotonic()
    ledger = wait_settled(running.database_url, running.data_dir, 90, "every task final after the load")
    settled_in = time.monotonic() - finished
    total = load.merged()
    lost = ledger.lost + check_accepted(total, ledger)

    print_table(f"case 5: {CLIENTS} clients, {SECONDS} s, 2 API processes + 2 workers", [{
        "injected": f"SIGKILL of one API process at {SECONDS / 2:g} s",
        "accepted": f"{len(total.accepted_creates)} creates, {len(total.accepted_deletes)} deletes",
        "requests": sum(total.statuses.values()),
        "failovers": total.failovers,
        "final states": ledger.final_states(),
        "lost/dup/orphaned": f"{lost}/{ledger.duplicated}/{ledger.orphaned}",
        "recovery": f"all final {settled_in:.1f} s after the load",
    }])
    for phase, tally in load.phases.items():
        print(f"\n[{phase}]", end="")
        print_latencies(tally)

    assert len(load.phases) == 2 and all(t.latencies for t in load.phases.values())
    assert total.server_errors() == {}, (total.server_errors(), running.logs_tail())
    assert total.failovers, "no client noticed the killed API process"
    assert total.accepted_creates and total.accepted_deletes
    assert (lost, ledger.duplicated, ledger.orphaned, ledger.missing) == (0, 0, 0, 0), running.logs_tail()
    assert {r["status"] for r in ledger.resources.values()} <= {"running", "deleted"}, ledger.final_states()
    assert all(p.poll() is None for p in running.workers.values())
