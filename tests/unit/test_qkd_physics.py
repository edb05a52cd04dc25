"""Emulated QKD link physics through the real key-rate library (no double): the rate's fall
with distance, the protocols' reach, the eavesdropper, validation and the cache."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from slices_blueprint.qkd.physics import LinkParameters, link_performance

DEFAULT = LinkParameters()


def test_default_link_is_metro_scale_and_emulated() -> None:
    result = link_performance(DEFAULT)
    # The published anchor: 13.7 Mb/s over 2 dB (10 km); same order of magnitude.
    assert 13.7e6 / 3 < result.secret_key_rate_bps < 13.7e6 * 3
    assert result.generating and result.reason is None and result.emulated
    assert result.qber == pytest.approx(DEFAULT.misalignment_error, abs=1e-3)
    assert result.qber_threshold == 0.11


def test_rate_falls_monotonically_with_length() -> None:
    rates = [
        link_performance(LinkParameters(length_km=km)).secret_key_rate_bps
        for km in range(0, 201, 10)
    ]
    # Decoy BB84 still distils key at 200 km (40 dB), ever less of it.
    assert rates[-1] > 0, rates
    assert all(a > b for a, b in itertools.pairwise(rates)), rates


def test_decoy_bb84_yields_nothing_beyond_its_reach() -> None:
    result = link_performance(LinkParameters(length_km=300))
    assert result.secret_key_rate_bps == 0
    assert not result.generating
    assert "300 km, loss 60 dB" in result.reason


def test_bb84_without_decoys_dies_near_20_db() -> None:
    """The reference puts the end near 20 dB. Our cut-off moves about 5 dB per decade of
    dark-count probability (the signal must stay above the dark counts, and without decoys
    the best intensity itself falls with the transmission), so +-2.5 dB is half a decade of
    detector noise either side of the quoted figure: generating at 17.5 dB, dead at 22.5."""
    def at(loss_db: float):
        return link_performance(LinkParameters(protocol="bb84", length_km=loss_db / 0.2))

    assert at(17.5).generating
    dead = at(22.5)
    assert not dead.generating and dead.secret_key_rate_bps == 0
    assert "loss 22.5 dB" in dead.reason
    # Decoy states are what carries the key further at the same loss.
    decoy = link_performance(LinkParameters(length_km=22.5 / 0.2))
    assert decoy.generating


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3])
def test_eavesdropper_adds_a_quarter_of_its_fraction_to_the_qber(fraction: float) -> None:
    watched = link_performance(LinkParameters(eavesdropper=fraction))
    assert watched.qber - link_performance(DEFAULT).qber == pytest.approx(
        0.25 * fraction, abs=1e-3
    )
    # Fed through the library: the rate falls continuously, not only at the threshold.
    assert 0 < watched.secret_key_rate_bps < link_performance(DEFAULT).secret_key_rate_bps


def test_eavesdropper_past_the_threshold_stops_the_key_until_lowered() -> None:
    stopped = link_performance(LinkParameters(eavesdropper=0.5))
    assert stopped.qber > stopped.qber_threshold
    assert not stopped.generating and stopped.secret_key_rate_bps == 0
    assert stopped.reason == (
        f"QBER {stopped.qber:.3f} above the BB84 threshold 0.11 "
        "(10 km, loss 2 dB; eavesdropper on 50% of the qubits)"
    )
    lowered = link_performance(LinkParameters(eavesdropper=0.1))
    assert lowered.generating and lowered.reason is None


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"length_km": -1}, "length_km", "greater than or equal to 0"),
        ({"detector_efficiency": 0}, "detector_efficiency", "greater than 0"),
        ({"protocol": "e91"}, "protocol", "'bb84-decoy' or 'bb84'"),
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
        ({"eavesdropper": 1.5}, "eavesdropper", "less than or equal to 1"),
    ],
)
def test_bad_parameters_are_refused_with_the_field_named(
    fields: dict, where: str, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        LinkParameters(**fields)
    (error,) = refused.value.errors()
    assert error["loc"] == (where,)
    assert message in error["msg"]


def test_parameters_are_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULT.length_km = 20  # type: ignore[misc]


def test_equal_parameters_hit_the_cache_and_recomputing_gives_the_same_answer() -> None:
    params = LinkParameters(length_km=42.0, eavesdropper=0.05)
    first = link_performance(params)
    hits = link_performance.cache_info().hits
    assert link_performance(LinkParameters(length_km=42, eavesdropper=0.05)) is first
    assert link_performance.cache_info().hits == hits + 1
    assert link_performance.__wrapped__(params) == first  # deterministic, not just cached


def test_importing_the_module_leaves_the_library_unloaded() -> None:
    """The library pulls numpy and scipy (about 2 s): only a computation may import it."""
    probe = "import sys, slices_blueprint.qkd.physics; print('scipy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
