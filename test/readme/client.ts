// Declarations the README's fetchWithRetry example assumes: where the shop
// runs and the caller's credentials.
export const shopUrl = process.env.SHOP_URL ?? 'https://shop.example';
export const token = process.env.SHOP_TOKEN ?? 'alice';
