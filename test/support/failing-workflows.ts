// A module for `drizzle-idempotency complete --workflows` that fails while it
// loads, as an application module does when its configuration is missing.
export const gatewayUrl: string = (() => {
  throw new Error('GATEWAY_URL is not set');
})();
