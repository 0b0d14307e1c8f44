#!/usr/bin/env bash
# Build `plexus` with chat inference on CUDA GPUs (the `cuda` cargo feature).
#
#   scripts/build-cuda.sh [COMPUTE_CAP]
#
# COMPUTE_CAP is the GPU's compute capability without the dot (90 for H100/H200, 89 for
# RTX 40xx, 86 for RTX 30xx, 80 for A100); default: what `nvidia-smi` reports, else 90.
#
# With a CUDA toolkit installed (`nvcc` on PATH) this is `cargo build --features cuda`.
# Without one (a build machine with no GPU, like CI), it fetches nvcc 13.0 and the CUDA
# headers from PyPI (`pip download`, checksums pinned below) and links against stubs of
# the driver and CUDA libraries made from the bindings cargo already has, so no GPU and
# no toolkit are needed to build. To run, the binary needs the NVIDIA driver (580 or newer)
# and the CUDA 13 libraries libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and
# libcudart.so.13 on the loader's path (a CUDA 13 toolkit, or pip's nvidia-cublas,
# nvidia-curand and nvidia-cuda-runtime, e.g. the ones PyTorch cu130 installs).
# The binary links the driver library, so it starts only where the NVIDIA driver is
# installed. Embeddings run on the CPU either way; `PLEXUS_DEVICE=cpu` keeps chat there too.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${PLEXUS_CUDA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/plexus/cuda-13.0}

# The CUDA 13.0 build tools from PyPI: wheel, sha256.
WHEELS="
nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl 2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
"

# Library stubs to link against: cudarc module, library, the soname the real one has.
STUBS="driver:cuda:libcuda.so.1 nvrtc:nvrtc:libnvrtc.so.13 curand:curand:libcurand.so.10
cublas:cublas:libcublas.so.13 cublaslt:cublasLt:libcublasLt.so.13"

toolkit_from_pypi() {
    local cu="$cache/nvidia/cu13"
    if [ ! -x "$cu/bin/nvcc" ] || [ ! -x "$cu/nvvm/bin/cicc" ]; then
        echo "build-cuda: fetching nvcc 13.0 and CUDA headers from PyPI into $cache" >&2
        mkdir -p "$cache/wheels"
        local names
        names=$(echo "$WHEELS" | awk 'NF { split($1, p, "-"); gsub("_", "-", p[1]); print p[1] "==" p[2] }')
        # shellcheck disable=SC2086
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 \
            -d "$cache/wheels" $names
        echo "$WHEELS" | awk 'NF { print $2 "  " $1 }' | (cd "$cache/wheels" && sha256sum --check --quiet) \
            || { echo "build-cuda: a downloaded wheel does not match its pinned sha256" >&2; exit 1; }
        echo "$WHEELS" | awk 'NF { print $1 }' | while read -r w; do
            python3 -m zipfile -e "$cache/wheels/$w" "$cache"
        done
        chmod +x "$cu"/bin/* "$cu"/nvvm/bin/*
    fi

    # Stubs with every function the bindings declare; the loader binds the real libraries.
    cargo fetch --locked --quiet
    local version src
    version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$version" | head -n 1)
    mkdir -p "$cu/lib/stubs" "$cache/stubs-src"
    for spec in $STUBS; do
        IFS=: read -r module lib soname <<<"$spec"
        grep -oE 'pub unsafe fn [A-Za-z_0-9]+\(' "$src/src/$module/sys/mod.rs" |
            sed -E 's/pub unsafe fn ([A-Za-z_0-9]+)\(/void \1(void) {}/' | sort -u \
            >"$cache/stubs-src/$lib.c"
        cc -shared -fPIC -w -Wl,-soname,"$soname" -o "$cu/lib/stubs/lib$lib.so" "$cache/stubs-src/$lib.c"
    done
    ln -sf libcudart.so.13 "$cu/lib/libcudart.so"

    export PATH="$cu/bin:$cu/nvvm/bin:$PATH" CUDA_ROOT="$cu"
}

if command -v nvcc >/dev/null; then
    echo "build-cuda: using $(command -v nvcc)" >&2
else
    toolkit_from_pypi
fi

cap=${1:-}
if [ -z "$cap" ] && command -v nvidia-smi >/dev/null; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ' || true)
fi
export CUDA_COMPUTE_CAP=${cap:-90}
echo "build-cuda: kernels for sm_$CUDA_COMPUTE_CAP (takes a while: candle compiles its CUDA kernels)" >&2

cargo build --release --locked -p plexus-cli --features cuda
echo "build-cuda: built ${CARGO_TARGET_DIR:-$root/target}/release/plexus"
