"""The canary charts, drawn by widgets/braille_chart.py, are what plotext drew for them, cell for cell.

The oracle is the old path: textual-plotext's figure given the calls MetricChart.replot made, built by
plotext and read by Rich's own ANSI decoder (as PlotextPlot.render did). Each case compares every
cell's character and colours, over random data (noise, spikes, constants, zeros, negatives, large
and tiny values, NaN gaps, a series missing, no threshold) and sizes from 3x3 to 90x30.
"""

from __future__ import annotations

import math
import random

import pytest
from plotext._dict import themes as plotext_themes
from rich.console import Console
from rich.text import Text
from textual_plotext.plot import Plot, _rgbify_theme, _sequence

from widgets.braille_chart import RGB, Line, chart_segments
from widgets.canary import worst_per_column

SURFACE, FOREGROUND = (30, 31, 32), (224, 225, 226)
COLOURS = {"canary": (186, 60, 91), "stable": (78, 191, 113), "baseline": (0, 69, 120)}
LIMIT = (255, 166, 43)
THEME = "rc-test-braille"
plotext_themes[THEME] = _rgbify_theme(SURFACE, SURFACE, FOREGROUND, "default", _sequence)

Cells = list[list[tuple[str, RGB | None, RGB | None]]]
Case = tuple[int, int, dict[str, list[float]], float | None]


def _cells(segments: list[list[tuple[str, object]]]) -> Cells:
    rows = []
    for line in segments:
        row = []
        for text, style in line:
            fg = style.color.triplet if style and style.color else None  # type: ignore[attr-defined]
            bg = style.bgcolor.triplet if style and style.bgcolor else None  # type: ignore[attr-defined]
            row += [(char, tuple(fg) if fg else None, tuple(bg) if bg else None) for char in text]
        rows.append(row)
    return rows  # type: ignore[return-value]


def _plotext(width: int, height: int, lines: list[Line], hlines: list[tuple[float, RGB]], order: list[str]) -> Cells:
    """What the chart was: plotext's build, read by Rich's ANSI decoder."""
    console = Console(width=width, color_system="truecolor", legacy_windows=False)
    text = Text.from_ansi(_build(width, height, lines, hlines, order))
    return _cells([[(s.text, s.style) for s in line] for line in console.render_lines(text, pad=False)][:height])


def _build(width: int, height: int, lines: list[Line], hlines: list[tuple[float, RGB]], order: list[str]) -> str:
    """The calls MetricChart.replot and render made (the baseline across first, then the series, then
    the threshold), and plotext's build."""
    plt = Plot()
    plt.clear_data()
    plt.title("errors %")
    series, across = iter(lines), iter(hlines)
    for name in order:
        if name == "baseline":
            value, colour = next(across)
            plt.horizontal_line(value, color=colour)
        else:
            xs, ys, colour = next(series)
            plt.plot(xs, ys, color=colour, marker="braille")
    for value, colour in across:  # the threshold
        plt.horizontal_line(value, color=colour)
    plt.plotsize(width, height)
    plt._set_size(width, height)
    plt.theme(THEME)
    return str(plt.build())


def _ours(width: int, height: int, lines: list[Line], hlines: list[tuple[float, RGB]]) -> Cells:
    rows = chart_segments(width, height, "errors %", lines, hlines, SURFACE, SURFACE, FOREGROUND)
    return _cells([[(s.text, s.style) for s in row] for row in rows])


def _inputs(case: Case) -> tuple[list[Line], list[tuple[float, RGB]], list[str]]:
    """As MetricChart.replot: the baseline a line across, the others thinned to a point a column."""
    width, _, series, threshold = case
    lines: list[Line] = []
    hlines: list[tuple[float, RGB]] = []
    order = []
    for name, values in series.items():
        if not values:
            continue
        order.append(name)
        if name == "baseline":
            hlines.append((values[-1], COLOURS[name]))
        else:
            xs, ys = worst_per_column(values, max(2, width))
            lines.append((xs, ys, COLOURS[name]))
    if threshold is not None:
        hlines.append((threshold, LIMIT))
    return lines, hlines, order


def _random_case(rng: random.Random) -> Case:
    width, height, n = rng.randint(3, 90), rng.randint(3, 30), rng.choice([1, 2, 3, 10, 59, 60, 60])
    kind = rng.choice(["noise", "constant", "zero", "spiky", "large", "tiny", "negative"])

    def values() -> list[float]:
        draw = {"noise": lambda: rng.random(), "zero": lambda: 0.0, "large": lambda: rng.uniform(100, 5000),
                "spiky": lambda: rng.random() * (100 if rng.random() < 0.05 else 1),
                "tiny": lambda: rng.uniform(0, 0.002), "negative": lambda: rng.uniform(-5, 5),
                "constant": lambda: constant}[kind]
        out = [draw() for _ in range(n)]
        gaps = rng.random() < 0.3
        return [math.nan if gaps and rng.random() < 0.2 else v for v in out]

    constant = rng.choice([0.0, 1.0, 0.005, 370.0])
    series = {name: values() for name in COLOURS if rng.random() < 0.85}
    threshold = rng.choice([None, rng.random() * 2, 0.0, 1.22, 370.0])
    return width, height, series, threshold


EDGES: list[Case] = [
    (46, 7, {"canary": [1.0] * 6, "stable": [0.8] * 6, "baseline": [0.816]}, 1.22),  # the pane at 80x24
    (40, 16, {"canary": [0.5, math.nan, math.nan, 0.7], "stable": [0.4] * 4}, None),  # gaps
    (40, 10, {"canary": [math.nan] * 5}, 1.0),  # nothing but NaN
    (40, 10, {"baseline": [0.816]}, 1.22),  # lines across only
    (40, 10, {}, 1.22),  # the threshold alone
    (40, 10, {}, None),  # nothing yet
    (5, 5, {"canary": [1.0, 2.0, 3.0]}, 2.5),  # the smallest chart the CSS allows
    (3, 3, {"canary": [1.0, 2.0]}, None),
]


@pytest.mark.parametrize("case", EDGES, ids=[f"edge{i}" for i in range(len(EDGES))])
def test_edge_cases_draw_as_plotext_did(case: Case) -> None:
    lines, hlines, order = _inputs(case)
    assert _ours(case[0], case[1], lines, hlines) == _plotext(case[0], case[1], lines, hlines, order)


@pytest.mark.parametrize("seed", range(8))
def test_random_charts_draw_as_plotext_did(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        case = _random_case(rng)
        lines, hlines, order = _inputs(case)
        ours, theirs = _ours(case[0], case[1], lines, hlines), _plotext(case[0], case[1], lines, hlines, order)
        assert ours == theirs, f"{case[:2]}, {case[2]}, threshold {case[3]}:\n" + "\n".join(
            "".join(c[0] for c in a) + " | " + "".join(c[0] for c in b) for a, b in zip(ours, theirs, strict=False))


def test_a_chart_costs_a_fraction_of_plotext() -> None:
    """The point of it: a chart of the 120x40 pane (43x12, two series and two lines across) at well
    under a third of plotext's build (measured in turn, so a loaded machine slows both alike)."""
    import time

    rng = random.Random(7)
    case: Case = (43, 12, {"canary": [rng.random() for _ in range(60)], "stable": [rng.random() for _ in range(60)],
                           "baseline": [0.5]}, 1.2)
    lines, hlines, order = _inputs(case)
    timings: dict[str, list[float]] = {"ours": [], "plotext": []}
    for _ in range(15):
        for name, draw in (("ours", lambda: chart_segments(43, 12, "errors %", lines, hlines, SURFACE, SURFACE,
                                                           FOREGROUND)),
                           ("plotext", lambda: _build(43, 12, lines, hlines, order))):
            started = time.perf_counter()
            draw()
            timings[name].append(time.perf_counter() - started)
    assert min(timings["ours"]) < min(timings["plotext"]) / 3, timings
