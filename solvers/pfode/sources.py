"""Score sources for probability-flow ODE samplers: exact (Gaussian mixtures) or learned.

Every source answers one question, `denoise(x, t, schedule)`: the posterior mean
E[x_0 | x_t = x] (the "denoised" data prediction). Tweedie's formula ties it to the
score, score = (alpha D - x) / sigma^2, so samplers written in terms of D (the
exponential integrators) and in terms of the score (Euler, Heun, diffrax) share sources.

Learned models are the built-in MLP (`MLPArchitecture`) whose weights arrive as a flat
dict name -> array (layout documented on `MLPArchitecture`), never code or pickles, or
any network as a function f(x, t) (`FunctionModel`: a Python callable in-process, or a
`jax.export` artifact, which is what the service accepts); a prediction type
(`AbstractPrediction`) says what the network's output means.
"""

from __future__ import annotations

import abc
import hashlib
import math
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from monge.solvers.pfode.schedules import AbstractSchedule


class AbstractScoreSource(eqx.Module):
    """Something that knows E[x_0 | x_t] for every noise level of a schedule."""

    @property
    @abc.abstractmethod
    def dim(self) -> int: ...

    @abc.abstractmethod
    def denoise(self, x: jax.Array, t: jax.Array, schedule: AbstractSchedule) -> jax.Array:
        """E[x_0 | x_t = x] for a batch x of shape (n, dim) at a scalar time t."""

    def score(self, x, t, schedule):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        return (alpha * self.denoise(x, t, schedule) - x) / sigma**2

    @property
    def forward_mode(self) -> bool:
        """Whether JAX can take Jacobian-vector products through `denoise` (likelihoods
        otherwise use vector-Jacobian products, see `FunctionModel`)."""
        return True


# ---------------------------------------------------------------------------------------
# Analytic: Gaussian mixtures.


class GaussianMixture(AbstractScoreSource):
    """sum_k weights[k] N(means[k], covariances[k]); exact score at every noise level.

    Under x_t = alpha x_0 + sigma eps the noised law is again a mixture, with means
    alpha m_k and covariances alpha^2 C_k + sigma^2 I. Covariances are diagonalised once
    (C_k = U_k diag(e_k) U_k^T) so that every noise level costs a rotation, not a
    factorisation.

    Validated on construction: covariances symmetric positive definite, weights
    non-negative and summing to one (within 1e-6), shapes consistent.
    """

    means: jax.Array  # (K, d)
    covariances: jax.Array  # (K, d, d)
    weights: jax.Array  # (K,)
    eigenvalues: jax.Array  # (K, d)
    eigenvectors: jax.Array  # (K, d, d), columns

    def __init__(self, means, covariances, weights=None):
        means = np.asarray(means, dtype=float)
        covariances = np.asarray(covariances, dtype=float)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        k, d = means.shape
        if covariances.shape != (k, d, d):
            raise ValueError(f"covariances must have shape {(k, d, d)}, got {covariances.shape}")
        weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=float)
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape {(k,)}, got {weights.shape}")
        if not np.all(np.isfinite(means)):
            raise ValueError("means must be finite")
        if np.any(weights < 0) or not abs(weights.sum() - 1.0) <= 1e-6:
            raise ValueError(f"weights must be non-negative and sum to one, got sum {weights.sum()}")
        if not np.all(np.isfinite(covariances)) or not np.allclose(
            covariances, np.swapaxes(covariances, 1, 2), rtol=1e-8, atol=1e-10
        ):
            raise ValueError("covariances must be finite and symmetric")
        covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
        eigenvalues, eigenvectors = np.linalg.eigh(covariances)
        if not np.all(eigenvalues > 0):
            bad = int(np.argmin(eigenvalues.min(axis=1)))
            raise ValueError(
                f"covariances must be positive definite: covariances[{bad}] has "
                f"eigenvalue {eigenvalues[bad].min():.3g}"
            )
        self.means = jnp.asarray(means)
        self.covariances = jnp.asarray(covariances)
        self.weights = jnp.asarray(weights)
        self.eigenvalues = jnp.asarray(eigenvalues)
        self.eigenvectors = jnp.asarray(eigenvectors)

    @classmethod
    def gaussian(cls, mean, covariance) -> "GaussianMixture":
        return cls(np.asarray(mean)[None], np.asarray(covariance)[None], np.ones(1))

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    def _noised(self, t, schedule):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        return alpha * self.means, alpha**2 * self.eigenvalues + sigma**2

    def _component_terms(self, x, t, schedule):
        """Per component: log w_k + log N(x; m_k(t), S_k(t)) and S_k(t)^{-1}(x - m_k(t))."""
        means, variances = self._noised(t, schedule)  # (K, d), (K, d) in eigenbases
        diff = x[:, None, :] - means[None]  # (n, K, d)
        rotated = jnp.einsum("nkd,kde->nke", diff, self.eigenvectors)  # U_k^T (x - m_k)
        mahalanobis = jnp.sum(rotated**2 / variances[None], axis=-1)
        log_det = jnp.sum(jnp.log(variances), axis=-1)
        log_w = jnp.where(self.weights > 0, jnp.log(jnp.where(self.weights > 0, self.weights, 1.0)), -jnp.inf)
        log_terms = log_w - 0.5 * (mahalanobis + log_det + self.dim * math.log(2 * math.pi))
        precision_diff = jnp.einsum("nke,kde->nkd", rotated / variances[None], self.eigenvectors)
        return log_terms, precision_diff

    def log_prob(self, x, t, schedule):
        """log p_t(x) of the noised mixture, for a batch x (n, d)."""
        log_terms, _ = self._component_terms(x, t, schedule)
        return logsumexp(log_terms, axis=-1)

    def score(self, x, t, schedule):
        log_terms, precision_diff = self._component_terms(x, t, schedule)
        responsibilities = jax.nn.softmax(log_terms, axis=-1)
        return -jnp.einsum("nk,nkd->nd", responsibilities, precision_diff)

    def denoise(self, x, t, schedule):
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        return (x + sigma**2 * self.score(x, t, schedule)) / alpha

    def marginal_mean_cov(self, t, schedule):
        """Mean and covariance of the noised law (a Gaussian when K = 1)."""
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        mean = jnp.sum(self.weights[:, None] * self.means, axis=0)
        centred = self.means - mean
        cov = jnp.einsum("k,kij->ij", self.weights, self.covariances) + jnp.einsum(
            "k,ki,kj->ij", self.weights, centred, centred
        )
        return alpha * mean, alpha**2 * cov + sigma**2 * jnp.eye(self.dim, dtype=cov.dtype)

    def sample_marginal(self, key, num_samples, t, schedule, dtype):
        """Exact samples of the noised mixture at time t."""
        k_comp, k_noise = jax.random.split(key)
        comp = jax.random.choice(k_comp, self.weights.shape[0], (num_samples,), p=self.weights)
        means, variances = self._noised(t, schedule)
        z = jax.random.normal(k_noise, (num_samples, self.dim), dtype)
        return means[comp] + jnp.einsum("nde,ne->nd", self.eigenvectors[comp], jnp.sqrt(variances[comp]) * z)


# ---------------------------------------------------------------------------------------
# Prediction types: what a network's raw output means.


class AbstractPrediction(eqx.Module):
    """Converts a network output at (x, alpha, sigma) to the denoised prediction D, and
    gives the regression target used by denoising score matching."""

    @abc.abstractmethod
    def denoised(self, output, x, alpha, sigma): ...

    @abc.abstractmethod
    def target(self, x0, eps, alpha, sigma):
        """What the network should output for x_t = alpha x0 + sigma eps."""

    def loss_scale(self, alpha, sigma):
        """Per-sample weight making the losses of all types comparable to an eps-loss."""
        return jnp.ones_like(sigma)


class ScorePrediction(AbstractPrediction):
    """Output is the score grad log p_t(x)."""

    def denoised(self, output, x, alpha, sigma):
        return (x + sigma**2 * output) / alpha

    def target(self, x0, eps, alpha, sigma):
        return -eps / sigma

    def loss_scale(self, alpha, sigma):
        return sigma**2  # sigma^2 |s - (-eps / sigma)|^2 = |sigma s + eps|^2


class NoisePrediction(AbstractPrediction):
    """Output is eps (DDPM's epsilon-prediction)."""

    def denoised(self, output, x, alpha, sigma):
        return (x - sigma * output) / alpha

    def target(self, x0, eps, alpha, sigma):
        return eps


class DataPrediction(AbstractPrediction):
    """Output is x_0 itself."""

    def denoised(self, output, x, alpha, sigma):
        return output

    def target(self, x0, eps, alpha, sigma):
        return x0

    def loss_scale(self, alpha, sigma):
        # The eps-equivalent weight is the SNR alpha^2 / sigma^2, which reaches 1e4 near
        # the data and makes the gradients useless; Min-SNR truncation (gamma = 5) keeps
        # the eps-scale at high noise and bounds it near the data.
        return jnp.minimum((alpha / sigma) ** 2, 5.0)


class VelocityPrediction(AbstractPrediction):
    """Output is v = alpha eps - sigma x_0 (Salimans & Ho); general alpha^2 + sigma^2."""

    def denoised(self, output, x, alpha, sigma):
        return (alpha * x - sigma * output) / (alpha**2 + sigma**2)

    def target(self, x0, eps, alpha, sigma):
        return alpha * eps - sigma * x0

    def loss_scale(self, alpha, sigma):
        return 1.0 / (alpha**2 + sigma**2)


# ---------------------------------------------------------------------------------------
# The built-in architecture: an MLP with a sinusoidal noise-level embedding.


class MLPArchitecture(eqx.Module):
    """An MLP on [x / sqrt(alpha^2 + sigma^2), embed(c)], c = log(sigma / alpha) / 4.

    The network sees the input scaled to roughly unit variance and the noise level as
    -log-SNR / 4 (EDM's c_noise, about [-2, 2] for usual schedules), so the same weights
    serve every schedule. The embedding is fixed (no weights): `time_embedding_dim`
    features [sin(c w_j), cos(c w_j)], j < time_embedding_dim / 2, w_j geometric from 1
    to 32: smooth enough for a small MLP over that range.

    Weights, a flat dict name -> array (y = x @ w + b, row-vector convention):
        "layers.0.w": (dim + time_embedding_dim, hidden[0]),  "layers.0.b": (hidden[0],)
        "layers.i.w": (hidden[i-1], hidden[i]),               "layers.i.b": (hidden[i],)
        "layers.L.w": (hidden[-1], dim),                      "layers.L.b": (dim,)
    with L = len(hidden); SiLU between layers, none after the last.
    """

    dim: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True, default=(128, 128))
    time_embedding_dim: int = eqx.field(static=True, default=16)

    def __check_init__(self):
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")
        if self.time_embedding_dim < 2 or self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even and >= 2, got {self.time_embedding_dim}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be positive, got {self.hidden}")

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        sizes = [self.dim + self.time_embedding_dim, *self.hidden, self.dim]
        shapes = {}
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"layers.{i}.w"] = (fan_in, fan_out)
            shapes[f"layers.{i}.b"] = (fan_out,)
        return shapes

    def validate(self, weights) -> dict[str, jax.Array]:
        """The weights as arrays, or ValueError naming the first weight that does not fit."""
        expected = self.weight_shapes()
        missing = [name for name in expected if name not in weights]
        if missing:
            raise ValueError(f"missing weight {missing[0]!r} (expected shape {expected[missing[0]]})")
        extra = sorted(set(weights) - set(expected))
        if extra:
            raise ValueError(f"unexpected weight {extra[0]!r} for this architecture")
        out = {}
        for name, shape in expected.items():
            value = weights[name]
            if tuple(np.shape(value)) != shape:
                raise ValueError(f"weight {name!r} has shape {tuple(np.shape(value))}, expected {shape}")
            out[name] = jnp.asarray(value)
        return out

    def init(self, key) -> dict[str, jax.Array]:
        """Fresh weights (LeCun-normal, zero biases; the last layer zeroed so the untrained
        model predicts zero)."""
        shapes = self.weight_shapes()
        last = f"layers.{len(self.hidden)}.w"
        keys = jax.random.split(key, len(shapes))
        weights = {}
        for k, (name, shape) in zip(keys, shapes.items()):
            if name.endswith(".b") or name == last:
                weights[name] = jnp.zeros(shape)
            else:
                weights[name] = jax.random.normal(k, shape) / math.sqrt(shape[0])
        return weights

    def embed(self, noise_level):
        half = self.time_embedding_dim // 2
        freqs = jnp.exp(jnp.linspace(0.0, math.log(32.0), half, dtype=noise_level.dtype))
        angles = noise_level[..., None] * freqs
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)

    def apply(self, weights, x, log_alpha, log_sigma):
        """Raw network output for a batch x (n, dim) at per-sample log alpha, log sigma (n,)."""
        scale = jnp.exp(-0.5 * jnp.logaddexp(2 * log_alpha, 2 * log_sigma))
        emb = self.embed(0.25 * (log_sigma - log_alpha))
        h = jnp.concatenate([x * scale[:, None], emb], axis=-1)
        num_layers = len(self.hidden) + 1
        for i in range(num_layers):
            h = h @ weights[f"layers.{i}.w"].astype(x.dtype) + weights[f"layers.{i}.b"].astype(x.dtype)
            if i < num_layers - 1:
                h = jax.nn.silu(h)
        return h


class MLPModel(AbstractScoreSource):
    """A learned source: the built-in MLP, its weights, and what its output means."""

    architecture: MLPArchitecture
    weights: dict
    prediction: AbstractPrediction

    def __init__(self, architecture: MLPArchitecture, weights, prediction: AbstractPrediction):
        if not isinstance(prediction, AbstractPrediction):
            raise ValueError(f"prediction must be an AbstractPrediction, got {type(prediction).__name__}")
        self.architecture = architecture
        self.weights = architecture.validate(weights)
        self.prediction = prediction

    @property
    def dim(self) -> int:
        return self.architecture.dim

    def denoise(self, x, t, schedule):
        log_alpha, log_sigma = schedule.log_alpha(t), schedule.log_sigma(t)
        n = x.shape[0]
        output = self.architecture.apply(
            self.weights, x, jnp.broadcast_to(log_alpha, (n,)), jnp.broadcast_to(log_sigma, (n,))
        )
        return self.prediction.denoised(output, x, jnp.exp(log_alpha), jnp.exp(log_sigma))


# ---------------------------------------------------------------------------------------
# Any network, as a function f(x, t) -> prediction.


class _ExportedCall:
    """`exported.call`, hashable by the artifact's content: equal artifacts (a network
    sent again by a later request) share the compiled programs (`eqx.filter_jit` keys on
    static fields by equality)."""

    def __init__(self, exported):
        self.exported = exported
        digest = hashlib.sha256(exported.mlir_module_serialized)
        digest.update(repr((exported.in_avals, exported.out_avals, exported.platforms)).encode())
        if exported.has_vjp():  # the program differentiates with it
            digest.update(exported.vjp().mlir_module_serialized)
        self.digest = digest.hexdigest()

    def __call__(self, x, t):
        return self.exported.call(x, t)

    def __hash__(self):
        return hash(self.digest)

    def __eq__(self, other):
        return isinstance(other, _ExportedCall) and other.digest == self.digest

    def __repr__(self):
        return f"exported {self.exported.fun_name!r} ({self.digest[:12]})"


class FunctionModel(AbstractScoreSource):
    """A network given as a function `fn(x, t) -> output`: x of shape (n, *event_shape),
    t of shape (n,) (the schedule's time of each row, in x's dtype; EDM's t is sigma),
    the output of x's shape; `prediction` says what the output means (noise, score,
    data or velocity), as for `MLPModel`.

    The samplers work on flat states (n, d), d = prod(event_shape): rows are reshaped to
    the event shape for `fn` and its output flattened back, so events of any rank
    ((c, h, w) images too) are sampled; reshape the samples to (n, *event_shape).

    `fn` is a static field: it must be hashable, and a different `fn` compiles new
    programs. A `jax.export` artifact (what the service accepts) comes in through
    `from_exported`; such a function differentiates in reverse mode only (when it was
    serialized with its VJP), so `forward_mode=False`: log-likelihoods then take
    vector-Jacobian products on the probes stacked along the batch dimension instead of
    Jacobian-vector products.
    """

    fn: Callable = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)
    prediction: AbstractPrediction
    forward_mode: bool = eqx.field(static=True, default=True)

    def __init__(self, fn: Callable, event_shape, prediction: AbstractPrediction, *, forward_mode: bool = True):
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        if not isinstance(prediction, AbstractPrediction):
            raise ValueError(f"prediction must be an AbstractPrediction, got {type(prediction).__name__}")
        event_shape = (event_shape,) if isinstance(event_shape, (int, np.integer)) else tuple(event_shape)
        if not event_shape or any(not isinstance(e, (int, np.integer)) or e < 1 for e in event_shape):
            raise ValueError(f"event_shape must be a non-empty tuple of positive integers, got {event_shape}")
        self.fn = fn
        self.event_shape = tuple(int(e) for e in event_shape)
        self.prediction = prediction
        self.forward_mode = bool(forward_mode)

    @classmethod
    def from_exported(cls, exported, prediction: AbstractPrediction) -> "FunctionModel":
        """The network of a `jax.export.Exported` (from `jax.export.export(...)`, or
        `jax.export.deserialize(artifact)`): x is its first input, whose dimensions after
        the (symbolic) batch give the event shape."""
        x_aval = exported.in_avals[0]
        event_shape = tuple(x_aval.shape[1:])
        if not all(isinstance(e, int) for e in event_shape):
            raise ValueError(f"the exported event dimensions must be concrete, got {x_aval.shape}")
        return cls(_ExportedCall(exported), event_shape, prediction, forward_mode=False)

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def denoise(self, x, t, schedule):
        n = x.shape[0]
        times = jnp.broadcast_to(jnp.asarray(t, x.dtype), (n,))
        output = self.fn(x.reshape((n, *self.event_shape)), times)
        output = jnp.asarray(output).reshape(x.shape).astype(x.dtype)
        return self.prediction.denoised(output, x, schedule.alpha(t), schedule.sigma(t))


# Names a request may use (lower-case, as in the proto enums without their prefix), so
# that the service maps an enum to a class in one place.
PREDICTIONS = {
    "score": ScorePrediction,
    "noise": NoisePrediction,
    "data": DataPrediction,
    "velocity": VelocityPrediction,
}
