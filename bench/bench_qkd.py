"""Benchmark: ETSI GS QKD 014 key delivery through our KMEs, beside the key-pool code in-process.

Starts ``slices-blueprint serve --no-worker`` (its KMEs run inside it) as a separate process
on a fresh database of the PostgreSQL server given by BENCH_PG (default: the machine's
server), creates one two-node network whose alice and bob nodes have one SAE per pair, and a
link fast enough (10 km, ~13 Mb/s) and large enough (10 million keys) that it is not what is
measured: the time it takes to fill the pool is measured, and printed, on its own.

A round trip is ``enc_keys`` (the master at alice's KME, one 256-bit key) then ``dec_keys``
(the slave at bob's KME, the same key ID), over mutual TLS with ``requests``: either one
keep-alive session per SAE, or a new TLS connection for every call. Each runs with 1 and
with 8 master/slave pairs at once (threads); then the same rounds call
``qkd.keypool.hand_out`` and ``fetch_for_slave`` in this process (one transaction each, as
a KME does) on the same PostgreSQL, as the baseline: p50/p99 round-trip latency, keys/s,
and the ratios KME/in-process. Finally the link table of ``bench_qkd_links``.

    PYTHONPATH=src python3 bench/bench_qkd.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import requests
from sqlalchemy import select

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "src"), str(BENCH)]

import bench_qkd_links

from slices_blueprint.core import migrations
from slices_blueprint.core.config import Settings
from slices_blueprint.core.database import Database
from slices_blueprint.core.dev_issuer import mint_dev_token
from slices_blueprint.core.ids import parse_id
from slices_blueprint.core.secretbox import secret_box
from slices_blueprint.qkd import keypool
from slices_blueprint.qkd.models import QkdLink

BI = "/apis/bi.slices.eu/v1alpha2"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY_SIZE = 256
MAX_PAIRS = 8
MAX_KEY_COUNT = 10_000_000


@dataclass
class Pair:
    """One master SAE at alice and its slave at bob, with their credentials on disk."""

    master: str
    slave: str
    master_url: str
    slave_url: str
    directory: Path

    def cert(self, sae: str) -> tuple[str, str]:
        return str(self.directory / f"{sae}.crt"), str(self.directory / f"{sae}.key")

    @property
    def ca(self) -> str:
        return str(self.directory / "ca.crt")


@dataclass
class Timing:
    latencies: list[float]
    wall: float

    @property
    def keys_per_s(self) -> float:
        return len(self.latencies) / self.wall


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def line(name: str, t: Timing) -> None:
    print(f"{name:<44} {t.keys_per_s:8.0f} keys/s   p50 {pct(t.latencies, 50):7.2f} ms   "
          f"p99 {pct(t.latencies, 99):7.2f} ms")


def concurrently(pairs: list[Pair], rounds: int, one_round: Callable[[Pair], Callable[[], None]]) -> Timing:
    """``rounds`` round trips per pair, the pairs at once (one thread each)."""
    latencies: list[float] = []

    def run(pair: Pair) -> None:
        trip = one_round(pair)
        for _ in range(rounds):
            start = time.perf_counter()
            trip()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(len(pairs)) as pool:
        list(pool.map(run, pairs))
    return Timing(latencies, time.perf_counter() - start)


def through_kmes(keep_alive: bool) -> Callable[[Pair], Callable[[], None]]:
    """An enc_keys + dec_keys round trip over mutual TLS: on one session per SAE, or with a
    new connection (and TLS handshake) per call."""

    def for_pair(pair: Pair) -> Callable[[], None]:
        sessions = {}
        for sae in (pair.master, pair.slave):
            session = requests.Session()
            session.cert, session.verify = pair.cert(sae), pair.ca
            session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace the network's CA
            if not keep_alive:
                session.headers["Connection"] = "close"
            sessions[sae] = session

        def trip() -> None:
            enc = sessions[pair.master].get(f"{pair.master_url}/api/v1/keys/{pair.slave}/enc_keys",
                                            params={"number": 1, "size": KEY_SIZE})
            assert enc.status_code == 200, enc.text
            key = enc.json()["keys"][0]
            dec = sessions[pair.slave].get(f"{pair.slave_url}/api/v1/keys/{pair.master}/dec_keys",
                                           params={"key_ID": key["key_ID"]})
            assert dec.status_code == 200 and dec.json()["keys"][0]["key"] == key["key"], dec.text

        return trip

    return for_pair


async def in_process(settings: Settings, db_url: str, network_id: uuid.UUID, pairs: list[Pair],
                     rounds: int) -> Timing:
    """The same rounds through ``keypool`` directly: a transaction for hand_out, another for
    fetch_for_slave, ``len(pairs)`` at once on one event loop."""
    db, box = Database(db_url, pool_size=MAX_PAIRS), secret_box(settings)
    async with db.session() as session:
        links = list(await session.scalars(select(QkdLink).where(QkdLink.network_id == network_id)))
    latencies: list[float] = []

    async def run(pair: Pair) -> None:
        for _ in range(rounds):
            start = time.perf_counter()
            async with db.session() as session:
                (key,) = await keypool.hand_out(
                    session, box, network_id=network_id, master_sae_id=pair.master, paths=[links],
                    slave_sae_ids=[pair.slave], number=1, size=KEY_SIZE)
            async with db.session() as session:
                (got,) = await keypool.fetch_for_slave(
                    session, box, network_id=network_id, master_sae_id=pair.master,
                    slave_sae_id=pair.slave, key_ids=[key.key_id])
            assert got.material == key.material
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(run(p) for p in pairs))
    wall = time.perf_counter() - start
    await db.dispose()
    return Timing(latencies, wall)


def network(http: httpx.Client, token: str, directory: Path) -> tuple[dict, list[Pair]]:
    """The two-node network, and its SAE pairs' credentials written to ``directory``."""
    auth = {"Authorization": f"Bearer {token}"}
    description = {
        "name": "bench",
        "nodes": [{"name": "alice", "saes": [f"m{i}" for i in range(MAX_PAIRS)]},
                  {"name": "bob", "saes": [f"s{i}" for i in range(MAX_PAIRS)]}],
        "links": [{"between": ["alice", "bob"], "length_km": 10, "max_key_count": MAX_KEY_COUNT}],
    }
    created = http.post(f"{BI}/qkd-networks", headers=auth, json=description)
    assert created.status_code == 201, created.text
    net = created.json()
    urls = {}
    for sae in [f"{r}{i}" for i in range(MAX_PAIRS) for r in "ms"]:
        creds = http.post(f"{BI}/qkd-networks/{net['id']}/saes/{sae}/credentials", headers=auth).json()
        (directory / f"{sae}.crt").write_text(creds["certificate_pem"])
        (directory / f"{sae}.key").write_text(creds["private_key_pem"])
        (directory / "ca.crt").write_text(creds["ca_certificate_pem"])
        urls[sae] = creds["kme_url"]
    return net, [Pair(f"m{i}", f"s{i}", urls[f"m{i}"], urls[f"s{i}"], directory) for i in range(MAX_PAIRS)]


def fill_pool(http: httpx.Client, token: str, net: dict, needed: int) -> float:
    """Seconds until the link holds ``needed`` keys (KMEs listening by then)."""
    start = time.perf_counter()
    while True:
        link = http.get(f"{BI}/qkd-networks/{net['id']}", headers={"Authorization": f"Bearer {token}"}
                        ).json()["links"][0]
        if link["stored_key_count"] >= needed:
            return time.perf_counter() - start
        if time.perf_counter() - start > 120:
            raise SystemExit(f"the pool did not fill: {link}")
        time.sleep(0.05)


def bench(url: str, settings: Settings, db_url: str, rounds: int, directory: Path) -> None:
    token = mint_dev_token(settings, user="alice", project="bench", experiment="bench-qkd", experiment_days=30)
    with httpx.Client(base_url=url, timeout=60) as http:
        net, pairs = network(http, token, directory)
        link = net["links"][0]
        needed = rounds * (1 + MAX_PAIRS) * 3 + 100  # keep-alive, new connections, in-process
        print(f"link alice-bob: {link['secret_key_rate_bps'] / 1e6:.2f} Mb/s secret key, QBER "
              f"{link['qber']:.3f} = {link['secret_key_rate_bps'] / KEY_SIZE:,.0f} keys/s of {KEY_SIZE} bits "
              f"(emulated), max_key_count {link['max_key_count']:,}")
        filled = fill_pool(http, token, net, needed)
        print(f"time to fill the pool with {needed:,} keys (KMEs started meanwhile): {filled:.2f} s\n")
    network_id = parse_id(net["id"], "qkdnet")

    print(f"{rounds} round trips (enc_keys + dec_keys, one {KEY_SIZE}-bit key) per pair")
    for count in (1, MAX_PAIRS):
        group = pairs[:count]
        keep = concurrently(group, rounds, through_kmes(keep_alive=True))
        fresh = concurrently(group, rounds, through_kmes(keep_alive=False))
        base = asyncio.run(in_process(settings, db_url, network_id, group, rounds))
        print(f"\n== {count} pair{'s' if count > 1 else ''} at once ==")
        line("KMEs, mTLS keep-alive session per SAE", keep)
        line("KMEs, mTLS new connection per call", fresh)
        line("in-process keypool (baseline)", base)
        for name, t in (("keep-alive", keep), ("new connection", fresh)):
            print(f"ratio {name + '/in-process:':<28} keys/s {t.keys_per_s / base.keys_per_s:5.2f}   "
                  f"p50 {statistics.median(t.latencies) / statistics.median(base.latencies):5.2f}x   "
                  f"p99 {pct(t.latencies, 99) / pct(base.latencies, 99):5.2f}x")


@contextlib.contextmanager
def service(rounds: int) -> Iterator[tuple[str, Settings, str, Path]]:
    """``serve --no-worker`` with KMEs on a fresh database; dropped afterwards."""
    name = f"sb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG.rsplit("/", 1)[0] + f"/{name}"
    data_dir = Path(tempfile.mkdtemp(prefix="sb-bench-qkd-"))
    port = 18000 + os.getpid() % 1000
    kme_ports = (21000 + os.getpid() % 1000 * 4, 21000 + os.getpid() % 1000 * 4 + 3)
    env = {**os.environ, "DATABASE_URL": db_url, "SLICES_BLUEPRINT_DATA_DIR": str(data_dir),
           "SLICES_BLUEPRINT_DEV_MODE": "true", "SLICES_BLUEPRINT_LOG_LEVEL": "WARNING",
           "SLICES_BLUEPRINT_QKD_KME_IN_SERVICE": "true", "SLICES_BLUEPRINT_PROVIDERS": '["test-double"]',
           "SLICES_BLUEPRINT_QKD_KME_PORTS": f"[{kme_ports[0]}, {kme_ports[1]}]"}
    settings = Settings(data_dir=data_dir, database_url=db_url, port=port, dev_mode=True, providers=["test-double"])
    migrations.upgrade(db_url)
    server = subprocess.Popen([sys.executable, "-m", "slices_blueprint", "serve", "--no-worker", "--port",
                               str(port)], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
            if time.monotonic() > deadline:
                raise SystemExit("the service did not start")
        print(f"service pid {server.pid} at {url} (KMEs inside it), database {name}")
        yield url, settings, db_url, data_dir
    finally:
        server.terminate()
        server.wait(timeout=30)
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300, help="round trips per pair and mode")
    args = parser.parse_args()
    with service(args.rounds) as (url, settings, db_url, data_dir):
        bench(url, settings, db_url, args.rounds, data_dir)
    print("\n== emulated links (bench_qkd_links) ==")
    bench_qkd_links.main()


if __name__ == "__main__":
    main()
