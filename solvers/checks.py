"""Checks of config values shared by the solver families."""

import jax


def positive_if_concrete(name, value):
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced under jit: validation happened where it was concrete
    if not concrete > 0:
        raise ValueError(f"{name} must be positive, got {concrete}")


def whole_if_concrete(name, value):
    """A count given as a number (10_000, 1e4): the int it is, or None when traced; a
    ValueError when it is not a whole number of at least 1."""
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None
    if not (concrete >= 1 and concrete.is_integer()):
        raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    return int(concrete)
