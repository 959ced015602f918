#!/usr/bin/env bash
# Bindings, beyond the suites `meson test` already ran in build-test (rust,
# fortran, julia): run the quick-guide examples and check that every public
# item of the Rust crate is documented (rustdoc with missing_docs as error).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-test}

if [ -x "$build/bindings/fortran/quickguide_fortran" ]; then
    out=$("$build/bindings/fortran/quickguide_fortran")
    echo "$out"
    [ "$(grep -c 'True (outp == 3 \* inp)' <<<"$out")" = 3 ]
else
    echo "fortran: quickguide_fortran not built (no Fortran compiler), skipped"
fi

python3 bindings/julia/check_ccalls.py include/pasha/pasha.h bindings/julia/src/Pasha.jl

if command -v cargo >/dev/null; then
    export PKG_CONFIG_PATH=$PWD/$build/meson-uninstalled
    manifest=bindings/rust/Cargo.toml
    target=$PWD/$build/bindings/rust/target
    out=$(cargo run --quiet --manifest-path "$manifest" --target-dir "$target" --example quickguide)
    echo "$out"
    [ "$(grep -c 'True (outp == 3 \* inp)' <<<"$out")" = 3 ]
    RUSTDOCFLAGS="-D warnings -D missing_docs" \
        cargo doc --quiet --no-deps --manifest-path "$manifest" --target-dir "$target"
else
    echo "rust: cargo not installed, skipped"
fi
