// Runs one README example in a process of its own (for what only a process can
// show, such as how it exits on SIGTERM): imports it, then prints `ready` and
// the port of the server it exports, if any.
import { pathToFileURL } from 'node:url';
import type { Server } from 'node:http';

const file = process.argv[2]!;
const example = (await import(pathToFileURL(file).href)) as { server?: Server };
const { server } = example;
if (server && !server.listening) await new Promise((resolve) => server.once('listening', resolve));
const address = server?.address();
process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : ''}\n`);
