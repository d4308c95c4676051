"""Adaptive Dormand-Prince 5(4) integration that can stop after a number of steps and
carry on later: diffrax's `Dopri5` step and `PIDController` in a loop of our own.

`diffrax.diffeqsolve` runs a whole solve as one program; a service must be able to stop
between chunks of steps (a cancelled call, an expired deadline) without losing what is
done. Here the whole integrator state (time, proposed next time, solution, the solver's
first-same-as-last stage, the controller's memory) is a pytree:

    state = start(field, t0, t1, y0, dt0, rtol, atol, save_ts=...)
    state = advance(field, state, t1, rtol, atol, max_steps=4096, chunk=100)   # again and again
    state.finished(t1, max_steps), state.num_steps, state.nfe

`chunk` and `max_steps` are traced, so every chunk size runs the same compiled program.
Time runs forwards (t0 < t1); a caller integrating backwards in t passes s = -t. The
steps, step sizes and error norm are diffrax's (the same accept/reject sequence as
`diffeqsolve(..., Dopri5(), stepsize_controller=PIDController(rtol, atol))`), so
NFE = 1 + 6 per attempted step.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

SOLVER = diffrax.Dopri5()
EVALUATIONS_PER_STEP = 6  # Dopri5 has 7 stages, the first one the last of the step before


class AdaptiveState(eqx.Module):
    """Where an adaptive integration stands. `saved` (len(save_ts), *y.shape) holds the
    solution at `save_ts` (interpolated within steps) up to `save_index`; None if no
    save times were asked for."""

    t: jax.Array
    t_next: jax.Array
    y: jax.Array | tuple
    solver_state: tuple
    controller_state: tuple
    num_steps: jax.Array  # attempted steps, int32
    stalled: jax.Array  # bool: the step size fell to zero (a non-finite field)
    saved: jax.Array | None
    save_index: jax.Array

    @property
    def nfe(self):
        return (1 + EVALUATIONS_PER_STEP * self.num_steps).astype(jnp.int32)

    def reached(self, t1):
        return self.t >= t1

    def finished(self, t1, max_steps):
        return self.reached(t1) | (self.num_steps >= max_steps) | self.stalled


def _term(field):
    return diffrax.ODETerm(lambda t, y, args: field(t, y))


def _controller(rtol, atol):
    return diffrax.PIDController(rtol=rtol, atol=atol)


def _asarray_tree(tree):
    return jax.tree.map(jnp.asarray, tree)


def start(field, t0, t1, y0, dt0, rtol, atol, save_ts=None) -> AdaptiveState:
    """The state at t0 (one evaluation of `field`, the first stage). dt0 > 0 is the first
    step tried. save_ts: increasing times in [t0, t1] where the solution is kept (y must
    then be an array); those equal to t0 are filled at once."""
    term = _term(field)
    t_next, controller_state = _controller(rtol, atol).init(
        term, t0, t1, y0, dt0, None, SOLVER.func, SOLVER.error_order(term)
    )
    t_next = jnp.minimum(t_next, t1)
    solver_state = SOLVER.init(term, t0, t_next, y0, None)
    saved, save_index = None, jnp.int32(0)
    if save_ts is not None:
        at_start = save_ts <= t0
        saved = jnp.where(at_start.reshape((-1,) + (1,) * y0.ndim), y0[None], jnp.zeros_like(y0)[None])
        save_index = jnp.sum(at_start).astype(jnp.int32)
    return AdaptiveState(
        jnp.asarray(t0), jnp.asarray(t_next), y0, _asarray_tree(solver_state), _asarray_tree(controller_state),
        jnp.int32(0), jnp.asarray(False), saved, save_index,
    )


def _clip_floor(t1):
    """A little below t1: a proposed step ending beyond it ends at t1 (as diffrax does),
    so no sliver of a step is left over."""
    eps = jnp.finfo(jnp.result_type(t1)).eps
    return t1 - 100 * eps * jnp.maximum(jnp.abs(t1), 1.0)


def advance(field, state: AdaptiveState, t1, rtol, atol, *, max_steps, chunk, save_ts=None) -> AdaptiveState:
    """At most `chunk` more attempted steps towards t1, stopping at t1, at `max_steps`
    attempted steps in all, or when the step size vanishes."""
    term = _term(field)
    controller = _controller(rtol, atol)
    error_order = SOLVER.error_order(term)
    floor = _clip_floor(t1)
    stop_at = jnp.minimum(state.num_steps + chunk, max_steps)

    def cond(s):
        return (s.t < t1) & (s.num_steps < stop_at) & ~s.stalled

    def body(s):
        y1, y_error, dense_info, solver_state, _ = SOLVER.step(term, s.t, s.t_next, s.y, None, s.solver_state, False)
        y_error = jax.tree.map(lambda e: jnp.where(jnp.isnan(e), jnp.inf, e), y_error)
        keep, t_prev, t_next, _, controller_state, _ = controller.adapt_step_size(
            s.t, s.t_next, s.y, y1, None, y_error, error_order, s.controller_state
        )
        t_prev = jnp.minimum(t_prev, t1)
        t_next = jnp.where(keep & (t_next > floor), t1, jnp.minimum(t_next, t1))

        def pick(new, old):
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)

        saved, save_index = s.saved, s.save_index
        if save_ts is not None:
            interpolation = SOLVER.interpolation_cls(t0=s.t, t1=s.t_next, **dense_info)

            last = save_ts.shape[0] - 1

            def save_cond(carry):
                _, index = carry
                return keep & (index <= last) & (save_ts[jnp.minimum(index, last)] <= s.t_next)

            def save_body(carry):
                buffer, index = carry
                ts = save_ts[index]
                value = jnp.where(ts >= s.t_next, y1, interpolation.evaluate(ts))
                return buffer.at[index].set(value), index + 1

            saved, save_index = jax.lax.while_loop(save_cond, save_body, (saved, save_index))

        return AdaptiveState(
            t=t_prev,
            t_next=t_next,
            y=pick(y1, s.y),
            solver_state=pick(solver_state, s.solver_state),
            controller_state=_asarray_tree(controller_state),
            num_steps=s.num_steps + 1,
            stalled=~(t_next > t_prev) & (t_prev < t1),
            saved=saved,
            save_index=save_index,
        )

    return jax.lax.while_loop(cond, body, state)
