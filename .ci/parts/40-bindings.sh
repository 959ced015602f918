#!/usr/bin/env bash
# Bindings, beyond the suites `meson test` already ran in build-test (rust,
# fortran, julia): run the quick-guide examples, check that every public
# item of the Rust crates is documented (rustdoc with missing_docs as error,
# also as docs.rs builds it, without libpasha), and that an outside consumer
# crate built with the README's rpath recipe starts without LD_LIBRARY_PATH.
# (The crates' version is checked with every other copy by
# tools/check-version.py.)
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

python3 tools/bindcheck/bindcheck.py  # Fortran, Julia and Python's constants against the headers

if command -v cargo >/dev/null; then
    export PKG_CONFIG_PATH=$PWD/$build/meson-uninstalled
    manifest=bindings/rust/Cargo.toml
    target=$PWD/$build/bindings/rust/target
    out=$(cargo run --quiet --manifest-path "$manifest" --target-dir "$target" --example quickguide)
    echo "$out"
    [ "$(grep -c 'True (outp == 3 \* inp)' <<<"$out")" = 3 ]
    RUSTDOCFLAGS="-D warnings -D missing_docs" \
        cargo doc --quiet --no-deps --manifest-path "$manifest" --target-dir "$target"
    # docs.rs builds without libpasha: pasha-sys's DOCS_RS guard.
    env -u PKG_CONFIG_PATH DOCS_RS=1 RUSTDOCFLAGS="-D warnings -D missing_docs" \
        cargo doc --quiet --no-deps --manifest-path "$manifest" --target-dir "$target/docsrs"
    # The crate README's rpath recipe, as a consumer crate outside the
    # repository: its binary must start without LD_LIBRARY_PATH.
    consumer=$(mktemp -d)
    mkdir "$consumer/src"
    cat >"$consumer/Cargo.toml" <<EOF
[package]
name = "consumer"
version = "0.1.0"
edition = "2021"
[dependencies]
pasha = { path = "$PWD/bindings/rust/pasha" }
pasha-sys = { path = "$PWD/bindings/rust/pasha-sys" }
[workspace]
EOF
    readme=bindings/rust/pasha/README.md
    sed -n '/^```rust$/,/^```$/p' "$readme" | sed -n '2,/^```$/p' | sed '$d' >"$consumer/src/main.rs"
    sed -n '/^   \/\/ build.rs/,/^   ```/p' "$readme" | sed '$d' | sed 's/^   //' >"$consumer/build.rs"
    cargo build --quiet --manifest-path "$consumer/Cargo.toml" --target-dir "$target/consumer"
    env -u LD_LIBRARY_PATH "$target/consumer/debug/consumer"
    readelf -d "$target/consumer/debug/consumer" | grep -q RUNPATH
    rm -rf "$consumer"
    echo "rust: consumer crate with the README's rpath recipe runs without LD_LIBRARY_PATH"

    # pasha-sys/src/bindings.rs (and the layout test's list) are generated
    # from the header by bindgen: regenerating must change nothing.
    cargo run --quiet --manifest-path bindings/rust/bindgen/Cargo.toml --target-dir "$target/bindgen" -- --check

    # Without any libpasha (pkg-config pointed nowhere, no LD_LIBRARY_PATH):
    # the safe crate's tests with the engine bundled in pasha-sys (one
    # build), and both crates as cargo package makes them, verified by
    # building them the same way (the packaged engine sources compile).
    (
        export PKG_CONFIG_PATH=/nonexistent
        unset LD_LIBRARY_PATH
        cargo test --quiet --manifest-path "$manifest" --target-dir "$target/bundled" --features pasha/bundled --tests
        ! ldd "$target"/bundled/debug/deps/map-* 2>/dev/null | grep -q libpasha
        # A fresh target dir: cargo treats the verified pasha-sys as a
        # registry crate, whose build it never redoes for the same version,
        # so an old build would be verified instead of today's sources.
        rm -rf "$target/package-check"
        cargo package --quiet --workspace --allow-dirty --manifest-path "$manifest" --target-dir "$target/package-check"
        cargo publish --dry-run --quiet --workspace --allow-dirty --manifest-path "$manifest" --target-dir "$target/package-check"
    )
    echo "rust: bindings.rs matches the header; bundled tests, cargo package and publish --dry-run pass without libpasha"
else
    echo "rust: cargo not installed, skipped"
fi
