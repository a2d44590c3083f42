import { MeterProvider, MetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SpanStatusCode } from '@opentelemetry/api';
import { afterAll, describe, expect, it } from 'vitest';
import { IdempotencyInFlightError, IdempotencyKeyReusedError, sweepExpiredKeys, telemetryHash, withIdempotency } from '../../src/index.js';
import { instrumentIdempotency } from '../../src/otel.js';
import { testDatabase } from '../support/db.js';
import { count, createBusinessTables, deferred, insertCharge } from '../support/fixtures.js';

const t = await testDatabase();
await createBusinessTables(t.pool);

/** A reader that exports nothing by itself: the test collects when it wants to look. */
class InMemoryReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const reader = new InMemoryReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const stop = instrumentIdempotency({ tracerProvider, meterProvider });
afterAll(async () => {
  stop();
  await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
});

/** The data points of one metric, by the outcome attribute. */
async function points(name: string) {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
  return (metric?.dataPoints ?? []) as DataPoint<number | Histogram>[];
}
const byOutcome = (dataPoints: DataPoint<number | Histogram>[], value: (p: DataPoint<number | Histogram>) => number) =>
  Object.fromEntries(dataPoints.map((p) => [p.attributes['idempotency.outcome'], value(p)]));

const scope = 'tenant-secret';
const charge = (key: string) => (tx: Parameters<typeof insertCharge>[0]) => insertCharge(tx, key, 100);

describe('instrumentIdempotency', () => {
  it('makes one span per call, with its outcome, hashes and wait time, and counts outcomes', async () => {
    await withIdempotency(t.db, 'otel-1', charge('otel-1'), { scope, fingerprint: 'a' });
    await withIdempotency(t.db, 'otel-1', charge('otel-1'), { scope, fingerprint: 'a' });
    await expect(withIdempotency(t.db, 'otel-1', charge('otel-1'), { scope, fingerprint: 'b' })).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
    await expect(
      withIdempotency(t.db, 'otel-2', async () => {
        throw new TypeError('boom');
      }, { scope }),
    ).rejects.toBeInstanceOf(TypeError);
    // A duplicate rejected while the first holds the key.
    const entered = deferred();
    const gate = deferred();
    const first = withIdempotency(t.db, 'otel-3', async (tx) => {
      entered.resolve();
      await gate.promise;
      return charge('otel-3')(tx);
    }, { scope });
    await entered.promise;
    await expect(withIdempotency(t.db, 'otel-3', charge('otel-3'), { scope, onInFlight: 'reject' })).rejects.toBeInstanceOf(IdempotencyInFlightError);
    gate.resolve();
    await first;

    const finished = spans.getFinishedSpans();
    expect(finished.map((s) => [s.name, s.attributes['idempotency.outcome']])).toEqual([
      ['idempotency.call', 'executed'],
      ['idempotency.call', 'replayed'],
      ['idempotency.call', 'key-reused'],
      ['idempotency.call', 'rolled-back'],
      ['idempotency.call', 'in-flight'],
      ['idempotency.call', 'executed'],
    ]);
    expect(finished[0]!.attributes).toEqual({
      'idempotency.outcome': 'executed',
      'idempotency.transaction': 'own',
      'idempotency.policy': 'wait',
      'idempotency.scope_hash': telemetryHash(scope),
      'idempotency.key_hash': telemetryHash('otel-1'),
      'idempotency.wait_ms': expect.any(Number),
      'idempotency.waited': false,
    });
    expect(finished[2]!.attributes['error.type']).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(finished[3]!.attributes['error.type']).toBe('TypeError');
    expect(finished[4]!.attributes).toMatchObject({ 'idempotency.policy': 'reject', 'error.type': 'IDEMPOTENCY_IN_FLIGHT' });
    expect(finished.map((s) => s.status.code)).toEqual([
      SpanStatusCode.UNSET,
      SpanStatusCode.UNSET,
      SpanStatusCode.UNSET,
      SpanStatusCode.ERROR,
      SpanStatusCode.UNSET,
      SpanStatusCode.UNSET,
    ]);
    for (const span of finished) {
      const [startS, startNs] = span.startTime;
      const [endS, endNs] = span.endTime;
      expect(endS * 1e9 + endNs).toBeGreaterThanOrEqual(startS * 1e9 + startNs);
      expect((span.attributes['idempotency.wait_ms'] as number) * 1e6).toBeLessThanOrEqual((endS - startS) * 1e9 + (endNs - startNs) + 1e6);
    }
    expect(JSON.stringify(finished.map((s) => s.attributes))).not.toMatch(/tenant-secret|otel-1/);

    expect(byOutcome(await points('idempotency.calls'), (p) => p.value as number)).toEqual({
      executed: 2,
      replayed: 1,
      'key-reused': 1,
      'rolled-back': 1,
      'in-flight': 1,
    });
    const waits = await points('idempotency.wait.duration');
    expect(byOutcome(waits, (p) => (p.value as Histogram).count)).toEqual({ executed: 2, replayed: 1, 'key-reused': 1, 'rolled-back': 1, 'in-flight': 1 });
    for (const p of waits) expect((p.value as Histogram).sum).toBeGreaterThanOrEqual(0);
    expect(byOutcome(await points('idempotency.call.duration'), (p) => (p.value as Histogram).count)).toMatchObject({ executed: 2 });
    // The audit: one charge per key that ran, none for the one that threw.
    expect(await count(t.pool, 'charges', `ref in ('otel-1', 'otel-3')`)).toBe(2);
    expect(await count(t.pool, 'idempotency_keys', `key = 'otel-2'`)).toBe(0);
  });

  it('counts swept keys', async () => {
    await t.pool.query(`insert into idempotency_keys (scope, key, status, expires_at)
      select 'swept', 'k' || i, 'completed', now() - interval '1 minute' from generate_series(1, 7) as i`);
    await sweepExpiredKeys(t.db);
    const [swept] = await points('idempotency.keys.swept');
    expect(swept).toMatchObject({ value: 7, attributes: { 'idempotency.sweep.stopped_by': 'drained' } });
  });

  it('stops when told: no span and no count for later calls', async () => {
    const spansBefore = spans.getFinishedSpans().length;
    const callsBefore = (await points('idempotency.calls')).reduce((n, p) => n + (p.value as number), 0);
    const other = instrumentIdempotency({ tracerProvider, meterProvider });
    other();
    other(); // a second stop is harmless
    stop();
    await withIdempotency(t.db, 'otel-after', async () => 1, { scope });
    expect(spans.getFinishedSpans().length).toBe(spansBefore);
    expect((await points('idempotency.calls')).reduce((n, p) => n + (p.value as number), 0)).toBe(callsBefore);
  });
});
