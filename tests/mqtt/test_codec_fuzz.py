"""Fuzz the decoder inside the suite: random and mutated bytes only ever raise MQTTError.

The target and the seeds live in ``tests/fuzz/fuzz_codec.py`` (also runnable on its own,
with atheris or for many more hypothesis examples).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.fuzz_codec import fuzz_one, mutations, seeds
from tidemq.mqtt.codec import encode

from .codec_strategies import connects, packets

EXAMPLES = int(os.environ.get("TIDEMQ_FUZZ_EXAMPLES", "2000"))  # raise it for a longer run
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    fuzz_one(data)


@settings(FUZZ, max_examples=EXAMPLES * 3 // 4)
@given(st.sampled_from(seeds()).flatmap(mutations))
def test_mutated_valid_streams(data: bytes) -> None:
    fuzz_one(data)


@settings(max_examples=max(EXAMPLES // 20, 100), deadline=None)
@given(st.data())
def test_mutated_generated_packets(data: st.DataObject) -> None:
    level = data.draw(st.sampled_from([3, 4, 5]))
    stream = [data.draw(connects(level)), *data.draw(st.lists(packets(level), max_size=3))]
    wire = bytes((0, data.draw(st.integers(0, 255)))) + b"".join(encode(p, level) for p in stream)
    fuzz_one(data.draw(mutations(wire)))


def test_seeds_decode_cleanly() -> None:
    """The seeds themselves are valid: every byte of them decodes into packets."""
    for seed in seeds():
        fuzz_one(seed)
