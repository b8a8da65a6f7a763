"""dask_meta.metrics.blp_test, gates and calibration_score against statsmodels regressions and
pandas groupings on the same DR scores (in memory and on Dask), the exact merge of the
moments, the reference formulas of EconML and DoubleML, bad input, and the two plots."""

from __future__ import annotations

import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from dask_meta.metrics import blp_test, calibration_score, gates
from dask_meta.metrics.moments import _group_moments, _merge_moments

TOL = 1e-10


def make_data(n=3_000, seed=0, n_variants=2, offset=0.0):
    """Nuisance predictions, outcome, treatment and a predicted CATE with real heterogeneity;
    ``offset`` shifts the outcome, its predictions and the CATE (large means)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    w = rng.integers(0, n_variants, n)
    tau = 0.5 * x
    y = offset + 0.3 * x + tau * (w > 0) + rng.normal(size=n)
    mu0 = offset + 0.3 * x + rng.normal(0, 0.2, n)
    mu1 = mu0 + tau + rng.normal(0, 0.2, n)
    e = rng.uniform(0.2, 0.8, n)
    cate = offset + tau + rng.normal(0, 0.3, n)
    return pd.DataFrame({"y": y, "w": w, "mu0": mu0, "mu1": mu1, "e": e, "cate": cate})


def dr_scores(frame, variant=1):
    """The scored rows and their DR scores, written out."""
    rows = frame[frame["w"].isin([0, variant])]
    t = (rows["w"] == variant).to_numpy(dtype=float)
    y, mu0, mu1, e = (rows[c].to_numpy() for c in ("y", "mu0", "mu1", "e"))
    phi = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
    return rows["cate"].to_numpy(), phi


def nuisance_args(frame):
    return dict(mu0=frame["mu0"], mu1=frame["mu1"], propensity=frame["e"])


def blp_numbers(result):
    return np.array(
        [
            result.ate,
            result.ate_se,
            result.ate_pvalue,
            result.het,
            result.het_se,
            result.het_pvalue,
            result.ate_het_cov,
        ]
    )


# --- BLP -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC0", "HC1"])
@pytest.mark.parametrize("use_t", [False, True])
def test_blp_equals_statsmodels_with_large_means(cov_type, use_t):
    frame = make_data(offset=1e3)
    cate, phi = dr_scores(frame)
    got = blp_test(
        frame["cate"],
        frame["y"],
        frame["w"],
        **nuisance_args(frame),
        cov_type=cov_type,
        use_t=use_t,
    )
    fit = sm.OLS(phi, sm.add_constant(cate - cate.mean())).fit(cov_type=cov_type, use_t=use_t)
    np.testing.assert_allclose([got.ate, got.het], fit.params, rtol=1e-10)
    np.testing.assert_allclose([got.ate_se, got.het_se], fit.bse, rtol=1e-10)
    np.testing.assert_allclose([got.ate_tstat, got.het_tstat], fit.tvalues, rtol=1e-10)
    np.testing.assert_allclose([got.ate_pvalue, got.het_pvalue], fit.pvalues, rtol=1e-8)
    assert got.ate_het_cov == pytest.approx(fit.cov_params()[0, 1], rel=1e-8, abs=1e-15)
    assert got.n == len(phi)
    frame_ = got.as_frame(alpha=0.1)
    np.testing.assert_allclose(frame_[["lower", "upper"]], fit.conf_int(alpha=0.1), rtol=1e-10)


def test_blp_matches_econml_and_doubleml_regressions():
    frame = make_data(seed=1)
    cate, phi = dr_scores(frame)
    # EconML DRTester.evaluate_blp, one treatment: OLS(dr, add_constant(cate)).fit()
    econml = sm.OLS(phi, sm.add_constant(cate)).fit()
    got = blp_test(cate, pseudo_outcomes=phi, cov_type="nonrobust", use_t=True)
    assert [got.het, got.het_se, got.het_pvalue] == pytest.approx(
        [econml.params[1], econml.bse[1], econml.pvalues[1]], rel=1e-10
    )
    # DoubleMLBLP: OLS(signal, basis).fit(cov_type="HC0"), normal p-values in its summary
    basis = pd.DataFrame({"const": 1.0, "cate": cate - cate.mean()})
    doubleml = sm.OLS(phi, basis).fit(cov_type="HC0")
    got = blp_test(cate, pseudo_outcomes=phi)
    np.testing.assert_allclose([got.ate, got.het], doubleml.params, rtol=1e-10)
    np.testing.assert_allclose([got.ate_se, got.het_se], doubleml.bse, rtol=1e-10)
    normal = 2 * stats.norm.cdf(-np.abs(doubleml.params / doubleml.bse))
    np.testing.assert_allclose([got.ate_pvalue, got.het_pvalue], normal, rtol=1e-8)


def test_blp_pseudo_outcomes_path_equals_nuisance_path_and_variant_rows():
    frame = make_data(seed=2, n_variants=3)
    cate, phi = dr_scores(frame, variant=2)
    from_nuisances = blp_test(
        frame["cate"], frame["y"], frame["w"], **nuisance_args(frame), variant=2
    )
    from_scores = blp_test(cate, pseudo_outcomes=phi)
    np.testing.assert_allclose(blp_numbers(from_nuisances), blp_numbers(from_scores), rtol=TOL)
    # a learner's (n, n_variants - 1, 1) CATE: variant picks its column
    both = np.stack([np.zeros(len(frame)), frame["cate"].to_numpy()], axis=1)[:, :, None]
    shaped = blp_test(both, frame["y"], frame["w"], **nuisance_args(frame), variant=2)
    np.testing.assert_allclose(blp_numbers(shaped), blp_numbers(from_scores), rtol=TOL)


def test_blp_dask_equals_in_memory(client):
    frame = make_data(n=4_000, seed=3, n_variants=3, offset=500.0)
    ddf = dd.from_pandas(frame, npartitions=5, sort=False)
    for cov_type in ("nonrobust", "HC0", "HC1"):
        local = blp_test(
            frame["cate"],
            frame["y"],
            frame["w"],
            **nuisance_args(frame),
            variant=1,
            cov_type=cov_type,
        )
        remote = blp_test(
            ddf["cate"],
            ddf["y"],
            ddf["w"],
            **nuisance_args(ddf),
            variant=1,
            cov_type=cov_type,
            client=client,
        )
        np.testing.assert_allclose(blp_numbers(remote), blp_numbers(local), rtol=TOL)
        assert remote.n == local.n
    cate, phi = dr_scores(frame, variant=1)
    arrays = blp_test(
        da.from_array(cate, chunks=700), pseudo_outcomes=da.from_array(phi, 700), client=client
    )
    np.testing.assert_allclose(
        blp_numbers(arrays), blp_numbers(blp_test(cate, pseudo_outcomes=phi))
    )


def test_moments_merge_exactly_in_any_split():
    rng = np.random.default_rng(4)
    n = 2_000
    x, y = 1e4 + rng.normal(size=n), -3e3 + rng.normal(size=n) * 5
    group = rng.integers(0, 3, n)
    pieces = np.split(np.arange(n), np.sort(rng.choice(n, 6, replace=False)))
    parts = [_group_moments(x[i], y[i], group[i], 3, 4) for i in pieces]
    merged = _merge_moments(_merge_moments(*parts[:3]), _merge_moments(*parts[3:]))
    for g in range(3):
        xg, yg = x[group == g], y[group == g]
        dx, dy = xg - xg.mean(), yg - yg.mean()
        assert merged.n[g] == len(dx)
        np.testing.assert_allclose(merged.mean[g], [xg.mean(), yg.mean()], rtol=1e-15)
        for p in range(5):
            for q in range(5 - p):
                want = np.sum(dx**p * dy**q)
                scale = np.sqrt(np.sum(dx ** (2 * p)) * np.sum(dy ** (2 * q)))
                # the values themselves are rounded to 1e4 * 1.1e-16: a center known to
                # about 1e-12 moves a sum by up to p 1e-12 |S[p-1, q]|
                assert abs(merged.sums[g, p, q] - want) <= 1e-11 * scale
        # the fourth moment from raw power sums cancels catastrophically at this offset
        raw = sum(
            __import__("math").comb(4, k) * np.sum(xg**k) * (-xg.mean()) ** (4 - k)
            for k in range(5)
        )
        ours = merged.sums[g, 4, 0]
        assert abs(raw - np.sum(dx**4)) > 1e3 * abs(ours - np.sum(dx**4))


# --- GATES -----------------------------------------------------------------------------------


def reference_gates(cate, phi, groups, alpha=0.05):
    """The GATES as a regression of phi on group dummies (DoubleML's gate, HC0) and pandas."""
    dummies = pd.get_dummies(pd.Series(groups)).astype(float)
    fit = sm.OLS(phi, dummies).fit(cov_type="HC0")
    by = pd.DataFrame({"g": groups, "cate": cate}).groupby("g")
    z = stats.norm.ppf(1 - alpha / 2)
    return pd.DataFrame(
        {
            "n": by.size().to_numpy(),
            "cate_mean": by["cate"].mean().to_numpy(),
            "gate": fit.params.to_numpy(),
            "gate_se": fit.bse.to_numpy(),
            "lower": fit.params.to_numpy() - z * fit.bse.to_numpy(),
            "upper": fit.params.to_numpy() + z * fit.bse.to_numpy(),
        }
    )


@pytest.mark.parametrize("n", [3_000, 3_001, 3_003])
def test_gates_equal_quantile_groups_and_statsmodels(n):
    frame = make_data(n=n, seed=5, offset=1e3)
    cate, phi = dr_scores(frame)
    table = gates(frame["cate"], frame["y"], frame["w"], **nuisance_args(frame), alpha=0.1)
    assert list(table.index) == [1, 2, 3, 4, 5]
    # the exact quantiles, groups right-closed intervals between them
    edges = np.quantile(cate, np.arange(1, 5) / 5, method="inverted_cdf")
    np.testing.assert_array_equal(table.attrs["edges"], edges)
    groups = pd.cut(cate, [-np.inf, *edges, np.inf], labels=False, right=True)
    want = reference_gates(cate, phi, groups, alpha=0.1)
    np.testing.assert_array_equal(table["n"].to_numpy(), want["n"].to_numpy())
    np.testing.assert_allclose(table.to_numpy(dtype=float), want.to_numpy(dtype=float), rtol=TOL)
    assert table.attrs["edges_from"] == "exact quantiles"
    # the contrast of the highest and lowest groups, independent groups
    top, bottom = want.iloc[-1], want.iloc[0]
    assert table.attrs["difference"] == pytest.approx(top["gate"] - bottom["gate"], rel=TOL)
    se = np.hypot(top["gate_se"], bottom["gate_se"])
    assert table.attrs["difference_se"] == pytest.approx(se, rel=TOL)
    p = 2 * stats.norm.sf(abs(table.attrs["difference"]) / se)
    assert table.attrs["difference_pvalue"] == pytest.approx(p, rel=1e-8)
    assert table.attrs["ate"] == pytest.approx(phi.mean(), rel=TOL)
    assert table.attrs["ate_se"] == pytest.approx(phi.std() / np.sqrt(len(phi)), rel=TOL)


def test_gates_pseudo_outcomes_path_equals_nuisance_path():
    frame = make_data(seed=6, n_variants=3)
    cate, phi = dr_scores(frame, variant=2)
    a = gates(frame["cate"], frame["y"], frame["w"], **nuisance_args(frame), variant=2)
    b = gates(cate, pseudo_outcomes=phi)
    np.testing.assert_allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=TOL)
    assert a.attrs["edges"] == b.attrs["edges"]


def test_gates_ties_stay_in_one_group():
    frame = make_data(seed=7)
    cate, phi = dr_scores(frame)
    tied = np.round(cate * 2) / 2  # a few distinct values, some holding over 20% of rows
    with pytest.warns(UserWarning, match="groups instead of n_groups=5"):
        table = gates(tied, pseudo_outcomes=phi, n_groups=5)
    edges = np.array(table.attrs["edges"])
    groups = np.searchsorted(edges, tied, side="left")
    assert pd.Series(groups).groupby(tied).nunique().max() == 1
    want = reference_gates(tied, phi, groups)
    np.testing.assert_allclose(table.to_numpy(dtype=float), want.to_numpy(dtype=float), rtol=TOL)


def test_gates_dask_equals_in_memory(client):
    frame = make_data(n=6_000, seed=8, offset=200.0)
    ddf = dd.from_pandas(frame, npartitions=4, sort=False)  # 1,500 rows: complete samples
    local = gates(frame["cate"], frame["y"], frame["w"], **nuisance_args(frame), n_groups=4)
    remote = gates(ddf["cate"], ddf["y"], ddf["w"], **nuisance_args(ddf), n_groups=4, client=client)
    assert remote.attrs["edges_from"] == "exact quantiles"
    assert remote.attrs["edges"] == local.attrs["edges"]
    np.testing.assert_allclose(remote.to_numpy(dtype=float), local.to_numpy(dtype=float), rtol=TOL)
    for key in ("ate", "ate_se", "difference", "difference_se", "difference_pvalue"):
        assert remote.attrs[key] == pytest.approx(local.attrs[key], rel=TOL)


def test_gates_of_large_partitions_use_sampled_quantiles(client):
    frame = make_data(n=10_000, seed=9)
    cate, phi = dr_scores(frame)
    ddf = dd.from_pandas(pd.DataFrame({"cate": cate, "phi": phi}), npartitions=2, sort=False)
    table = gates(ddf["cate"], pseudo_outcomes=ddf["phi"], n_groups=5, client=client)
    assert table.attrs["edges_from"] == "sampled quantiles"
    assert table["n"].sum() == len(cate)
    assert np.all(np.abs(table["n"] - len(cate) / 5) <= 0.01 * len(cate) / 5)
    # the groups are those of the cut points used: in memory with the same edges, the same table
    same = gates(cate, pseudo_outcomes=phi, edges=table.attrs["edges"])
    np.testing.assert_allclose(table.to_numpy(dtype=float), same.to_numpy(dtype=float), rtol=TOL)


def econml_evaluate_cal(cate_train, cate_val, dr_val, n_groups):
    """EconML 0.17.0 DRTester.evaluate_cal (econml/validate/drtester.py), written out."""
    cuts = np.quantile(cate_train, np.linspace(0, 1, n_groups + 1))
    probs, g_cate, gate, se_gate = (np.zeros(n_groups) for _ in range(4))
    for i in range(n_groups):
        ind = (cate_val >= cuts[i]) & (cate_val <= cuts[i + 1])
        probs[i] = np.mean(ind)
        gate[i] = np.mean(dr_val[ind])
        se_gate[i] = np.std(dr_val[ind]) / np.sqrt(np.sum(ind))
        g_cate[i] = np.mean(cate_val[ind])
    ate_val = dr_val.mean()
    cal_g = np.sum(abs(gate - g_cate) * probs)
    cal_o = np.sum(abs(gate - ate_val) * probs)
    return 1 - cal_g / cal_o, cuts, gate, se_gate, g_cate


def test_calibration_score_equals_econml_evaluate_cal():
    train = make_data(n=5_000, seed=10)
    cate_train, _ = dr_scores(train)
    cate, phi = dr_scores(make_data(n=3_000, seed=11))
    inside = (cate > cate_train.min()) & (cate < cate_train.max())  # EconML drops the others
    cate, phi = cate[inside], phi[inside]
    want, cuts, gate, se_gate, g_cate = econml_evaluate_cal(cate_train, cate, phi, 4)
    table = gates(cate, pseudo_outcomes=phi, edges=cuts[1:-1])
    assert table.attrs["edges_from"] == "given"
    np.testing.assert_allclose(table["gate"], gate, rtol=TOL)
    np.testing.assert_allclose(table["gate_se"], se_gate, rtol=TOL)
    np.testing.assert_allclose(table["cate_mean"], g_cate, rtol=TOL)
    assert calibration_score(table) == pytest.approx(want, rel=TOL)
    # perfectly calibrated groups score 1
    calibrated = table.assign(cate_mean=table["gate"])
    assert calibration_score(calibrated) == pytest.approx(1.0, rel=TOL)


def test_given_edges_may_leave_empty_groups():
    cate, phi = dr_scores(make_data(n=500, seed=12))
    table = gates(cate, pseudo_outcomes=phi, edges=[-10.0, -9.0, 0.0])
    assert table["n"].tolist() == [0, 0, int((cate <= 0).sum()), int((cate > 0).sum())]
    assert table.loc[1:2, "gate"].isna().all()
    assert table.attrs["difference_groups"] == (4, 3)
    upper, lower = phi[cate > 0].mean(), phi[cate <= 0].mean()
    assert table.attrs["difference"] == pytest.approx(upper - lower, rel=TOL)
    assert calibration_score(table) == pytest.approx(
        calibration_score(table[table["n"] > 0]), rel=TOL
    )


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_names_the_argument(client):
    frame = make_data(n=300, seed=13)
    y, w, cate = frame["y"], frame["w"], frame["cate"]
    nuisances = nuisance_args(frame)
    cases = [
        (lambda: blp_test(cate, y, w), r"blp_test needs \['mu0', 'mu1', 'propensity'\]"),
        (lambda: gates(cate, y, w, mu0=frame["mu0"]), r"gates needs \['mu1', 'propensity'\]"),
        (lambda: blp_test(cate, y, pseudo_outcomes=y), r"pass either pseudo_outcomes"),
        (lambda: blp_test(cate, pseudo_outcomes=y, cov_type="HC3"), r"cov_type must be one of"),
        (lambda: blp_test(cate, pseudo_outcomes=y, use_t=1), r"use_t must be a bool"),
        (lambda: blp_test(np.ones(300), pseudo_outcomes=y), r"cate is constant on the 300"),
        (
            lambda: blp_test(cate, y, w, **{**nuisances, "propensity": np.linspace(0, 1, 300)}),
            r"propensity has values in \[0, 1\]",
        ),
        (
            lambda: blp_test(cate, y, w, **{**nuisances, "mu1": np.r_[np.nan, frame["mu1"][1:]]}),
            r"mu1 has 1 missing values",
        ),
        (lambda: blp_test(cate, y, w + (w == 1), **nuisances), r"w has values \[0, 2\]"),
        (lambda: gates(cate, pseudo_outcomes=y, n_groups=1), r"n_groups must be an int >= 2"),
        (lambda: gates(cate, pseudo_outcomes=y, n_groups=301), r"n_groups=301 is more than"),
        (lambda: gates(cate, pseudo_outcomes=y, edges=[1.0, 0.0]), r"edges must be strictly"),
        (lambda: gates(cate, pseudo_outcomes=y, edges=[[0.0]]), r"edges must be a 1-D array"),
        (lambda: gates(cate, pseudo_outcomes=y, alpha=1.5), r"alpha must be in \(0, 1\)"),
        (lambda: blp_test(cate, pseudo_outcomes=y[:-1]), r"equally long"),
        (lambda: blp_test(cate, pseudo_outcomes=y).as_frame(alpha=0), r"alpha must be in"),
        (lambda: calibration_score(pd.DataFrame({"n": [1]})), r"lacks the columns"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    with pytest.raises(TypeError, match="Dask collections"):
        blp_test(da.from_array(cate.to_numpy()), pseudo_outcomes=y)
    ddf = dd.from_pandas(frame.assign(cate=cate.where(frame.index != 7)), npartitions=3)
    nan_cate = ddf["cate"]
    with pytest.raises(ValueError, match=r"cate has 1 missing values"):
        gates(nan_cate, pseudo_outcomes=ddf["y"], client=client)
    with pytest.raises(ValueError, match=r"cate has 1 missing values"):
        blp_test(nan_cate, pseudo_outcomes=ddf["y"], client=client)


# --- plots -------------------------------------------------------------------------------------


def test_plots_draw_the_table():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from dask_meta import plots

    cate, phi = dr_scores(make_data(seed=14))
    table = gates(cate, pseudo_outcomes=phi, n_groups=4)

    fig = plots.plot_gates(table)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = ax.containers[0]
    np.testing.assert_array_equal(bars.lines[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(bars.lines[0].get_ydata(), table["gate"])
    segments = np.array(bars.lines[2][0].get_segments())  # (group, end, xy)
    np.testing.assert_allclose(segments[:, 0, 1], table["lower"], rtol=1e-12)
    np.testing.assert_allclose(segments[:, 1, 1], table["upper"], rtol=1e-12)
    lines = {line.get_label(): line for line in ax.lines}
    np.testing.assert_allclose(lines["mean CATE"].get_ydata(), table["cate_mean"])
    assert lines["ATE"].get_ydata()[0] == pytest.approx(phi.mean(), rel=1e-12)

    fig = plots.plot_calibration(table)
    ax = fig.axes[0]
    bars = ax.containers[0]
    np.testing.assert_allclose(bars.lines[0].get_xdata(), table["cate_mean"])
    np.testing.assert_allclose(bars.lines[0].get_ydata(), table["gate"])
    diagonal = {line.get_label(): line for line in ax.lines}["perfect calibration"]
    np.testing.assert_array_equal(diagonal.get_xdata(), diagonal.get_ydata())
    assert f"{calibration_score(table):.2f}" in ax.get_title()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(__import__("io").BytesIO(), format="png")  # renders with Agg
    with pytest.raises(ValueError, match="lacks the columns"):
        plots.plot_gates(table.drop(columns="upper"))
