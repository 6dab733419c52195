#!/usr/bin/env bash
# The whole test suite: install vitnp with the test, notebook and course extras (PyTorch CPU reference, Jupyter,
# nbgrader), then run pytest.   Usage: bash scripts/test.sh [PYTEST_ARGS...]   (e.g. -x, -k attention, tests/test_ops.py)
# Runs in the active venv/conda environment, or else in .venv (created here; see scripts/env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
"$PY" -m pip install -q -e ".[test,notebooks,course]"
"$PY" -m pytest -q "$@"
