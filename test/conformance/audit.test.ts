// One suite for the AuditStore contract (src/audit/store.ts), run against the in-process ring and
// the Redis stream on a real redis-server (a fresh key prefix per test): the chain it keeps,
// paging newest first, retention, and two audit logs appending at once forming ONE chain. Then the
// audit log's behaviour while Redis is away: the file keeps being written, the store catches up.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { ChainVerifier, type VerifyReport } from '../../src/audit/chain.js'
import type { CustomsEvent } from '../../src/audit/events.js'
import { AuditFile, verifyAuditFile } from '../../src/audit/file.js'
import { AuditLog } from '../../src/audit/log.js'
import { MemoryAuditStore } from '../../src/audit/memory-store.js'
import { RedisAuditStore } from '../../src/audit/redis-store.js'
import type { AuditStore } from '../../src/audit/store.js'
import { createLogger } from '../../src/observability/logger.js'
import { Metrics } from '../../src/observability/metrics.js'
import { stateKeys } from '../../src/state/keys.js'
import { RedisStateStore } from '../../src/state/redis.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { makeTempDir } from '../helpers/processes.js'
import { logLines } from '../helpers/logs.js'

/** A chain kept by one backend; `replica()` opens another writer on the same chain. */
interface Backend {
  readonly store: AuditStore
  replica(): Promise<AuditStore>
  close(): Promise<void>
}

function event(i: number, extra: Partial<CustomsEvent> = {}): CustomsEvent {
  return {
    type: 'decision',
    time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
    upstream: i % 2 === 0 ? 'docker.io' : 'ghcr.io',
    repository: 'acme/app',
    reference: `v${i}`,
    verdict: i % 3 === 0 ? 'detained' : 'cleared',
    reasons: [],
    ...extra,
  }
}

async function verifyStore(store: AuditStore, options: { allowTrimmedHead?: boolean } = {}): Promise<VerifyReport> {
  const head = await store.head()
  const verifier = new ChainVerifier({ ...options, head })
  for await (const { raw, where } of store.scan(head.seq)) if (!verifier.push(raw, where)) break
  return verifier.finish()
}

const quietLogger = () => createLogger({ level: 'silent' })

function checkAuditStore(open: (retention: number) => Promise<Backend>): void {
  let backend: Backend
  let store: AuditStore
  beforeEach(async () => {
    backend = await open(1000)
    store = backend.store
  })
  afterEach(async () => {
    await backend.close()
  })

  describe('when empty', () => {
    it('has the empty head, lists nothing and verifies', async () => {
      assert.deepEqual(await store.head(), { seq: 0, hash: '0'.repeat(64) })
      assert.deepEqual(await store.list({ limit: 10 }), { entries: [] })
      assert.deepEqual(await verifyStore(store), { ok: true, verified: 0 })
    })
  })

  describe('when events are appended', () => {
    it('chains them in order from seq 1 and moves the head', async () => {
      const first = await store.append([event(1), event(2)])
      const second = await store.append([event(3)])
      assert.deepEqual([...first, ...second].map((e) => [e.seq, e.event.reference]), [[1, 'v1'], [2, 'v2'], [3, 'v3']])
      assert.equal(second[0]?.prev, first[1]?.hash)
      assert.deepEqual(await store.head(), { seq: 3, hash: second[0]?.hash })
      assert.deepEqual(await verifyStore(store), { ok: true, verified: 3, firstSeq: 1, lastSeq: 3 })
    })

    it('lists newest first in pages joined by the next cursor', async () => {
      for (let i = 1; i <= 25; i += 5) await store.append([1, 2, 3, 4, 5].map((j) => event(i + j - 1)))
      const seen: number[] = []
      let before: number | undefined
      for (let pages = 0; pages < 10; pages++) {
        const page = await store.list({ limit: 10, ...(before !== undefined ? { before } : {}) })
        seen.push(...page.entries.map((e) => e.seq))
        if (page.next === undefined) break
        before = page.next
      }
      assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => 25 - i))
    })

    it('filters by a predicate and stops at since', async () => {
      await store.append(Array.from({ length: 12 }, (_, i) => event(i + 1)))
      const ghcr = await store.list({ limit: 50, match: (e) => e.event.upstream === 'ghcr.io' })
      assert.deepEqual(ghcr.entries.map((e) => e.event.reference), ['v11', 'v9', 'v7', 'v5', 'v3', 'v1'])
      const recent = await store.list({ limit: 50, since: Date.UTC(2026, 0, 1) + 9 * 1000 })
      assert.deepEqual(recent.entries.map((e) => e.seq), [12, 11, 10, 9])
    })

    it('keeps the event as emitted, every field included', async () => {
      const full = event(1, { client: { address: '127.0.0.1', userAgent: 'ua/1' }, revision: 'rev-9', reasons: ['p/r: why'], detail: { n: 1, nested: { a: [1, 'b'] } } })
      await store.append([full])
      const [entry] = (await store.list({ limit: 1 })).entries
      assert.deepEqual(entry?.event, full)
    })
  })

  describe('when more events than the retention were appended', () => {
    it('keeps the newest, and verifies from a trimmed head only when allowed', async () => {
      const small = await open(1000)
      try {
        for (let i = 0; i < 30; i++) await small.store.append(Array.from({ length: 100 }, (_, j) => event(i * 100 + j)))
        assert.equal((await small.store.head()).seq, 3000)
        const report = await verifyStore(small.store, { allowTrimmedHead: true })
        assert.equal(report.ok, true, report.break?.message)
        assert.ok((report.firstSeq ?? 0) > 1, `first seq ${report.firstSeq}`)
        assert.equal(report.lastSeq, 3000)
        // Redis trims whole stream nodes (MAXLEN ~): a little over the retention may stay.
        assert.ok(report.verified >= 1000 && report.verified <= 1200, `kept ${report.verified}`)
        const strict = await verifyStore(small.store)
        assert.equal(strict.break?.kind, 'deleted')
      } finally {
        await small.close()
      }
    })
  })

  describe('when two audit logs append to one chain at once', () => {
    it('forms one linear chain holding every event of both', async () => {
      const other = await backend.replica()
      const metrics = new Metrics()
      const a = new AuditLog({ store, metrics, logger: quietLogger(), batchSize: 7 })
      const b = new AuditLog({ store: other, metrics, logger: quietLogger(), batchSize: 5 })
      for (let i = 0; i < 200; i++) {
        a.record(event(i, { reference: `a${i}` }))
        b.record(event(i, { reference: `b${i}` }))
      }
      assert.equal(await a.flush(30_000), true)
      assert.equal(await b.flush(30_000), true)
      const report = await verifyStore(store)
      assert.deepEqual(report, { ok: true, verified: 400, firstSeq: 1, lastSeq: 400 })
      const refs: string[] = []
      for await (const { raw } of store.scan()) refs.push((raw as { event: CustomsEvent }).event.reference as string)
      // Each writer's own events stay in the order it recorded them.
      for (const prefix of ['a', 'b']) {
        const mine = refs.filter((r) => r.startsWith(prefix))
        assert.deepEqual(mine, Array.from({ length: 200 }, (_, i) => `${prefix}${i}`))
      }
      assert.equal(await metrics.auditDropped.get().then((m) => m.values.length), 0)
      await a.close()
      await b.close()
    })
  })
}

describe('AuditStore conformance', () => {
  describe('MemoryAuditStore', () => {
    checkAuditStore(async (retention) => {
      const store = new MemoryAuditStore(retention)
      return { store, replica: async () => store, close: async () => undefined }
    })
  })

  describe('RedisAuditStore', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    checkAuditStore(async (retention) => {
      const prefix = `t-${randomUUID()}`
      const states: RedisStateStore[] = []
      const connect = async (): Promise<AuditStore> => {
        // As in production: each replica's audit store rides on its state store's connection.
        const state = await RedisStateStore.connect({ url: server.url, prefix })
        states.push(state)
        return new RedisAuditStore({ client: state.redis.client, keys: stateKeys(prefix), retention })
      }
      const store = await connect()
      return {
        store,
        replica: connect,
        close: async () => {
          for (const state of states) await state.close()
        },
      }
    })
  })
})

describe('AuditLog while Redis is away', () => {
  let server: RedisServer
  let state: RedisStateStore
  let dir: string
  const prefix = `t-${randomUUID()}`
  before(async () => {
    // Persistent, so that the entries written before the outage are there after it.
    server = await startRedisServer({ appendonly: true })
    state = await RedisStateStore.connect({ url: server.url, prefix })
    dir = await makeTempDir('audit-outage-')
  })
  after(async () => {
    await state.close()
    if (!server.external) await server.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps writing the file, retries the store, and counts what a full queue drops', async () => {
    const { destination, lines } = logLines()
    const metrics = new Metrics()
    const path = join(dir, 'audit.jsonl')
    const store = new RedisAuditStore({ client: state.redis.client, keys: stateKeys(prefix), retention: 1000 })
    const log = new AuditLog({
      store,
      file: await AuditFile.open(path),
      metrics,
      logger: createLogger({ level: 'info', destination }),
      queueLimit: 10,
      backoffMs: 20,
      maxBackoffMs: 100,
    })
    try {
      log.record(event(0))
      assert.equal(await log.flush(10_000), true)

      await server.stop()
      // The file sink is independent of the store's: it has every event while the store retries.
      const fileHas = async (seq: number): Promise<VerifyReport> => {
        const deadline = Date.now() + 10_000
        let report = await verifyAuditFile(path)
        while (report.lastSeq !== seq && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20))
          report = await verifyAuditFile(path)
        }
        return report
      }
      for (let i = 1; i <= 6; i++) log.record(event(i))
      await fileHas(7)
      for (let i = 7; i <= 12; i++) log.record(event(i))
      assert.deepEqual(await fileHas(13), { ok: true, verified: 13, firstSeq: 1, lastSeq: 13 })
      // The store's queue holds 10 while Redis is away: v11 and v12 were dropped, and said so.
      const dropped = await metrics.auditDropped.get()
      assert.deepEqual(dropped.values.map((v) => [v.labels.sink, v.value]), [['store', 2]])
      assert.ok(lines.some((l) => l.msg === 'audit events dropped' && l.sink === 'store'))

      await server.restart()
      assert.equal(await log.flush(20_000), true)
      assert.ok(lines.some((l) => l.msg === 'failed to write audit events; retrying'))
      const head = await store.head()
      assert.equal(head.seq, 11)
      const refs: string[] = []
      for await (const { raw } of store.scan()) refs.push((raw as { event: CustomsEvent }).event.reference as string)
      assert.deepEqual(refs, Array.from({ length: 11 }, (_, i) => `v${i}`))
      assert.deepEqual(await verifyStore(store), { ok: true, verified: 11, firstSeq: 1, lastSeq: 11 })
    } finally {
        await log.close()
    }
  })
})
