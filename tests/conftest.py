"""Shared fixtures. float64 is enabled for the whole session: references (POT, closed
forms) are compared in float64; float32 tests pass float32 arrays explicitly."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
