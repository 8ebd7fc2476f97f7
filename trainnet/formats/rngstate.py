"""A NumPy generator's state as JSON text, or as the bytes of that text in a uint8 array (how a
solver state's tensors hold a data reader's generator)."""

from __future__ import annotations

import json

import numpy as np


def state_to_json(state: dict) -> str:
    """A ``bit_generator.state`` as JSON text."""
    return json.dumps(state)


def rng_to_json(rng: np.random.Generator) -> str:
    return state_to_json(rng.bit_generator.state)


def rng_from_json(rng: np.random.Generator, text: str | bytes) -> None:
    """Set ``rng`` to a state written by ``rng_to_json``; a malformed state raises ValueError,
    TypeError or KeyError, as NumPy and ``json`` do."""
    rng.bit_generator.state = json.loads(text)


def state_to_array(state: dict) -> np.ndarray:
    """A ``bit_generator.state`` as a uint8 array of its JSON text."""
    return np.frombuffer(state_to_json(state).encode(), np.uint8).copy()


def rng_to_array(rng: np.random.Generator) -> np.ndarray:
    return state_to_array(rng.bit_generator.state)


def rng_from_array(rng: np.random.Generator, array) -> None:
    """Set ``rng`` from ``rng_to_array``'s array (errors as ``rng_from_json``)."""
    rng_from_json(rng, np.asarray(array, np.uint8).tobytes())


def is_rng_json(value) -> bool:
    """Whether ``value`` is JSON text of a generator's state (a mapping naming its bit generator)."""
    try:
        state = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return False
    return isinstance(state, dict) and isinstance(state.get("bit_generator"), str)
