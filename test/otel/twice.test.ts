import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { withIdempotency } from '../../src/index.js';
import { instrumentIdempotency } from '../../src/otel.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

class InMemoryReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
const reader = new InMemoryReader();
const meterProvider = new MeterProvider({ readers: [reader] });
afterAll(() => Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]));

async function calls(): Promise<number> {
  const { resourceMetrics } = await reader.collect();
  const metric = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'idempotency.calls');
  return (metric?.dataPoints ?? []).reduce((n, p) => n + (p.value as number), 0);
}

describe('instrumentIdempotency called more than once', () => {
  it('with the same providers (an app and a library it uses both instrument): each call is one span and one count', async () => {
    const first = instrumentIdempotency({ tracerProvider, meterProvider });
    const second = instrumentIdempotency({ tracerProvider, meterProvider });
    onTestFinished(() => [first, second].forEach((stop) => stop()));
    await withIdempotency(t.db, 'twice', async () => 1);
    expect(spans.getFinishedSpans()).toHaveLength(1);
    expect(await calls()).toBe(1);

    // Stopping one leaves the other recording; stopping it again changes nothing.
    first();
    first();
    await withIdempotency(t.db, 'twice-after-first-stop', async () => 1);
    expect(spans.getFinishedSpans()).toHaveLength(2);
    expect(await calls()).toBe(2);

    second();
    await withIdempotency(t.db, 'twice-after-both-stopped', async () => 1);
    expect(spans.getFinishedSpans()).toHaveLength(2);
    expect(await calls()).toBe(2);
  });

  it('with other providers: each records every call', async () => {
    const otherSpans = new InMemorySpanExporter();
    const other = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(otherSpans)] });
    const before = spans.getFinishedSpans().length;
    const stops = [instrumentIdempotency({ tracerProvider, meterProvider }), instrumentIdempotency({ tracerProvider: other, meterProvider })];
    onTestFinished(() => stops.forEach((stop) => stop()));
    await withIdempotency(t.db, 'two-providers', async () => 1);
    stops.forEach((stop) => stop());
    expect(spans.getFinishedSpans().length - before).toBe(1);
    expect(otherSpans.getFinishedSpans()).toHaveLength(1);
    await other.shutdown();
  });
});
