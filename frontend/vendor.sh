#!/usr/bin/env bash
# Copy the pinned browser libraries (package.json + package-lock.json) into vendor/, with
# their licences and a MANIFEST.json of versions and sha256s that tests/test_frontend_vendor.py
# checks. vendor/ is committed, so running the page never needs npm or a CDN.
# Usage: bash frontend/vendor.sh   (needs node and npm; `make vendor` calls it)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
nm="$work/node_modules"
out="$here/vendor"
rm -rf "$out"
mkdir -p "$out"/{preact,htm,marked,dompurify,highlight,katex/fonts,marked-katex-extension}
cp "$nm/preact/dist/preact.module.js" "$nm/preact/hooks/dist/hooks.module.js" \
   "$nm/preact/LICENSE" "$out/preact/"
cp "$nm/htm/dist/htm.module.js" "$nm/htm/LICENSE" "$out/htm/"
cp "$nm/marked/lib/marked.esm.js" "$nm/marked/LICENSE" "$out/marked/"
cp "$nm/dompurify/dist/purify.es.mjs" "$nm/dompurify/LICENSE" "$out/dompurify/"
cp "$nm/@highlightjs/cdn-assets/es/highlight.min.js" "$nm/@highlightjs/cdn-assets/LICENSE" \
   "$nm/@highlightjs/cdn-assets/styles/github.min.css" \
   "$nm/@highlightjs/cdn-assets/styles/github-dark.min.css" "$out/highlight/"
cp "$nm/katex/dist/katex.mjs" "$nm/katex/dist/katex.min.css" "$nm/katex/LICENSE" "$out/katex/"
cp "$nm"/katex/dist/fonts/*.woff2 "$out/katex/fonts/"
cp "$nm/marked-katex-extension/lib/index.esm.js" "$nm/marked-katex-extension/LICENSE" \
   "$out/marked-katex-extension/"
python3 - "$nm" "$out" <<'PY'
import hashlib, json, sys
from pathlib import Path
nm, out = Path(sys.argv[1]), Path(sys.argv[2])
names = ["preact", "htm", "marked", "dompurify", "@highlightjs/cdn-assets", "katex",
         "marked-katex-extension"]
versions = {n: json.loads((nm / n / "package.json").read_text())["version"] for n in names}
files = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in sorted(out.rglob("*")) if p.is_file()}
(out / "MANIFEST.json").write_text(json.dumps({"versions": versions, "files": files},
                                              indent=1) + "\n")
PY
echo "vendored into $out"
