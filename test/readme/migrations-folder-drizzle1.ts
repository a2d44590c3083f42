// Declarations the README's migrationsFolderForDrizzle1 example assumes: your Drizzle database.
import { drizzle } from 'drizzle-orm/node-postgres';

export const db = drizzle(process.env.DATABASE_URL!);
