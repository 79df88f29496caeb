#!/usr/bin/env bash
# Installs the Debian 12 packages posttrain builds against (see ../shared/DESIGN.md, "Dependencies").
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-pthread
  libyaml-cpp-dev libboost-program-options-dev libhdf5-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libssl-dev catch2 libgloo-dev
  chromium-headless-shell  # the report test renders report.html and takes a screenshot
)

missing=()
# node + npm run the peer tokenizer; the machine image may ship its own Node.js build.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Debian's libtorch links the reference BLAS by default; OpenBLAS (pthread) is ~30x faster.
if update-alternatives --list libblas.so.3-x86_64-linux-gnu >/dev/null 2>&1; then
  target=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu | grep openblas-pthread | head -1 || true)
  if [ -n "$target" ]; then $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu "$target"; fi
fi
