#!/usr/bin/env bash
# Builds, packs, installs the tarball into an empty project with its peers, and
# type-checks and runs an import of every public entry point from there, then
# runs the packed CLI through npx.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
root=$(pwd)
cd "$work"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --prefer-offline "./$tarball" drizzle-orm pg express @types/pg @types/express @types/node@20 typescript@~5.9 >/dev/null
cat > check.ts <<'TS'
import { withIdempotency, idempotencyKeys, migrate, migrationsFolder, IdempotencyKeyInvalidError, sweepExpiredKeys, startSweeper, idempotencyStats } from 'drizzle-idempotency';
import { idempotent, parseIdempotencyKey, type IdempotentRouteOptions } from 'drizzle-idempotency/express';
import { fetchWithRetry, FetchRetryError, type RetriedResponse } from 'drizzle-idempotency/client';
const options: IdempotentRouteOptions = { scope: 'single-tenant', onInFlight: 'reject' };
const call: (url: string) => Promise<RetriedResponse> = (url) => fetchWithRetry(url, { method: 'POST' });
const entries: unknown[] = [withIdempotency, idempotencyKeys, migrate, IdempotencyKeyInvalidError, sweepExpiredKeys, startSweeper, idempotencyStats, idempotent, parseIdempotencyKey, FetchRetryError, call, options];
const folder: string = migrationsFolder;
console.log(entries.every(Boolean) && folder.length > 0 ? 'ok' : 'missing export');
TS
# The public surface, names of values and types per entry point, as committed.
node "$root/scripts/public-api.mjs" > api.json
if ! diff -u "$root/scripts/public-api.json" api.json; then
  echo "package: the public API changed (above); if on purpose, update scripts/public-api.json" >&2
  exit 1
fi
echo "package: public API matches scripts/public-api.json"
npx tsc --noEmit --strict --module nodenext --moduleResolution nodenext --skipLibCheck --types node check.ts
node --input-type=module -e "
import * as lib from 'drizzle-idempotency';
import { existsSync } from 'node:fs';
import * as http from 'drizzle-idempotency/express';
import * as client from 'drizzle-idempotency/client';
for (const name of ['withIdempotency', 'idempotencyKeys', 'migrate', 'sweepExpiredKeys', 'startSweeper', 'idempotencyStats']) if (!lib[name]) throw new Error('missing export ' + name);
for (const name of ['idempotent', 'parseIdempotencyKey']) if (!http[name]) throw new Error('missing express export ' + name);
for (const name of ['fetchWithRetry', 'FetchRetryError']) if (!client[name]) throw new Error('missing client export ' + name);
if ('idempotent' in lib) throw new Error('the core entry must not pull in express');
if (!existsSync(lib.migrationsFolder + '/meta/_journal.json')) throw new Error('migrations not packed');
console.log('package: installs, imports and type-checks');
"

# The bin: installed, executable, and its exit codes as documented.
npx --no-install drizzle-idempotency --help >/dev/null
npx --no-install drizzle-idempotency sweep --help >/dev/null
set +e
env -u DATABASE_URL npx --no-install drizzle-idempotency stats >/dev/null 2>&1; usage=$?
npx --no-install drizzle-idempotency stats --database-url postgres://nobody@127.0.0.1:1/none >/dev/null 2>&1; unreachable=$?
set -e
if [ "$usage" != 2 ] || [ "$unreachable" != 3 ]; then
  echo "packed CLI: expected exit codes 2 (no database) and 3 (unreachable), got $usage and $unreachable" >&2
  exit 1
fi
echo "package: npx drizzle-idempotency runs (--help 0, usage 2, unreachable 3)"
