import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { testDatabase } from '../support/db.js';

// A connection the server ends is an 'error' event on a node-postgres client
// or pool, which ends the process when nobody listens. Wherever the library
// holds or uses such a connection, it listens.
const t = await testDatabase();

function runChild(mode: string, onLine: (line: string) => Promise<void> = async () => {}) {
  const name = `fault-child-${mode}-${process.pid}`;
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/fault-child.ts', t.url, mode, name], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const line of chunk.toString().split('\n').filter(Boolean)) void onLine(line);
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return { name, done: new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr }))) };
}

describe('a connection terminated by the server', () => {
  it("during the library's claim in the caller's transaction fails the call, and the process keeps serving", async () => {
    await t.pool.query(`
      create or replace function terminate_self() returns trigger language plpgsql as $$
      begin perform pg_terminate_backend(pg_backend_pid()); perform pg_sleep(1); return null; end $$;
      create trigger terminate_claim after insert on idempotency_keys for each row
        when (new.key = 'terminated') execute function terminate_self();`);
    try {
      const { code, stdout, stderr } = await runChild('caller-transaction').done;
      expect(stderr).toBe('');
      // What the caller sees is drizzle's: its ROLLBACK on the dead connection fails too.
      expect(stdout).toContain('the call failed');
      expect(stdout).toContain('still serving');
      expect(code).toBe(0);
    } finally {
      await t.pool.query(`drop trigger terminate_claim on idempotency_keys`);
    }
  });

  it('while idle in the pool of a process that only sweeps leaves the process running', async () => {
    const child = runChild('sweeper', async (line) => {
      if (line === 'swept') {
        await t.pool.query(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1`, [child.name]);
      }
    });
    const { code, stdout, stderr } = await child.done;
    expect(stderr).toBe('');
    expect(stdout).toContain('still serving');
    expect(code).toBe(0);
  });
});
