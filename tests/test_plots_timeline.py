"""plot_fit_timeline: the bars of a real fit's report in thread lanes, and bad input."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import make_linear_data
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle
from sklearn.linear_model import LinearRegression, LogisticRegression

from dask_meta import Bootstrap, DRLearner, TLearner
from dask_meta.plots import plot_fit_timeline

FEATURES = ["a", "b", "c"]


def _data(n=800):
    X, y, w, _ = make_linear_data(n=n, d=3, n_variants=2, seed=4)
    return pd.DataFrame(X, columns=FEATURES), pd.Series(y), pd.Series(w)


def _bars(fig):
    """The fit bars of a timeline: rectangles whose gid is a fit's key."""
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_gid()]


def _lanes_of(bar):
    """The lane rows a bar covers (rows are 1 high, bars 0.2 shorter, centred)."""
    top = bar.get_y()
    return list(range(round(top - 0.1), round(top + bar.get_height() + 0.1)))


def _lane_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


@pytest.fixture(scope="module")
def fitted(client):
    X, y, w = _data()
    learner = DRLearner(
        False,
        2,
        LinearRegression,
        LinearRegression,
        LogisticRegression,
        n_folds=2,
        random_state=0,
        client=client,
    )
    return learner.fit(X, y, w)


def test_one_bar_per_fit_in_the_lanes_of_its_worker(fitted, client):
    report = fitted.fit_report_
    workers = client.nthreads()  # 2 workers x 1 thread
    assert report.attrs["worker_threads"] == workers
    fig = plot_fit_timeline(fitted)
    bars = _bars(fig)
    # one bar per fit (every fit holds one thread), each as long as the fit ran
    assert len(bars) == len(report) == 12  # DR: 3 nuisance + 1 treatment estimators x 3
    assert sorted(b.get_gid() for b in bars) == sorted(report["key"])
    by_key = report.set_index("key")
    t0 = report["start"].min()
    for bar in bars:
        fit = by_key.loc[bar.get_gid()]
        assert bar.get_x() == pytest.approx(fit["start"] - t0)
        assert bar.get_width() == pytest.approx(fit["end"] - fit["start"])
    # one lane per worker thread, each bar in a lane of its own worker
    labels = _lane_labels(fig)
    assert len(labels) == sum(workers.values()) == 2
    lanes: dict[int, list[Rectangle]] = {}
    for bar in bars:
        (lane,) = _lanes_of(bar)
        worker = by_key.loc[bar.get_gid(), "worker"]
        assert labels[lane] == f"{worker.split('://')[1]} thread 0"
        lanes.setdefault(lane, []).append(bar)
    # no two bars of a lane overlap
    for in_lane in lanes.values():
        in_lane.sort(key=Rectangle.get_x)
        for a, b in itertools.pairwise(in_lane):
            assert a.get_x() + a.get_width() <= b.get_x() + 1e-9
    # one colour per stage, named in the legend
    colours: dict[str, set[str]] = {}
    for bar in bars:
        colours.setdefault(by_key.loc[bar.get_gid(), "stage"], set()).add(
            to_hex(bar.get_facecolor())
        )
    assert set(colours) == {"nuisance", "treatment"}
    assert all(len(c) == 1 for c in colours.values())
    assert colours["nuisance"] != colours["treatment"]
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["nuisance", "treatment"]
    # the plan in the title
    plan = report.attrs["plan"]
    assert plan["source"] == "rule"
    title = fig.axes[0].get_title()
    assert "plan: rule, 1 thread per model" in title
    assert "12 fits" in title
    # the report itself gives the same figure
    assert len(_bars(plot_fit_timeline(report))) == 12


def test_colours_by_another_column_and_bootstrap_replicates(client):
    X, y, w = _data(n=600)
    learner = TLearner(False, 2, LinearRegression, n_folds=2, random_state=1, client=client)
    boot = Bootstrap(learner, n_bootstraps=2, random_state=0).fit(X, y, w)
    report = boot.fit_report_
    assert len(report) == 3 * 2 * 3  # point estimate + 2 replicates, 2 variants, 3 fits each
    fig = plot_fit_timeline(boot, color_by="replicate")
    bars = _bars(fig)
    assert len(bars) == len(report)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["-1", "0", "1"]
    replicate = report.set_index("key")["replicate"]
    colour_of = {}
    for bar in bars:
        colour_of.setdefault(replicate[bar.get_gid()], set()).add(to_hex(bar.get_facecolor()))
    assert all(len(c) == 1 for c in colour_of.values()) and len(colour_of) == 3


def _report(rows, worker_threads=None):
    frame = pd.DataFrame(
        [
            {"key": k, "stage": s, "worker": "tcp://w:1", "threads": t, "start": a, "end": b}
            for k, s, t, a, b in rows
        ]
    )
    if worker_threads is not None:
        frame.attrs["worker_threads"] = {"tcp://w:1": worker_threads}
    return frame


def test_a_fit_of_two_threads_spans_two_lanes_or_splits_when_they_are_apart():
    # three 1-thread fits fill the 3 lanes; at 1.5 lanes 0 and 2 are free, lane 1 is not
    rows = [
        ("a", "nuisance", 1, 0.0, 1.0),
        ("b", "nuisance", 1, 0.0, 3.0),
        ("c", "nuisance", 1, 0.0, 1.0),
        ("d", "treatment", 2, 1.5, 2.0),
        ("e", "treatment", 2, 3.0, 4.0),
    ]
    fig = plot_fit_timeline(_report(rows, worker_threads=3))
    assert _lane_labels(fig) == ["thread 0", "thread 1", "thread 2"]
    lanes: dict[str, list[int]] = {}
    for bar in _bars(fig):
        lanes.setdefault(bar.get_gid(), []).extend(_lanes_of(bar))
    assert lanes == {"a": [0], "b": [1], "c": [2], "d": [0, 2], "e": [0, 1]}
    assert len(_bars(fig)) == 6  # d: one bar per lane it holds, they are not adjacent


def test_lanes_past_the_workers_threads_only_when_oversubscribed():
    rows = [("a", "nuisance", 2, 0.0, 2.0), ("b", "nuisance", 1, 1.0, 3.0)]
    fig = plot_fit_timeline(_report(rows, worker_threads=2))
    assert _lane_labels(fig) == ["thread 0", "thread 1", "over 2"]
    # unknown threads: as many lanes as the fits needed
    fig = plot_fit_timeline(_report(rows))
    assert _lane_labels(fig) == ["thread 0", "thread 1", "thread 2"]
    # a stage other than the learners' two gets a colour of its own
    fig = plot_fit_timeline(_report([*rows, ("c", "other", 1, 3.0, 4.0)], worker_threads=2))
    colours = {b.get_gid(): to_hex(b.get_facecolor()) for b in _bars(fig)}
    assert len({colours["a"], colours["c"]}) == 2


def test_bad_input_is_named(fitted):
    report = fitted.fit_report_
    with pytest.raises(ValueError, match=r"report lacks the columns \['worker', 'threads'\]"):
        plot_fit_timeline(report.drop(columns=["worker", "threads"]))
    with pytest.raises(ValueError, match="no fit_report_ yet; fit it first"):
        plot_fit_timeline(TLearner(False, 2, LinearRegression, n_folds=2))
    with pytest.raises(TypeError, match="report must be a fit_report_ DataFrame"):
        plot_fit_timeline(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="report has no fits"):
        plot_fit_timeline(report.iloc[:0])
    with pytest.raises(ValueError, match="color_by must be a column of the report, got 'kind'"):
        plot_fit_timeline(report, color_by="kind")
    with pytest.raises(ValueError, match="end < start"):
        plot_fit_timeline(report.assign(end=report["start"] - 1))
    with pytest.raises(ValueError, match="worker_threads must be positive ints"):
        plot_fit_timeline(report, worker_threads=0)
