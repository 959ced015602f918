#!/usr/bin/env bash
# The API reference: meson compile docs (Doxygen over include/pasha/*.h*,
# any warning is an error) and check that the pages of the headers document
# their functions.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${PASHA_CI_BUILD_PREFIX:-build}-docs
rm -rf "$dir"
trap 'rm -rf "$dir"' EXIT
meson setup "$dir" -Dtests=disabled -Dexamples=disabled -Dfortran=disabled >/dev/null
meson compile -C "$dir" docs
html=$dir/docs/api/html
for f in psh_map psh_alloc psh_version_number psh_context_create_ext; do
    grep -q "$f" "$html/pasha_8h.html" || { echo "docs: $f missing from pasha_8h.html"; exit 1; }
done
grep -q PSH_VERSION_NUMBER "$html/pasha__version_8h.html" || { echo "docs: pasha_version.h undocumented"; exit 1; }
echo "docs: ok ($(ls "$html"/*.html | wc -l) pages, no Doxygen warning)"
