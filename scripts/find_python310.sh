#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter (Lava 0.10.0 needs 3.10), or explain how to get one.
set -u
if command -v python3.10 >/dev/null 2>&1; then command -v python3.10; exit 0; fi
if command -v pyenv >/dev/null 2>&1; then
  for p in "$(pyenv root)"/versions/3.10*/bin/python; do
    if [ -x "$p" ]; then echo "$p"; exit 0; fi
  done
fi
for p in /usr/bin/python3.10 /usr/local/bin/python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python; do
  if [ -x "$p" ]; then echo "$p"; exit 0; fi
done
cat >&2 <<'MSG'
error: Python 3.10 not found (lava-nc 0.10.0, the last Lava release, supports only Python 3.10).
  Install it, e.g.  `pyenv install 3.10`  or  `apt-get install python3.10 python3.10-venv`,
  or point the Makefile at one:  `make test VENV=.venv` after `python3.10 -m venv .venv`.
  Without Lava, the core package works on Python >= 3.10:  pip install -e '.[data,plot,dev]'
MSG
exit 1
