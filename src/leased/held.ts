/** A result as recorded: the envelope `serializeResult` writes, `{}` for undefined. */
export type Recorded = { value?: unknown };

/** What this process holds once its claim or takeover won: the lease's token and what was done before. */
export interface Held {
  token: string;
  /** Claims and takeovers so far, this one included. */
  attempt: number;
  /** The input as stored at the claim (its JSON form). */
  input: unknown;
  /** Step name → recorded result, of every step committed so far. */
  steps: Map<string, Recorded>;
  recoveryPoint: string | null;
}

/** A held row as the claim and takeover statements return it. */
export interface HeldRow {
  owner_token: string;
  attempts: number | string;
  input: string | null;
  steps: string | null;
  recovery_point: string | null;
}

/** Reads the row a claim or takeover returned. */
export function heldOf(row: HeldRow): Held {
  const steps = row.steps === null ? {} : (JSON.parse(row.steps) as Record<string, Recorded>);
  return {
    token: row.owner_token,
    attempt: Number(row.attempts),
    input: row.input === null ? undefined : (JSON.parse(row.input) as unknown),
    steps: new Map(Object.entries(steps)),
    recoveryPoint: row.recovery_point,
  };
}
