// A module for `drizzle-idempotency complete --workflows` that exports two
// different workflows under one name: the completer could not tell which one
// resumes a key of that name, so the command must refuse it.
import { defineWorkflow } from '../../src/index.js';

export const payByCard = defineWorkflow('shop.pay', async () => ({ status: 201, body: { by: 'card' } }));
export const payByTransfer = defineWorkflow('shop.pay', async () => ({ status: 201, body: { by: 'transfer' } }));
