#!/usr/bin/env bash
# Install the Debian packages the project needs (tools/apt-packages.txt) when missing.
# As root it installs them; otherwise it names what is missing and carries on (tests skip).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wanted=()
python3 -c "import ensurepip, venv" 2>/dev/null || wanted+=(python3-venv)
while read -r pkg; do
  pkg=${pkg%%#*}; pkg=${pkg// /}
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || wanted+=("$pkg")
done < "$here/apt-packages.txt"
[ ${#wanted[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "note: missing system packages (tests that need them will skip): ${wanted[*]}" >&2
  echo "      install with: sudo apt-get install --no-install-recommends ${wanted[*]}" >&2
  exit 0
fi
echo "installing system packages: ${wanted[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
