#!/usr/bin/env bash
# dask-meta developer entry point: ./dev.sh demo | test | parity | conformance | lint | docs | bench
# Creates the virtualenvs it needs (Python >= 3.12) and installs into them.
set -euo pipefail
cd "$(dirname "$0")"

find_python() {
  local c
  for c in python3.12 python3.13 python3.14 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      command -v "$c"; return 0
    fi
  done
  # pyenv machines: a 3.12+ interpreter that is installed but not the global default
  if command -v pyenv >/dev/null 2>&1; then
    local v
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])(\.[0-9]+)?$' | sort -V); do
      local p; p="$(pyenv root)/versions/$v/bin/python3"
      if [ -x "$p" ]; then echo "$p"; return 0; fi
    done
  fi
  echo "dask-meta needs Python >= 3.12 (python3.12 on the PATH, or pyenv with 3.12+)" >&2
  return 1
}

# ONNX converters for the parity virtualenv, at the versions metalearners' pixi.toml pins
# (newer skl2onnx rejects the onnxconverter-common input types its tests pass); onnxmltools
# 1.12 imports pkg_resources, which setuptools 81 removed
ONNX_PINNED=("onnx==1.17.*" onnxconverter-common onnxruntime "onnxmltools==1.12.*" "skl2onnx==1.18.*"
  spox "setuptools<81")

venv() {  # venv DIR: create once
  local dir=$1
  if [ ! -x "$dir/bin/python" ]; then
    "$(find_python)" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
  fi
}

cmd=${1:-help}; shift || true
case "$cmd" in
  demo)
    venv .venv
    .venv/bin/python -m pip install -q -e ".[dashboard]"
    exec .venv/bin/dask-meta demo "$@"
    ;;
  test)
    venv .venv
    .venv/bin/python -m pip install -q -e ".[dev]"
    # the tests, then the notebooks executed top to bottom (nbmake), in one pytest run
    exec .venv/bin/python -m pytest tests notebooks --nbmake --ignore=tests/parity "$@"
    ;;
  parity)
    # metalearners 0.13.0 pins scikit-learn < 1.8 and imports narwhals and polars without
    # declaring them: it gets its own virtualenv, with dask-meta installed beside it.
    venv .venv-parity
    .venv-parity/bin/python -m pip install -q "metalearners==0.13.0" "scikit-learn<1.8" narwhals polars \
      "${ONNX_PINNED[@]}" -e ".[test]"
    exec .venv-parity/bin/python -m pytest tests/parity "$@"
    ;;
  conformance)
    # metalearners 0.13.0's own test suite (its sdist, downloaded at run time), run on
    # metalearners itself and then switched to dask-meta (benchmarks/conformance.py): the
    # parity virtualenv, plus what those tests import (XGBoost, glum, shap, ...)
    venv .venv-parity
    .venv-parity/bin/python -m pip install -q "metalearners==0.13.0" "scikit-learn<1.8" narwhals polars -e ".[test]" \
      "${ONNX_PINNED[@]}" shap xgboost glum git-root matplotlib
    exec .venv-parity/bin/python benchmarks/conformance.py "$@"
    ;;
  lint)
    venv .venv
    .venv/bin/python -m pip install -q -e ".[dev]"
    .venv/bin/ruff check dask_meta tests benchmarks
    .venv/bin/ruff format --check dask_meta tests benchmarks
    .venv/bin/mypy dask_meta
    ;;
  docs)
    # the mkdocs site, strictly (any warning fails); extra arguments go to mkdocs build,
    # e.g. ./dev.sh docs -d /tmp/dask-meta-site (default: site/, git-ignored)
    venv .venv
    .venv/bin/python -m pip install -q -e ".[dev]"
    NO_MKDOCS_2_WARNING=1 exec .venv/bin/mkdocs build --strict "$@"
    ;;
  bench)
    venv .venv
    .venv/bin/python -m pip install -q -e ".[dev]"
    exec .venv/bin/python "benchmarks/${1:?which benchmark, e.g. tlearner_vs_metalearners}.py" "${@:2}"
    ;;
  *)
    echo "usage: ./dev.sh demo | test | parity | conformance | lint | docs | bench NAME" >&2
    exit 2
    ;;
esac
