// Declarations the README's inspectKey/evictKey example assumes: the app's database.
import { drizzle } from 'drizzle-orm/node-postgres';

export const db = drizzle(process.env.DATABASE_URL!);
