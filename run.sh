#!/usr/bin/env bash
# Installs Chumoku into .venv (CPU torch) and starts the dashboard on the offline default model.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
exec .venv/bin/python -m streamlit run dashboard.py "$@"
