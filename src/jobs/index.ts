/** Sharded, resumable, distributed jobs: the ledger, planning, workers, local multi-process runs. */
export {
  createJobStore,
  parseLedgerUrl,
  redactLedgerUrl,
  LeaseLostError,
  summarizeJob,
  type JobStore,
  type LedgerLocation,
  type CreateJobStoreOptions,
} from './store.js';
export type * from './types.js';
export {
  planJob,
  rangeShards,
  defaultLedgerUrl,
  JOB_DEFAULTS,
  type PlanJobOptions,
  type PlannedJob,
  type EmbedJobPayload,
} from './plan.js';
export {
  runWorker,
  formatWorkerEvent,
  type RunWorkerOptions,
  type WorkerResult,
  type WorkerEvent,
} from './worker.js';
export {
  runLocalJob,
  defaultWorkerCommand,
  type RunLocalJobOptions,
  type LocalJobResult,
  type LocalWorkerEvent,
} from './local.js';
export { finalizeJob, clearJobManifest, type JobManifest, type ManifestShard } from './manifest.js';
