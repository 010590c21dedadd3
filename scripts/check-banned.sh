#!/usr/bin/env bash
# check-banned.sh: fails when project C code calls a banned unsafe function (curl's list, in
# short): sprintf, vsprintf, strcpy, strcat, gets, atoi, atol, atoll. Use snprintf, memcpy with
# lengths, and strtol with checks instead.
set -euo pipefail
cd "$(dirname "$0")/.."
pattern='(^|[^_a-zA-Z0-9])(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|atoll)\('
hits=$(git ls-files '*.c' '*.h' 2>/dev/null | xargs -r grep -nE "$pattern" | grep -v 'check-banned: allow' || true)
if [ -n "$hits" ]; then
  echo "banned functions used:"
  echo "$hits"
  exit 1
fi
n=$(git ls-files '*.c' '*.h' | wc -l)
echo "check-banned: $n C files clean"
