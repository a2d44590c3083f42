import { GatewayRequestInvalid } from './validation.js';

/** What can go wrong with one charge request, on purpose. */
export type Fault =
  /** Charge, then destroy the socket before a byte of the answer: the caller cannot know it was charged. */
  | 'drop-after-charge'
  /** Charge, then hold the answer for `slowMs`: past the caller's timeout. */
  | 'slow'
  /** Answer 500 without charging, as a gateway's outage does. */
  | 'error-500';

/** The gateway's fault rates (each a share of charge requests, 0 to 1) and how slow "slow" is. */
export interface FaultSettings {
  dropAfterCharge: number;
  slowRate: number;
  slowMs: number;
  error500Rate: number;
}

export const NO_FAULTS: FaultSettings = { dropAfterCharge: 0, slowRate: 0, slowMs: 2_000, error500Rate: 0 };

const FAULTS: readonly Fault[] = ['drop-after-charge', 'slow', 'error-500'];

/**
 * New settings from a `POST /v1/faults` body: the fields given replace the
 * current ones, the others stay. Rates from 0 to 1, slowMs from 0 to 60 000;
 * anything else is refused and nothing changes.
 *
 * @example
 * settings = parseFaultSettings({ dropAfterCharge: 0.2 }, settings);
 */
export function parseFaultSettings(body: unknown, current: FaultSettings): FaultSettings {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayRequestInvalid(400, 'faults_invalid', 'send a JSON object');
  const next = { ...current };
  for (const [name, value] of Object.entries(body)) {
    if (!(name in NO_FAULTS)) throw new GatewayRequestInvalid(400, 'faults_invalid', `unknown setting ${name}`);
    const max = name === 'slowMs' ? 60_000 : 1;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) {
      throw new GatewayRequestInvalid(400, 'faults_invalid', `${name} must be a number from 0 to ${max}`);
    }
    next[name as keyof FaultSettings] = value;
  }
  return next;
}

/**
 * The fault for one charge request: the one its `Gateway-Fault` header names
 * (tests pick their fault per request), else one drawn at the configured
 * rates, else none. An unknown header value is refused (400), so a typo
 * never passes for a clean run.
 *
 * @example
 * const fault = faultFor(req.headers['gateway-fault'], settings, Math.random); // 'slow' | … | undefined
 */
export function faultFor(header: string | string[] | undefined, settings: FaultSettings, random: () => number): Fault | undefined {
  if (header !== undefined) {
    if (typeof header !== 'string' || !FAULTS.includes(header as Fault)) {
      throw new GatewayRequestInvalid(400, 'fault_invalid', `Gateway-Fault must be one of ${FAULTS.join(', ')}`);
    }
    return header as Fault;
  }
  const draw = random();
  if (draw < settings.error500Rate) return 'error-500';
  if (draw < settings.error500Rate + settings.dropAfterCharge) return 'drop-after-charge';
  if (draw < settings.error500Rate + settings.dropAfterCharge + settings.slowRate) return 'slow';
  return undefined;
}
