# Sourced by the GPU scripts: put the carried pure-Python wheels (`make carry` -> .carry/wheels)
# on PYTHONPATH when this python lacks one of tribyol's light dependencies (a bare GPU machine).
if ! "$PY" -c 'import omegaconf' 2>/dev/null; then
  for wheel in .carry/wheels/*.whl; do
    [ -e "$wheel" ] && export PYTHONPATH="$PWD/$wheel:$PYTHONPATH"
  done
  "$PY" -c 'import omegaconf' 2>/dev/null || {
    echo "error: $PY cannot import omegaconf; run 'make carry' and carry .carry" >&2; exit 2; }
fi
