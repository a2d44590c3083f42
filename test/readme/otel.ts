// Declarations the README's OpenTelemetry example assumes: the app's database
// and `charges` table, and the providers of its OpenTelemetry SDK. These keep
// spans and metrics in memory, for the test to read; yours export them.
import { drizzle } from 'drizzle-orm/node-postgres';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';

export { charges } from './schema.js';
export const db = drizzle({ client: new pg.Pool({ connectionString: process.env.DATABASE_URL }) });

export const spans = new InMemorySpanExporter();
export const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });

class InMemoryReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}
export const metricReader = new InMemoryReader();
export const meterProvider = new MeterProvider({ readers: [metricReader] });
