"""Issue 15, case 4: workers die repeatedly.

100 creates (and a delete for every other one) through an API process while two worker
processes take turns being SIGKILLed every few seconds and started again. Afterwards every
task is final and the TEST DOUBLE provider's nodes match the database: none lost, none created
twice, none left behind for a deleted resource.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from tests.conftest import fresh_database
from tests.faults.support import (
    Client,
    Tally,
    check_accepted,
    make_catalog,
    print_latencies,
    print_table,
    site,
    wait_settled,
)

CREATES = 100
CLIENTS = 10
KILL_EVERY_SECONDS = 3


@pytest.fixture()
def killable(pg_admin_url, tmp_path):
    with fresh_database(pg_admin_url) as url, site(tmp_path, url) as running:
        yield running


def test_workers_sigkilled_repeatedly_lose_duplicate_and_orphan_nothing(killable) -> None:
    running = killable
    base = running.start_api()
    flavor, image = make_catalog(base, running.token())
    names = ["worker-a", "worker-b"]
    for name in names:
        running.start_worker(name)
    tally = Tally()
    requests_done = threading.Event()
    kills: list[float] = []

    def killer() -> None:
        """Kill the workers in turn every few seconds (each restarted at once) until every
        request was answered, and at least a few times."""
        turn = 0
        while not requests_done.is_set() or len(kills) < 4:
            time.sleep(KILL_EVERY_SECONDS)
            name = names[turn % len(names)]
            running.kill(running.workers[name])
            kills.append(time.monotonic())
            running.start_worker(name, wait=False)
            turn += 1

    async def user(number: int, http: httpx.AsyncClient) -> None:
        client = Client(http, [base], tally, running.token("alice", "faults", f"exp-{number % 5}"))
        for made in range(CREATES // CLIENTS):
            resource_id = await client.create(flavor, image, f"c{number}-{made}", {"delay_s": 1})
            assert resource_id, "the create was refused"
            await asyncio.sleep(0.5)
            if made % 2:
                assert await client.delete(resource_id), "the delete was refused"

    async def load() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(user(i, http) for i in range(CLIENTS)))

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        asyncio.run(load())
    finally:
        requests_done.set()
        thread.join()
    assert all(running.workers[name].poll() is None for name in names), running.logs_tail()

    ledger = wait_settled(running.database_url, running.data_dir, 150, "every task final after the kills")
    recovered_in = time.monotonic() - kills[-1]
    lost = ledger.lost + check_accepted(tally, ledger)
    interrupted = sum(running.log(name).read_text().count("queue.stalled_job_retried") for name in names)
    print_table("case 4: workers SIGKILLed repeatedly", [{
        "injected": f"{len(kills)} SIGKILLs, every {KILL_EVERY_SECONDS} s, alternating 2 workers",
        "jobs interrupted": interrupted,
        "accepted": f"{len(tally.accepted_creates)} creates, {len(tally.accepted_deletes)} deletes",
        "final states": ledger.final_states(),
        "lost/dup/orphaned": f"{lost}/{ledger.duplicated}/{ledger.orphaned}",
        "recovery": f"all final {recovered_in:.1f} s after the last kill",
    }])
    print_latencies(tally)
    assert len(tally.accepted_creates) == CREATES and len(tally.accepted_deletes) == CREATES // 2
    assert tally.server_errors() == {}
    assert interrupted, "no kill interrupted a running job: the test proved nothing"
    assert (lost, ledger.duplicated, ledger.orphaned, ledger.missing) == (0, 0, 0, 0), running.logs_tail()
    statuses = {r["status"] for r in ledger.resources.values()}
    assert statuses == {"running", "deleted"}, ledger.final_states()
    running_count = sum(1 for r in ledger.resources.values() if r["status"] == "running")
    assert running_count == len(ledger.nodes) == CREATES // 2
