#!/usr/bin/env bash
# The row, index and WAL sizes behind docs/scale-out.md ("The sweep at a billion
# keys a day"). Needs a local PostgreSQL whose pg_wal this user can read (for
# pg_waldump) and superuser rights (CHECKPOINT). Creates and drops its own
# databases. ADMIN_URL: a database to connect to for CREATE/DROP DATABASE.
set -euo pipefail
cd "$(dirname "$0")/.."
ADMIN_URL="${ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB=sweep_cost_$$
D="${ADMIN_URL%/*}/$DB"
DATA_DIR="$(psql "$ADMIN_URL" -Atc 'show data_directory')"
WALDUMP="$(ls /usr/lib/postgresql/*/bin/pg_waldump 2>/dev/null | tail -1 || command -v pg_waldump)"
psql "$ADMIN_URL" -qc "create database $DB"
trap 'psql "$ADMIN_URL" -qc "drop database if exists $DB"' EXIT
for f in migrations/0*.sql; do psql "$D" -q -f "$f"; done

FP="'sha256:' || rtrim(translate(encode(sha256(g::text::bytea), 'base64'), '+/', '-_'), '=')"
# 1M completed keys in completion order (a day of keys at 1M a day), the first 100k expired.
psql "$D" -q -c "insert into idempotency_keys (scope, key, fingerprint, status, response, created_at, completed_at, expires_at)
  select 'tenant_' || (g % 1000), gen_random_uuid()::text, $FP, 'completed',
         jsonb_build_object('status', 201, 'headers', jsonb_build_object('location', '/payments/' || g),
                            'body', jsonb_build_object('id', g, 'amount', 500, 'currency', 'eur', 'status', 'succeeded')),
         now(), now(), now() - interval '1 hour' + g * interval '86.4 ms' - (case when g <= 100000 then interval '3 hours' else interval '0' end)
  from generate_series(1, 1000000) g" -c "vacuum analyze idempotency_keys"
psql "$D" -At \
  -c "select 'bytes: heap ' || pg_relation_size('idempotency_keys') || ', primary key ' || pg_relation_size('idempotency_keys_pkey') || ', expires_at index ' || pg_relation_size('idempotency_keys_expires_at_idx')" \
  -c "select 'average row (pg_column_size): ' || avg(pg_column_size(k.*))::int || ' bytes' from idempotency_keys k"

# WAL of $2 (SQL), started right after a checkpoint; record breakdown when pg_waldump can read pg_wal.
wal() {
  psql "$D" -qc checkpoint
  local a b; a="$(psql "$D" -Atc 'select pg_current_wal_insert_lsn()')"
  psql "$D" -qc "$2" >/dev/null
  b="$(psql "$D" -Atc 'select pg_current_wal_insert_lsn()')"
  echo "== $1: $(psql "$D" -Atc "select pg_wal_lsn_diff('$b', '$a')") WAL bytes"
  [ -n "$WALDUMP" ] && "$WALDUMP" -p "$DATA_DIR/pg_wal" -s "$a" -e "$b" --stats=record 2>/dev/null | grep -E '^(Heap|Btree|Total)' || true
}
EXPIRED="expires_at <= statement_timestamp() and (locked_until is null or locked_until <= statement_timestamp())"
SWEEP="with swept as (delete from idempotency_keys where ctid = any(array(select ctid from idempotency_keys where $EXPIRED order by expires_at limit 1000 for update skip locked)) and $EXPIRED returning 1) select count(*) from swept"
wal "one sweep batch of 1000 rows (src/ops/sweep.ts deleteBatch)" "$SWEEP"
wal "1000 claims (INSERT, random UUID keys)" "insert into idempotency_keys (scope, key, fingerprint, status, expires_at) select 'tenant_' || (g % 1000), gen_random_uuid()::text, $FP, 'started', now() + interval '1 day' from generate_series(1, 1000) g"
# The store finds its row by primary key, as src/core/store.ts does (a scan for status would read the whole table).
psql "$D" -qc "create table started_keys as select scope, key from idempotency_keys where status = 'started'" -c "analyze started_keys"
wal "1000 stores (UPDATE by primary key to completed)" "set enable_hashjoin = off; set enable_mergejoin = off; update idempotency_keys k set status = 'completed', completed_at = now(), expires_at = now() + interval '1 day', response = '{\"status\": 201, \"body\": {\"id\": 1, \"amount\": 500, \"currency\": \"eur\", \"status\": \"succeeded\"}}' from started_keys s where k.scope = s.scope and k.key = s.key"
wal "100k claims, random UUID keys" "insert into idempotency_keys (scope, key, fingerprint, status, expires_at) select 'tenant_' || (g % 1000), gen_random_uuid()::text, 'sha256:x', 'started', now() + interval '1 day' from generate_series(1, 100000) g"
wal "100k claims, time-ordered keys (UUIDv7 layout)" "insert into idempotency_keys (scope, key, fingerprint, status, expires_at) select 'tenant_' || (g % 1000), lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '-' || gen_random_uuid()::text, 'sha256:x', 'started', now() + interval '1 day' from generate_series(1, 100000) g"
psql "$D" -c '\timing on' -c "$SWEEP" -c "$SWEEP" -c "$SWEEP" | grep Time
