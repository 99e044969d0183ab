// The audit log as services.ts builds it: an audit.file that cannot be opened or continued stops
// the start with an AuditFileError naming the file (main.ts prints it and exits 2); a torn last
// line is moved aside and logged, and the log goes on from the last whole line.

import assert from 'node:assert/strict'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { EMPTY_HEAD, canonical, chainEvents } from '../../../src/audit/chain.js'
import { AuditFileError, verifyAuditFile } from '../../../src/audit/file.js'
import { MemoryAuditStore } from '../../../src/audit/memory-store.js'
import { RedisAuditStore } from '../../../src/audit/redis-store.js'
import { auditStoreFor, createAuditLog } from '../../../src/audit/setup.js'
import { FallbackStateStore } from '../../../src/state/fallback.js'
import { RedisStateStore } from '../../../src/state/redis.js'
import { parseConfig } from '../../../src/config/load.js'
import type { Config } from '../../../src/config/schema.js'
import { createLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { MemoryStateStore } from '../../../src/state/memory.js'
import { makeTempDir } from '../../helpers/processes.js'
import { logLines } from '../../helpers/logs.js'

const configWith = (file: string): Config => parseConfig(`audit: { file: ${JSON.stringify(file)} }`, { env: {} }) as Config

describe('createAuditLog', () => {
  let dir: string
  before(async () => {
    dir = await makeTempDir('audit-setup-')
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses an audit.file in a folder that does not exist, naming it', async () => {
    const path = join(dir, 'missing', 'audit.jsonl')
    await assert.rejects(
      createAuditLog(configWith(path), new MemoryStateStore(), { metrics: new Metrics(), logger: createLogger({ level: 'silent' }) }),
      (err: unknown) => err instanceof AuditFileError && err.message.startsWith(`audit file ${path}: cannot open it`)
    )
  })

  it('logs the move of a torn last line and continues the chain', async () => {
    const path = join(dir, 'torn.jsonl')
    const { entries } = chainEvents(EMPTY_HEAD, [
      { type: 'decision', time: '2026-01-01T00:00:00.000Z', verdict: 'cleared' },
      { type: 'decision', time: '2026-01-01T00:00:01.000Z', verdict: 'detained' },
    ])
    const text = entries.map((e) => `${canonical(e)}\n`).join('')
    await writeFile(path, text.slice(0, -10))
    const { destination, lines } = logLines()
    const log = await createAuditLog(configWith(path), new MemoryStateStore(), { metrics: new Metrics(), logger: createLogger({ level: 'info', destination }) })
    log.record({ type: 'admin', time: '2026-01-01T00:00:02.000Z', actor: 'carol', action: 'evict' })
    await log.close()
    const warning = lines.find((l) => l.msg === 'audit file ended in a torn line; moved it aside and continued the chain')
    assert.equal(warning?.file, path)
    assert.match(String(warning?.movedTo), /torn\.jsonl\.torn-/)
    assert.deepEqual(await verifyAuditFile(path), { ok: true, verified: 2, firstSeq: 1, lastSeq: 2 })
  })
})

describe('auditStoreFor', () => {
  it('keeps the chain in process for in-process state', async () => {
    const config = parseConfig('', { env: {} }) as Config
    assert.ok((await auditStoreFor(config, new MemoryStateStore())) instanceof MemoryAuditStore)
  })

  it('keeps the chain in Redis when Redis state comes wrapped in the memory of recent verdicts', async () => {
    const config = parseConfig('state: { backend: redis }', { env: {} }) as Config
    // Never connected: only the choice of store is checked here.
    const redis = RedisStateStore.open({ url: 'redis://127.0.0.1:9', prefix: 'x' })
    try {
      assert.ok((await auditStoreFor(config, new FallbackStateStore(redis))) instanceof RedisAuditStore)
    } finally {
      await redis.close()
    }
  })
})
