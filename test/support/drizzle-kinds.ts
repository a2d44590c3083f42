import { entityKind } from 'drizzle-orm';

// The drizzle entity names along an object's class chain: 1.0 renamed the
// PostgreSQL base classes (PgDatabase became PgAsyncDatabase, PgTransaction
// PgAsyncTransaction), which tells which drizzle-orm made it.
export function drizzleKinds(value: object): string[] {
  const found: string[] = [];
  for (let proto: unknown = Object.getPrototypeOf(value); proto; proto = Object.getPrototypeOf(proto)) {
    const kind = (proto as { constructor?: { [entityKind]?: unknown } }).constructor?.[entityKind];
    if (typeof kind === 'string' && !found.includes(kind)) found.push(kind);
  }
  return found;
}
