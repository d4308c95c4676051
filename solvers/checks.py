"""Checks of config values shared by the solver families."""

import jax


def positive_if_concrete(name, value):
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced under jit: validation happened where it was concrete
    if not concrete > 0:
        raise ValueError(f"{name} must be positive, got {concrete}")
