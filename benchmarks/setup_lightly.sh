#!/usr/bin/env bash
# A separate venv with lightly (from PyPI) for benchmarks/peer_lightly.py, without a second torch:
# a .pth file adds the main venv's site-packages (torch, torchvision, lightning, tribyol) on its
# path, and every package the main venv already has is pinned to that version, so pip installs
# only what lightly adds.
#   bash benchmarks/setup_lightly.sh   ->  benchmarks/.lightly-venv (git-ignored)
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN=${MAIN_VENV:-.venv}
VENV=benchmarks/.lightly-venv
LIGHTLY=${LIGHTLY_VERSION:-lightly}
"$MAIN/bin/python" -m venv "$VENV"
main_site=$("$MAIN/bin/python" -c 'import site; print(site.getsitepackages()[0])')
venv_site=$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
# An "import" line, so that the main venv's own .pth files (the editable tribyol) apply too.
echo "import site; site.addsitedir('$(cd "$main_site" && pwd)')" > "$venv_site/_tribyol_main_venv.pth"
pins=$(mktemp)
# Everything the main venv holds, at its version (editable tribyol excluded), plus torch's pins.
"$MAIN/bin/python" -m pip freeze --exclude-editable | grep -v -E '^(-e |tribyol)' > "$pins"
cat constraints.txt >> "$pins"
"$VENV/bin/python" -m pip install -q -c "$pins" "$LIGHTLY"
rm -f "$pins"
"$VENV/bin/python" - <<'PY'
import lightly, torch, torchvision
import tribyol
print(f"lightly {lightly.__version__}, torch {torch.__version__} from {torch.__file__}, "
      f"torchvision {torchvision.__version__}")
PY
