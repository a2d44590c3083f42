// The shop's workflows, for a completer out of the shop's processes (a cron
// job, a sidecar, a deploy step):
//   GATEWAY_URL=http://… DATABASE_URL=postgres://… NODE_OPTIONS='--import tsx' \
//     npx drizzle-idempotency complete --workflows examples/shop/workflows.ts [--watch]
// It resumes the payments whose process died, with the gateway at GATEWAY_URL.
import { gatewayClient } from '../gateway/client.js';
import { paymentWorkflow } from './payment-workflow.js';

if (!process.env.GATEWAY_URL) throw new Error('set GATEWAY_URL: the payment workflow charges through that gateway');

/** `POST /payments`: the same name and steps as the shop's own, so that it resumes the shop's keys. */
export const payment = paymentWorkflow(gatewayClient(process.env.GATEWAY_URL));
