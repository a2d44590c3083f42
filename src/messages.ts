export { consumeOnce } from './messages/consume-once.js';
export type { MessageContext } from './messages/consume-once.js';
export { idempotentHandler } from './messages/handler.js';
export type { MessageHandlerOptions } from './messages/handler.js';
export { downstreamKey } from './shared/downstream-key.js';
export type { DownstreamKeySource } from './shared/downstream-key.js';
