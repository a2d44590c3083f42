import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/core/options.js';

describe('a call nobody watches', () => {
  it('allocates nothing for telemetry: its resolved options are built with the trace slot, so setting it does not grow the object', () => {
    // A property added to an object literal after it is built goes to a
    // separate property store: some 30 bytes more per call.
    const o = resolveOptions('k', { scope: 's' });
    expect(Object.hasOwn(o, 'trace')).toBe(true);
    expect(o.trace).toBeUndefined();
  });
});
