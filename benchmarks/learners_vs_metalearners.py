"""X-, R- and DR-learner fit times: dask-meta against metalearners 0.13.0.

Runs ``tlearner_vs_metalearners.py`` once per learner (same generated data: same seed and
size; LightGBM for every base model, 1M rows x 20 features, 3 variants, 5 folds by default)
and prints one summary table. Extra arguments are passed through, e.g. ``--quick`` to time
only metalearners' default configuration (its best on this machine, see docs/benchmarks.md), or
``--cap 0`` to run every metalearners configuration to the end (by default those other than
its default are stopped at dask-meta's fit time, see ``tlearner_vs_metalearners.py``).

    ./dev.sh bench learners_vs_metalearners [--rows 200000] [--quick]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tlearner_vs_metalearners as single  # noqa: E402

#: dask-meta fit time / metalearners' best: no slower, and the stricter 20% faster
TARGETS = (1.0, 0.8)
#: RMSE against the true CATE within 2% of metalearners'
RMSE_TARGET = 1.02


def main(argv: list[str]) -> int:
    learners = ("X", "R", "DR")
    rows = []
    for learner in learners:
        single.main(["--learner", learner, *argv])
        path = Path(str(single.RESULTS).format(learner=learner.lower()))
        result = json.loads(path.read_text())
        ml = result["metalearners"]
        best = ml["configs"][ml["best"]]
        dm = result["dask_meta"]
        rmse_ratio = max(d / m for d, m in zip(dm["rmse"], best["rmse"]))
        stopped = sum(c["fit_s"] is None for c in ml["configs"])
        rows.append(
            (learner, dm["fit_s"], best["fit_s"], best["label"], dm["efficiency"], rmse_ratio)
        )
        configs_run = f"{len(ml['configs'])} configurations, {stopped} stopped at the cap"
    print(f"\nmetalearners: {configs_run} per learner")
    print(
        "learner  dask-meta fit s  best metalearners fit s  ratio dm/best  efficiency  "
        "RMSE dm/best (worst variant)  best metalearners configuration"
    )
    for learner, dm_s, ml_s, label, eff, rmse_ratio in rows:
        print(
            f"{learner:<8} {dm_s:>15.1f} {ml_s:>24.1f} {dm_s / ml_s:>14.2f} {eff:>11.2f}  "
            f"{rmse_ratio:>28.3f}  {label}"
        )
    for target in TARGETS:
        ok = all(row[1] / row[2] <= target for row in rows)
        verdict = "PASS" if ok else "FAIL"
        print(f"target: dask-meta fit time <= {target} x best metalearners: {verdict}")
    ok = all(row[5] <= RMSE_TARGET for row in rows)
    print(
        f"target: dask-meta RMSE <= {RMSE_TARGET} x best metalearners' for every variant: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
