/** The media type of the shop's error answers (RFC 9457). */
export const PROBLEM = 'application/problem+json';

/**
 * An RFC 9457 problem body with the shop's stable `code`.
 *
 * @example
 * res.status(402).type(PROBLEM).json(problem(402, 'PAYMENT_DECLINED', 'the card was declined'));
 */
export const problem = (status: number, code: string, detail: string) => ({
  type: `https://shop.example/problems/${code.toLowerCase().replaceAll('_', '-')}`,
  title: code.replaceAll('_', ' ').toLowerCase(),
  status,
  detail,
  code,
});
