// A link that loses packets: a network namespace joined to this one by a
// veth pair, and an nftables table inside the namespace that drops a random
// share of the packets of one TCP port in both directions. tc netem would be
// the usual tool; this machine's kernel has neither netem nor tc's random
// drop action, but nftables' `numgen random` does the same job. Everything
// lives in the namespace, so deleting it removes the veth pair and the rules.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const TABLE = 'packet_loss';

export interface LossyLink {
  /** The namespace's name, for `ip netns exec`. */
  netns: string;
  /** The namespace's address, reachable from here only across the veth pair. */
  address: string;
  /** Drops `percent` % of the TCP packets to and from `port` in the namespace, in both directions (0 stops dropping). */
  setLoss(port: number, percent: number): Promise<void>;
  /** Packets the rules saw, and dropped on their way to and from the port, so far: nft's counters. */
  counters(): Promise<{ seen: number; droppedIn: number; droppedOut: number }>;
  /** Deletes the namespace, its end of the veth pair and its rules: safe to call twice. */
  close(): Promise<void>;
}

/** Namespaces and interfaces of this process's lossy links that still exist: none, after every close(). */
export async function lossyLinkLeftovers(): Promise<string[]> {
  const [namespaces, links] = await Promise.all([exec('ip', ['netns', 'list']), exec('ip', ['-o', 'link', 'show'])]);
  const names = new Set([`pktloss-${process.pid}`, `plh${process.pid}`.slice(0, 15)]);
  return [...namespaces.stdout.matchAll(/^(\S+)/gm), ...links.stdout.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1]!).filter((n) => names.has(n));
}

/** Why this machine cannot make a lossy link, or undefined when it can. */
export async function lossyLinkUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root: network namespaces and nftables need it';
  if (!(await exec('ip', ['-V']).then(() => true, () => false))) return 'no `ip` (iproute2)';
  if (!(await exec('nft', ['--version']).then(() => true, () => false))) return 'no `nft` (apt-get install nftables)';
  return undefined;
}

/**
 * Creates the namespace and the veth pair, with no loss yet.
 *
 * @example
 * const link = await startLossyLink(); await link.setLoss(5432, 8); (await link.counters()).droppedIn; await link.close();
 */
export async function startLossyLink(): Promise<LossyLink> {
  // The process id keeps names apart from another test run's; the subnet is
  // the first one from there that no interface here uses yet.
  const { stdout: inUse } = await exec('ip', ['-o', '-4', 'addr', 'show']);
  let id = process.pid % 250;
  for (let tries = 0; tries < 250 && inUse.includes(` 10.213.${id}.`); tries++) id = (id + 1) % 250;
  const netns = `pktloss-${process.pid}`;
  const hostSide = `plh${process.pid}`.slice(0, 15);
  const nsSide = `pln${process.pid}`.slice(0, 15);
  const hostAddress = `10.213.${id}.1`;
  const address = `10.213.${id}.2`;
  const inNs = (...args: string[]) => exec('ip', ['netns', 'exec', netns, ...args]);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    // Deleting the namespace deletes its veth end, which takes the other end with it.
    await exec('ip', ['netns', 'del', netns]).catch(() => {});
    await exec('ip', ['link', 'del', hostSide]).catch(() => {});
  };
  try {
    await exec('ip', ['netns', 'add', netns]);
    await exec('ip', ['link', 'add', hostSide, 'type', 'veth', 'peer', 'name', nsSide]);
    await exec('ip', ['link', 'set', nsSide, 'netns', netns]);
    await exec('ip', ['addr', 'add', `${hostAddress}/24`, 'dev', hostSide]);
    await exec('ip', ['link', 'set', hostSide, 'up']);
    await inNs('ip', 'addr', 'add', `${address}/24`, 'dev', nsSide);
    await inNs('ip', 'link', 'set', nsSide, 'up');
    await inNs('ip', 'link', 'set', 'lo', 'up');
  } catch (error) {
    await close();
    throw error;
  }
  return {
    netns,
    address,
    async setLoss(port, percent) {
      const rules = (hook: 'input' | 'output', match: 'dport' | 'sport', dropped: string) =>
        `chain ${hook} { type filter hook ${hook} priority 0; policy accept; tcp ${match} ${port} counter name seen numgen random mod 100 < ${percent} counter name ${dropped} drop; };`;
      // Replaced as a whole, so the counters start at zero with the new share.
      await inNs('nft', `add table inet ${TABLE}`);
      await inNs('nft', `delete table inet ${TABLE}`);
      await inNs('nft', `table inet ${TABLE} { counter seen { }; counter dropped_in { }; counter dropped_out { }; ${rules('input', 'dport', 'dropped_in')} ${rules('output', 'sport', 'dropped_out')} }`);
    },
    async counters() {
      const read = async (name: string) => {
        const { stdout } = await inNs('nft', 'list', 'counter', 'inet', TABLE, name);
        return Number(/packets (\d+)/.exec(stdout)?.[1] ?? Number.NaN);
      };
      return { seen: await read('seen'), droppedIn: await read('dropped_in'), droppedOut: await read('dropped_out') };
    },
    close,
  };
}
