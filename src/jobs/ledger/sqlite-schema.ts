/** The SQLite ledger's schema and statements, kept beside its adapter (`sqlite.ts`). */

/** Bumped when the schema changes incompatibly; a newer file is refused. */
export const SCHEMA_VERSION = 1;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  name        TEXT PRIMARY KEY,
  definition  TEXT NOT NULL,
  shard_count INTEGER NOT NULL,
  created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS shards (
  job              TEXT NOT NULL,
  idx              INTEGER NOT NULL,
  id               TEXT NOT NULL,
  descriptor       TEXT NOT NULL,
  state            TEXT NOT NULL CHECK (state IN ('PENDING', 'IN_PROGRESS', 'DONE', 'FAILED')),
  attempt          INTEGER NOT NULL DEFAULT 0,
  failures         INTEGER NOT NULL DEFAULT 0,
  token            TEXT,
  worker           TEXT,
  lease_expires_at INTEGER,
  available_at     INTEGER NOT NULL DEFAULT 0,
  result           TEXT,
  reason           TEXT,
  finished_at      INTEGER,
  PRIMARY KEY (job, idx),
  UNIQUE (job, id)
);
CREATE INDEX IF NOT EXISTS shards_by_state ON shards (job, state, idx);
CREATE TABLE IF NOT EXISTS attempts (
  job        TEXT NOT NULL,
  shard      INTEGER NOT NULL,
  attempt    INTEGER NOT NULL,
  worker     TEXT NOT NULL,
  claimed_at INTEGER NOT NULL,
  outcome    TEXT NOT NULL,
  code       TEXT,
  message    TEXT,
  ended_at   INTEGER,
  PRIMARY KEY (job, shard, attempt)
);
`;

export const SQL = {
  getVersion: `SELECT value FROM meta WHERE key = 'schema_version'`,
  setVersion: `INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)`,
  getJob: `SELECT name, definition, shard_count FROM jobs WHERE name = ?`,
  listJobs: `SELECT name FROM jobs ORDER BY name`,
  insertJob: `INSERT INTO jobs (name, definition, shard_count, created_at) VALUES (?, ?, ?, ?)`,
  insertShard: `INSERT INTO shards (job, idx, id, descriptor, state) VALUES (?, ?, ?, ?, 'PENDING')`,
  descriptors: `SELECT descriptor FROM shards WHERE job = ? ORDER BY idx`,
  expired: `SELECT idx, attempt, failures, worker FROM shards
            WHERE job = ? AND state = 'IN_PROGRESS' AND lease_expires_at <= ? ORDER BY idx`,
  expiredIds: `SELECT id FROM shards WHERE job = ? AND state = 'IN_PROGRESS' AND lease_expires_at <= ?`,
  next: `SELECT idx, id, descriptor, attempt FROM shards
         WHERE job = ? AND state = 'PENDING' AND available_at <= ? ORDER BY idx LIMIT 1`,
  take: `UPDATE shards SET state = 'IN_PROGRESS', attempt = ?, token = ?, worker = ?, lease_expires_at = ?
         WHERE job = ? AND idx = ? AND state = 'PENDING'`,
  insertAttempt: `INSERT OR REPLACE INTO attempts (job, shard, attempt, worker, claimed_at, outcome)
                  VALUES (?, ?, ?, ?, ?, 'running')`,
  endAttempt: `UPDATE attempts SET outcome = ?, code = ?, message = ?, ended_at = ?
               WHERE job = ? AND shard = ? AND attempt = ?`,
  holder: `SELECT idx, attempt, failures FROM shards
           WHERE job = ? AND idx = ? AND state = 'IN_PROGRESS' AND token = ? AND lease_expires_at > ?`,
  renew: `UPDATE shards SET lease_expires_at = ?
          WHERE job = ? AND idx = ? AND state = 'IN_PROGRESS' AND token = ? AND lease_expires_at > ?`,
  toDone: `UPDATE shards SET state = 'DONE', result = ?, finished_at = ?, token = NULL, lease_expires_at = NULL
           WHERE job = ? AND idx = ?`,
  toPending: `UPDATE shards SET state = 'PENDING', failures = ?, available_at = ?, token = NULL, worker = NULL,
              lease_expires_at = NULL WHERE job = ? AND idx = ?`,
  toFailed: `UPDATE shards SET state = 'FAILED', failures = ?, reason = ?, finished_at = ?, token = NULL,
             worker = NULL, lease_expires_at = NULL WHERE job = ? AND idx = ?`,
  attemptsOf: `SELECT attempt, worker, claimed_at, outcome, code, message, ended_at FROM attempts
               WHERE job = ? AND shard = ? ORDER BY attempt`,
  allShards: `SELECT idx, id, descriptor, state, failures, worker, lease_expires_at, result, reason, finished_at
              FROM shards WHERE job = ? ORDER BY idx`,
  allAttempts: `SELECT shard, attempt, worker, claimed_at, outcome, code, message, ended_at FROM attempts
                WHERE job = ? ORDER BY shard, attempt`,
  retryFailed: `UPDATE shards SET state = 'PENDING', failures = 0, reason = NULL, finished_at = NULL, available_at = 0
                WHERE job = ? AND state = 'FAILED'`,
  reset: `UPDATE shards SET state = 'PENDING', attempt = 0, failures = 0, token = NULL, worker = NULL,
          lease_expires_at = NULL, available_at = 0, result = NULL, reason = NULL, finished_at = NULL
          WHERE job = ?`,
  deleteAttempts: `DELETE FROM attempts WHERE job = ?`,
  deleteShards: `DELETE FROM shards WHERE job = ?`,
  deleteJob: `DELETE FROM jobs WHERE name = ?`,
} as const;
