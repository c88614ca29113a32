"""Dashboard figures: points where the metrics put them, edge cases labelled, empty states explained."""
from __future__ import annotations

import math

from reliability.metrics import bootstrap, compare, risk_coverage
from reliability.plots import MethodPoint, conservatism_humility_plane, empty_figure, rgi_bars, risk_coverage_figure

BASE = {f"i{k}": "correct" if k < 6 else "wrong" for k in range(10)}
IDK = {**BASE, "i0": "idk", "i6": "idk", "i7": "idk"}
SAME = dict(BASE)


def point(method, outcomes, group="sound", intervals=True):
    return MethodPoint(method, group, compare(BASE, outcomes), bootstrap(BASE, outcomes, n_boot=200) if intervals else None)


def test_plane_places_method_at_its_deltas_with_counts_in_hover():
    fig = conservatism_humility_plane([point("idk", IDK)])
    [trace] = [t for t in fig.data if t.name == "idk"]
    assert trace.x[0] == 0.1 and trace.y[0] == 0.2
    assert trace.error_x is not None and trace.error_y.array is not None
    assert list(trace.customdata[0][1:6]) == [1, 6, 2, 4, 10]
    assert any(t.name == "RGI = 0" for t in fig.data)


def test_rgi_bars_label_undefined_and_infinite_with_their_n():
    only_humble = {**BASE, "i6": "idk"}
    fig = rgi_bars([point("same", SAME, intervals=False), point("humble", only_humble, intervals=False)])
    labels = {t.name: (t.text[0], t.customdata[0][0]) for t in fig.data}
    assert labels["same"] == ("n/a<br>n=10", "undefined (no change)")
    assert labels["humble"] == ("+∞<br>n=10", "+inf (no conservatism)")
    assert all(math.isfinite(v) for t in fig.data for v in t.y)


def test_risk_coverage_legend_carries_aurc():
    fig = risk_coverage_figure({"baseline": risk_coverage([0.9, 0.8, 0.1], [True, True, False])})
    assert "AURC" in fig.data[0].name and list(fig.data[0].y) == [0.0, 0.0, 1 / 3]


def test_empty_states_explain_next_step():
    hints = {"run the baseline": (conservatism_humility_plane([]), rgi_bars([])), "No confidences": (risk_coverage_figure({}),)}
    for hint, figures in hints.items():
        assert all(hint in fig.layout.annotations[0].text for fig in figures)
    assert empty_figure("hello").layout.annotations[0].text == "hello"


def test_methods_differ_in_colour_and_shape_and_identical_points_are_spread():
    fig = conservatism_humility_plane([point("idk", IDK), point("mcot", IDK), point("agent", IDK), point("idk", IDK, "music")])
    sound = [t for t in fig.data if t.mode == "markers" and t.xaxis == "x"]
    assert [t.name for t in sound] == ["idk", "mcot", "agent"]
    assert len({t.marker.color for t in sound}) == 3 and len({t.marker.symbol for t in sound}) == 3
    drawn = {(t.x[0], t.y[0]) for t in sound}
    assert len(drawn) == 3, "three methods at the same figures are drawn apart"
    assert all(abs(x - 0.1) < 0.03 and abs(y - 0.2) < 0.03 for x, y in drawn)
    assert [tuple(t.customdata[0][7:9]) for t in sound] == [(0.1, 0.2)] * 3  # hover: the exact figures
    assert [a.text for a in fig.layout.annotations[:2]] == ["sound (n = 10)", "music (n = 10)"]  # one panel per group, with its n
    assert [t.showlegend for t in fig.data if t.name == "idk"] == [True, False]  # one legend entry per method
    assert fig.layout.xaxis.range[0] < 0 and sound[0].cliponaxis is False  # a point at 0 is not cut by the axes


def test_an_infinite_rgi_is_a_labelled_marker_off_the_scale_never_a_bar():
    only_humble = {**BASE, "i6": "idk"}
    points = [point(m, o, g) for m, o in (("idk", IDK), ("humble", only_humble), ("same", SAME)) for g in ("sound", "total")]
    fig = rgi_bars(points)
    assert [t.type for t in fig.data if t.name == "humble"] == ["scatter"]  # no bar to read a height from
    humble = next(t for t in fig.data if t.name == "humble")
    assert humble.marker.symbol[0] == "triangle-up" and humble.text[0].startswith("+∞")
    band = next(s for s in fig.layout.shapes if s.type == "rect")
    assert band.y0 < humble.y[0] < band.y1 <= fig.layout.yaxis.range[1]  # in the off-scale band, inside the figure
    assert "+∞" in fig.layout.yaxis.ticktext and "off the scale" in fig.layout.yaxis.title.text
    idk = next(t for t in fig.data if t.name == "idk")
    assert idk.type == "bar" and idk.text[0] == "0.30<br>n=10" and idk.error_y.array is not None


def test_a_small_sample_says_so_and_a_large_one_does_not():
    small = rgi_bars([point("idk", IDK)])
    assert any("Too small a sample" in a.text for a in small.layout.annotations)
    assert any("Too small a sample" in a.text for a in conservatism_humility_plane([point("idk", IDK)]).layout.annotations)
    many = {f"i{k}": "correct" if k % 2 else "wrong" for k in range(40)}
    large = MethodPoint("idk", "sound", compare(many, {**many, "i0": "idk", "i1": "idk", "i2": "idk"}))
    assert not any("Too small" in (a.text or "") for a in rgi_bars([large]).layout.annotations)


def test_a_long_empty_state_message_is_wrapped_to_fit_half_a_dashboard():
    text = conservatism_humility_plane([]).layout.annotations[0].text
    assert "<br>" in text and all(len(line) <= 60 for line in text.split("<br>"))
