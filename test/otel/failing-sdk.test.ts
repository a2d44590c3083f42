import { diag, DiagLogLevel, type DiagLogger } from '@opentelemetry/api';
import { BasicTracerProvider, type ReadableSpan, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterAll, describe, expect, it } from 'vitest';
import { withIdempotencyOutcome } from '../../src/index.js';
import { instrumentIdempotency } from '../../src/otel.js';
import { testDatabase } from '../support/db.js';

const t = await testDatabase();

/** A span processor with a bug: it throws on every span that ends. */
class ThrowingProcessor implements SpanProcessor {
  onStart(): void {}
  onEnd(_span: ReadableSpan): void {
    throw new Error('exporter bug');
  }
  async forceFlush(): Promise<void> {}
  async shutdown(): Promise<void> {}
}

describe('an OpenTelemetry SDK that throws', () => {
  it('never reaches the application: the call answers, nothing is thrown uncaught, and the error goes to the OpenTelemetry diag logger', async () => {
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new ThrowingProcessor()] });
    const meterProvider = new MeterProvider();
    const stop = instrumentIdempotency({ tracerProvider, meterProvider });
    const logged: unknown[] = [];
    const logger = { error: (...args: unknown[]) => logged.push(args), warn() {}, info() {}, debug() {}, verbose() {} } as DiagLogger;
    diag.setLogger(logger, DiagLogLevel.ERROR);
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.prependListener('uncaughtException', onUncaught);
    afterAll(async () => {
      stop();
      diag.disable();
      process.off('uncaughtException', onUncaught);
      await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
    });

    expect(await withIdempotencyOutcome(t.db, 'sdk-bug', async () => 'answer')).toEqual({ value: 'answer', replayed: false });
    await new Promise((resolve) => setTimeout(resolve, 50)); // diagnostics_channel rethrows a listener's error on the next tick
    expect(uncaught).toEqual([]);
    expect(logged.length).toBe(1);
  });
});
