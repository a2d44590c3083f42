import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { diag, metrics, SpanKind, SpanStatusCode, trace, type Attributes, type MeterProvider, type TracerProvider } from '@opentelemetry/api';
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
 * that stops it. Called again with the same providers, it records nothing
 * twice: the calls share one subscription, which ends when each has stopped.
 *
 * @example
 * const stop = instrumentIdempotency({ tracerProvider, meterProvider });
 * process.once('SIGTERM', stop);
 */
export function instrumentIdempotency(options: InstrumentIdempotencyOptions = {}): () => void {
  const tracerProvider = options.tracerProvider ?? trace.getTracerProvider();
  // Instrumented already for these providers (an app and a library it uses,
  // a hot reload): share that subscription, or every call would count twice.
  const registry = active();
  const meterKey = options.meterProvider ?? registry.globalMeter;
  let byMeter = registry.byTracer.get(tracerProvider);
  if (!byMeter) registry.byTracer.set(tracerProvider, (byMeter = new WeakMap()));
  const entries = byMeter;
  let shared = entries.get(meterKey);
  if (!shared) {
    const unsubscribe = subscribeProviders(tracerProvider, options.meterProvider);
    const entry: Active = {
      users: 0,
      release: () => {
        if (--entry.users > 0) return;
        if (entries.get(meterKey) === entry) entries.delete(meterKey);
        unsubscribe();
      },
    };
    entries.set(meterKey, (shared = entry));
  }
  shared.users++;
  let stopped = false;
  const release = shared.release;
  return () => {
    if (stopped) return;
    stopped = true;
    release();
  };
}

/** A subscription alive, and how many callers of `instrumentIdempotency` share it. */
interface Active {
  users: number;
  release(): void;
}
interface Registry {
  byTracer: WeakMap<TracerProvider, WeakMap<object, Active>>;
  /** Stands for "the global meter provider, whichever it is when a call ends". */
  globalMeter: object;
}
// On globalThis: one registry per process even if this module is loaded twice.
const ACTIVE = Symbol.for('drizzle-idempotency/otel:active');
function active(): Registry {
  const global = globalThis as { [ACTIVE]?: Registry };
  return (global[ACTIVE] ??= { byTracer: new WeakMap(), globalMeter: {} });
}

/** The instruments, made once per meter provider. */
function instrumentsOf(provider: MeterProvider) {
  const meter = provider.getMeter(INSTRUMENTATION_NAME);
  return {
    calls: meter.createCounter('idempotency.calls', { description: 'Idempotent calls, by outcome', unit: '{call}' }),
    waitTime: meter.createHistogram('idempotency.wait.duration', {
      description: 'From the start of a call until it held the key or had the stored answer (or failed trying)',
      unit: 's',
    }),
    callTime: meter.createHistogram('idempotency.call.duration', { description: 'Idempotent calls, start to end', unit: 's' }),
    swept: meter.createCounter('idempotency.keys.swept', { description: 'Expired keys deleted by sweeps', unit: '{key}' }),
  };
}

/**
 * Subscribes to the events. Without a meter provider, the global one is looked
 * up at each event, not once: the API has no proxy for meters (as it has for
 * tracers), so one taken before the SDK registers its own would stay a no-op.
 */
function subscribeProviders(tracerProvider: TracerProvider, meterProvider: MeterProvider | undefined): () => void {
  const tracer = tracerProvider.getTracer(INSTRUMENTATION_NAME);
  let provider: MeterProvider | undefined;
  let instruments: ReturnType<typeof instrumentsOf> | undefined;
  const meter = () => {
    const current = meterProvider ?? metrics.getMeterProvider();
    if (current !== provider || !instruments) {
      provider = current;
      instruments = instrumentsOf(current);
    }
    return instruments;
  };

  const onCall = guarded((message: unknown) => {
    const e = message as IdempotencyCallEvent;
    // Metrics get only low-cardinality attributes; the key and scope hashes go on the span.
    const common: Attributes = { 'idempotency.outcome': e.outcome, 'idempotency.transaction': e.transaction, 'idempotency.policy': e.policy };
    const { calls, waitTime, callTime } = meter();
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
  });
  const onSwept = guarded((message: unknown) => {
    const e = message as IdempotencySweptEvent;
    meter().swept.add(e.deleted, { 'idempotency.sweep.stopped_by': e.stoppedBy });
  });

  subscribe(IDEMPOTENCY_CHANNELS.call, onCall);
  subscribe(IDEMPOTENCY_CHANNELS.swept, onSwept);
  return () => {
    unsubscribe(IDEMPOTENCY_CHANNELS.call, onCall);
    unsubscribe(IDEMPOTENCY_CHANNELS.swept, onSwept);
  };
}

/**
 * A listener that never throws: diagnostics_channel turns a listener's error
 * into an uncaught exception, and a span processor or exporter with a bug must
 * not bring the application down. Its errors go to OpenTelemetry's diag logger.
 */
function guarded(listener: (message: unknown) => void): (message: unknown) => void {
  return (message) => {
    try {
      listener(message);
    } catch (error) {
      diag.error(`${INSTRUMENTATION_NAME}: recording an event failed`, error);
    }
  };
}
