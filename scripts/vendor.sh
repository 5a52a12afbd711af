#!/usr/bin/env bash
# Refresh static/vendor/ from the npm registry: htmx, Bootstrap and Bootstrap Icons,
# each at the version pinned below, with its licence; writes static/vendor/VERSIONS.
# Change a version here, run `make vendor`, look at the pages, commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."

HTMX=2.0.11            # npm's latest is 4.x, a breaking rewrite: stay on 2.x
BOOTSTRAP=5.3.9
BOOTSTRAP_ICONS=1.13.2

DEST=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {  # fetch PACKAGE VERSION: unpack the registry tarball into $work/PACKAGE
  local dir="$work/$1"
  mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "$1@$2" >/dev/null && tar -xzf ./*.tgz)
  echo "$dir/package"
}

# Source maps are not vendored, so their comments go (the browser would ask for them).
strip_map() { sed -i -e 's|/\*# sourceMappingURL=[^*]*\*/||' -e 's|//# sourceMappingURL=.*$||' "$1"; }

pkg=$(fetch htmx.org "$HTMX")
install -m 0644 "$pkg/dist/htmx.min.js" "$DEST/htmx.min.js"
install -m 0644 "$pkg/LICENSE" "$DEST/htmx.LICENSE"

pkg=$(fetch bootstrap "$BOOTSTRAP")
install -m 0644 "$pkg/dist/css/bootstrap.min.css" "$DEST/bootstrap.min.css"
install -m 0644 "$pkg/dist/js/bootstrap.bundle.min.js" "$DEST/bootstrap.bundle.min.js"
install -m 0644 "$pkg/LICENSE" "$DEST/bootstrap.LICENSE"
strip_map "$DEST/bootstrap.min.css"
strip_map "$DEST/bootstrap.bundle.min.js"

pkg=$(fetch bootstrap-icons "$BOOTSTRAP_ICONS")
install -m 0644 "$pkg/bootstrap-icons.svg" "$DEST/bootstrap-icons.svg"
install -m 0644 "$pkg/LICENSE" "$DEST/bootstrap-icons.LICENSE"

cat > "$DEST/VERSIONS" <<EOF
# Vendored from the npm registry by scripts/vendor.sh (make vendor); served locally.
htmx.org $HTMX 0BSD htmx.min.js htmx.LICENSE
bootstrap $BOOTSTRAP MIT bootstrap.min.css bootstrap.bundle.min.js bootstrap.LICENSE
bootstrap-icons $BOOTSTRAP_ICONS MIT bootstrap-icons.svg bootstrap-icons.LICENSE
EOF
echo "vendored htmx $HTMX, bootstrap $BOOTSTRAP, bootstrap-icons $BOOTSTRAP_ICONS into $DEST"
