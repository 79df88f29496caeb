#!/usr/bin/env bash
# Installs the Debian 12 packages posttrain builds against (see ../shared/DESIGN.md, "Dependencies").
# Idempotent: packages already present are skipped by apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev libopenblas0-openmp
  libyaml-cpp-dev libboost-program-options-dev libhdf5-dev nlohmann-json3-dev
  libpcre2-dev libutf8proc-dev libssl-dev catch2 libgloo-dev
  chromium-headless-shell  # the report test renders report.html and takes a screenshot
  python3-jinja2  # the peer that core/jinja.h is tested against (tests/core/test_jinja.cpp)
  python3-yaml  # with jinja2: the lm-eval task peer (tests/evals/lm_eval_peer.py)
  bubblewrap  # the hackathon judge runs plugin submissions in its sandbox (core/sandbox.h)
)

missing=()
# node + npm run the peer tokenizer; the machine image may ship its own Node.js build.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Debian's libtorch links the reference BLAS by default (~30x slower than OpenBLAS) and may find the
# pthreads OpenBLAS, whose thread pool spins against libtorch's OpenMP pool on the same cores. The
# OpenMP build shares libtorch's pool: 10-25% faster CPU training (docs/performance.md).
for name in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  link="$name-x86_64-linux-gnu"
  update-alternatives --list "$link" >/dev/null 2>&1 || continue
  target=$(update-alternatives --list "$link" | grep openblas-openmp | head -1 || true)
  current=$(readlink -f "/etc/alternatives/$link" 2>/dev/null || true)
  if [ -n "$target" ] && [ "$current" != "$target" ]; then $SUDO update-alternatives --set "$link" "$target"; fi
done
