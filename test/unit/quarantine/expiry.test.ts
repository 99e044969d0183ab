// The release expiry job with an injected clock: each expired release is detained again and
// announced as `release-expired` exactly once, however many replicas run the job at the same time
// (the in-process store, and two Redis stores on one real redis-server).

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { EventBus, type CustomsEvent } from '../../../src/audit/events.js'
import { digestOf } from '../../../src/oci/digest.js'
import { createLogger } from '../../../src/observability/logger.js'
import { ReleaseExpiry } from '../../../src/quarantine/expiry.js'
import { MemoryStateStore } from '../../../src/state/memory.js'
import { RedisStateStore } from '../../../src/state/redis.js'
import type { RepoKey, StateStore } from '../../../src/state/store.js'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.js'

const REPO: RepoKey = { upstream: 'docker.io', repository: 'acme/app' }
const logger = createLogger({ level: 'silent' })

/** Two replicas' handles on one store's data, and how to close them. */
type Replicas = () => Promise<{ a: StateStore; b: StateStore; close(): Promise<void> }>

function checkExpiryJob(replicas: Replicas): void {
  it('detains an expired release again and announces it once across two replicas', async () => {
    const { a, b, close } = await replicas()
    try {
      const digest = digestOf(Buffer.from(`image ${randomUUID()}`))
      const later = digestOf(Buffer.from(`later image ${randomUUID()}`))
      for (const d of [digest, later]) await a.recordDetention(REPO, d, { reference: 'v1', reasons: ['unsigned'], at: 1000 })
      await a.releaseQuarantine(REPO, digest, { by: 'alice', reason: 'vendor fix pending', expires: 10_000, at: 2000 })
      await a.releaseQuarantine(REPO, later, { by: 'alice', reason: 'later', expires: 99_000, at: 2000 })
      let now = 9_999
      const bus = new EventBus(logger)
      const heard: CustomsEvent[] = []
      bus.subscribe((e) => heard.push(e))
      const jobA = new ReleaseExpiry({ state: a, events: bus, logger, intervalMs: 60_000, now: () => now })
      const jobB = new ReleaseExpiry({ state: b, events: bus, logger, intervalMs: 60_000, now: () => now })

      assert.deepEqual(await Promise.all([jobA.runOnce(), jobB.runOnce()]), [0, 0])
      assert.equal((await a.getQuarantine(REPO, digest))?.state, 'released')

      now = 10_000
      const moved = await Promise.all([jobA.runOnce(), jobB.runOnce(), jobA.runOnce()])
      assert.equal(moved[0] + moved[1], 1)
      assert.equal(heard.length, 1)
      const event = heard[0] as CustomsEvent
      assert.equal(event.type, 'release-expired')
      assert.equal(event.upstream, 'docker.io')
      assert.equal(event.repository, 'acme/app')
      assert.equal(event.digest, digest)
      assert.equal(event.verdict, 'detained')
      assert.deepEqual(event.reasons, ['vendor fix pending'])
      assert.deepEqual(event.detail, { releasedBy: 'alice', releasedAt: new Date(2000).toISOString(), expires: new Date(10_000).toISOString() })

      const record = await b.getQuarantine(REPO, digest)
      assert.equal(record?.state, 'detained')
      assert.equal(record?.release, undefined)
      assert.deepEqual(record?.history?.[0], { action: 'expire', by: 'customs', at: 10_000, expires: 10_000 })
      assert.equal((await b.getQuarantine(REPO, later))?.state, 'released')

      now = 50_000
      assert.deepEqual(await Promise.all([jobA.runOnce(), jobB.runOnce()]), [0, 0])
      assert.equal(heard.length, 1)
      await Promise.all([jobA.stop(), jobB.stop()])
    } finally {
      await close()
    }
  })

  it('closes the blob gate a release opened, leaving a layer another admitted manifest holds', async () => {
    const { a, close } = await replicas()
    try {
      const digest = digestOf(Buffer.from(`image ${randomUUID()}`))
      const other = digestOf(Buffer.from(`other image ${randomUUID()}`))
      const own = { digest: digestOf(Buffer.from(`own layer ${randomUUID()}`)), size: 10 }
      const shared = { digest: digestOf(Buffer.from(`shared layer ${randomUUID()}`)), size: 20 }
      const base = { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 100 }
      await a.recordManifest(REPO, { ...base, digest: other, verdict: { outcome: 'cleared', reasons: [], revision: 'r', decidedAt: 1 } }, { blobs: [shared], children: [] })
      await a.recordDetention(REPO, digest, { reference: 'v1', reasons: ['unsigned'], at: 1000 })
      await a.releaseQuarantine(REPO, digest, { by: 'alice', reason: 'brief', expires: 5_000, at: 2000 })
      // What the pull path records for a released digest: admitted, with why it was detained.
      const verdict = { outcome: 'cleared-with-warnings' as const, reasons: ['released'], revision: 'r', decidedAt: 2, detainedFor: ['unsigned'] }
      await a.recordManifest(REPO, { ...base, digest, verdict }, { blobs: [own, shared], children: [] })
      const job = new ReleaseExpiry({ state: a, events: new EventBus(logger), logger, intervalMs: 60_000, now: () => 6_000 })
      assert.equal(await job.runOnce(), 1)
      assert.equal(await a.getBlobLink(REPO, own.digest), null)
      assert.deepEqual(await a.getBlobLink(REPO, shared.digest), shared)
      const record = await a.getManifest(REPO, digest)
      assert.equal(record?.verdict.outcome, 'detained')
      assert.deepEqual(record?.verdict.reasons, ['unsigned'])
    } finally {
      await close()
    }
  })

  it('runs on its interval once started, until stopped', async () => {
    const { a, close } = await replicas()
    try {
      const digest = digestOf(Buffer.from(`image ${randomUUID()}`))
      await a.recordDetention(REPO, digest, { reference: 'v1', reasons: ['unsigned'], at: 1000 })
      await a.releaseQuarantine(REPO, digest, { by: 'alice', reason: 'brief', expires: 5_000, at: 2000 })
      const bus = new EventBus(logger)
      const heard = new Promise<CustomsEvent>((resolve) => bus.subscribe(resolve))
      const job = new ReleaseExpiry({ state: a, events: bus, logger, intervalMs: 20, now: () => 6_000 })
      // The job's timer is unref'd (it must not keep a finished process alive): this one keeps the
      // test's event loop running while it waits.
      const keepAlive = setInterval(() => undefined, 1000)
      job.start()
      const event = await heard.finally(() => clearInterval(keepAlive))
      await job.stop()
      assert.equal(event.type, 'release-expired')
      assert.equal(event.digest, digest)
      assert.equal((await a.getQuarantine(REPO, digest))?.state, 'detained')
    } finally {
      await close()
    }
  })
}

describe('release expiry job', () => {
  describe('with the in-process store', () => {
    checkExpiryJob(async () => {
      const store = new MemoryStateStore()
      return { a: store, b: store, close: () => store.close() }
    })
  })

  describe('with two Redis stores sharing one redis-server', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    checkExpiryJob(async () => {
      const prefix = `t-${randomUUID()}`
      const a = await RedisStateStore.connect({ url: server.url, prefix })
      const b = await RedisStateStore.connect({ url: server.url, prefix })
      return {
        a,
        b,
        async close() {
          await a.close()
          await b.close()
        },
      }
    })
  })
})
