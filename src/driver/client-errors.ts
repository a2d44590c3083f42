import { isConnectionLost } from './connection-loss.js';

/** A node-postgres client, as far as its error events go. */
interface EventedClient {
  on(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
}

const isEvented = (client: object): client is EventedClient =>
  typeof (client as Partial<EventedClient>).on === 'function' && typeof (client as Partial<EventedClient>).removeListener === 'function';

/**
 * Runs `body` while listening for 'error' events on `connection`, when it is
 * a node-postgres client (the caller's, checked out by their transaction): a
 * connection the server ends is such an event, and with nobody listening it
 * ends the process. The statement that was running fails with the error as
 * usual. If the connection died (an event, or `body` failed with a lost
 * connection), a listener stays on it (a dead client emits again when its
 * socket closes); if not, nothing of ours remains.
 *
 * @example
 * await whileListening(connectionOf(tx), () => tx.transaction(run));
 */
export async function whileListening<R>(connection: object, body: () => Promise<R>): Promise<R> {
  if (!isEvented(connection)) return body();
  let died = false;
  const onError = () => {
    died = true;
  };
  connection.on('error', onError);
  try {
    return await body();
  } catch (error) {
    // The statement that was running got the error; the client reports the
    // closed socket again a moment later, as an event.
    if (isConnectionLost(error)) died = true;
    throw error;
  } finally {
    if (!died) connection.removeListener('error', onError);
  }
}

/**
 * `whileListening` on the connection under a drizzle transaction the driver
 * opened (neon-serverless' Pool checks a client out for it, and nobody
 * listens on that client): a backend that dies fails the call, not the process.
 *
 * @example
 * await db.transaction((tx) => whileListeningIn(tx, () => run(tx)));
 */
export function whileListeningIn<R>(tx: object, body: () => Promise<R>): Promise<R> {
  const client = (tx as { session?: { client?: unknown } }).session?.client;
  return typeof client === 'object' && client !== null ? whileListening(client, body) : body();
}
