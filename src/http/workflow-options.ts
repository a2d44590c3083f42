import { errorMessage } from '../driver/error-message.js';
import { IdempotencyOptionsInvalidError } from '../shared/errors.js';
import { resolveRouteOptions, type RequestView, type ResolvedRouteOptions, type RouteOptions } from './options.js';

/**
 * Options of a workflow route: how to read a request (scope, fingerprint,
 * body bound, replayed headers) and how the leased run behaves (TTL, wait or
 * reject, schema; the size limit is the workflow's), plus `input`, what the workflow runs on.
 */
export interface WorkflowRouteOptions<TReq, I>
  extends Pick<
    RouteOptions<TReq>,
    'scope' | 'fingerprint' | 'maxBodyBytes' | 'storedHeaders' | 'retryAfter' | 'ttl' | 'onInFlight' | 'waitTimeout' | 'schema'
  > {
  // NoInfer: the workflow says what its input is; `input` must give that, not widen it.
  /** The workflow's input, from the request (required). It is stored with the key, so that a retry
   * or the completer resumes from it: keep it to what the work needs, e.g. `(req) => ({ userId: req.user.id, amount: req.body.amount })`. */
  input: (req: TReq) => NoInfer<I> | Promise<NoInfer<I>>;
  /** Hears of every run the client got a 5xx for: what the workflow threw (the key stays started: a retry
   * or the completer resumes it), an unknown outcome, a failed key. The client gets a problem without
   * the error's details. (Default: one line on stderr) */
  onError?: (error: unknown, req: TReq) => void;
}

/** Options checked once, when the route is built. */
export interface ResolvedWorkflowRouteOptions<TReq, I> extends ResolvedRouteOptions<TReq> {
  input: (req: TReq) => I | Promise<I>;
  onError: (error: unknown, req: TReq) => void;
}

function reportToStderr(error: unknown): void {
  console.error(`drizzle-idempotency workflow route: ${errorMessage(error)}`);
}

// What `idempotent()` takes and a workflow route does not, with why: said at build time, not ignored.
const NOT_FOR_WORKFLOWS: Readonly<Record<string, string>> = {
  required: 'every request needs an Idempotency-Key: the leased run, its steps and its recovery live in the key row',
  methods: 'every request needs an Idempotency-Key: mount the route on the methods it serves (app.post)',
  isFinal: 'the workflow\'s answer is stored whatever its status; throw to leave the key started, so that a retry resumes it',
  transaction: 'each step opens its own transaction',
  serializationRetries: 'each step opens its own transaction',
  prepare: 'the leased statements choose their own',
  expiryHeader: 'not available for workflow routes',
  maxResultBytes: 'set it on defineWorkflow, so that the completer resumes the key with the same limit',
};

/**
 * Checks the options of `idempotentWorkflow`, or throws `IDEMPOTENCY_OPTIONS_INVALID`
 * while the app is being built rather than on the first request.
 *
 * @example
 * resolveWorkflowRouteOptions({ scope: (req) => req.user.id, input: (req) => req.body }, adapter)
 */
export function resolveWorkflowRouteOptions<TReq, I>(options: WorkflowRouteOptions<TReq, I>, view: RequestView<TReq>): ResolvedWorkflowRouteOptions<TReq, I> {
  if (typeof options !== 'object' || options === null) {
    throw new IdempotencyOptionsInvalidError('idempotentWorkflow() needs options with a scope and an input, e.g. { scope: (req) => req.user.id, input: (req) => req.body }');
  }
  for (const name of Object.keys(options)) {
    const why = NOT_FOR_WORKFLOWS[name];
    if (why !== undefined) throw new IdempotencyOptionsInvalidError(`idempotentWorkflow() does not take ${name}: ${why}`);
  }
  const { input, onError, ...route } = options;
  if (onError !== undefined && typeof onError !== 'function') throw new IdempotencyOptionsInvalidError('onError must be a function of the error and the request');
  if (typeof input !== 'function') {
    throw new IdempotencyOptionsInvalidError('idempotentWorkflow() needs input: a function of the request that returns the workflow\'s input, e.g. (req) => req.body');
  }
  return { ...resolveRouteOptions<TReq>(route, view), input, onError: onError ?? reportToStderr };
}
