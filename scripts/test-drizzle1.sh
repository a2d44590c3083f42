#!/usr/bin/env bash
# The same sources and tests against drizzle-orm 1.0 (a release candidate),
# installed apart in .data/drizzle1 (scripts/install-drizzle1.sh); the project's
# own install stays on 0.44+. Type-checks everything against 1.0, then runs the
# core, driver (and every-driver), schema/migrate, HTTP, README, OpenTelemetry
# and operations tests (stats, sweeper, inspect, evict; not sweep.test.ts,
# whose 100,000-key runs take long) with every `drizzle-orm` import resolving
# to the 1.0 copy: vitest.drizzle1.config.ts in the test processes, a tsconfig
# for tsx in the child processes they start.
# Arguments replace the list of test files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-drizzle1.sh

echo "== type check against drizzle-orm 1.0"
npx tsc --noEmit -p tsconfig.drizzle1.json

# tsx (the tests' child processes) maps imports with tsconfig paths: to the
# JavaScript of the 1.0 copy here, where the type check above wants its declarations.
runtime=.data/drizzle1/tsconfig.runtime.json
cat > "$runtime" <<'JSON'
{
  "extends": "../../tsconfig.json",
  "compilerOptions": {
    "paths": {
      "drizzle-idempotency": ["../../src/index.ts"],
      "drizzle-idempotency/*": ["../../src/*.ts"],
      "drizzle-orm": ["./node_modules/drizzle-orm/index.js"],
      "drizzle-orm/*": ["./node_modules/drizzle-orm/*.js"]
    }
  }
}
JSON

if [ $# -eq 0 ]; then
  set -- test/core test/driver test/drivers test/schema test/http test/readme test/otel test/ops/stats.test.ts test/ops/sweeper.test.ts test/ops/inspect.test.ts test/ops/evict.test.ts
fi
echo "== tests against drizzle-orm 1.0: $*"
DRIZZLE_ORM_MAJOR=1 TSX_TSCONFIG_PATH="$PWD/$runtime" npx vitest run -c vitest.drizzle1.config.ts "$@"
