// The README's TypeScript examples, as CI checks them. Every ```ts block is
// preceded by a line `<sub>…[…](test/readme/<id>.ts)…</sub>` that links the
// prelude the block relies on (its declarations: `db`, tables, the auth
// middleware…). An example is the block with the prelude's exports imported in
// front of it; test/readme/readme-examples.test.ts type-checks every example
// and runs the runnable ones against PostgreSQL. For scripts/check-package.sh:
// `npx tsx scripts/readme-examples.ts print <id>` prints a block as written (it
// feeds one to drizzle-kit), `write <dir>` writes every example with its prelude
// into a project that installed the packed package, to type-check them there.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const PRELUDES = 'test/readme';

export interface ReadmeExample {
  /** The prelude's file name without `.ts`: unique per block. */
  id: string;
  /** Repository-relative path of the prelude. */
  prelude: string;
  /** The block as written in the README. */
  code: string;
  /** README line of the opening fence (1-based). */
  line: number;
}

/**
 * An opening fence GitHub renders as TypeScript (or JavaScript), however it is
 * written: three or more backticks or tildes, indented, in a blockquote or a
 * list item (`> ```ts`, `1. ```ts`, `- ~~~~tsx`), language in any case. Only
 * the plain ```ts at the start of a line is checked; any other spelling is refused.
 */
const SCRIPT_FENCE = /^(?:[ \t]|>|\d{1,9}[.)](?=[ \t])|[-*+](?=[ \t]))*(`{3,}|~{3,})[ \t]*\{?[ \t]*\.?(ts|typescript|tsx|mts|cts|js|javascript|jsx|mjs|cjs)\b/i;
/** What closes a ```ts block (CommonMark): three or more backticks, nothing after them but spaces. */
const CLOSING_FENCE = /^ {0,3}`{3,}[ \t]*$/;
const MARKER = new RegExp(`^<sub>.*\\]\\((${PRELUDES}/([\\w-]+)\\.ts)\\).*</sub>\\s*$`);

/** Every ```ts block of `readme`, with its prelude; throws when a block has none. */
export function readmeExamples(readme: string): ReadmeExample[] {
  const lines = readme.split('\n');
  const examples: ReadmeExample[] = [];
  for (let i = 0; i < lines.length; i++) {
    // Any other spelling of a TypeScript (or JavaScript) fence would escape the check.
    if (lines[i] !== '```ts' && SCRIPT_FENCE.test(lines[i]!)) {
      throw new Error(`README.md:${i + 1}: fence it as \`\`\`ts at the start of the line, so that CI checks it: ${lines[i]!.trim()}`);
    }
    if (lines[i] !== '```ts') continue;
    const end = lines.findIndex((line, n) => n > i && CLOSING_FENCE.test(line));
    if (end < 0) throw new Error(`README.md:${i + 1}: a \`\`\`ts block that never ends`);
    const marker = MARKER.exec(lines[i - 1] ?? '');
    if (!marker) {
      throw new Error(`README.md:${i + 1}: a \`\`\`ts block needs a line right above it linking its prelude, <sub>…](${PRELUDES}/<id>.ts)…</sub>`);
    }
    const id = marker[2]!;
    if (examples.some((e) => e.id === id)) throw new Error(`README.md:${i}: prelude ${marker[1]} is already linked by another block`);
    examples.push({ id, prelude: marker[1]!, code: lines.slice(i + 1, end).join('\n'), line: i + 1 });
    i = end;
  }
  return examples;
}

export function readReadme(): string {
  return readFileSync(`${ROOT}README.md`, 'utf8');
}

/** The names a module's top-level statements declare or import, and which of them it exports. */
function topLevelNames(code: string): { declared: Set<string>; exported: Set<string>; values: Set<string>; types: Set<string> } {
  const file = ts.createSourceFile('block.ts', code, ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const declared = new Set<string>();
  const exported = new Set<string>();
  const values = new Set<string>();
  const types = new Set<string>();
  const isExported = (node: ts.Node) => ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  const bindingNames = (name: ts.BindingName): string[] =>
    ts.isIdentifier(name) ? [name.text] : name.elements.flatMap((e) => (ts.isOmittedExpression(e) ? [] : bindingNames(e.name)));
  for (const statement of file.statements) {
    const names: string[] = [];
    let kind: 'value' | 'type' | 'import' = 'value';
    if (ts.isImportDeclaration(statement)) {
      kind = 'import';
      const clause = statement.importClause;
      if (clause?.name) names.push(clause.name.text);
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) names.push(bindings.name.text);
      if (bindings && ts.isNamedImports(bindings)) names.push(...bindings.elements.map((e) => e.name.text));
    } else if (ts.isVariableStatement(statement)) {
      names.push(...statement.declarationList.declarations.flatMap((d) => bindingNames(d.name)));
    } else if ((ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement) || ts.isEnumDeclaration(statement)) && statement.name) {
      names.push(statement.name.text);
    } else if ((ts.isInterfaceDeclaration(statement) || ts.isTypeAliasDeclaration(statement)) && statement.name) {
      names.push(statement.name.text);
      kind = 'type';
    } else if (ts.isExportDeclaration(statement) && statement.exportClause && ts.isNamedExports(statement.exportClause)) {
      for (const e of statement.exportClause.elements) {
        exported.add(e.name.text);
        (statement.isTypeOnly || e.isTypeOnly ? types : values).add(e.name.text);
      }
    }
    for (const name of names) {
      declared.add(name);
      if (kind === 'import') continue;
      (kind === 'type' ? types : values).add(name);
      if (isExported(statement)) exported.add(name);
    }
  }
  return { declared, exported, values, types };
}

/**
 * The example as a module: the prelude's exports that the block does not
 * declare itself, imported in front of it, and those values and the block's
 * own top-level names exported after it (so tests can reach `db`, `server`…).
 */
export function exampleModule(example: ReadmeExample): string {
  const prelude = topLevelNames(readFileSync(`${ROOT}${example.prelude}`, 'utf8'));
  const block = topLevelNames(example.code);
  const from = [...prelude.exported].filter((name) => !block.declared.has(name)).sort();
  const imports = from.map((name) => (prelude.types.has(name) ? `type ${name}` : name));
  const head = imports.length > 0 ? `import { ${imports.join(', ')} } from './${example.id}.js';` : '';
  const own = [...block.values, ...from.filter((name) => !prelude.types.has(name))].filter((name) => !block.exported.has(name)).sort();
  const tail = own.length > 0 ? `export { ${own.join(', ')} };` : 'export {};';
  // The head shares the block's first line, so compiler positions match README lines.
  return `${head}${head ? ' ' : ''}${example.code}\n${tail}\n`;
}

/**
 * Writes every example as `<id>.example-<tag>.ts`, next to its prelude, or in
 * `dir` with a copy of the preludes (for a project of its own); returns the paths.
 */
export function writeExamples(examples: ReadmeExample[], tag: string, dir = `${ROOT}${PRELUDES}`): Map<string, string> {
  if (dir !== `${ROOT}${PRELUDES}`) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(`${ROOT}${PRELUDES}`)) {
      if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.includes('.example-') && name !== 'run-example.ts') {
        copyFileSync(`${ROOT}${PRELUDES}/${name}`, join(dir, name));
      }
    }
  }
  const files = new Map<string, string>();
  for (const example of examples) {
    const path = join(dir, `${example.id}.example-${tag}.ts`);
    writeFileSync(path, exampleModule(example));
    files.set(example.id, path);
  }
  return files;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, arg] = process.argv.slice(2);
  const examples = readmeExamples(readReadme());
  const example = examples.find((e) => e.id === arg);
  if (command === 'print' && example) {
    process.stdout.write(`${example.code}\n`);
  } else if (command === 'write' && arg) {
    writeExamples(examples, 'readme', resolve(arg));
  } else {
    process.stderr.write(
      `usage: tsx scripts/readme-examples.ts print <id> | write <dir>  (ids: ${examples.map((e) => e.id).join(', ')})\n`,
    );
    process.exit(2);
  }
}
