// `node --import ./register.mjs`: records what the process loads (see hooks.mjs).
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
