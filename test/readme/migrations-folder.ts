// Declarations the README's migrationsFolder example assumes: your Drizzle database.
import { drizzle } from 'drizzle-orm/node-postgres';

export const db = drizzle(process.env.DATABASE_URL!);
