#!/usr/bin/env bash
# Builds, packs, installs the tarball into an empty project with its peers, and
# type-checks and runs an import of every public entry point from there, then
# runs the packed CLI through npx, loads the package from CommonJS (JavaScript,
# and TypeScript with node10 and nodenext resolution, as the README says), and takes
# the README's drizzle-kit path (generate, migrate) against databases of its
# own on DATABASE_URL's server (default: the local PostgreSQL, as in .ci/run).
# Then the same tarball in a second project on drizzle-orm and drizzle-kit 1.0
# (release candidates, scripts/drizzle1-versions.sh): installed without
# --force, run, type-checked, and the README's migration paths 2 and 3 taken.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/drizzle1-versions.sh
npm run build >/dev/null
root=$(pwd)
server_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
work=$(mktemp -d)
databases=()
cleanup() {
  if [ ${#databases[@]} -gt 0 ]; then
    (cd "$root" && node scripts/pg-databases.mjs drop "$server_url" "${databases[@]}") || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
tarball=$(npm pack --silent --pack-destination "$work" | tail -n 1)
cd "$work"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --prefer-offline "./$tarball" drizzle-orm pg express pg-boss@^10 fastify@5 hono drizzle-kit@~0.31 @opentelemetry/api @opentelemetry/sdk-trace-base @opentelemetry/sdk-metrics @types/pg @types/express @types/node@20 typescript@~5.9 >/dev/null
cat > check.ts <<'TS'
import { withIdempotency, idempotencyKeys, migrate, migrationsFolder, IdempotencyKeyInvalidError, sweepExpiredKeys, startSweeper, idempotencyStats } from 'drizzle-idempotency';
import { idempotent, parseIdempotencyKey, type IdempotentRouteOptions } from 'drizzle-idempotency/express';
import { fetchWithRetry, FetchRetryError, type RetriedResponse } from 'drizzle-idempotency/client';
import { instrumentIdempotency, type InstrumentIdempotencyOptions } from 'drizzle-idempotency/otel';
const stop: () => void = instrumentIdempotency({} satisfies InstrumentIdempotencyOptions);
stop();
import { idempotent as fastifyIdempotent, type IdempotentRouteOptions as FastifyRouteOptions } from 'drizzle-idempotency/fastify';
import { idempotent as webIdempotent, type IdempotentWebRequest } from 'drizzle-idempotency/web';
const options: IdempotentRouteOptions = { scope: 'single-tenant', onInFlight: 'reject' };
const fastifyOptions: FastifyRouteOptions = { scope: (req) => req.hostname, expiryHeader: true };
const webScope = (req: IdempotentWebRequest): string => req.request.headers.get('x-customer') ?? 'anonymous';
const call: (url: string) => Promise<RetriedResponse> = (url) => fetchWithRetry(url, { method: 'POST' });
const entries: unknown[] = [withIdempotency, idempotencyKeys, migrate, IdempotencyKeyInvalidError, sweepExpiredKeys, startSweeper, idempotencyStats, idempotent, parseIdempotencyKey, FetchRetryError, call, options, fastifyIdempotent, fastifyOptions, webIdempotent, webScope];
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
node --input-type=module -e "
import * as lib from 'drizzle-idempotency';
import { existsSync } from 'node:fs';
import * as http from 'drizzle-idempotency/express';
import * as client from 'drizzle-idempotency/client';
import * as otel from 'drizzle-idempotency/otel';
import * as fastify from 'drizzle-idempotency/fastify';
import * as web from 'drizzle-idempotency/web';
for (const name of ['withIdempotency', 'idempotencyKeys', 'migrate', 'sweepExpiredKeys', 'startSweeper', 'idempotencyStats']) if (!lib[name]) throw new Error('missing export ' + name);
for (const name of ['idempotent', 'idempotentWorkflow', 'parseIdempotencyKey']) if (!http[name]) throw new Error('missing express export ' + name);
for (const name of ['fetchWithRetry', 'FetchRetryError']) if (!client[name]) throw new Error('missing client export ' + name);
for (const entry of [fastify, web]) for (const name of ['idempotent', 'idempotentWorkflow', 'requestFingerprint', 'EXPIRES_HEADER']) if (!entry[name]) throw new Error('missing adapter export ' + name);
if ('idempotent' in lib) throw new Error('the core entry must not pull in express');
if (typeof otel.instrumentIdempotency !== 'function') throw new Error('missing otel export instrumentIdempotency');
if ('instrumentIdempotency' in lib) throw new Error('the core entry must not pull in OpenTelemetry');
const messages = await import('drizzle-idempotency/messages');
const boss = await import('drizzle-idempotency/pg-boss');
for (const name of ['consumeOnce', 'idempotentHandler', 'downstreamKey']) if (!messages[name]) throw new Error('missing messages export ' + name);
for (const name of ['sendInTransaction', 'executeSqlOn', 'idempotentJobHandler']) if (!boss[name]) throw new Error('missing pg-boss export ' + name);
if (!existsSync(lib.migrationsFolder + '/meta/_journal.json')) throw new Error('migrations not packed');
console.log('package: installs, imports and type-checks');
"

# The core never loads the optional OpenTelemetry peer: its entries load with @opentelemetry/api gone.
mv node_modules/@opentelemetry/api otel-api-aside
node --input-type=module -e "
await import('drizzle-idempotency');
await import('drizzle-idempotency/express');
await import('drizzle-idempotency/otel').then(() => { throw new Error('the otel entry loaded without @opentelemetry/api?'); }, () => {});
console.log('package: the core and express entries load without @opentelemetry/api');
"
mv otel-api-aside node_modules/@opentelemetry/api

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

# CommonJS: the table entry has a CommonJS build (drizzle-kit require()s schema
# files); the rest is ESM, which Node 20.19+ can require(): one module instance,
# so errors are instanceof the same classes whichever way they were loaded.
cat > check-cjs.cjs <<'JS'
const assert = require('node:assert/strict');
const schema = require('drizzle-idempotency/schema');
assert.match(require.resolve('drizzle-idempotency/schema'), /dist\/cjs\/schema\.js$/);
(async () => {
  const esm = await import('drizzle-idempotency');
  const { is, getTableName } = await import('drizzle-orm');
  const { PgTable, getTableConfig } = await import('drizzle-orm/pg-core');
  // The CommonJS table and the ESM one describe the same table to drizzle.
  assert.ok(is(schema.idempotencyKeys, PgTable));
  assert.equal(getTableName(schema.idempotencyKeys), getTableName(esm.idempotencyKeys));
  const columns = (t) => getTableConfig(t).columns.map((c) => [c.name, c.getSQLType(), c.notNull]);
  assert.deepEqual(columns(schema.idempotencyKeys), columns(esm.idempotencyKeys));
  assert.equal(getTableConfig(schema.idempotencyKeysIn('billing')).schema, 'billing');
  // From ESM, the schema entry is the main entry's own table, not a copy.
  assert.equal((await import('drizzle-idempotency/schema')).idempotencyKeys, esm.idempotencyKeys);
  if (process.features.require_module) {
    const lib = require('drizzle-idempotency');
    assert.equal(lib.IdempotencyError, esm.IdempotencyError);
    assert.equal(require('drizzle-idempotency/express').idempotent, (await import('drizzle-idempotency/express')).idempotent);
    assert.equal(typeof require('drizzle-idempotency/client').fetchWithRetry, 'function');
    const thrown = await esm.withIdempotency({}, '', async () => 1).catch((e) => e);
    assert.ok(thrown instanceof lib.IdempotencyKeyInvalidError && thrown instanceof lib.IdempotencyError);
  } else {
    assert.throws(() => require('drizzle-idempotency'), { code: 'ERR_REQUIRE_ESM' });
  }
  console.log('package: drizzle-idempotency/schema loads from CommonJS' + (process.features.require_module ? '; require() of the ESM entries gives the same classes' : ''));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
JS
node check-cjs.cjs

# CommonJS TypeScript, as the README's Install section says it works. In a
# CommonJS package (module nodenext): the schema entry's CommonJS types mix
# with drizzle's CommonJS ones (a drizzle-kit schema file); the runtime API,
# with a drizzle db, type-checks from an ES module file (.mts); from a
# CommonJS file it does not, since drizzle's CommonJS and ES module
# declarations do not mix. Checked in the compiler run below.
mkdir -p cjs
echo '{ "type": "commonjs" }' > cjs/package.json
cat > cjs/schema.ts <<'TS'
// A CommonJS drizzle-kit schema file, and a query on its table with drizzle's CommonJS build.
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { idempotencyKeys, idempotencyKeysIn, type IdempotencyKeyStatus } from 'drizzle-idempotency/schema';
export { idempotencyKeys };
export const billingKeys = idempotencyKeysIn('billing');
const status: IdempotencyKeyStatus = 'completed';
export const completedKeys = (url: string) => drizzle(url).select().from(idempotencyKeys).where(eq(idempotencyKeys.status, status));
TS
cat > cjs/service.mts <<'TS'
// The runtime API with a drizzle db, from an ES module file of the CommonJS package.
import { drizzle } from 'drizzle-orm/node-postgres';
import { withIdempotency, type Jsonified } from 'drizzle-idempotency';
import { idempotencyKeys } from 'drizzle-idempotency/schema';
const db = drizzle(process.env.DATABASE_URL!);
export const charge = (key: string) => withIdempotency(db, key, async (tx) => ({ at: new Date(), keys: (await tx.select().from(idempotencyKeys)).length }));
export const at = async (key: string): Promise<string> => (await charge(key)).at;
export const stored: Jsonified<{ at: Date }> = { at: new Date(0).toISOString() };
TS
cat > cjs/service-here.ts <<'TS'
// The same from a CommonJS file: TypeScript 5.8+ compiles the import, but not the call.
import { drizzle } from 'drizzle-orm/node-postgres';
import { withIdempotency } from 'drizzle-idempotency';
const db = drizzle(process.env.DATABASE_URL!);
// @ts-expect-error TS2345, as the README's Install section says. If this compiles, drizzle's declarations mix now: update the README.
export const charge = (key: string) => withIdempotency(db, key, async () => 1);
TS

# TypeScript's classic CommonJS set-up (module commonjs, resolution node10):
# every entry has types (typesVersions), a drizzle db type-checks against them,
# and the compiled require()s run against PostgreSQL (Node 20.19+ loads the ESM build).
mkdir -p node10
echo '{ "type": "commonjs" }' > node10/package.json
cat > node10/app.ts <<'TS'
import assert from 'node:assert/strict';
import { drizzle } from 'drizzle-orm/node-postgres';
import { IdempotencyKeyReusedError, migrate, withIdempotency } from 'drizzle-idempotency';
import { idempotencyKeys, type IdempotencyKeyStatus } from 'drizzle-idempotency/schema';
import { idempotent, type IdempotentRouteOptions } from 'drizzle-idempotency/express';
import { idempotent as webIdempotent } from 'drizzle-idempotency/web';
import type { IdempotentRouteOptions as FastifyRouteOptions } from 'drizzle-idempotency/fastify';
import { fetchWithRetry, type RetriedResponse } from 'drizzle-idempotency/client';

const options: IdempotentRouteOptions = { scope: 'single-tenant' };
const fastifyOptions: FastifyRouteOptions = { scope: 'single-tenant', expiryHeader: true };
const call: (url: string) => Promise<RetriedResponse> = (url) => fetchWithRetry(url, { method: 'POST' });

async function main(url: string) {
  const db = drizzle(url);
  await migrate(db);
  let runs = 0;
  const charge = (amount: number) =>
    withIdempotency(db, 'cjs-key', async (tx) => ({ run: ++runs, keys: (await tx.select().from(idempotencyKeys)).length, at: new Date(0) }), {
      scope: 'alice',
      fingerprint: { amount },
    });
  const first = await charge(1);
  const at: string = first.at;
  assert.deepEqual([first, await charge(1)], [{ run: 1, keys: 1, at }, { run: 1, keys: 1, at: '1970-01-01T00:00:00.000Z' }]);
  await assert.rejects(charge(2), IdempotencyKeyReusedError);
  const status: IdempotencyKeyStatus = 'completed';
  assert.equal((await db.select().from(idempotencyKeys))[0]?.status, status);
  assert.ok(typeof idempotent === 'function' && typeof webIdempotent === 'function' && typeof call === 'function' && options.scope && fastifyOptions.scope);
  await db.$client.end();
}
main(process.argv[2]!).then(
  () => console.log('package: from a CommonJS TypeScript project (module commonjs, node10): types of every entry, a drizzle db, run against PostgreSQL'),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
TS
databases+=("pkgcheck_$$_cjs")
cjs_url=$(cd "$root" && node scripts/pg-databases.mjs create "$server_url" "pkgcheck_$$_cjs")
npx tsc --strict --esModuleInterop --skipLibCheck --types node --target es2022 --module commonjs --moduleResolution node10 --outDir node10/out node10/app.ts
node node10/out/app.js "$cjs_url"

# Every TypeScript example of the README, with its prelude, type-checked in a
# strict project against the installed package, as a new user would copy them;
# in the same compiler run (one start-up), the ESM and CommonJS samples above.
(cd "$root" && npx --no-install tsx scripts/readme-examples.ts write "$work/readme")
npx tsc --noEmit --strict --noUncheckedIndexedAccess --target es2022 --module nodenext --moduleResolution nodenext --skipLibCheck --types node \
  check.ts cjs/*.ts cjs/*.mts readme/*.ts
echo "package: the README's TypeScript examples and the ESM and CommonJS samples type-check against the installed package"

# The README's migration path 3, as written there: a schema file that re-exports
# the table, `drizzle-kit generate`, `drizzle-kit migrate`, then the library on
# that table; migrate() refuses it. Once for the public schema, once for a named one.
kit_path() {
  local example=$1 schema=$2 tag=${3:-}
  local database="pkgcheck_$$_${tag}${schema}"
  local url
  url=$(cd "$root" && node scripts/pg-databases.mjs create "$server_url" "$database")
  mkdir -p "$example/src/db"
  (cd "$root" && npx --no-install tsx scripts/readme-examples.ts print "$example") > "$example/src/db/schema.ts"
  cat > "$example/drizzle.config.ts" <<TS
import { defineConfig } from 'drizzle-kit';
export default defineConfig({ dialect: 'postgresql', schema: './src/db/schema.ts', out: './drizzle', dbCredentials: { url: '$url' } });
TS
  # drizzle-kit can exit 0 without generating anything (a schema file it could
  # not load), and print nothing but a spinner when a migration fails: check
  # what it made, and show its output when it did not.
  # drizzle-kit 0.31 writes drizzle/<tag>.sql, 1.0 drizzle/<timestamp>_<name>/migration.sql.
  if ! (cd "$example" && npx --no-install drizzle-kit generate && { compgen -G 'drizzle/*.sql' || compgen -G 'drizzle/*/migration.sql'; } && npx --no-install drizzle-kit migrate) > "$example.log" 2>&1; then
    cat "$example.log" >&2
    echo "package: drizzle-kit generate + migrate failed with the README's $example block" >&2
    exit 1
  fi
  node --input-type=module - "$url" "$schema" <<'JS'
import assert from 'node:assert/strict';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate, withIdempotency, IdempotencyMigrationConflictError } from 'drizzle-idempotency';
const [url, schemaName] = process.argv.slice(2);
const db = drizzle(url);
const schema = schemaName === 'public' ? undefined : schemaName;
const { rows } = await db.$client.query(`select to_regclass($1) is not null as made`, [`${schemaName}.idempotency_keys`]);
assert.equal(rows[0].made, true, `drizzle-kit migrate did not create ${schemaName}.idempotency_keys`);
let runs = 0;
const once = () => withIdempotency(db, 'kit-key', async () => ({ run: ++runs }), { scope: 'alice', schema });
assert.deepEqual([await once(), await once()], [{ run: 1 }, { run: 1 }]);
await assert.rejects(migrate(db, { schema }), IdempotencyMigrationConflictError);
await db.$client.end();
JS
  echo "package: drizzle-kit $(node -p "require('./node_modules/drizzle-kit/package.json').version") generate + migrate with the README's $example block, then withIdempotency on $schema.idempotency_keys"
}
# Side by side: each has its own folder and database. Databases are named up front, for cleanup.
databases+=("pkgcheck_$$_public" "pkgcheck_$$_billing")
kit_path drizzle-kit-schema public & public=$!
kit_path drizzle-kit-schema-billing billing & billing=$!
wait "$public"
wait "$billing"

# drizzle-orm 1.0: a project of its own next to the first, with the 1.0
# release candidates of drizzle-orm and drizzle-kit. A plain install (no
# --force, no --legacy-peer-deps) shows that the peer range takes them.
mkdir -p "$work/d1"
cd "$work/d1"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --prefer-offline "../$tarball" "drizzle-orm@$DRIZZLE1_ORM_VERSION" "drizzle-kit@$DRIZZLE1_KIT_VERSION" pg express @types/pg @types/express @types/node@20 typescript@~5.9 >/dev/null
installed=$(node -p "require('./node_modules/drizzle-orm/package.json').version")
[ "$installed" = "$DRIZZLE1_ORM_VERSION" ] || { echo "package: expected drizzle-orm $DRIZZLE1_ORM_VERSION, got $installed" >&2; exit 1; }
echo "package: installs with drizzle-orm $installed and drizzle-kit $DRIZZLE1_KIT_VERSION, no --force"
# And refuses what it does not cover: older releases, and release candidates
# before the one tested (a dry run, in an empty project of its own).
mkdir -p "$work/range"
echo '{ "name": "range", "private": true }' > "$work/range/package.json"
for refused in 0.43.1 1.0.0-rc.4; do
  if (cd "$work/range" && npm install --dry-run --loglevel=error --no-audit --no-fund --prefer-offline "../$tarball" "drizzle-orm@$refused") > "refused-$refused.log" 2>&1 ||
    ! grep -q 'Could not resolve dependency' "refused-$refused.log"; then
    cat "refused-$refused.log" >&2
    echo "package: npm install with drizzle-orm@$refused should fail on the peer range (ERESOLVE)" >&2
    exit 1
  fi
done
echo "package: the peer range refuses drizzle-orm 0.43.1 and 1.0.0-rc.4"

# The README's examples and the ESM sample, type-checked against 1.0.
(cd "$root" && npx --no-install tsx scripts/readme-examples.ts write "$work/d1/readme")
cp ../check.ts .
npx tsc --noEmit --strict --noUncheckedIndexedAccess --target es2022 --module nodenext --moduleResolution nodenext --skipLibCheck --types node check.ts readme/*.ts
echo "package: the README's TypeScript examples type-check against drizzle-orm $installed"

# Run on 1.0: replay, a transaction of the caller's, path 2 with the folder in
# drizzle-kit 1.0's layout (and the old one refused by 1.0's migrator), then
# migrate() refusing the table it did not create.
databases+=("pkgcheck_$$_d1run")
d1_url=$(cd "$root" && node scripts/pg-databases.mjs create "$server_url" "pkgcheck_$$_d1run")
node --input-type=module - "$d1_url" <<'JS'
import assert from 'node:assert/strict';
import { drizzle } from 'drizzle-orm/node-postgres';
import { migrate as drizzleMigrate } from 'drizzle-orm/node-postgres/migrator';
import { IdempotencyMigrationConflictError, migrationsFolder, migrationsFolderForDrizzle1, withIdempotency } from 'drizzle-idempotency';
const db = drizzle(process.argv[2]);
const config = { migrationsTable: '__idempotency_migrations' };
await assert.rejects(drizzleMigrate(db, { ...config, migrationsFolder }), /old drizzle-kit migration folders/);
await drizzleMigrate(db, { ...config, migrationsFolder: migrationsFolderForDrizzle1 });
let runs = 0;
const charge = (on) => withIdempotency(on, 'd1-key', async () => ({ run: ++runs }), { scope: 'alice', fingerprint: { amount: 1 } });
assert.deepEqual(await charge(db), { run: 1 });
assert.deepEqual(await db.transaction((tx) => charge(tx)), { run: 1 });
assert.deepEqual(await db.transaction((tx) => withIdempotency(tx, 'd1-in-tx', async () => ++runs)), 2);
const { migrate } = await import('drizzle-idempotency');
await assert.rejects(migrate(db), IdempotencyMigrationConflictError);
await db.$client.end();
JS
echo "package: runs on drizzle-orm $installed (replay, the caller's transaction, migrationsFolderForDrizzle1 with 1.0's migrator)"

# Path 3 with drizzle-kit 1.0, public and named schema.
databases+=("pkgcheck_$$_d1public" "pkgcheck_$$_d1billing")
kit_path drizzle-kit-schema public d1 & public=$!
kit_path drizzle-kit-schema-billing billing d1 & billing=$!
wait "$public"
wait "$billing"
