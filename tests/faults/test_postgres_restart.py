"""Issue 15, case 1: PostgreSQL restarts under load.

A cluster of the test's own (the machine's server is shared) carries an API process and a
worker process; clients create, show and delete resources (TEST DOUBLE provider) while the
cluster is stopped (fast shutdown: every connection cut) and started again some seconds later.
During the outage requests get 503 with ``Retry-After`` (never 500, never a hang); the
service and the worker reconnect by themselves; every request answered 202 is carried out.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from sqlalchemy import text

from slices_blueprint.core.database import Database
from slices_blueprint.core.errors import database_unavailable
from tests.conftest import fresh_database
from tests.faults.support import (
    Client,
    Tally,
    check_accepted,
    make_catalog,
    own_postgres,
    print_latencies,
    print_table,
    site,
    wait_settled,
)

CLIENTS = 8
RUN_SECONDS = 18
OUTAGE_AT, OUTAGE_SECONDS = 6, 5
HANG_SECONDS = 10  # no answer may take longer, outage or not


@pytest.fixture()
def restartable(tmp_path):
    with own_postgres() as server, fresh_database(server.url) as url, site(tmp_path, url) as running:
        yield server, running


def test_postgres_restart_mid_run_answers_503_then_recovers_losing_nothing(restartable) -> None:
    server, running = restartable
    base = running.start_api()
    worker = running.start_worker("worker-1")
    flavor, image = make_catalog(base, running.token())
    tally = Tally()
    outage: dict[str, float] = {}
    # (time, status) of a steady reader, to time recovery; a request that got no answer is
    # recorded by its error's name and when it started (a hang shows as a ReadTimeout)
    probes: list[tuple[float, int | str]] = []

    def restart() -> None:
        time.sleep(OUTAGE_AT)
        outage["stopping"] = time.monotonic()
        server.stop()
        outage["down"] = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        outage["starting"] = time.monotonic()
        server.start()
        outage["up"] = time.monotonic()

    async def user(number: int, http: httpx.AsyncClient, end: float) -> None:
        client = Client(http, [base], tally, running.token("alice", "faults", f"exp-{number}"))
        made = 0
        while time.monotonic() < end:
            resource_id = await client.create(flavor, image, f"n{number}-{made}", {"delay_s": 0.5})
            made += 1
            if resource_id is None:
                continue
            await client.call("show", "GET", f"/resources/{resource_id}")
            if made % 2 == 0:
                await client.delete(resource_id)
            await asyncio.sleep(0.2)

    async def reader(http: httpx.AsyncClient, end: float) -> None:
        headers = {"Authorization": f"Bearer {running.token('alice', 'faults', 'exp-0')}"}
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                response = await http.get(f"{base}/apis/bi.slices.eu/v1alpha2/resources", headers=headers)
                probes.append((time.monotonic(), response.status_code))
            except httpx.TransportError as exc:
                probes.append((started, type(exc).__name__))
            await asyncio.sleep(0.1)

    async def load() -> None:
        end = time.monotonic() + RUN_SECONDS
        async with httpx.AsyncClient(timeout=HANG_SECONDS + 20) as http:
            await asyncio.gather(reader(http, end), *(user(i, http, end) for i in range(CLIENTS)))

    restarter = threading.Thread(target=restart)
    restarter.start()
    asyncio.run(load())
    restarter.join()

    assert "up" in outage, "the cluster did not come back"
    statuses = {status for _, status in probes}
    assert 503 in statuses, f"no request saw the outage: {sorted(map(str, statuses))}, {outage}, {probes}"
    assert tally.server_errors(allowed=frozenset({503})) == {}, running.logs_tail()
    assert tally.unavailable_without_retry_after == 0
    slowest = max(max(v) for v in tally.latencies.values())
    assert slowest < HANG_SECONDS, f"a request took {slowest:.1f} s"
    recovered_at = next(t for t, status in probes if t > outage["up"] and status == 200)
    during = [status for t, status in probes if outage["down"] < t < outage["starting"]]
    assert during and set(during) == {503}, f"answers while the database was down: {set(during)}"

    settle_from = time.monotonic()
    ledger = wait_settled(running.database_url, running.data_dir, 90, "every task final after the restart")
    settled_in = time.monotonic() - settle_from
    assert worker.poll() is None and all(p.poll() is None for p in running.apis.values()), running.logs_tail()
    worker_log = running.log("worker-1").read_text()
    assert "worker.database_lost" in worker_log or "worker.stopped_by_itself" in worker_log, worker_log[-3000:]
    assert worker_log.count("worker.started") >= 2, "the worker should have started again by itself"

    lost = ledger.lost + check_accepted(tally, ledger)
    print_table("case 1: PostgreSQL restarted under load", [{
        "injected": f"pg_ctl stop -m fast, {OUTAGE_SECONDS} s down, start",
        "accepted": f"{len(tally.accepted_creates)} creates, {len(tally.accepted_deletes)} deletes",
        "503 seen": sum(n for (_, s), n in tally.statuses.items() if s == 503),
        "final states": ledger.final_states(),
        "lost/dup/orphaned": f"{lost}/{ledger.duplicated}/{ledger.orphaned}",
        "recovery": f"API {recovered_at - outage['up']:.1f} s after start; all final {settled_in:.1f} s after load",
    }])
    print_latencies(tally)
    assert tally.accepted_creates, "no create was accepted"
    assert (lost, ledger.duplicated, ledger.orphaned, ledger.missing) == (0, 0, 0, 0), running.logs_tail()


async def test_reads_and_sessions_fail_at_once_while_postgres_is_down() -> None:
    """Longer outages than the run above: with the cluster stopped, every plain read and every
    session fails at once with an error the API answers 503, none waits for a pool's timeout
    (a pool that connects in the background with backoff, such as psycopg's, makes a request
    wait its whole timeout, 30 s); the first ones after the restart work."""
    with own_postgres() as server:
        db = Database(server.url, pool_size=2)

        async def attempts() -> list[tuple[float, BaseException | None]]:
            results = []
            for _ in range(3):
                for plain in (True, False):
                    start = time.monotonic()
                    try:
                        if plain:
                            await db.plain_read(lambda conn: conn.execute("SELECT 1"))
                        else:
                            async with db.session() as session:
                                await session.execute(text("SELECT 1"))
                        results.append((time.monotonic() - start, None))
                    except Exception as exc:  # noqa: BLE001 - what the API would answer is checked below
                        results.append((time.monotonic() - start, exc))
            return results

        try:
            assert all(error is None for _, error in await attempts())  # pooled connections open
            await asyncio.to_thread(server.stop)
            down = await attempts()
            await asyncio.to_thread(server.start)
            back = await attempts()
        finally:
            await db.dispose()
    assert all(error is not None and database_unavailable(error) for _, error in down), down
    assert max(seconds for seconds, _ in down) < 2, down
    assert all(error is None for _, error in back), back
