"""The statistical canary judge against known values.

Reference values marked "SciPy 1.17.1" were computed in a throwaway environment
(`uv run --no-project --with scipy python`, SciPy 1.17.1, NumPy 2.4.6) with
`scipy.stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)`
and `method="exact"`; |z| is `scipy.stats.norm.isf(p / 2)` of the asymptotic p. Interval values
marked "R algorithm" come from R's `wilcox.test(conf.int=TRUE)` asymptotic code (the continuity-
corrected normal statistic of the shifted samples, solved for the quantile), which Kayenta's
MannWhitney.scala ports, re-implemented there with `scipy.optimize.brentq(xtol=1e-9)`. Exact
intervals were checked by enumerating every arrangement with itertools.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest

from services.canary.judge import (
    DEFAULT_METRICS,
    CanaryVerdict,
    JudgeSettings,
    MetricResult,
    MetricSpec,
    _u_counts,
    classify_metric,
    hodges_lehmann,
    judge,
    mann_whitney_u,
    score,
    verdict,
)

# Hollander & Wolfe (1973) p. 69, the permeability data of R's ?wilcox.test example: W = 35.
HW_X = [0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]
HW_Y = [1.15, 0.88, 0.90, 0.74, 1.21]
# Integer samples with ties within and across them.
TIES_C = [101, 103, 103, 105, 107, 107, 107, 110, 112, 115, 115, 118, 120, 121, 125]
TIES_S = [98, 99, 101, 101, 103, 104, 105, 105, 107, 108, 110, 111]
# p95 latency: stable 200..287 ms, the canary 60 ms slower.
STABLE_MS = [200 + 3 * k for k in range(30)]
SLOW_MS = [v + 60 for v in STABLE_MS]


# --- Mann-Whitney U ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (2, 3), (4, 6), (5, 5), (6, 3)])
def test_exact_distribution_counts_every_arrangement(n1: int, n2: int) -> None:
    brute = [0] * (n1 * n2 + 1)
    for ranks in itertools.combinations(range(1, n1 + n2 + 1), n1):
        brute[sum(ranks) - n1 * (n1 + 1) // 2] += 1
    assert list(_u_counts(n1, n2)) == brute
    assert sum(_u_counts(n1, n2)) == math.comb(n1 + n2, n1)


def test_exact_distribution_low_tail_is_partitions() -> None:
    # P(U = u) for u <= min(n1, n2) counts the partitions of u: 1, 1, 2, 3, 5, 7 of C(10, 5) = 252.
    assert _u_counts(5, 5)[:6] == (1, 1, 2, 3, 5, 7)


def test_textbook_tortoise_and_hare() -> None:
    # Wikipedia, "Mann-Whitney U test", illustration: T H H H H H T T T T T H; ranked with the first
    # home as 12, U_T = 11 and U_H = 25. SciPy 1.17.1: exact p 0.30952380952380953, asymptotic
    # p 0.2979530616081678, |z| 1.040832999733066.
    tortoises, hares = [12, 6, 5, 4, 3, 2], [11, 10, 9, 8, 7, 1]
    result = mann_whitney_u(tortoises, hares)
    assert result.u == 11
    assert mann_whitney_u(hares, tortoises).u == 25
    assert result.exact
    assert result.p_value == pytest.approx(0.30952380952380953, rel=1e-12)
    normal = mann_whitney_u(tortoises, hares, method="asymptotic")
    assert normal.p_value == pytest.approx(0.2979530616081678, rel=1e-12)
    assert normal.z == pytest.approx(-1.040832999733066, rel=1e-12)


def test_hollander_wolfe_permeability_exact_and_normal() -> None:
    # W = 35 as in R's example; SciPy 1.17.1: exact two-sided p 0.2544122544122544 (one-sided
    # "greater" 0.1272061272061272, R's printed 0.1272), asymptotic p 0.24462360512698333.
    result = mann_whitney_u(HW_X, HW_Y)
    assert (result.u, result.exact, result.n_x, result.n_y) == (35, True, 10, 5)
    assert result.p_value == pytest.approx(0.2544122544122544, rel=1e-12)
    normal = mann_whitney_u(HW_X, HW_Y, method="asymptotic")
    assert normal.p_value == pytest.approx(0.24462360512698333, rel=1e-12)
    assert normal.z == pytest.approx(1.16350762782201, rel=1e-12)


def test_exact_is_chosen_below_fifty_without_ties() -> None:
    # 10 against 12, no ties. SciPy 1.17.1: U 97, exact p 0.013769512221524605, asymptotic
    # p 0.016095680379275525, |z| 2.4067387278946226.
    rng = random.Random(11)  # random.random() is reproducible for a given seed
    canary = [round(50 + 10 * rng.random(), 2) for _ in range(10)]
    stable = [round(47 + 10 * rng.random(), 2) for _ in range(12)]
    result = mann_whitney_u(canary, stable)
    assert (result.u, result.exact) == (97, True)
    assert result.p_value == pytest.approx(0.013769512221524605, rel=1e-12)
    normal = mann_whitney_u(canary, stable, method="asymptotic")
    assert normal.p_value == pytest.approx(0.016095680379275525, rel=1e-12)
    assert normal.z == pytest.approx(2.4067387278946226, rel=1e-12)


def test_ties_use_the_corrected_normal_approximation() -> None:
    # SciPy 1.17.1: U 139, asymptotic p 0.017535912733402402, |z| 2.3752743092704978.
    result = mann_whitney_u(TIES_C, TIES_S)
    assert (result.u, result.exact) == (139, False)
    assert result.p_value == pytest.approx(0.017535912733402402, rel=1e-12)
    assert result.z == pytest.approx(2.3752743092704978, rel=1e-12)
    with pytest.raises(ValueError, match="no ties"):
        mann_whitney_u(TIES_C, TIES_S, method="exact")


def test_fifty_samples_or_more_use_the_normal_approximation() -> None:
    # 60 against 55, one tie from rounding. SciPy 1.17.1: U 2664.5, asymptotic
    # p 1.3682036861233522e-08, |z| 5.6773212607429215.
    rng = random.Random(20240607)
    canary = [round(120 + 30 * rng.random(), 3) for _ in range(60)]
    stable = [round(110 + 30 * rng.random(), 3) for _ in range(55)]
    result = mann_whitney_u(canary, stable)
    assert (result.u, result.exact) == (2664.5, False)
    assert result.p_value == pytest.approx(1.3682036861233522e-08, rel=1e-9)
    assert result.z == pytest.approx(5.6773212607429215, rel=1e-12)


def test_swapping_the_samples_mirrors_u_and_z() -> None:
    forward, backward = mann_whitney_u(SLOW_MS, STABLE_MS), mann_whitney_u(STABLE_MS, SLOW_MS)
    assert forward.u + backward.u == 30 * 30
    assert forward.z == -backward.z > 0
    assert forward.p_value == backward.p_value
    # SciPy 1.17.1 on (SLOW_MS, STABLE_MS): U 850, p 3.479739872462848e-09.
    assert forward.u == 850
    assert forward.p_value == pytest.approx(3.479739872462848e-09, rel=1e-9)


def test_all_values_tied_gives_no_evidence() -> None:
    result = mann_whitney_u([5.0] * 12, [5.0] * 15)
    assert (result.u, result.z, result.p_value) == (90, 0.0, 1.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mann_whitney_u([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        mann_whitney_u([], [1.0])


# --- Hodges-Lehmann ------------------------------------------------------------------------------


def test_hodges_lehmann_by_hand() -> None:
    # The 25 differences of (12 15 17 20 22) - (10 11 13 14 16), sorted:
    # -4 -2 -1 -1 1 1 1 2 2 3 4 4 [4] 5 6 6 6 7 7 8 9 9 10 11 12; the median (13th) is 4.
    # qwilcox(0.025, 5, 5): P(U <= 2) = 4/252 = 0.016 < 0.025 <= P(U <= 3) = 7/252 = 0.028, so k = 3
    # and the interval is [D(3), D(23)] = [-1, 10], covering 1 - 2 * 4/252 = 96.8 %.
    shift = hodges_lehmann([12, 15, 17, 20, 22], [10, 11, 13, 14, 16])
    assert (shift.estimate, shift.low, shift.high, shift.rank, shift.exact) == (4, -1, 10, 3, True)
    assert shift.achieved_confidence == pytest.approx(1 - 8 / 252)
    assert shift.confidence == 0.95


def test_hodges_lehmann_hollander_wolfe() -> None:
    # Checked by enumerating all C(15, 5) arrangements: k = 9, interval [-0.15, 0.76], estimate
    # 0.305, coverage 0.9600399600399601.
    shift = hodges_lehmann(HW_X, HW_Y)
    assert shift.rank == 9
    assert shift.estimate == pytest.approx(0.305)
    assert (shift.low, shift.high) == pytest.approx((-0.15, 0.76))
    assert shift.achieved_confidence == pytest.approx(0.9600399600399601)


def test_normal_interval_matches_rs_root_finding_with_ties() -> None:
    # R algorithm: roots 1.9999999995748579 and 12.000000000745842; NumPy median of differences 6.0.
    shift = hodges_lehmann(TIES_C, TIES_S)
    assert not shift.exact
    assert (shift.estimate, shift.low, shift.high) == (6.0, 2.0, 12.0)


def test_normal_interval_matches_rs_root_finding_large() -> None:
    # R algorithm: roots 7.371999999570798 and 13.85200000015543; NumPy median 10.564500000000002.
    rng = random.Random(20240607)
    canary = [round(120 + 30 * rng.random(), 3) for _ in range(60)]
    stable = [round(110 + 30 * rng.random(), 3) for _ in range(55)]
    shift = hodges_lehmann(canary, stable)
    assert shift.estimate == pytest.approx(10.5645)
    assert (shift.low, shift.high) == pytest.approx((7.372, 13.852))


def test_exact_and_normal_rank_agree_with_the_published_critical_value() -> None:
    # Tables of the Mann-Whitney U (two-sided 0.05, n1 = n2 = 10) give the critical value 23:
    # P(U <= 23) <= 0.025 < P(U <= 24), so the interval's rank is 24 either way.
    canary, stable = [float(v) for v in range(1, 20, 2)], [float(v) for v in range(2, 21, 2)]
    assert hodges_lehmann(canary, stable, method="exact").rank == 24
    assert hodges_lehmann(canary, stable, method="asymptotic").rank == 24


def test_a_lower_confidence_gives_a_narrower_interval() -> None:
    wide, narrow = hodges_lehmann(TIES_C, TIES_S, 0.95), hodges_lehmann(TIES_C, TIES_S, 0.80)
    assert wide.low <= narrow.low <= narrow.estimate <= narrow.high <= wide.high
    assert narrow.high - narrow.low < wide.high - wide.low
    with pytest.raises(ValueError, match="confidence"):
        hodges_lehmann(TIES_C, TIES_S, 1.0)


# --- Classification ------------------------------------------------------------------------------

P95 = MetricSpec("p95_ms", unit="ms")


def test_identical_samples_pass() -> None:
    result = classify_metric(P95, STABLE_MS[::-1], STABLE_MS)
    assert (result.classification, result.failed, result.passed) == ("Pass", False, True)
    assert result.reason == "canary and stable samples are identical"
    assert (result.estimate, result.u, result.p_value) == (0, 450, 1.0)
    assert (result.ci_low, result.ci_high) == (-15, 15)  # symmetric about 0, as it must be


def test_slower_canary_is_high_and_fails() -> None:
    # R algorithm: interval 45..75 (roots 45.00000000025295, 74.99999999974705).
    result = classify_metric(P95, SLOW_MS, STABLE_MS)
    assert (result.classification, result.failed, result.passed) == ("High", True, False)
    assert (result.estimate, result.ci_low, result.ci_high) == (60, 45, 75)
    assert result.u == 850 and result.z is not None and result.z > 0
    assert result.p_value == pytest.approx(3.479739872462848e-09, rel=1e-9)
    assert (result.canary_count, result.stable_count) == (30, 30)
    assert (result.canary_median, result.stable_median) == (303.5, 243.5)
    assert result.relative_effect == pytest.approx(60 / 243.5)
    assert result.describe() == "p95_ms: High (+60.0 ms, 95% CI 45.0..75.0, p<0.0001) FAIL"
    assert "an increase is bad for p95_ms" in result.reason
    assert "canary median 304 ms vs stable 244 ms" in result.reason


@pytest.mark.parametrize(("bad", "failed"), [("increase", False), ("decrease", True), ("either", True)])
def test_faster_canary_is_low_and_fails_only_where_a_decrease_is_bad(bad: str, failed: bool) -> None:
    spec = MetricSpec("throughput", bad=bad)  # type: ignore[arg-type]
    result = classify_metric(spec, [v - 60 for v in STABLE_MS], STABLE_MS)
    assert result.classification == "Low"
    assert (result.estimate, result.ci_low, result.ci_high) == (-60, -75, -45)
    assert result.failed is failed
    assert result.passed is not failed
    assert result.describe().endswith("FAIL" if failed else "ok")


def test_a_tiny_significant_shift_passes_within_the_tolerance() -> None:
    # 1000..1039 ms against +20 ms: SciPy 1.17.1 p 7.95695256282532e-09; R algorithm interval
    # 15..25. 20 / 1019.5 = 2 % of the stable median, within the default 10 %, but not within 1 %.
    stable = [1000.0 + k for k in range(40)]
    canary = [v + 20 for v in stable]
    result = classify_metric(P95, canary, stable)
    assert result.classification == "Pass" and not result.failed
    assert (result.ci_low, result.ci_high, result.estimate) == (15, 25, 20)
    assert result.p_value == pytest.approx(7.95695256282532e-09, rel=1e-9)
    assert "within the 10% tolerance" in result.reason
    strict = classify_metric(MetricSpec("p95_ms", tolerance=0.01, unit="ms"), canary, stable)
    assert (strict.classification, strict.failed) == ("High", True)
    assert strict.relative_effect == pytest.approx(20 / 1019.5)


def test_no_significant_difference_passes() -> None:
    stable = [100.0 + (k * 7) % 31 for k in range(31)]
    canary = [v + 1 for v in stable]
    result = classify_metric(P95, canary, stable)
    assert result.ci_low is not None and result.ci_high is not None
    assert result.ci_low < 0 < result.ci_high
    assert result.classification == "Pass" and result.passed
    assert result.reason.startswith("no significant difference")


def test_mostly_zero_error_rate_with_errors_is_high() -> None:
    # A third of the canary's samples see 2 % errors, the stable none. The median shift and its
    # interval are 0 (R algorithm: 0.0 .. 6.6e-10), which Kayenta would pass; the test rejects
    # (SciPy 1.17.1: U 600, p 0.0006178331602029783), so the means decide.
    canary, stable = [0.0] * 20 + [0.02] * 10, [0.0] * 30
    result = classify_metric(MetricSpec("error_rate"), canary, stable)
    assert (result.ci_low, result.ci_high, result.estimate) == (0, 0, 0)
    assert result.p_value == pytest.approx(0.0006178331602029783, rel=1e-9)
    assert (result.classification, result.failed, result.effect_basis) == ("High", True, "mean")
    assert result.effect == pytest.approx(0.02 / 3)
    assert result.relative_effect == math.inf
    assert result.describe() == "error_rate: High (mean +0.0067, 95% CI 0..0, p=0.00062) FAIL"


def test_too_few_samples_is_no_data_not_a_pass() -> None:
    result = classify_metric(P95, SLOW_MS[:9], STABLE_MS)
    assert result.classification == "NoData"
    assert not result.passed and not result.failed and not result.has_data
    assert result.reason == "not enough data: canary has 9 samples, 10 needed; promotion blocked"
    assert result.describe() == "p95_ms: not enough data (canary 9<10) BLOCKS"
    assert (result.u, result.p_value, result.ci_low) == (None, None, None)
    assert result.canary_median == 272  # 260..284 ms: still shown: the median of what there is
    relaxed = classify_metric(P95, SLOW_MS[:9], STABLE_MS, min_samples=5)
    assert relaxed.classification == "High"


@pytest.mark.parametrize("bad_value", [None, math.nan, math.inf])
def test_missing_or_nan_values_are_no_data(bad_value: float | None) -> None:
    canary: list[float | None] = [*SLOW_MS[:-1], bad_value]
    result = classify_metric(P95, canary, STABLE_MS)
    assert result.classification == "NoData" and not result.passed
    assert "canary has 1 missing or NaN of 30 samples" in result.reason
    assert result.describe() == "p95_ms: not enough data (canary NaN) BLOCKS"
    stable_side = classify_metric(P95, SLOW_MS, [bad_value] * 30)
    assert stable_side.classification == "NoData"
    assert stable_side.stable_median is None


def test_describe_keeps_the_whole_name_for_the_screen_to_fit() -> None:
    long_name = MetricSpec("http_server_request_duration_seconds_p99_for_checkout", unit="ms")
    lines = [classify_metric(long_name, SLOW_MS, STABLE_MS).describe(),
             classify_metric(long_name, [None] * 3, []).describe()]
    assert lines[0].startswith(f"{long_name.name}: High") and lines[0].endswith("FAIL")
    assert lines[1] == f"{long_name.name}: not enough data (canary NaN, stable 0<10) BLOCKS"


def test_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="bad direction"):
        MetricSpec("x", bad="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight"):
        MetricSpec("x", weight=0)
    with pytest.raises(ValueError, match="tolerance"):
        MetricSpec("x", tolerance=-0.1)


# --- Score and verdict ---------------------------------------------------------------------------


def passing(name: str, **spec: object) -> MetricResult:
    return classify_metric(MetricSpec(name, **spec), STABLE_MS, STABLE_MS)  # type: ignore[arg-type]


def failing(name: str, **spec: object) -> MetricResult:
    return classify_metric(MetricSpec(name, **spec), SLOW_MS, STABLE_MS)  # type: ignore[arg-type]


def missing(name: str) -> MetricResult:
    return classify_metric(MetricSpec(name), [], STABLE_MS)


def test_score_is_the_weighted_share_of_judged_metrics_that_passed() -> None:
    assert score([passing("a"), passing("b"), passing("c"), failing("d")]) == 75
    assert score([passing("a", weight=3), failing("b")]) == 75
    assert score([passing("a"), failing("b", weight=3)]) == 25
    assert score([passing("a"), missing("b")]) == 100  # NoData is left out, as Kayenta's scorer
    assert score([missing("a")]) == 0
    assert score([passing("a"), failing("b", critical=True)]) == 0


def test_verdict_thresholds() -> None:
    everything = verdict([passing("a"), passing("b"), passing("c"), passing("d")])
    assert (everything.outcome, everything.score, everything.promotion_blocked) == ("pass", 100, False)
    one_of_four = verdict([passing("a"), passing("b"), passing("c"), failing("d")])
    assert (one_of_four.outcome, one_of_four.score) == ("marginal", 75)  # 75 is still marginal
    assert one_of_four.promotion_blocked
    assert one_of_four.reason == "score 75 below 95: d High"
    two_of_four = verdict([passing("a"), passing("b"), failing("c"), failing("d")])
    assert (two_of_four.outcome, two_of_four.score) == ("fail", 50)
    nineteen_of_twenty = verdict([passing(f"m{i}") for i in range(19)] + [failing("m19")])
    assert (nineteen_of_twenty.outcome, nineteen_of_twenty.score) == ("pass", 95)  # 95 passes
    lenient = verdict([passing("a"), passing("b"), passing("c"), failing("d")],
                      JudgeSettings(pass_score=70, marginal_score=50))
    assert lenient.outcome == "pass"


def test_a_failed_critical_metric_fails_whatever_the_score() -> None:
    result = verdict([passing(f"m{i}") for i in range(19)] + [failing("p95_ms", critical=True)])
    assert (result.outcome, result.score) == ("fail", 0)
    assert result.reason == "critical metric failed: p95_ms"


def test_no_data_on_a_critical_metric_holds_rather_than_fails() -> None:
    critical_gap = classify_metric(MetricSpec("error_rate", critical=True), [], [0.0] * 30)
    result = verdict([passing("p95_ms"), critical_gap])
    assert (result.outcome, result.score, result.promotion_blocked) == ("nodata", 100, True)


def test_not_enough_data_blocks_promotion() -> None:
    result = verdict([passing("error_rate"), passing("p95_ms"), missing("cpu_percent")])
    assert result.outcome == "nodata"
    assert result.score == 100
    assert result.promotion_blocked
    assert result.nodata == ("cpu_percent",)
    assert result.reason == "not enough data for cpu_percent: promotion blocked until there is"
    assert result.describe() == "NO DATA score 100/100, 2/2 passed; no data: cpu_percent"


def test_a_failure_outweighs_missing_data() -> None:
    result = verdict([failing("p95_ms"), passing("error_rate"), missing("cpu_percent")])
    assert (result.outcome, result.score) == ("fail", 50)
    assert [r.metric for r in result.failures] == ["p95_ms"]
    assert result.describe() == "FAIL score 50/100, 1/2 passed: p95_ms High; no data: cpu_percent"


def test_judge_takes_series_by_name_and_missing_series_are_no_data() -> None:
    result = judge({"p95_ms": SLOW_MS, "error_rate": [0.0] * 30},
                   {"p95_ms": STABLE_MS, "error_rate": [0.0] * 30})
    assert isinstance(result, CanaryVerdict)
    assert [r.metric for r in result.results] == [m.name for m in DEFAULT_METRICS]
    assert [r.classification for r in result.results] == ["Pass", "High", "NoData", "NoData"]
    assert (result.outcome, result.score) == ("fail", 50)
    nothing = judge({}, {})
    assert (nothing.outcome, nothing.score, nothing.nodata) == ("nodata", 0, tuple(m.name for m in DEFAULT_METRICS))


def test_judge_settings_reach_the_classification() -> None:
    settings = JudgeSettings(confidence=0.90, min_samples=5)
    result = judge({"p95_ms": SLOW_MS[:6]}, {"p95_ms": STABLE_MS[:6]}, [P95], settings)
    only = result.results[0]
    assert only.classification == "High" and only.confidence == 0.90
    assert only.describe().startswith("p95_ms: High (+60.0 ms, 90% CI")
    assert result.settings is settings


def test_settings_and_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="marginal_score"):
        JudgeSettings(pass_score=70, marginal_score=80)
    with pytest.raises(ValueError, match="min_samples"):
        JudgeSettings(min_samples=0)
    with pytest.raises(ValueError, match="no metrics"):
        verdict([])
