import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { metrics, SpanKind, SpanStatusCode, trace, type Attributes, type MeterProvider, type TracerProvider } from '@opentelemetry/api';
import { IDEMPOTENCY_CHANNELS, type IdempotencyCallEvent, type IdempotencySweptEvent } from '../telemetry/events.js';

/** Options of `instrumentIdempotency`. */
export interface InstrumentIdempotencyOptions {
  /** Where spans go. (Default: the global tracer provider of `@opentelemetry/api`) */
  tracerProvider?: TracerProvider;
  /** Where metrics go. (Default: the global meter provider of `@opentelemetry/api`) */
  meterProvider?: MeterProvider;
}

/** The name of the tracer and the meter. */
export const INSTRUMENTATION_NAME = 'drizzle-idempotency';

// Outcomes that mean the work failed; a refusal (in flight, key reused) is
// the library doing its job, as a 409 or 422 is not a server error.
const FAILED = new Set<string>(['rolled-back', 'failed']);

/**
 * Turns the library's diagnostics_channel events into OpenTelemetry: a span
 * per idempotent call (`idempotency.call`), a counter of calls by outcome, a
 * histogram of wait time, and a counter of swept keys. Returns the function
 * that stops it.
 *
 * @example
 * const stop = instrumentIdempotency({ tracerProvider, meterProvider });
 * process.once('SIGTERM', stop);
 */
export function instrumentIdempotency(options: InstrumentIdempotencyOptions = {}): () => void {
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_NAME);
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_NAME);
  const calls = meter.createCounter('idempotency.calls', { description: 'Idempotent calls, by outcome', unit: '{call}' });
  const waitTime = meter.createHistogram('idempotency.wait.duration', {
    description: 'From the start of a call until it held the key or had the stored answer (or failed trying)',
    unit: 's',
  });
  const callTime = meter.createHistogram('idempotency.call.duration', { description: 'Idempotent calls, start to end', unit: 's' });
  const swept = meter.createCounter('idempotency.keys.swept', { description: 'Expired keys deleted by sweeps', unit: '{key}' });

  const onCall = (message: unknown) => {
    const e = message as IdempotencyCallEvent;
    // Metrics get only low-cardinality attributes; the key and scope hashes go on the span.
    const common: Attributes = { 'idempotency.outcome': e.outcome, 'idempotency.transaction': e.transaction, 'idempotency.policy': e.policy };
    calls.add(1, common);
    waitTime.record(e.waitMs / 1000, common);
    callTime.record(e.durationMs / 1000, common);
    const span = tracer.startSpan('idempotency.call', {
      kind: SpanKind.INTERNAL,
      startTime: e.startTime,
      attributes: {
        ...common,
        'idempotency.scope_hash': e.scopeHash,
        'idempotency.key_hash': e.keyHash,
        'idempotency.wait_ms': e.waitMs,
        'idempotency.waited': e.waited,
        ...(e.error === undefined ? {} : { 'error.type': e.error }),
      },
    });
    if (FAILED.has(e.outcome)) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end(e.startTime + e.durationMs);
  };
  const onSwept = (message: unknown) => {
    const e = message as IdempotencySweptEvent;
    swept.add(e.deleted, { 'idempotency.sweep.stopped_by': e.stoppedBy });
  };

  subscribe(IDEMPOTENCY_CHANNELS.call, onCall);
  subscribe(IDEMPOTENCY_CHANNELS.swept, onSwept);
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    unsubscribe(IDEMPOTENCY_CHANNELS.call, onCall);
    unsubscribe(IDEMPOTENCY_CHANNELS.swept, onSwept);
  };
}
