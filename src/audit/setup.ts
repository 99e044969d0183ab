// Builds the audit log from the configuration: the store beside the state (the Redis stream on the
// state's own connection, or the in-process ring) and the JSON-lines file when `audit.file` is set.

import { resolve } from 'node:path'
import type { Config } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import { stateKeys } from '../state/keys.js'
import type { StateStore } from '../state/store.js'
import { AuditFile, AuditFileError } from './file.js'
import { AuditLog } from './log.js'
import { MemoryAuditStore } from './memory-store.js'
import type { AuditStore } from './store.js'

export interface AuditSetup {
  readonly metrics: Metrics
  readonly logger: Logger
}

/** The audit store that goes with `state`: Redis state keeps the chain in its Redis. */
export async function auditStoreFor(config: Config, state: StateStore, logger?: Logger): Promise<AuditStore> {
  const retention = config.audit.retention.events
  const redis = state.redis
  if (redis === undefined) return new MemoryAuditStore(retention)
  // Loaded only for Redis state: ioredis stays out of in-process installs.
  const { RedisAuditStore } = await import('./redis-store.js')
  return new RedisAuditStore({
    client: redis.client,
    keys: stateKeys(redis.prefix),
    retention,
    onRewind: (seen, found) => logger?.error({ seen: seen.seq, found: found.seq }, 'audit chain head in redis went back (redis lost data); continuing from it'),
  })
}

/**
 * Opens the audit log; an `audit.file` whose last line cannot be continued throws AuditFileError
 * (the start stops, with the message). Relative file paths are from the working directory, like
 * storage.path.
 */
export async function createAuditLog(config: Config, state: StateStore, setup: AuditSetup): Promise<AuditLog> {
  const store = await auditStoreFor(config, state, setup.logger)
  let file: AuditFile | undefined
  if (config.audit.file !== undefined) {
    const path = resolve(config.audit.file)
    file = await AuditFile.open(path, (r) => {
      setup.logger.warn({ file: path, movedTo: r.tornTo, bytes: r.tornBytes }, 'audit file ended in a torn line; moved it aside and continued the chain')
    }).catch((err: unknown) => {
      if (err instanceof AuditFileError) throw err
      throw new AuditFileError(`audit file ${path}: cannot open it: ${(err as Error).message}`)
    })
  }
  return new AuditLog({ store, ...(file !== undefined ? { file } : {}), metrics: setup.metrics, logger: setup.logger })
}
