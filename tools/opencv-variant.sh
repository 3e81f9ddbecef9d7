#!/usr/bin/env bash
# Keep exactly one OpenCV distribution in the environment of PYTHON: uninstall every cv2-providing
# distribution other than the chosen variant (gui: opencv-contrib-python, headless:
# opencv-contrib-python-headless) before `pip install -e '.[VARIANT]'` installs it. Two of them
# in one environment overwrite each other's cv2 files and break it.
set -euo pipefail
PY=$1
VARIANT=$2
case "$VARIANT" in
  gui) keep=opencv-contrib-python ;;
  headless) keep=opencv-contrib-python-headless ;;
  *) echo "OPENCV must be gui or headless, not '$VARIANT'" >&2; exit 2 ;;
esac
others=()
for dist in opencv-python opencv-python-headless opencv-contrib-python opencv-contrib-python-headless; do
  [ "$dist" = "$keep" ] && continue
  if "$PY" -m pip show -q "$dist" >/dev/null 2>&1; then others+=("$dist"); fi
done
if [ ${#others[@]} -gt 0 ]; then
  echo "OpenCV: removing ${others[*]} (this environment gets $keep)"
  "$PY" -m pip uninstall -q -y "${others[@]}"
  # the uninstalled package took the shared cv2/ folder with it: reinstall the kept one whole
  if "$PY" -m pip show -q "$keep" >/dev/null 2>&1; then
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$keep"
  fi
fi
