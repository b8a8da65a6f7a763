"""dask_meta.metrics and dask_meta.plots: parity with scikit-uplift in exact mode (numpy and
Dask input), the binned mode's error bound, policy values and losses against formulas
written out here, and bad input."""

from __future__ import annotations

import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import dask_meta
from dask_meta.metrics import (
    cate_histogram,
    dr_loss,
    perfect_qini_curve,
    perfect_uplift_curve,
    policy_value,
    qini_auc_score,
    qini_curve,
    r_loss,
    uplift_auc_score,
    uplift_by_percentile,
    uplift_curve,
)
from dask_meta.metrics.exact_curves import (
    _exact_piece,
    _partition_states,
    _sorted_in_memory,
    _sorted_summary,
    _Want,
)
from dask_meta.metrics.inputs import _inputs

TOL = 1e-10


@pytest.fixture(scope="module")
def sk():
    """scikit-uplift's metrics, the peer implementation (scikit-uplift 0.5.1)."""
    import sklift.metrics  # the test extra installs it: a missing peer must fail, not skip

    return sklift.metrics


@pytest.fixture(autouse=True)
def _quiet_peer():
    """scikit-uplift calls a deprecated sklearn helper and a deprecated pandas keyword."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="The inplace keyword")
        yield


def make_data(n=3_000, seed=0, ties=False, n_variants=2, binary=True):
    """y, predicted CATE and w with a real effect; ``ties``: CATE rounded to few values."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    w = rng.integers(0, n_variants, n)
    tau = 0.4 * x
    z = 0.3 * x + tau * (w > 0)
    y = rng.binomial(1, 1 / (1 + np.exp(-z))).astype(float) if binary else z + rng.normal(size=n)
    cate = tau + rng.normal(0, 0.4, n)
    if ties:
        cate = np.round(cate * 2) / 2  # about 10 distinct values
    return y, cate, w


def as_dask(y, cate, w, npartitions=4):
    frame = pd.DataFrame({"y": y, "cate": cate, "w": w})
    ddf = dd.from_pandas(frame, npartitions=npartitions, sort=False)
    return ddf["y"], ddf["cate"], ddf["w"]


def assert_curve(got, want):
    assert np.array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=0, atol=TOL)


ALL = ("qini_curve", "uplift_curve", "qini_auc", "qini_auc_positive", "auuc", "overall", "by_group")


def check_against_sklift(sk, y, cate, w, ours, which=ALL, **kw):
    """The exact metrics ``which`` of ``ours`` inputs equal scikit-uplift's on (y, cate, w)."""
    yo, co, wo = ours
    if "qini_curve" in which:
        assert_curve(qini_curve(yo, co, wo, **kw), sk.qini_curve(y, cate, w))
    if "uplift_curve" in which:
        assert_curve(uplift_curve(yo, co, wo, **kw), sk.uplift_curve(y, cate, w))
    for name, neg in (("qini_auc", True), ("qini_auc_positive", False)):
        if name in which:
            want = sk.qini_auc_score(y, cate, w, negative_effect=neg)
            assert abs(qini_auc_score(yo, co, wo, negative_effect=neg, **kw) - want) < TOL
    if "auuc" in which:
        assert abs(uplift_auc_score(yo, co, wo, **kw) - sk.uplift_auc_score(y, cate, w)) < TOL
    for strategy in ("overall", "by_group"):
        if strategy in which:
            got = uplift_by_percentile(yo, co, wo, strategy=strategy, bins=7, std=True, **kw)
            want = sk.uplift_by_percentile(y, cate, w, strategy=strategy, bins=7, std=True)
            pd.testing.assert_frame_equal(got, want, check_exact=False, atol=TOL, rtol=0)


# --- exact mode: parity with scikit-uplift --------------------------------------------------


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_exact_in_memory_equals_sklift(sk, ties):
    y, cate, w = make_data(ties=ties)
    check_against_sklift(sk, y, cate, w, (y, cate, w), method="exact")
    # pandas input with a shuffled index is taken by position
    idx = np.random.default_rng(1).permutation(len(y))
    series = [pd.Series(v, index=idx) for v in (y, cate, w)]
    assert abs(qini_auc_score(*series) - sk.qini_auc_score(y, cate, w)) < TOL


def test_perfect_curves_and_table_options_equal_sklift(sk):
    y, cate, w = make_data(n=1_000, ties=True, seed=3)
    for neg in (True, False):
        got = perfect_qini_curve(y, w, negative_effect=neg)
        want = sk.perfect_qini_curve(y, w, negative_effect=neg)
        np.testing.assert_allclose(got[0], want[0], atol=TOL)
        np.testing.assert_allclose(got[1], want[1], atol=TOL)
    assert_curve(perfect_uplift_curve(y, w), sk.perfect_uplift_curve(y, w))
    # the total row (without std: scikit-uplift adds up the per-percentile std errors; with
    # string_percentiles=False it fails on pandas 3, setting "total" into an int column)
    got = uplift_by_percentile(y, cate, w, bins=4, total=True)
    want = sk.uplift_by_percentile(y, cate, w, bins=4, total=True)
    assert list(got.index) == list(want.index)
    np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), atol=TOL)
    got = uplift_by_percentile(y, cate, w, bins=4, string_percentiles=False)
    want = sk.uplift_by_percentile(y, cate, w, bins=4, string_percentiles=False)
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=TOL, rtol=0)
    # our total std is the whole sample's standard error
    total = uplift_by_percentile(y, cate, w, bins=4, total=True, std=True).loc["total"]
    rt = y[w == 1].mean()
    assert total["std_treatment"] == pytest.approx(np.sqrt(rt * (1 - rt) / (w == 1).sum()))


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_exact_dask_equals_sklift(sk, client, ties):
    y, cate, w = make_data(ties=ties, seed=5)
    which = ("auuc", "overall")
    if not ties:
        which = ("uplift_curve", "by_group")
    ours = as_dask(y, cate, w)
    check_against_sklift(sk, y, cate, w, ours, which, method="exact", client=client)


def test_exact_dask_presorted_ties_across_partitions(sk, client):
    """Data already sorted by CATE: Dask sorts each partition in place, so tie groups span
    partitions (with increasing row positions); the result must not notice."""
    y, cate, w = make_data(n=2_000, ties=True, seed=7)
    order = np.argsort(-cate, kind="stable")
    y, cate, w = y[order], cate[order], w[order]
    which = ("qini_curve", "overall")
    ours = as_dask(y, cate, w, 5)
    check_against_sklift(sk, y, cate, w, ours, which, method="exact", client=client)


def test_exact_dask_variant_of_several_and_learner_shaped_cate(sk, client):
    y, cate, w = make_data(n_variants=3, seed=11)
    keep = np.isin(w, [0, 2])
    want = sk.qini_auc_score(y[keep], cate[keep], (w[keep] == 2).astype(int))
    # a learner's CATE (n, n_variants - 1, 1): variant 2 is column 1
    both = np.stack([np.zeros_like(cate), cate], axis=1)[:, :, None]
    assert abs(qini_auc_score(y, both, w, variant=2) - want) < TOL
    yd, _, wd = as_dask(y, cate, w)
    chunks = tuple(yd.map_partitions(len).compute())
    learner_like = da.from_array(both, chunks=(chunks, 2, 1))
    got = qini_auc_score(yd, learner_like, wd, variant=2, method="exact", client=client)
    assert abs(got - want) < TOL


def test_ties_split_anywhere_give_the_same_pieces():
    """The offsets logic on its own: cut one sorted ranking into partitions at arbitrary
    rows (inside tie groups too); areas, points and percentile chunks do not change. Also
    with the layout of presorted data (each partition sorted in place, so a tie group's
    positions increase from one partition to the next)."""
    y, cate, w = make_data(n=500, ties=True, seed=2)
    inputs = _inputs({"cate": ("cate", cate), "y": ("y", y), "w": ("w", w)})
    ranked = _sorted_in_memory(inputs, 1)
    presorted = ranked.sort_values(["cate", "pos"], ascending=[False, True])
    by = ["cate", "pos"]

    def run(parts, strategy):
        want = _Want(areas=True, curves=True, percentile=(6, strategy))
        states = _partition_states([_sorted_summary(p) for p in parts])
        pieces = [_exact_piece(p, states, i, want) for i, p in enumerate(parts)]
        areas = [sum(p.areas[k] for p in pieces) for k in ("qini", "uplift")]
        points = np.concatenate([p.points for p in pieces], axis=1)
        return areas, points, np.sum([p.chunks for p in pieces], axis=0)

    for strategy in ("overall", "by_group"):
        one = run([ranked], strategy)
        for cuts in ([1, 50, 51, 52, 300], [7, 8, 9, 10, 11, 12, 490], [250]):
            bounds = list(zip([0, *cuts], [*cuts, len(ranked)]))
            for layout in (
                [ranked.iloc[a:b] for a, b in bounds],
                [presorted.iloc[a:b].sort_values(by, ascending=False) for a, b in bounds],
            ):
                layout.insert(2, ranked.iloc[0:0])  # an empty partition
                got = run(layout, strategy)
                np.testing.assert_allclose(got[0], one[0], rtol=1e-12)
                np.testing.assert_allclose(got[1], one[1], rtol=1e-12, atol=TOL)
                np.testing.assert_array_equal(got[2], one[2])


# --- binned mode -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big():
    return make_data(n=200_000, seed=4)


def test_binned_within_stated_bound_and_bound_shrinks(big):
    y, cate, w = big
    exact_x, exact_q = qini_curve(y, cate, w, method="exact")
    lookup = dict(zip(exact_x.tolist(), exact_q.tolist()))
    for score, kw in (
        (qini_auc_score, {}),
        (qini_auc_score, {"normalize": False}),
        (uplift_auc_score, {}),
        (uplift_auc_score, {"normalize": False}),
    ):
        exact = score(y, cate, w, method="exact", **kw)
        bounds = []
        for bins in (10, 100, 1000):
            value, bound = score(y, cate, w, method="binned", bins=bins, return_bound=True, **kw)
            assert abs(value - exact) <= bound, (score.__name__, kw, bins, value, exact, bound)
            bounds.append(bound)
        assert bounds[0] > bounds[1] > bounds[2] > 0
        assert bounds[2] < 0.2 * bounds[0]
    # binned points are points of the exact curve
    x, q = qini_curve(y, cate, w, method="binned", bins=100)
    assert 80 <= len(x) <= 102
    np.testing.assert_array_equal(q, [lookup[v] for v in x.tolist()])


def test_binned_single_value_bins_are_exact():
    y, cate, w = make_data(n=20_000, ties=True, seed=8)
    one_value_each = np.unique(cate)[:-1] + 0.25  # CATE takes multiples of 0.5
    value, bound = qini_auc_score(
        y, cate, w, method="binned", bins=one_value_each, return_bound=True
    )
    assert bound == 0.0
    assert value == pytest.approx(qini_auc_score(y, cate, w, method="exact"), abs=TOL)


def test_binned_dask_equals_in_memory(client):
    y, cate, w = make_data(n=20_000, seed=9)
    edges = np.quantile(cate, np.linspace(0, 1, 51)[1:-1])
    yd, cd, wd = as_dask(y, cate, w)
    for score in (qini_auc_score, uplift_auc_score):
        local = score(y, cate, w, method="binned", bins=edges, return_bound=True)
        remote = score(yd, cd, wd, method="binned", bins=edges, return_bound=True, client=client)
        np.testing.assert_allclose(remote, local, rtol=1e-12)
    value, bound = qini_auc_score(
        yd, cd, wd, method="binned", bins=200, return_bound=True, client=client
    )
    assert abs(value - qini_auc_score(y, cate, w)) <= bound
    table = uplift_by_percentile(yd, cd, wd, bins=10, method="binned", client=client)
    assert table["n_treatment"].sum() + table["n_control"].sum() == len(y)
    assert len(table) == 10
    assert (table["n_treatment"] + table["n_control"]).between(1_400, 2_600).all()


def test_continuous_outcome_unnormalised_scores():
    y, cate, w = make_data(n=5_000, seed=12, binary=False)
    x, q = qini_curve(y, cate, w)
    area = float(np.trapezoid(q, x))
    assert qini_auc_score(y, cate, w, normalize=False) == pytest.approx(
        area - x[-1] * q[-1] / 2, rel=1e-12
    )
    value, bound = qini_auc_score(
        y, cate, w, normalize=False, method="binned", bins=300, return_bound=True
    )
    assert abs(value - qini_auc_score(y, cate, w, normalize=False)) <= bound
    with pytest.raises(ValueError, match="y has values other than 0 and 1"):
        qini_auc_score(y, cate, w)


# --- policy value and losses ----------------------------------------------------------------


def test_policy_value_ipw_and_aipw():
    rng = np.random.default_rng(0)
    n = 4_000
    y, cate, w = make_data(n=n, seed=13, binary=False)
    treat = cate > 0.1
    t = w == 1
    # IPW, known constant propensity 0.5
    want = np.mean(np.where(treat & t, y / 0.5, 0) + np.where(~treat & ~t, y / 0.5, 0))
    assert policy_value(y, cate, w, threshold=0.1, propensity=0.5) == pytest.approx(want, rel=1e-12)
    # no propensity: the observed share of treated rows
    share = t.mean()
    want = np.mean(np.where(treat & t, y / share, 0) + np.where(~treat & ~t, y / (1 - share), 0))
    assert policy_value(y, cate, w, threshold=0.1) == pytest.approx(want, rel=1e-12)
    # AIPW with per-row propensities and outcome predictions
    e = rng.uniform(0.2, 0.8, n)
    mu0, mu1 = rng.normal(size=n), rng.normal(size=n)
    want = np.mean(np.where(treat, mu1 + t * (y - mu1) / e, mu0 + (~t) * (y - mu0) / (1 - e)))
    got = policy_value(y, cate, w, threshold=0.1, propensity=e, mu0=mu0, mu1=mu1)
    assert got == pytest.approx(want, rel=1e-12)


def test_policy_value_and_losses_on_dask(client):
    rng = np.random.default_rng(1)
    y, cate, w = make_data(n=6_000, seed=14, n_variants=3, binary=False)
    e, m = rng.uniform(0.2, 0.8, len(y)), rng.normal(size=len(y))
    frame = pd.DataFrame({"y": y, "cate": cate, "w": w, "e": e, "m": m})
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)
    keep = np.isin(w, [0, 2])
    t = (w[keep] == 2).astype(float)
    got = policy_value(ddf.y, ddf.cate, ddf.w, propensity=ddf.e, variant=2, client=client)
    assert got == pytest.approx(policy_value(y, cate, w, propensity=e, variant=2), rel=1e-12)
    resid = (y[keep] - m[keep]) - cate[keep] * (t - e[keep])
    got = r_loss(ddf.cate, ddf.m, ddf.e, ddf.y, ddf.w, variant=2, squared=True, client=client)
    assert got == pytest.approx(np.mean(resid**2), rel=1e-12)
    pseudo = rng.normal(size=len(y))
    got = dr_loss(
        da.from_array(cate, chunks=1_500),
        pseudo_outcomes=da.from_array(pseudo, 1_500),
        client=client,
    )
    assert got == pytest.approx(np.sqrt(np.mean((pseudo - cate) ** 2)), rel=1e-12)


def test_r_loss_and_dr_loss_formulas():
    rng = np.random.default_rng(2)
    y, cate, w = make_data(n=2_000, seed=15, binary=False)
    e, m = rng.uniform(0.1, 0.9, len(y)), rng.normal(size=len(y))
    mu0, mu1 = rng.normal(size=len(y)), rng.normal(size=len(y))
    # metalearners' r_loss (the root of the mean), also as dask_meta.r_loss has it
    assert r_loss(cate, m, e, y, w) == pytest.approx(dask_meta.r_loss(cate, m, e, y, w), rel=1e-12)
    mean = np.mean(((y - m) - cate * (w - e)) ** 2)
    assert r_loss(cate, m, e, y, w, squared=True) == pytest.approx(mean, rel=1e-12)
    got = r_loss(cate, outcome_residuals=y - m, treatment_residuals=w - e, squared=True)
    assert got == pytest.approx(mean, rel=1e-12)
    pseudo = mu1 - mu0 + w * (y - mu1) / e - (1 - w) * (y - mu0) / (1 - e)
    got = dr_loss(cate, y, w, mu0=mu0, mu1=mu1, propensity=e, squared=True)
    assert got == pytest.approx(np.mean((pseudo - cate) ** 2), rel=1e-12)
    assert dr_loss(cate, pseudo_outcomes=pseudo) == pytest.approx(
        np.sqrt(np.mean((pseudo - cate) ** 2)), rel=1e-12
    )


def test_cate_histogram(client):
    _, cate, _ = make_data(n=5_000, seed=16)
    counts, edges = cate_histogram(cate, bins=20)
    want_counts, want_edges = np.histogram(cate, bins=20)
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_allclose(edges, want_edges)
    counts, _ = cate_histogram(da.from_array(cate, chunks=1_000), bins=20, client=client)
    np.testing.assert_array_equal(counts, want_counts)


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def no_expensive_pass(monkeypatch):
    """Fail if the sort or the binning pass starts: errors come from the cheap first pass."""

    def fail(*args, **kwargs):
        raise AssertionError("an expensive pass ran before the input was validated")

    for module in ("curves", "percentiles"):
        monkeypatch.setattr(f"dask_meta.metrics.{module}._exact", fail)
        monkeypatch.setattr(f"dask_meta.metrics.{module}._binned", fail)


#: (call(y, cate, w), message): raised by the cheap first pass, before any sort or binning
BAD_METRIC_INPUT = [
    (lambda y, cate, w: qini_auc_score(y[:-1], cate, w), r"equally long.*'y': 199"),
    (lambda y, cate, w: qini_auc_score(y, cate, w + (w == 1)), r"w has values \[0, 2\]"),
    (
        lambda y, cate, w: qini_auc_score(y, cate, np.r_[np.full(10, 2), w[10:]]),
        r"w has values \[0, 1, 2\].*variant=k",
    ),
    (
        lambda y, cate, w: qini_auc_score(y, np.where(np.arange(200) == 3, np.nan, cate), w),
        r"cate has 1 missing values",
    ),
    (
        lambda y, cate, w: uplift_curve(np.where(np.arange(200) < 2, np.nan, y), cate, w),
        r"y has 2 missing values",
    ),
    (
        lambda y, cate, w: policy_value(y, cate, w, propensity=np.linspace(0, 1, 200)),
        r"propensity has values in \[0, 1\]",
    ),
    (lambda y, cate, w: policy_value(y, cate, w, propensity=1.0), r"strictly between 0 and 1"),
    (lambda y, cate, w: qini_auc_score(y, cate, w, variant=3), r"no rows of variant 3"),
    (lambda y, cate, w: qini_auc_score(y, cate, w, method="fast"), r"method must be one of"),
    (lambda y, cate, w: qini_auc_score(y, cate, w, variant=0), r"variant must be"),
    (lambda y, cate, w: qini_auc_score(y, np.stack([cate, cate], 1), w), r"name the variant"),
    (lambda y, cate, w: qini_curve(y, cate, w, bins=[1.0, 0.5], method="binned"), r"increasing"),
    (lambda y, cate, w: uplift_by_percentile(y, cate, w, bins=200), r"bins=200 must be smaller"),
    (lambda y, cate, w: policy_value(y, cate, w, mu0=cate), r"both mu0 and mu1"),
    (lambda y, cate, w: dr_loss(cate, y, w), r"needs \['mu0', 'mu1', 'propensity'\]"),
    (lambda y, cate, w: uplift_curve(np.where(w == 1, np.inf, y), cate, w), r"y has \d+ infinite"),
    (
        lambda y, cate, w: qini_auc_score(y, np.where(np.arange(200) == 0, -np.inf, cate), w),
        r"cate has 1 infinite values",
    ),
    # the R-loss: outcome estimates 0, propensities 0.5 unless the case changes them
    (
        lambda y, cate, w: r_loss(cate, 0 * y, 0 * y + 0.5, np.where(w == 1, np.nan, y), w),
        r"outcomes has \d+ missing values",
    ),
    (lambda y, cate, w: r_loss(cate, 0 * y, 0 * y + 1.2, y, w), r"propensity_scores has values"),
    (lambda y, cate, w: r_loss(cate, 0 * y[1:], 0 * y + 0.5, y, w), r"equally long"),
    (lambda y, cate, w: r_loss(cate, 0 * y, 0 * y + 0.5, y, w + (w == 1)), r"name the variant"),
    (
        lambda y, cate, w: r_loss(cate, 0 * y, 0 * y + 0.5, y, w, outcome_residuals=y),
        r"pass either outcome_residuals and treatment_residuals",
    ),
]
BAD_METRIC_IDS = [
    "y-short",
    "w-codes-skip-1",
    "w-not-binary",
    "cate-nan",
    "y-nan",
    "propensity-0-1",
    "propensity-constant-1",
    "variant-without-rows",
    "method-unknown",
    "variant-0",
    "cate-2d-without-variant",
    "bins-decreasing",
    "bins-too-many",
    "mu0-without-mu1",
    "dr-loss-without-nuisances",
    "y-inf",
    "cate-inf",
    "r-loss-y-nan",
    "r-loss-propensity-out-of-range",
    "r-loss-short",
    "r-loss-w-not-binary",
    "r-loss-residuals-and-estimates",
]


@pytest.mark.parametrize(("call", "match"), BAD_METRIC_INPUT, ids=BAD_METRIC_IDS)
def test_bad_input_in_memory(no_expensive_pass, call, match):
    y, cate, w = make_data(n=200)
    with pytest.raises(ValueError, match=match):
        call(y, cate, w)


def test_dask_input_with_in_memory_input_is_refused(no_expensive_pass):
    y, cate, w = make_data(n=200)
    with pytest.raises(TypeError, match="Dask collections"):
        qini_auc_score(da.from_array(y), cate, w)


def test_bad_input_dask_raised_before_expensive_passes(client, no_expensive_pass):
    y, cate, w = make_data(n=400)
    yd, cd, wd = as_dask(y, cate, w)
    with pytest.raises(ValueError, match=r"different numbers of partitions"):
        qini_auc_score(yd, da.from_array(cate, chunks=50), wd, client=client)
    # same partition count, other lengths: found by the first pass, on the cluster
    odd = da.from_array(cate, chunks=((100, 101, 99, 100),))
    with pytest.raises(ValueError, match=r"y and cate are partitioned differently"):
        qini_auc_score(yd, odd, wd, client=client)
    nan_y = dd.from_pandas(pd.Series(np.where(np.arange(400) == 5, np.nan, y)), npartitions=4)
    with pytest.raises(ValueError, match=r"y has 1 missing values"):
        qini_auc_score(
            nan_y, da.from_array(cate, chunks=100), da.from_array(w, chunks=100), client=client
        )
    with pytest.raises(ValueError, match=r"variant=k"):
        uplift_auc_score(yd, cd, wd + yd, client=client)


def test_exact_curve_of_large_dask_input_asks_for_binned(client, monkeypatch):
    monkeypatch.setattr("dask_meta.metrics.mode.EXACT_MAX_ROWS", 100)
    y, cate, w = as_dask(*make_data(n=400))
    with pytest.raises(ValueError, match="method='binned'"):
        qini_curve(y, cate, w, method="exact", client=client)
    x, _ = qini_curve(y, cate, w, client=client, bins=10)  # auto: binned above the limit
    assert len(x) == 11


# --- plots -------------------------------------------------------------------------------------


def test_plots_return_figures():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from dask_meta import plots

    y, cate, w = make_data(n=1_000, seed=17)
    fig = plots.plot_qini(y, {"a": cate, "b": -cate}, w)
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].lines) == 4  # two models, perfect, random
    fig = plots.plot_uplift(y + np.random.default_rng(0).normal(size=len(y)), cate, w)
    assert len(fig.axes[0].lines) == 2  # continuous y: no perfect curve
    fig = plots.plot_cate_distribution(cate, bins=25)
    assert len(fig.axes[0].patches) == 25
    importances = pd.DataFrame(
        {"variant 1": [0.5, 0.1, 0.3, 0.05, 0.05], "variant 2": [0.2, 0.4, 0.2, 0.1, 0.1]},
        index=[f"x{i}" for i in range(5)],
    )
    fig = plots.plot_feature_importances(importances, top=4)
    assert len(fig.axes[0].patches) == 8
    fig = plots.plot_feature_importances(importances["variant 1"])
    assert len(fig.axes[0].patches) == 5
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders with Agg
