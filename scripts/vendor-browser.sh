#!/usr/bin/env bash
# Refresh the browser packages the API serves itself (no CDN: the counter page and the
# OpenAPI UI must work on an offline network). Run from the repository root:
#
#     scripts/vendor-browser.sh            # the versions pinned below
#
# It downloads each package with `npm pack` (the npm registry only; nothing runs from
# the package), checks its licence, copies only the files the pages load into
# verifier/api/vendor/<package>/ beside the package's LICENSE (and NOTICE), and rewrites
# verifier/api/vendor/VERSIONS. Commit the result: users and CI never need npm.
set -euo pipefail

ZXING_WASM_VERSION=3.1.8        # MIT; QR decoding where the browser has no BarcodeDetector
SWAGGER_UI_DIST_VERSION=5.36.0  # Apache-2.0; the OpenAPI UI at /schema/swagger

cd "$(dirname "$0")/.."
vendor=verifier/api/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch NAME VERSION EXPECTED_LICENSE -> unpacked in $work/NAME/package
    local name=$1 version=$2 license=$3 tarball
    mkdir -p "$work/$name"
    tarball=$(cd "$work/$name" && npm pack --silent "$name@$version")
    tar -xzf "$work/$name/$tarball" -C "$work/$name"
    local found
    found=$(node -e 'console.log(require(process.argv[1]).license)' "$work/$name/package/package.json")
    if [ "$found" != "$license" ]; then
        echo "vendor-browser: $name $version is licensed '$found', expected '$license': review before vendoring" >&2
        exit 1
    fi
    echo "$name $version $license $(sha256sum "$work/$name/$tarball" | cut -d' ' -f1)" >> "$work/VERSIONS"
}

copy() {  # copy NAME FILE... (paths inside the package) -> $vendor/NAME/, keeping their layout
    local name=$1; shift
    for file in "$@"; do
        mkdir -p "$vendor/$name/$(dirname "$file")"
        cp "$work/$name/package/$file" "$vendor/$name/$file"
    done
}

fetch zxing-wasm "$ZXING_WASM_VERSION" MIT
fetch swagger-ui-dist "$SWAGGER_UI_DIST_VERSION" Apache-2.0

rm -rf "$vendor/zxing-wasm" "$vendor/swagger-ui-dist"
# the reader build only (no writer): its ES module, the chunk it imports, its .wasm
copy zxing-wasm LICENSE dist/es/reader/index.js dist/es/share.js dist/reader/zxing_reader.wasm
copy swagger-ui-dist LICENSE NOTICE swagger-ui-bundle.js swagger-ui.css

{
    echo "# Browser packages vendored by scripts/vendor-browser.sh: name version licence sha256-of-npm-tarball"
    cat "$work/VERSIONS"
} > "$vendor/VERSIONS"
echo "vendor-browser: wrote $vendor"; cat "$vendor/VERSIONS"
