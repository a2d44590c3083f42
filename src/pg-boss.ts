export { sendInTransaction } from './pg-boss/send.js';
export type { JobSender, SendOptionsOf } from './pg-boss/send.js';
export { executeSqlOn } from './pg-boss/execute-sql.js';
export type { ExecuteSql } from './pg-boss/execute-sql.js';
export { idempotentJobHandler } from './pg-boss/job-handler.js';
export type { JobLike } from './pg-boss/job-handler.js';
