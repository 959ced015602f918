#!/usr/bin/env bash
# Install libpasha into a scratch prefix and build the quick guide as an
# outside program would: with pkg-config only. Then run it in all three kinds.
set -euo pipefail
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
meson setup build-consumer --prefix "$prefix" -Dtests=disabled -Dexamples=disabled >/dev/null
meson install -C build-consumer >/dev/null
pc=$(dirname "$(find "$prefix" -name pasha.pc | head -n1)")
export PKG_CONFIG_PATH="$pc"
cc -std=c11 -Wall -Werror examples/quickguide.c $(pkg-config --cflags --libs pasha) -lm -o "$prefix/quickguide"
c++ -std=c++17 -Wall -Wextra -pedantic -Werror examples/quickguide.cpp $(pkg-config --cflags --libs pasha) \
    -o "$prefix/quickguide_cpp"
export LD_LIBRARY_PATH="$(pkg-config --variable=libdir pasha)"
for kind in serial threads processes; do "$prefix/quickguide" "$kind"; done
"$prefix/quickguide_cpp" | grep -c True | grep -qx 4
"$prefix/quickguide" | grep -c True | grep -qx 3
nm -D --defined-only "$LD_LIBRARY_PATH/libpasha.so" | awk '{print $3}' | grep -v '^psh_' && { echo "non-psh symbols exported"; exit 1; }
echo "consumer: ok"
