"""The statistical canary judge: canary against stable, metric by metric, as Kayenta does.

Each metric's canary and stable samples go through a two-sided Mann-Whitney U test and a
Hodges-Lehmann estimate of the shift (canary minus stable) with its distribution-free confidence
interval. A metric is High or Low when the interval excludes zero *and* the shift is larger than
the metric's tolerance, relative to the stable median; otherwise it passes (with one addition to
Kayenta for mostly-zero series such as error rates, see ``classify_metric``). High on a metric
whose increase is bad (Low where a decrease is bad) is a failure. Too few samples, or any
missing/NaN value, is "NoData": never a pass, and it blocks promotion.

The score is the weighted share of judged metrics that passed (0-100), as Kayenta's
WeightedSumScorer; the verdict is pass (score >= 95), marginal (>= 75) or fail, or "nodata" when
everything judged would do but some metric has no data.

References:
- Mann & Whitney (1947); Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed.,
  sections 4.1 (the rank sum test), 4.2 (the Hodges-Lehmann estimator) and 4.3 (its
  distribution-free confidence interval).
- SciPy ``scipy.stats.mannwhitneyu`` (the U convention, tie and continuity corrections).
- R ``wilcox.test`` (the choice between exact and normal, ``qwilcox`` for the interval's rank).
- Kayenta (spinnaker/kayenta): ``MannWhitneyClassifier``, ``MannWhitney.scala`` (an R port for the
  interval) and ``WeightedSumScorer``.

Pure functions, no I/O, standard library only.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Method = Literal["auto", "exact", "asymptotic"]
Direction = Literal["increase", "decrease", "either"]
Classification = Literal["Pass", "High", "Low", "NoData"]
Outcome = Literal["pass", "marginal", "fail", "nodata"]
EffectBasis = Literal["shift", "mean"]

EXACT_LIMIT = 50
"""Both samples below this size and no ties: exact null distribution (R's ``wilcox.test`` rule)."""


# --- Mann-Whitney U ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MannWhitneyResult:
    """A two-sided Mann-Whitney U test of ``x`` (canary) against ``y`` (stable).

    ``u`` is SciPy's statistic for the first sample: the number of pairs with x > y plus half the
    pairs with x == y (``R1 - n1 (n1 + 1) / 2``). ``z`` is the signed normal score of ``u``, with
    tie and continuity corrections; positive when the canary tends to be larger. ``p_value`` comes
    from the exact null distribution when ``exact`` is true, from ``z`` otherwise."""

    u: float
    z: float
    p_value: float
    exact: bool
    n_x: int
    n_y: int


def _finite(values: Sequence[float], name: str) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ValueError(f"{name} is empty")
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} holds NaN or infinite values")
    return out


def _midranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Ranks 1..n with ties given the mean of their ranks, and the size of every tie group."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    groups: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        groups.append(end - start + 1)
        start = end + 1
    return ranks, groups


def _sigma(n1: int, n2: int, tie_groups: Iterable[int]) -> float:
    """Standard deviation of U under H0 with the tie correction:
    ``sqrt(n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))))``."""
    n = n1 + n2
    ties = sum(t**3 - t for t in tie_groups)
    return math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))


@lru_cache(maxsize=128)
def _u_counts(n1: int, n2: int) -> tuple[int, ...]:
    """How many of the C(n1 + n2, n1) equally likely arrangements give U = 0 .. n1 n2 (no ties).

    These are the coefficients of the Gaussian binomial ``prod_{i=1..n1} (1 - q^(n2+i)) / (1 - q^i)``,
    computed as power series truncated at degree n1 n2, in exact integers."""
    top = n1 * n2
    counts = [1] + [0] * top
    for i in range(1, n1 + 1):
        step = n2 + i
        for j in range(top, step - 1, -1):
            counts[j] -= counts[j - step]
        for j in range(i, top + 1):
            counts[j] += counts[j - i]
    return tuple(counts)


def _use_exact(method: Method, n1: int, n2: int, tied: bool) -> bool:
    if method == "exact":
        if tied:
            raise ValueError("the exact distribution of U assumes no ties; use method='asymptotic'")
        return True
    if method == "asymptotic":
        return False
    return not tied and n1 < EXACT_LIMIT and n2 < EXACT_LIMIT


def mann_whitney_u(x: Sequence[float], y: Sequence[float], method: Method = "auto") -> MannWhitneyResult:
    """The two-sided Mann-Whitney U test (Wilcoxon rank-sum test) of ``x`` against ``y``.

    - ``"asymptotic"``: normal approximation with the tie-corrected variance (see ``_sigma``) and a
      continuity correction of 0.5 towards the mean: ``z = (|U - n1 n2/2| - 0.5) / sigma``,
      ``p = 2 * (1 - Phi(z))`` capped at 1. This is exactly ``scipy.stats.mannwhitneyu(x, y,
      alternative="two-sided", method="asymptotic", use_continuity=True)``.
    - ``"exact"``: the exact permutation distribution of U (no ties allowed),
      ``p = min(1, 2 * P(U >= max(U1, U2)))``, as SciPy's ``method="exact"`` and R's
      ``wilcox.test(exact=TRUE)``.
    - ``"auto"`` (default): exact when there are no ties and both samples have fewer than 50
      values (R's rule), asymptotic otherwise.

    Every value must be finite; NaN or infinity raises ValueError (the judge turns them into NoData
    before calling this). All values equal gives z = 0 and p = 1.
    """
    xs, ys = _finite(x, "x"), _finite(y, "y")
    n1, n2 = len(xs), len(ys)
    ranks, groups = _midranks(xs + ys)
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    tied = any(t > 1 for t in groups)
    exact = _use_exact(method, n1, n2, tied)

    shift = u - n1 * n2 / 2
    sigma = _sigma(n1, n2, groups)
    corrected = max(abs(shift) - 0.5, 0.0)
    z = math.copysign(corrected / sigma, shift) if sigma > 0 and corrected > 0 else 0.0
    if exact:
        counts = _u_counts(n1, n2)
        upper = int(round(max(u, n1 * n2 - u)))
        p = min(1.0, 2 * sum(counts[upper:]) / math.comb(n1 + n2, n1))
    else:
        p = min(1.0, math.erfc(abs(z) / math.sqrt(2)))
    return MannWhitneyResult(u=u, z=z, p_value=p, exact=exact, n_x=n1, n_y=n2)


# --- Hodges-Lehmann shift and its confidence interval --------------------------------------------


@dataclass(frozen=True)
class ShiftEstimate:
    """The shift in location of ``x`` (canary) over ``y`` (stable) and its confidence interval.

    ``achieved_confidence`` is the interval's true coverage under H0 for the exact method (at least
    the requested level, as the order statistics are discrete); for the normal approximation it is
    the requested level."""

    estimate: float
    low: float
    high: float
    confidence: float
    achieved_confidence: float
    exact: bool
    rank: int  # the interval is the rank-th smallest and rank-th largest pairwise difference


def hodges_lehmann(x: Sequence[float], y: Sequence[float], confidence: float = 0.95,
                   method: Method = "auto") -> ShiftEstimate:
    """The Hodges-Lehmann two-sample estimate of the shift ``x - y`` and its distribution-free
    confidence interval (Hollander, Wolfe & Chicken, section 4.3; R's ``wilcox.test(x, y,
    conf.int=TRUE)``).

    The n1 n2 pairwise differences ``x_i - y_j`` (the two-sample analogue of the Walsh averages)
    are sorted as D(1) <= ... <= D(N). The estimate is their median. The interval is
    ``[D(k), D(N + 1 - k)]`` with k the Mann-Whitney critical value:

    - exact (no ties, both samples under 50, as the test): k is the smallest u with
      ``P(U <= u) >= alpha / 2`` (R's ``qwilcox(alpha/2, n1, n2)``, at least 1), and the coverage
      is ``1 - 2 P(U <= k - 1)``;
    - normal approximation: ``k = ceil(N/2 - 0.5 - z_{1-alpha/2} * sigma)`` (at least 1), where
      sigma is the tie-corrected standard deviation of U counting the ties *within* each sample.
      This is the point where R's (and Kayenta's ``MannWhitney.scala``) continuity-corrected
      normal statistic of the shifted samples crosses the quantile; they find it with a numerical
      root finder, this takes it directly among the differences. Without ties it is Hollander &
      Wolfe's large-sample ``C_alpha`` with a continuity correction.

    Time and memory are O(n1 n2): fine for the minutes of 30-second samples a canary collects.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    xs, ys = _finite(x, "x"), _finite(y, "y")
    n1, n2 = len(xs), len(ys)
    total = n1 * n2
    diffs = sorted(a - b for a in xs for b in ys)
    estimate = statistics.median(diffs)
    alpha = 1 - confidence
    tied = len(set(xs + ys)) < n1 + n2
    exact = _use_exact(method, n1, n2, tied)
    if exact:
        counts = _u_counts(n1, n2)
        arrangements = math.comb(n1 + n2, n1)
        target = alpha / 2 - 10 * sys.float_info.epsilon  # the fuzz R's qwilcox applies
        cumulative, k = 0, 0
        while True:
            cumulative += counts[k]
            if cumulative / arrangements >= target:
                break
            k += 1
        k = max(k, 1)
        achieved = 1 - 2 * sum(counts[:k]) / arrangements
    else:
        within = [*Counter(xs).values(), *Counter(ys).values()]
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        k = max(1, math.ceil(total / 2 - 0.5 - z * _sigma(n1, n2, within)))
        achieved = confidence
    return ShiftEstimate(estimate=estimate, low=diffs[k - 1], high=diffs[total - k], confidence=confidence,
                         achieved_confidence=achieved, exact=exact, rank=k)


# --- Classification of one metric ----------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """How to judge one metric.

    ``bad`` is the direction that hurts ("increase" for error rate, latency, CPU, memory).
    ``tolerance`` is the largest significant shift that still passes, as a fraction of the stable
    median (default 0.10: a significant 5 % shift passes, 15 % does not). A stable median of 0
    makes any nonzero shift count.
    ``weight`` weighs the metric in the score; a failing ``critical`` metric fails the canary
    whatever the score (Kayenta's criticality)."""

    name: str
    bad: Direction = "increase"
    tolerance: float = 0.10
    weight: float = 1.0
    critical: bool = False
    unit: str = ""

    def __post_init__(self) -> None:
        if self.bad not in ("increase", "decrease", "either"):
            raise ValueError(f"{self.name}: bad direction must be increase, decrease or either, not {self.bad!r}")
        if not (self.tolerance >= 0 and math.isfinite(self.tolerance)):
            raise ValueError(f"{self.name}: tolerance must be a finite number >= 0, not {self.tolerance}")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"{self.name}: weight must be a finite number > 0, not {self.weight}")


DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("error_rate"),
    MetricSpec("p95_ms", unit="ms"),
    MetricSpec("cpu_percent", unit="%"),
    MetricSpec("memory_percent", unit="%"),
)


@dataclass(frozen=True)
class MetricResult:
    """One metric's classification, with the numbers behind it (``test`` and ``shift`` are None for
    NoData; the properties u, z, p_value, estimate, ci_low and ci_high read them)."""

    spec: MetricSpec
    classification: Classification
    failed: bool
    reason: str
    canary_count: int
    stable_count: int
    canary_median: float | None  # of the finite values, shown even for NoData
    stable_median: float | None
    confidence: float
    test: MannWhitneyResult | None = None
    shift: ShiftEstimate | None = None
    effect: float | None = None  # the difference the decision weighed, canary minus stable
    relative_effect: float | None = None  # effect over the stable reference's magnitude (+-inf if that is 0)
    effect_basis: EffectBasis = "shift"  # "shift": HL vs stable median; "mean": means (see classify_metric)
    short: str = ""  # NoData only: why, in a few words for the pane

    @property
    def u(self) -> float | None:
        return None if self.test is None else self.test.u

    @property
    def z(self) -> float | None:
        return None if self.test is None else self.test.z

    @property
    def p_value(self) -> float | None:
        return None if self.test is None else self.test.p_value

    @property
    def estimate(self) -> float | None:
        """The Hodges-Lehmann shift, canary minus stable."""
        return None if self.shift is None else self.shift.estimate

    @property
    def ci_low(self) -> float | None:
        return None if self.shift is None else self.shift.low

    @property
    def ci_high(self) -> float | None:
        return None if self.shift is None else self.shift.high

    @property
    def metric(self) -> str:
        return self.spec.name

    @property
    def has_data(self) -> bool:
        return self.classification != "NoData"

    @property
    def passed(self) -> bool:
        """Judged and not failed: a High on a metric whose increase is harmless passes."""
        return self.has_data and not self.failed

    def describe(self) -> str:
        """One line, e.g. ``p95_ms: High (+38.1 ms, 95% CI 21.0..55.2, p=0.0004) FAIL``."""
        if self.classification == "NoData":
            body = f"not enough data ({self.short}) BLOCKS"
        else:
            assert self.test is not None and self.shift is not None and self.effect is not None
            mark = "FAIL" if self.failed else "ok"
            basis = "mean " if self.effect_basis == "mean" else ""
            body = (f"{self.classification} ({basis}{_with_unit(_num(self.effect, signed=True), self.spec.unit)}, "
                    f"{_pct(self.confidence)} CI {_num(self.shift.low)}..{_num(self.shift.high)}, "
                    f"{_p(self.test.p_value)}) {mark}")
        return f"{self.metric}: {body}"


def _relative(shift: float, reference: float) -> float:
    if reference != 0:
        return shift / abs(reference)
    return 0.0 if shift == 0 else math.copysign(math.inf, shift)


def _bad_values(values: Sequence[float | None]) -> int:
    return sum(1 for v in values if v is None or not math.isfinite(v))


def _median(values: Sequence[float | None]) -> float | None:
    good = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.median(good) if good else None


def classify_metric(spec: MetricSpec, canary: Sequence[float | None], stable: Sequence[float | None], *,
                    confidence: float = 0.95, min_samples: int = 10) -> MetricResult:
    """Classify one metric as Pass, High, Low or NoData, as Kayenta's MannWhitneyClassifier.

    - NoData: either series has fewer than ``min_samples`` values, or any value that is None, NaN
      or infinite (missing data is never healthy). NoData is not a pass.
    - High / Low when the difference is both significant and larger than ``spec.tolerance``:
      the Hodges-Lehmann interval lies above / below 0 and ``|shift| / |stable median|`` exceeds the
      tolerance (``effect_basis="shift"``). The decision rests on the interval, as Kayenta's.
    - One addition to Kayenta: when the interval includes 0 but the test itself rejects at the same
      level (``p < 1 - confidence``), the location-shift model does not describe the difference.
      That is typical of an error rate that is mostly 0: a canary with errors in a third of its
      samples has a median shift of exactly 0. Then the direction is the sign of z and the effect
      is the difference of the means over the stable mean (``effect_basis="mean"``), against the
      same tolerance. Kayenta would pass such a canary.
    - Pass otherwise: identical samples, no significant difference, or one within the tolerance.
    - High or Low is a failure when that direction is ``spec.bad`` (or ``bad`` is "either").

    Kayenta's own margin (the interval's bound beyond 25 % of the estimate) is replaced by the
    tolerance relative to the stable median, which an operator can reason about ("10 % slower").
    """
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, not {min_samples}")
    problems: list[tuple[str, str]] = []  # (for the reason, for the pane)
    for label, values in (("canary", canary), ("stable", stable)):
        bad = _bad_values(values)
        if bad:
            problems.append((f"{label} has {bad} missing or NaN of {len(values)} samples", f"{label} NaN"))
        elif len(values) < min_samples:
            problems.append((f"{label} has {len(values)} samples, {min_samples} needed",
                             f"{label} {len(values)}<{min_samples}"))
    if problems:
        why = "not enough data: " + "; ".join(long for long, _ in problems) + "; promotion blocked"
        return MetricResult(classification="NoData", failed=False, short=", ".join(brief for _, brief in problems),
                            reason=why, spec=spec, canary_count=len(canary), stable_count=len(stable),
                            canary_median=_median(canary), stable_median=_median(stable), confidence=confidence)

    xs = [float(v) for v in canary if v is not None]
    ys = [float(v) for v in stable if v is not None]
    test = mann_whitney_u(xs, ys)
    shift = hodges_lehmann(xs, ys, confidence)
    unit = spec.unit
    interval = f"{_pct(confidence)} CI {_num(shift.low)}..{_num(shift.high)}"
    significant = f"{interval}, {_p(test.p_value)}"

    basis: EffectBasis = "shift"
    direction, detail = 0, ""
    if shift.low > 0 or shift.high < 0:
        direction = 1 if shift.low > 0 else -1
        effect, reference = shift.estimate, statistics.median(ys)
        detail = f"{interval} excludes 0, {_p(test.p_value)}"
    elif test.p_value < 1 - confidence and test.z != 0:
        basis, direction = "mean", (1 if test.z > 0 else -1)
        effect, reference = statistics.fmean(xs) - statistics.fmean(ys), statistics.fmean(ys)
        detail = f"{_p(test.p_value)} though the {interval} of the median shift includes 0"
    else:
        effect, reference = shift.estimate, statistics.median(ys)
    relative = _relative(effect, reference)

    def result(classification: Classification, reason: str, failed: bool = False) -> MetricResult:
        return MetricResult(spec=spec, classification=classification, failed=failed, reason=reason,
                            canary_count=len(xs), stable_count=len(ys), canary_median=statistics.median(xs),
                            stable_median=statistics.median(ys), confidence=confidence, test=test, shift=shift,
                            effect=effect, relative_effect=relative, effect_basis=basis)

    if sorted(xs) == sorted(ys):
        return result("Pass", "canary and stable samples are identical")
    if direction == 0:
        return result("Pass", f"no significant difference: {significant}")

    label = "mean" if basis == "mean" else "median"
    moved = f"{'difference of means' if basis == 'mean' else 'shift'} {_with_unit(_num(effect, signed=True), unit)}"
    of_stable = (f"{relative:+.1%} of stable {label} {_with_unit(_num(reference), unit)}"
                 if math.isfinite(relative) else f"stable {label} 0")
    if direction * relative <= spec.tolerance:
        return result("Pass", f"{moved} ({of_stable}) is within the {spec.tolerance:.0%} tolerance "
                              f"though significant ({significant})")

    classification: Classification = "High" if direction > 0 else "Low"
    went = "an increase" if direction > 0 else "a decrease"
    failed = spec.bad in ("either", "increase" if direction > 0 else "decrease")
    consequence = f"{went} is bad for {spec.name}" if failed else f"{went} does no harm to {spec.name}"
    canary_level = statistics.fmean(xs) if basis == "mean" else statistics.median(xs)
    reason = (f"canary {label} {_with_unit(_num(canary_level), unit)} vs stable {_with_unit(_num(reference), unit)}: "
              f"{moved} ({of_stable}) beyond the "
              f"{spec.tolerance:.0%} tolerance, {detail}; {consequence}")
    return result(classification, reason, failed=failed)


# --- Score and verdict ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeSettings:
    """Kayenta-like defaults: 95 % intervals, at least 10 samples a series, pass at a score of 95,
    marginal from 75 (Spinnaker's canary stage asks for both thresholds; 95/75 are common)."""

    confidence: float = 0.95
    min_samples: int = 10
    pass_score: float = 95.0
    marginal_score: float = 75.0

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, not {self.confidence}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, not {self.min_samples}")
        if not 0 <= self.marginal_score <= self.pass_score <= 100:
            raise ValueError("scores must satisfy 0 <= marginal_score <= pass_score <= 100")


@dataclass(frozen=True)
class CanaryVerdict:
    """The judge's verdict over all metrics.

    ``outcome``: "pass" (promote), "marginal" (a human decides), "fail" (roll back) or "nodata"
    (what could be judged passes, but a metric has no data: wait for data, do not promote).
    """

    outcome: Outcome
    score: float
    results: tuple[MetricResult, ...]
    reason: str
    settings: JudgeSettings = field(default_factory=JudgeSettings)

    @property
    def promotion_blocked(self) -> bool:
        return self.outcome != "pass"

    @property
    def nodata(self) -> tuple[str, ...]:
        return tuple(r.metric for r in self.results if not r.has_data)

    @property
    def failures(self) -> tuple[MetricResult, ...]:
        return tuple(r for r in self.results if r.failed)

    def describe(self) -> str:
        """One line, e.g. ``FAIL score 75/100, 3/4 passed: p95_ms High`` (the screen fits it to its width)."""
        judged = [r for r in self.results if r.has_data]
        head = {"pass": "PASS", "marginal": "MARGINAL", "fail": "FAIL", "nodata": "NO DATA"}[self.outcome]
        text = f"{head} score {self.score:.0f}/100, {sum(r.passed for r in judged)}/{len(judged)} passed"
        if self.failures:
            text += ": " + ", ".join(f"{r.metric} {r.classification}" for r in self.failures)
        if self.nodata:
            text += "; no data: " + ", ".join(self.nodata)
        return text


def score(results: Sequence[MetricResult]) -> float:
    """Weighted share (0-100) of the judged metrics that passed, as Kayenta's WeightedSumScorer:
    NoData metrics are left out (they block a pass in ``verdict`` instead); 0 if nothing was judged;
    0 if a critical metric failed."""
    if any(r.failed and r.spec.critical for r in results):
        return 0.0
    judged = [r for r in results if r.has_data]
    weight = sum(r.spec.weight for r in judged)
    return 100 * sum(r.spec.weight for r in judged if r.passed) / weight if weight else 0.0


def verdict(results: Sequence[MetricResult], settings: JudgeSettings | None = None) -> CanaryVerdict:
    """The overall outcome, in this order: a failed critical metric fails; a score below
    ``marginal_score`` fails; any NoData metric gives "nodata" (never "pass"); a score at or above
    ``pass_score`` passes; anything else is marginal.

    Unlike Kayenta, NoData on a critical metric does not fail the canary (that would roll back for
    want of data); like any NoData it holds the canary at "nodata" until the data is there."""
    settings = settings or JudgeSettings()
    if not results:
        raise ValueError("no metrics to judge")
    points = score(results)
    judged = [r for r in results if r.has_data]
    missing = [r.metric for r in results if not r.has_data]
    critical = [r.metric for r in results if r.failed and r.spec.critical]
    failing = ", ".join(f"{r.metric} {r.classification}" for r in results if r.failed)
    outcome: Outcome
    if critical:
        outcome, reason = "fail", f"critical metric failed: {', '.join(critical)}"
    elif judged and points < settings.marginal_score:
        outcome, reason = "fail", f"score {points:.0f} below {settings.marginal_score:.0f}: {failing}"
    elif missing:
        outcome = "nodata"
        reason = f"not enough data for {', '.join(missing)}: promotion blocked until there is"
    elif points >= settings.pass_score:
        outcome, reason = "pass", f"score {points:.0f} reaches {settings.pass_score:.0f}"
    else:
        outcome, reason = "marginal", f"score {points:.0f} below {settings.pass_score:.0f}: {failing}"
    return CanaryVerdict(outcome=outcome, score=points, results=tuple(results), reason=reason, settings=settings)


def judge(canary: Mapping[str, Sequence[float | None]], stable: Mapping[str, Sequence[float | None]],
          metrics: Sequence[MetricSpec] = DEFAULT_METRICS, settings: JudgeSettings | None = None) -> CanaryVerdict:
    """Classify every metric in ``metrics`` from the canary's and stable's series (by metric name;
    a series missing from either mapping is NoData) and give the verdict."""
    settings = settings or JudgeSettings()
    results = [classify_metric(spec, canary.get(spec.name, ()), stable.get(spec.name, ()),
                               confidence=settings.confidence, min_samples=settings.min_samples)
               for spec in metrics]
    return verdict(results, settings)


# --- Formatting ----------------------------------------------------------------


def _num(value: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    size = abs(value)
    if size == 0:
        return "0"
    if size >= 100:
        return f"{value:{sign}.0f}"
    if size >= 1:
        return f"{value:{sign}.1f}"
    return f"{value:{sign}.2g}"


def _with_unit(number: str, unit: str) -> str:
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


def _pct(confidence: float) -> str:
    return f"{confidence * 100:.4g}%"


def _p(p: float) -> str:
    return "p<0.0001" if p < 0.0001 else f"p={p:.2g}"
