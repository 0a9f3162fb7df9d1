#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter (Lava 0.10.0 needs 3.10), or explain how to get one.
set -u
ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
cands=()
command -v python3.10 >/dev/null 2>&1 && cands+=("$(command -v python3.10)")
if command -v pyenv >/dev/null 2>&1; then
  for p in "$(pyenv root)"/versions/3.10*/bin/python; do cands+=("$p"); done
fi
for p in /usr/bin/python3.10 /usr/local/bin/python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python; do cands+=("$p"); done
for p in "${cands[@]}"; do
  if [ -x "$p" ] && ok "$p"; then echo "$p"; exit 0; fi
done
cat >&2 <<'MSG'
error: no working Python 3.10 found (lava-nc 0.10.0, the last Lava release, supports only Python 3.10).
  Install one, e.g.  `pyenv install 3.10`  or  `apt-get install python3.10 python3.10-venv`,
  then run the make command again.
  Without Lava, the core package works on Python >= 3.10:  pip install -e '.[data,plot,dev]'
MSG
exit 1
