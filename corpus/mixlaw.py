"""Mixture laws: predict a proxy's loss from its data mixture, and choose the mixture it predicts best.

Pure numpy; jobs/mixture.py draws the mixtures, trains the proxies and calls these.

- **Draws** (RegMix, Liu et al. 2024, §3.1): mixtures come from a Dirichlet centred on the natural
  token shares, `alpha = concentration · natural`, so the draws cover the neighbourhood of the
  corpus as it is, where the fit will be used. A draw that would repeat a bucket more than
  `max_repeats` times within the budget is rejected and redrawn (a cap per bucket, `caps`).
- **Forms**: `linear`, L(w) = b + Σ_i β_i w_i (RegMix's linear regression), and `loglinear`,
  L(w) = c + k · exp(Σ_i t_i w_i) (Ye et al. 2024, "Data Mixing Laws", eq. 1). The log-linear law
  is fitted as a linear regression of log(L - c) for each c on a grid below the smallest loss,
  keeping the c of least squared error in L: no optimizer, and the same result every time.
  Since Σ w_i = 1, one bucket's weight is implied; both forms are fitted on all but the last
  bucket's weights (the intercept carries it).
- **Fit quality**: leave-one-out: each mixture's loss predicted by the law fitted on the others;
  Spearman's ρ and the mean absolute error over those predictions.
- **Best mixture**: among `candidates` further draws from the same Dirichlet (within the caps),
  the one of least predicted loss (RegMix §3.3 also searches simulated mixtures rather than the
  whole simplex: the law is trusted only where it was fitted).
"""

from dataclasses import dataclass

import numpy as np

FORMS = ("linear", "loglinear")
# log-linear: c on a grid of this many points in [0, min(L)) (the law's irreducible loss)
C_GRID = 200
MAX_DRAW_ROUNDS = 1000


def draw_mixtures(
    natural: np.ndarray, caps: np.ndarray, n: int, seed: int, concentration: float
) -> np.ndarray:
    """n mixtures (rows summing to 1) from Dirichlet(concentration · natural), each within `caps`."""
    if caps.sum() < 1:
        raise ValueError(f"bucket caps sum to {caps.sum():.3f} < 1: no mixture fits (raise max_repeats)")
    rng = np.random.default_rng(seed)
    alpha = np.maximum(concentration * natural, 1e-3)
    out: list[np.ndarray] = []
    for _ in range(MAX_DRAW_ROUNDS):
        out.extend(w for w in rng.dirichlet(alpha, size=max(n, 256)) if np.all(w <= caps))
        if len(out) >= n:
            return np.asarray(out[:n])
    raise ValueError(f"{len(out)} of {n} mixtures within the caps after {MAX_DRAW_ROUNDS} rounds of draws")


@dataclass(frozen=True)
class Law:
    """A fitted law: `form`, its coefficients (intercept first) and, for log-linear, c."""

    form: str
    coef: np.ndarray
    c: float = 0.0

    def predict(self, weights: np.ndarray) -> np.ndarray:
        x = _design(np.atleast_2d(weights))
        z = x @ self.coef
        return z if self.form == "linear" else self.c + np.exp(z)


def _design(weights: np.ndarray) -> np.ndarray:
    """An intercept column and every bucket's weight but the last (implied by Σ w = 1)."""
    return np.hstack([np.ones((len(weights), 1)), weights[:, :-1]])


def fit(weights: np.ndarray, losses: np.ndarray, form: str) -> Law:
    """Least squares of the law `form` to (weights, losses)."""
    if form not in FORMS:
        raise ValueError(f"form {form!r}: one of {', '.join(FORMS)}")
    x = _design(weights)
    if form == "linear":
        return Law(form, np.linalg.lstsq(x, losses, rcond=None)[0])
    best = None
    for c in np.linspace(0.0, losses.min(), C_GRID, endpoint=False):
        law = Law(form, np.linalg.lstsq(x, np.log(losses - c), rcond=None)[0], float(c))
        error = float(np.sum((law.predict(weights) - losses) ** 2))
        if best is None or error < best[0]:
            best = (error, law)
    return best[1]


def leave_one_out(weights: np.ndarray, losses: np.ndarray, form: str) -> np.ndarray:
    """Each mixture's loss as predicted by the law fitted on all the others."""
    keep = np.ones(len(losses), dtype=bool)
    predicted = np.empty(len(losses))
    for i in range(len(losses)):
        keep[i] = False
        predicted[i] = fit(weights[keep], losses[keep], form).predict(weights[i])[0]
        keep[i] = True
    return predicted


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties)."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            tied = v == value
            r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def best_mixture(law: Law, candidates: np.ndarray) -> np.ndarray:
    """The candidate of least predicted loss."""
    return candidates[int(np.argmin(law.predict(candidates)))]
