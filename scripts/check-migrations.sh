#!/usr/bin/env bash
# Fails when drizzle-kit would generate a migration: src/schema/table.ts changed
# without `npm run migrations:generate`. Both layouts: drizzle-kit 0.31's in
# migrations/ (what migrate() and drizzle-orm 0.44+'s migrator read) and
# drizzle-kit 1.0's in migrations/drizzle-1/ (drizzle-orm 1.0's migrator).
set -euo pipefail
cd "$(dirname "$0")/.."
fingerprint() { find migrations -path migrations/drizzle-1 -prune -o -type f -print | sort | xargs sha256sum; }
before=$(fingerprint)
npx drizzle-kit generate >/dev/null
if [ "$(fingerprint)" != "$before" ]; then
  git status --porcelain --untracked-files=all -- migrations
  echo "migrations/ is behind src/schema/table.ts: run 'npm run migrations:generate' and commit the result" >&2
  exit 1
fi
echo "migrations/ matches src/schema/table.ts (drizzle-kit 0.31)"
bash scripts/drizzle1-migrations.sh check
