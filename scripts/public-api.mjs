// Prints the names (values and types) that each entry point of the installed
// package exports, as TypeScript resolves them from a user's project: run in
// the folder that installed the tarball. check-package.sh compares the output
// with scripts/public-api.json, so the public surface changes only on purpose.
import ts from 'typescript';
import { writeFileSync } from 'node:fs';
import process from 'node:process';

const entries = ['drizzle-idempotency', 'drizzle-idempotency/schema', 'drizzle-idempotency/express', 'drizzle-idempotency/fastify', 'drizzle-idempotency/web', 'drizzle-idempotency/client', 'drizzle-idempotency/otel', 'drizzle-idempotency/messages', 'drizzle-idempotency/pg-boss'];
writeFileSync('api.ts', entries.map((e, i) => `import * as e${i} from '${e}';\nexport { e${i} };\n`).join(''));
const program = ts.createProgram(['api.ts'], {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  skipLibCheck: true,
  types: ['node'],
});
const checker = program.getTypeChecker();
const file = program.getSourceFile('api.ts');
const api = {};
for (const statement of file.statements) {
  if (!ts.isImportDeclaration(statement)) continue;
  const module = checker.getSymbolAtLocation(statement.moduleSpecifier);
  if (!module) throw new Error(`cannot resolve ${statement.moduleSpecifier.text}`);
  api[statement.moduleSpecifier.text] = checker.getExportsOfModule(module).map((s) => s.name).sort();
}
process.stdout.write(`${JSON.stringify(api, null, 2)}\n`);
