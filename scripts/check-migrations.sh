#!/usr/bin/env bash
# Fails when drizzle-kit would generate a migration: src/schema/table.ts changed
# without `npm run migrations:generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
npx drizzle-kit generate >/dev/null
if [ -n "$(git status --porcelain -- migrations)" ]; then
  git status --porcelain -- migrations
  echo "migrations/ is behind src/schema/table.ts: run 'npm run migrations:generate' and commit the result" >&2
  exit 1
fi
echo "migrations/ matches src/schema/table.ts"
