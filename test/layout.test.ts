import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The architecture as the tree shows it: each folder of src/ may import only
// the folders listed for it (imports go downwards), and the entry files may
// import only what their subpath export is about.
const SRC = fileURLToPath(new URL('../src/', import.meta.url));

const MAY_IMPORT: Record<string, readonly string[]> = {
  shared: [],
  // Publishing on node:diagnostics_channel: below core, so that core and ops may publish.
  telemetry: ['shared'],
  driver: ['shared'],
  schema: ['shared', 'driver'],
  core: ['shared', 'driver', 'schema', 'telemetry'],
  ops: ['shared', 'driver', 'schema', 'core', 'telemetry'],
  // Leased workflows: work outside one transaction, on the core's key rows.
  leased: ['shared', 'driver', 'schema', 'core'],
  http: ['shared', 'driver', 'schema', 'core', 'leased'],
  cli: ['shared', 'driver', 'schema', 'core', 'ops', 'leased'],
  client: ['shared'],
  // The OpenTelemetry integration: a subscriber to the telemetry channels.
  otel: ['shared', 'telemetry'],
  messages: ['shared', 'driver', 'schema', 'core'],
  'pg-boss': ['shared', 'driver', 'core', 'messages'],
  // Entry files of the package's subpath exports (src/<name>.ts).
  'index.ts': ['shared', 'driver', 'schema', 'core', 'ops', 'telemetry', 'leased'],
  'schema.ts': ['schema'],
  'express.ts': ['shared', 'http'],
  'fastify.ts': ['shared', 'http'],
  'web.ts': ['shared', 'http'],
  'client.ts': ['shared', 'client'],
  'otel.ts': ['telemetry', 'otel'],
  // downstreamKey lives in shared/: leased workflows derive theirs with it too.
  'messages.ts': ['messages', 'shared'],
  'pg-boss.ts': ['pg-boss'],
};

// Packages a part (or a folder of it) may load at run time: optional peers
// stay behind the part that needs them, so importing the core never loads a
// framework, and each framework stays in its own adapter.
const MAY_LOAD: Record<string, readonly string[]> = {
  'http/express': ['express'],
  'http/fastify': ['fastify'],
  driver: ['drizzle-orm/node-postgres'],
  cli: ['pg', 'drizzle-orm/node-postgres'],
  otel: ['@opentelemetry/api'],
};

// Where each framework may be named at all, types included: the rest of
// http/ is the framework-neutral core the adapters share.
const FRAMEWORKS: Record<string, string> = { express: 'http/express/', fastify: 'http/fastify/', hono: 'http/hono/' };

/** What MAY_LOAD allows a file: the entries of its part and of every folder it is in. */
const mayLoad = (file: string) => {
  const path = relative(SRC, file);
  return Object.entries(MAY_LOAD).flatMap(([where, peers]) => (path === where || path.startsWith(`${where}/`) ? peers : []));
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** `shared`, `core`, … for a file in a folder; the file name for an entry file. */
const partOf = (file: string) => relative(SRC, file).split('/')[0]!;

interface Import {
  specifier: string;
  typeOnly: boolean;
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const found: Import[] = [];
  for (const m of text.matchAll(/^\s*(import|export)\s+(type\s+)?(?:[^'";]*?from\s+)?'([^']+)'/gm)) {
    found.push({ specifier: m[3]!, typeOnly: m[2] !== undefined });
  }
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) found.push({ specifier: m[1]!, typeOnly: false });
  return found;
}

const files = sourceFiles(SRC);

describe('the layout of src/', () => {
  it('has every source file in a known part', () => {
    const unknown = files.map(partOf).filter((part) => !(part in MAY_IMPORT));
    expect(unknown).toEqual([]);
  });

  it('imports only downwards between parts', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = partOf(file);
      for (const { specifier } of importsOf(file)) {
        if (!specifier.startsWith('.')) continue;
        const to = partOf(resolve(dirname(file), specifier));
        if (to !== from && !MAY_IMPORT[from]!.includes(to)) violations.push(`${relative(SRC, file)} imports ${specifier} (${to})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('loads optional peers only from the part that needs them', () => {
    const violations: string[] = [];
    for (const file of files) {
      for (const { specifier, typeOnly } of importsOf(file)) {
        if (specifier.startsWith('.') || specifier.startsWith('node:') || typeOnly) continue;
        const peer = specifier === 'drizzle-orm' || specifier === 'drizzle-orm/pg-core' ? undefined : specifier;
        if (peer !== undefined && !mayLoad(file).includes(peer)) violations.push(`${relative(SRC, file)} loads ${peer}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('names each framework, even its types, only in its own adapter', () => {
    const violations: string[] = [];
    for (const file of files) {
      const path = relative(SRC, file);
      for (const { specifier } of importsOf(file)) {
        const framework = specifier.split('/')[0]!;
        if (framework in FRAMEWORKS && !path.startsWith(FRAMEWORKS[framework]!)) violations.push(`${path} imports ${specifier}`);
      }
    }
    expect(violations).toEqual([]);
  });

  it('keeps the schema entry to the table, which imports nothing but drizzle-orm: it is also built as CommonJS', () => {
    const table = join(SRC, 'schema', 'table.ts');
    expect(importsOf(join(SRC, 'schema.ts')).map(({ specifier }) => resolve(SRC, specifier.replace(/\.js$/, '.ts')))).toEqual([table, table]);
    expect(importsOf(table).map(({ specifier }) => specifier)).toEqual(['drizzle-orm', 'drizzle-orm/pg-core']);
  });

  it('keeps index.ts to re-exports', () => {
    const statements = readFileSync(join(SRC, 'index.ts'), 'utf8')
      .split(/;\s*\n/)
      .map((s) => s.trim())
      .filter(Boolean);
    expect(statements.filter((s) => !/^export (type )?\{[^}]*\} from '[^']+'$/s.test(s))).toEqual([]);
  });
});
