#!/usr/bin/env bash
# Builds the API reference from the headers' comments (docs/Doxyfile) into
# build/docs/api. It is also a check: any Doxygen warning (an undocumented
# public class, function or member, a malformed comment) fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh doxygen

version=$(doxygen --version)
[[ $version == 1.9.4* ]] || echo "docs: Doxygen $version; docs/Doxyfile is written for 1.9.4 (Debian 12)" >&2

rm -rf build/docs/api  # no pages left over from symbols that are gone
mkdir -p build/docs   # Doxygen creates only the last level of OUTPUT_DIRECTORY
if ! doxygen docs/Doxyfile; then
  echo "docs: Doxygen warnings above; every public symbol needs a /// comment (WARN_AS_ERROR)" >&2
  exit 1
fi
echo "docs: API reference in $(pwd)/build/docs/api/index.html"
