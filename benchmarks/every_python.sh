#!/usr/bin/env bash
# The instruction table (benchmarks/instructions.py) on every supported Python.
#
#   bash benchmarks/every_python.sh                       # --quick --layouts 4 on 3.10 to 3.13
#   bash benchmarks/every_python.sh --quick --layouts 8   # any instructions.py options
#   PYTHONS="3.11 3.13" bash benchmarks/every_python.sh --quick --only "otel-urllib3 + poolscope"
#   OUT=/tmp/elsewhere bash benchmarks/every_python.sh    # where the outputs go
#
# Each interpreter gets a virtualenv of its own, made once: .venv-bench/pyX.Y, from pyenv's
# build of that version (`pyenv root`/versions/X.Y.*), else pythonX.Y on the PATH, with the
# test extra pinned by tests/constraints.txt, urllib3 2.x and requests 2.32+. The install is
# editable, but what runs is an export of the commit checked out when the script starts (git
# archive of src/ and benchmarks/; its src/ first on PYTHONPATH): anyone can edit the working
# tree during a run of an hour or more without changing what it measures, nor the memory
# layout of the measured processes (which a changed benchmark file would move). Each run's output goes to the
# terminal and to $OUT/instructions-pyX.Y-<commit>.txt (OUT defaults to /tmp/bench-results;
# -2, -3, ... for a later run of the same commit), its counts per layout to the .json beside
# it (for instructions.py --load, to merge the layouts of several runs); its first lines name
# the versions and the commit.
set -euo pipefail
cd "$(dirname "$0")/.."

pythons=${PYTHONS:-"3.10 3.11 3.12 3.13"}
out=${OUT:-/tmp/bench-results}
if [ $# -eq 0 ]; then
  set -- --quick --layouts 4
fi

commit=$(git rev-parse --short HEAD)
snapshot=$(mktemp -d /tmp/poolscope-bench-src.XXXXXX)
trap 'rm -rf "$snapshot"' EXIT
git archive HEAD src benchmarks | tar -x -C "$snapshot"
mkdir -p "$out"

interpreter() {
  local root candidate
  if root=$(pyenv root 2>/dev/null); then
    candidate=$(find "$root/versions" -maxdepth 1 -name "$1.*" 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$candidate" ] && [ -x "$candidate/bin/python" ]; then
      echo "$candidate/bin/python"
      return
    fi
  fi
  command -v "python$1" || {
    echo "no Python $1: install it with pyenv (pyenv install $1) or put python$1 on the PATH" >&2
    return 1
  }
}

for version in $pythons; do
  venv=.venv-bench/py$version
  if [ ! -x "$venv/bin/python" ]; then
    "$(interpreter "$version")" -m venv "$venv"
    "$venv/bin/pip" install -q -c tests/constraints.txt -e '.[test]' 'urllib3>=2,<3' 'requests>=2.32'
  fi
  base="$out/instructions-py$version-$commit"
  result=$base
  n=1
  while [ -e "$result.txt" ]; do
    n=$((n + 1))
    result="$base-$n"
  done
  echo "== Python $version: $result.txt"
  PYTHONPATH="$snapshot/src" POOLSCOPE_BENCH_COMMIT=$commit \
    "$venv/bin/python" "$snapshot/benchmarks/instructions.py" "$@" --save "$result.json" |
    tee "$result.txt"
done
