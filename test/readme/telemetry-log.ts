// Declarations the README's diagnostics_channel example assumes: a logger
// (pino's signature). This one keeps what it is given, for the test to read.
export const logged: { level: 'info' | 'warn'; fields: object; message: string }[] = [];

export const log = {
  info: (fields: object, message: string) => void logged.push({ level: 'info', fields, message }),
  warn: (fields: object, message: string) => void logged.push({ level: 'warn', fields, message }),
};
