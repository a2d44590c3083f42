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
 * usual. If the connection died, a listener stays on it (a dead client emits
 * again when its socket closes); if not, nothing of ours remains.
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
  } finally {
    if (!died) connection.removeListener('error', onError);
  }
}
