import { metrics, trace } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import { withIdempotency } from '../../src/index.js';
import { instrumentIdempotency } from '../../src/otel.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

class InMemoryReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

describe('instrumentIdempotency without providers', () => {
  it('records to the global providers even when the SDK registers them after it was called', async () => {
    // The order an app easily ends up with: the instrumentation at import time, NodeSDK.start() later.
    const stop = instrumentIdempotency();
    const spans = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
    const reader = new InMemoryReader();
    const meterProvider = new MeterProvider({ readers: [reader] });
    trace.setGlobalTracerProvider(tracerProvider);
    metrics.setGlobalMeterProvider(meterProvider);
    afterAll(async () => {
      stop();
      trace.disable();
      metrics.disable();
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    });

    await withIdempotency(t.db, 'global-late', async () => 1);
    expect(spans.getFinishedSpans().map((s) => s.name)).toEqual(['idempotency.call']);
    const { resourceMetrics } = await reader.collect();
    const calls = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === 'idempotency.calls');
    expect(calls?.dataPoints.map((p) => p.value)).toEqual([1]);
  });
});
