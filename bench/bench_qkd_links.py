"""Emulated QKD links: secret key rate and QBER against fibre length, beside published figures.

For the default link (decoy-state BB84) and for BB84 without decoys, at 0-200 km of standard
fibre, through ``slices_blueprint.qkd.physics.link_performance`` (TNO's key-rate library
underneath). Beside them, the published anchors: 13.7 Mb/s secret key over a 2 dB channel
(Toshiba, J. Lightwave Technol. 2018; 2 dB is 10 km here) and BB84 without decoys dying near
20 dB of loss (100 km here), with the ratio ours / published. Then the time one computation
takes: the first in the process (which imports the library), later cache misses, and hits.

    PYTHONPATH=src python3 bench/bench_qkd_links.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from slices_blueprint.qkd.physics import LinkParameters, LinkPerformance, link_performance

LENGTHS_KM = (0, 10, 25, 50, 75, 100, 150, 200)
PUBLISHED_DECOY_BPS = {10: 13.7e6}  # Toshiba 2018, 2 dB channel
PUBLISHED_NO_DECOY_LIMIT_DB = 20.0
CACHE_HITS = 10_000
DEFAULT = LinkParameters()

misses: list[float] = []


def timed(params: LinkParameters) -> LinkPerformance:
    """One uncached computation, its time recorded."""
    start = time.perf_counter()
    result = link_performance(params)
    misses.append(time.perf_counter() - start)
    return result


def rate(result: LinkPerformance) -> str:
    return f"{result.secret_key_rate_bps / 1e6:10.4f}" if result.generating else "         0"


def no_decoy_cutoff_db(resolution_db: float = 0.05) -> float:
    """Loss at which BB84 without decoys stops generating, by bisection on the loss."""
    low, high = 10.0, 40.0  # generating at 10 dB, not at 40 dB
    while high - low > resolution_db:
        mid = (low + high) / 2
        params = LinkParameters(protocol="bb84", length_km=mid / DEFAULT.attenuation_db_per_km)
        low, high = (mid, high) if timed(params).generating else (low, mid)
    return (low + high) / 2


def main() -> None:
    start = time.perf_counter()
    link_performance(DEFAULT)
    first = time.perf_counter() - start
    link_performance.cache_clear()

    print(f"default link: {DEFAULT.model_dump()}")
    print(
        f"{'km':>4} {'dB':>5} | {'decoy Mb/s':>10} {'QBER':>6} {'published':>10} {'ratio':>6}"
        f" | {'no-decoy Mb/s':>13} {'QBER':>6}"
    )
    for km in LENGTHS_KM:
        decoy = timed(LinkParameters(length_km=km))
        plain = timed(LinkParameters(length_km=km, protocol="bb84"))
        published = PUBLISHED_DECOY_BPS.get(km)
        anchor = (
            f"{published / 1e6:10.1f} {decoy.secret_key_rate_bps / published:6.2f}"
            if published
            else f"{'':>10} {'':>6}"
        )
        print(
            f"{km:>4} {km * DEFAULT.attenuation_db_per_km:5.1f} | {rate(decoy)} {decoy.qber:6.3f}"
            f" {anchor} | {rate(plain):>13} {plain.qber:6.3f}"
        )
    cutoff = no_decoy_cutoff_db()
    print(
        f"BB84 without decoys stops at {cutoff:.2f} dB "
        f"({cutoff / DEFAULT.attenuation_db_per_km:.1f} km); published ~"
        f"{PUBLISHED_NO_DECOY_LIMIT_DB:.0f} dB; ratio {cutoff / PUBLISHED_NO_DECOY_LIMIT_DB:.2f}"
    )

    start = time.perf_counter()
    for _ in range(CACHE_HITS):
        link_performance(DEFAULT)
    hit = (time.perf_counter() - start) / CACHE_HITS
    print(f"first computation in the process (imports the library): {first * 1000:7.0f} ms")
    print(
        f"cache miss: median {statistics.median(misses) * 1000:5.0f} ms, "
        f"max {max(misses) * 1000:5.0f} ms over {len(misses)} computations"
    )
    print(f"cache hit:  {hit * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
