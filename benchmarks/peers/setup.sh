#!/usr/bin/env bash
# Creates the peers benchmark's own virtual environment and installs the pinned peer packages
# (benchmarks/peers/requirements.txt) into it, with --no-deps so that fer's heavy optional
# dependencies (facenet-pytorch -> torch, moviepy, pandas, matplotlib, ...) stay out.
# These packages are never fercomp dependencies and never go into fercomp's environment.
#
#   bash benchmarks/peers/setup.sh                 # venv at ~/.cache/fercomp/peers-venv
#   PEERS_VENV=/some/dir bash benchmarks/peers/setup.sh
#   PYTHON=python3.11 bash benchmarks/peers/setup.sh   # interpreter that creates the venv
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${PEERS_VENV:-$HOME/.cache/fercomp/peers-venv}"
if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $("$PYTHON" --version 2>&1)"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
case "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
    3.11) ;;
    *) echo "warning: the pins were tested with CPython 3.11 on Linux x86-64" >&2 ;;
esac

start=$(date +%s)
"$VENV/bin/python" -m pip install --no-deps --disable-pip-version-check -r "$HERE/requirements.txt"
echo "installed in $(( $(date +%s) - start )) s; venv size: $(du -sh "$VENV" | cut -f1)"

# Smoke test: the runtimes import and fer's model files are where fer looks for them.
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" - <<'EOF'
from pathlib import Path
import ai_edge_litert.interpreter, cv2, keras, tensorflow as tf
import fer
from fer.fer import FER  # fer 25.10.3: `from fer import FER` (its README) raises ImportError
data = Path(fer.__file__).parent / "data"
for name in ("emotion_model.hdf5", "emotion_model_quantized.tflite"):
    path = data / name
    print(f"  {path} ({path.stat().st_size:,} bytes)")
assert hasattr(cv2, "CascadeClassifier"), "fer needs cv2.CascadeClassifier (OpenCV 4.x)"
print(f"ok: fer {fer.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}, cv2 {cv2.__version__}")
EOF
echo "run: $VENV/bin/python $(cd "$HERE/../.." && pwd)/benchmarks/peers/run_peers.py --threads 2"
