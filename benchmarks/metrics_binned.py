"""Binned vs exact Qini / AUUC on 10 million rows: error, stated bound and time.

Data: ``dask_meta.datasets.make_experiment(10_000_000, n_features=5, n_variants=2,
observational=False, seed=0)`` (a randomised experiment, regression outcome); the
"predicted CATE" is the true ``cate_1`` plus Gaussian noise of half its standard deviation
(no model is fitted). With ``--binary`` the same experiment with ``is_classification=True``
is scored too, where scikit-uplift's normalised scores exist.

On a ``LocalCluster`` of 2 workers x 1 thread the frame ``(y, w, predicted CATE)`` is
persisted, then for B in {100, 1000, 10000} the binned scores run on the cluster
(``method="binned", bins=B, return_bound=True``): a first pass for validation and the
quantile sample, a second for the per-bin sums; only ``B x 16`` numbers reach the client.

The exact reference needs every row in one place: for this benchmark only, the 10M rows of
``(y, w, predicted CATE)`` are collected on the client (240 MB) and scored in memory by
dask-meta's exact mode and, for the binary outcome, by scikit-uplift itself. Regression
outcomes are scored unnormalised (``normalize=False``: area between the model's and the
random curve), binary ones normalised as scikit-uplift. ``--cluster-exact`` also times the
exact mode on the cluster (a distributed sort of the 10M rows).

    ./dev.sh bench metrics_binned            # about 2-4 minutes on 2 cores
    ./dev.sh bench metrics_binned --rows 1000000 --binary --cluster-exact
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client, LocalCluster, wait

from dask_meta import metrics
from dask_meta.datasets import make_experiment

BINS = (100, 1000, 10000)
SCORES = {"qini": metrics.qini_auc_score, "auuc": metrics.uplift_auc_score}


def noisy_cate(part: pd.DataFrame, scale: float) -> pd.Series:
    """cate_1 plus N(0, scale^2) noise, seeded by the partition's first covariate value."""
    seed = (
        int(np.frombuffer(part["x0"].to_numpy()[:1].tobytes(), dtype=np.uint64)[0])
        if len(part)
        else 0
    )
    rng = np.random.default_rng([seed, 1])
    return part["cate_1"] + rng.normal(0.0, scale, len(part))


def experiment(rows: int, binary: bool, client: Client) -> Any:
    ddf = make_experiment(
        rows,
        n_features=5,
        n_variants=2,
        observational=False,
        seed=0,
        is_classification=binary,
    )
    sd = float(client.compute(ddf["cate_1"].head(200_000, compute=False).std()).result())
    frame = ddf[["y", "w"]].assign(
        cate=ddf.map_partitions(noisy_cate, 0.5 * sd, meta=("cate", "f8"))
    )
    return client.persist(frame)


def timed(f: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - start


def run(rows: int, binary: bool, cluster_exact: bool, client: Client) -> list[dict[str, Any]]:
    outcome = "binary" if binary else "regression"
    start = time.perf_counter()
    frame = experiment(rows, binary, client)
    wait(frame)
    t_gen = time.perf_counter() - start
    print(f"[{outcome}] generated and persisted {rows:,} rows in {t_gen:.1f}s", flush=True)
    local, t_collect = timed(lambda: client.compute(frame).result())
    print(f"[{outcome}] reference only: collected on the client in {t_collect:.1f}s", flush=True)
    y, w, cate = (local[c].to_numpy() for c in ("y", "w", "cate"))
    normalize = binary
    out = []
    for name, score in SCORES.items():
        exact, t_exact = timed(score, y, cate, w, normalize=normalize, method="exact")
        row = dict(outcome=outcome, metric=name, exact=exact)
        out.append(
            dict(
                row,
                method="exact, in memory (dask-meta)",
                value=exact,
                error=0.0,
                bound=0.0,
                time_s=t_exact,
            )
        )
        if binary:
            import warnings

            import sklift.metrics as sk

            peer = sk.qini_auc_score if name == "qini" else sk.uplift_auc_score
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                value, t_peer = timed(peer, y, cate, w)
            out.append(
                dict(
                    row,
                    method="exact, in memory (scikit-uplift 0.5.1)",
                    value=value,
                    error=abs(value - exact),
                    bound=0.0,
                    time_s=t_peer,
                )
            )
        if cluster_exact:
            value, t = timed(
                score,
                frame.y,
                frame.cate,
                frame.w,
                normalize=normalize,
                method="exact",
                client=client,
            )
            out.append(
                dict(
                    row,
                    method="exact, cluster sort",
                    value=value,
                    error=abs(value - exact),
                    bound=0.0,
                    time_s=t,
                )
            )
        for bins in BINS:
            (value, bound), t = timed(
                score,
                frame.y,
                frame.cate,
                frame.w,
                normalize=normalize,
                method="binned",
                bins=bins,
                return_bound=True,
                client=client,
            )
            out.append(
                dict(
                    row,
                    method=f"binned B={bins}",
                    value=value,
                    error=abs(value - exact),
                    bound=bound,
                    time_s=t,
                )
            )
            print(f"[{outcome}] {name} B={bins}: {t:.1f}s", flush=True)
    del local, y, w, cate
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--binary", action="store_true", help="also score a binary outcome")
    parser.add_argument(
        "--cluster-exact",
        action="store_true",
        help="also time the exact mode on the cluster (distributed sort)",
    )
    args = parser.parse_args(argv)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, resources={"threads": 1}, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        rows = run(args.rows, False, args.cluster_exact, client)
        if args.binary:
            rows += run(args.rows, True, args.cluster_exact, client)
    table = pd.DataFrame(rows)
    with pd.option_context(
        "display.width", 200, "display.max_columns", 20, "display.float_format", "{:.6g}".format
    ):
        print(table.to_string(index=False))
    print(
        "bound: |binned - exact| <= bound (Claim 2 in docs/evaluation.md); the binned points "
        "are points of the exact curve. Regression: unnormalised scores; binary: normalised."
    )


if __name__ == "__main__":
    main()
