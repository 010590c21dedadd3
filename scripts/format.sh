#!/usr/bin/env bash
# format.sh [--check] [FILE...]: clang-format 14 (Debian's clang-format-14) over every tracked
# *.c and *.h file, or over the FILEs given. Generated code is never tracked (protoc-c writes
# into the build directory) and *.pb-c.* files are skipped in any case.
#   (no flag)  rewrite the files in place
#   --check    change nothing: print each file that deviates from .clang-format, exit 1 if any
# CLANG_FORMAT=/path/to/clang-format overrides the binary (it must be version 14: other versions
# format differently). CMake runs this as the `format` and `format-check` targets.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi
case "${1:-}" in -*) echo "usage: scripts/format.sh [--check] [FILE...]" >&2; exit 2 ;; esac

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  for c in clang-format-14 clang-format; do
    if command -v "$c" >/dev/null 2>&1; then cf=$c; break; fi
  done
fi
if [ -z "$cf" ]; then
  echo "format.sh: clang-format 14 not found (apt-get install clang-format-14)" >&2
  exit 2
fi
if ! "$cf" --version | grep -q 'version 14\.'; then
  echo "format.sh: $cf is not clang-format 14: $("$cf" --version)" >&2
  exit 2
fi

if (($# > 0)); then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- '*.c' '*.h' ':!:*.pb-c.c' ':!:*.pb-c.h')
fi

if ((check == 0)); then
  printf '%s\0' "${files[@]}" | xargs -0 -n 16 "$cf" -i --style=file
  exit 0
fi

bad=0
for f in "${files[@]}"; do
  if ! "$cf" --style=file "$f" | cmp -s - "$f"; then
    echo "$f"
    bad=$((bad + 1))
  fi
done
if ((bad > 0)); then
  echo "format.sh: $bad of ${#files[@]} files deviate from .clang-format (scripts/format.sh fixes them)" >&2
  exit 1
fi
