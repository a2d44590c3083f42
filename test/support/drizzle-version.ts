// Which drizzle-orm this run resolves: 0 (0.44+) by default, 1 when
// scripts/test-drizzle1.sh runs the suite against the 1.0 release candidate
// (test/driver/drizzle-version.test.ts checks that the two agree).
export const drizzleMajor: 0 | 1 = process.env.DRIZZLE_ORM_MAJOR === '1' ? 1 : 0;
