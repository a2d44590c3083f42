import { ShopRefusal } from './db.js';
import type { OrderInput } from './orders.js';
import type { PaymentInput } from './payments.js';

// ISO 4217 codes as the runtime knows them.
const CURRENCIES = new Set(Intl.supportedValuesOf('currency'));
const SKU = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}\.[^\s@]{2,63}$/;

const invalid = (detail: string) => new ShopRefusal(400, 'INVALID_BODY', detail);
const isObject = (body: unknown): body is Record<string, unknown> => typeof body === 'object' && body !== null && !Array.isArray(body);
const positiveInteger = (value: unknown, max = 1_000_000_000): value is number => Number.isSafeInteger(value) && (value as number) > 0 && (value as number) <= max;

export function parsePayment(body: unknown): PaymentInput {
  if (!isObject(body)) throw invalid('body must be a JSON object');
  if (!positiveInteger(body.amount)) throw invalid('amount must be a positive integer of cents');
  if (typeof body.currency !== 'string' || !CURRENCIES.has(body.currency)) throw invalid('currency must be an ISO 4217 code such as "EUR"');
  return { amount: body.amount, currency: body.currency };
}

export function parseSku(sku: unknown): string {
  if (typeof sku !== 'string' || !SKU.test(sku)) throw invalid('sku must be 1-64 letters, digits, dots, dashes or underscores');
  return sku;
}

export function parseStock(body: unknown): number {
  if (!isObject(body) || !Number.isSafeInteger(body.stock) || (body.stock as number) < 0) throw invalid('stock must be an integer >= 0');
  return body.stock as number;
}

export function parseQuantity(body: unknown): number {
  if (!isObject(body) || !positiveInteger(body.quantity, 10_000)) throw invalid('quantity must be an integer from 1 to 10000');
  return body.quantity;
}

export function parseOrder(body: unknown): OrderInput {
  if (!isObject(body) || !Array.isArray(body.items) || body.items.length === 0 || body.items.length > 50) {
    throw invalid('items must be a list of 1 to 50 { sku, quantity }');
  }
  return {
    items: body.items.map((item: unknown) => {
      if (!isObject(item)) throw invalid('each item must be an object { sku, quantity }');
      return { sku: parseSku(item.sku), quantity: parseQuantity(item) };
    }),
  };
}

export function parseEmail(body: unknown): string {
  if (!isObject(body) || typeof body.email !== 'string' || !EMAIL.test(body.email)) throw invalid('email must be an e-mail address');
  return body.email;
}
