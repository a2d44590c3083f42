#!/usr/bin/env bash
# Installs drizzle-orm and drizzle-kit 1.0 (release candidates) apart from the
# project's own 0.44+/0.31 in .data/drizzle1, for the checks that run against
# both: scripts/test-drizzle1.sh, scripts/drizzle1-migrations.sh and
# scripts/check-package.sh. Does nothing when the versions there are the ones asked for.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/drizzle1-versions.sh
orm=$DRIZZLE1_ORM_VERSION
kit=$DRIZZLE1_KIT_VERSION
dir=.data/drizzle1
installed() { node -p "require('./$dir/node_modules/$1/package.json').version" 2>/dev/null || true; }
if [ "$(installed drizzle-orm)" != "$orm" ] || [ "$(installed drizzle-kit)" != "$kit" ]; then
  mkdir -p "$dir"
  echo '{ "name": "drizzle1", "private": true }' > "$dir/package.json"
  # pg and the rest resolve from the project's node_modules (two levels up), so
  # that the 1.0 copy of drizzle and the tests share one pg.
  npm install --prefix "$dir" --no-audit --no-fund --no-save --prefer-offline "drizzle-orm@$orm" "drizzle-kit@$kit" >/dev/null
fi
echo "drizzle-orm $(installed drizzle-orm), drizzle-kit $(installed drizzle-kit) in $dir"
