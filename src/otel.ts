export { instrumentIdempotency, INSTRUMENTATION_NAME } from './otel/instrument.js';
export type { InstrumentIdempotencyOptions } from './otel/instrument.js';
export { IDEMPOTENCY_CHANNELS } from './telemetry/events.js';
export type { IdempotencyCallEvent, IdempotencyCallOutcome } from './telemetry/events.js';
