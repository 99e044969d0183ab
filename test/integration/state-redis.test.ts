// What only the Redis store has to get right: failing fast while Redis is away, reconnecting by
// itself, atomic tag moves across replicas, and the schema version check at connect.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { CustomsError } from '../../src/errors.js'
import { digestOf, type Digest } from '../../src/oci/digest.js'
import { stateKeys } from '../../src/state/keys.js'
import { RedisStateStore, StateSchemaError } from '../../src/state/redis.js'
import type { RepoKey, StateStore } from '../../src/state/store.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'

const HUB: RepoKey = { upstream: 'docker.io', repository: 'library/alpine' }
const d = (n: number | string): Digest => digestOf(Buffer.from(`content ${n}`))
const isUnavailable = (err: unknown): boolean =>
  err instanceof CustomsError && err.code === 'STATE_UNAVAILABLE'

/** Every kind of call a request path makes, so none of them is the one that hangs. */
function calls(store: StateStore): [string, () => Promise<unknown>][] {
  const record = {
    digest: d('m'),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 1,
    verdict: { outcome: 'cleared' as const, reasons: [], revision: 'r', decidedAt: 1 },
  }
  return [
    ['ping', () => store.ping()],
    ['getTag', () => store.getTag(HUB, 'latest')],
    ['setTag', () => store.setTag(HUB, 'latest', { digest: d(9), checkedAt: 9 })],
    ['recordManifest', () => store.recordManifest(HUB, record, { blobs: [], children: [] })],
    ['getBlobLink', () => store.getBlobLink(HUB, d('b'))],
    ['acquireLock', () => store.acquireLock('fill', 1000)],
    ['renewLock', () => store.renewLock('fill', 'token', 1000)],
  ]
}

async function assertAllFailFast(store: StateStore): Promise<void> {
  await Promise.all(
    calls(store).map(async ([name, call]) => {
      const started = Date.now()
      await assert.rejects(call(), isUnavailable, `${name} should reject with STATE_UNAVAILABLE`)
      const elapsed = Date.now() - started
      assert.ok(elapsed < 3000, `${name} took ${elapsed} ms to fail`)
    })
  )
}

async function eventually(check: () => Promise<void>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await sleep(100)
    }
  }
}

describe('RedisStateStore on a real redis-server', () => {
  let server: RedisServer
  const opened: StateStore[] = []
  const open = async (prefix = `t-${randomUUID()}`): Promise<RedisStateStore> => {
    const store = await RedisStateStore.connect({ url: server.url, prefix })
    opened.push(store)
    return store
  }

  before(async () => {
    server = await startRedisServer({ appendonly: true })
  })
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((store) => store.close()))
  })
  after(async () => {
    if (!server.external) await server.stop()
  })

  describe('when redis-server is killed', () => {
    it('rejects every call with STATE_UNAVAILABLE within 3 s', async () => {
      const store = await open()
      await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 1 })
      await server.kill()
      try {
        await assertAllFailFast(store)
      } finally {
        await server.restart()
      }
    })
  })

  describe('when redis-server hangs without closing the connection', () => {
    it('rejects every call with STATE_UNAVAILABLE within 3 s', async () => {
      const store = await open()
      server.pause()
      try {
        await assertAllFailFast(store)
      } finally {
        server.resume()
      }
    })
  })

  describe('when redis-server comes back after a kill', () => {
    it('returns to service on the same store object, with the data it had written', async () => {
      const store = await open()
      await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 1 })
      await server.kill()
      await assert.rejects(store.getTag(HUB, 'latest'), isUnavailable)
      await server.restart()
      await eventually(() => store.ping(), 10_000)
      assert.equal((await store.getTag(HUB, 'latest'))?.digest, d(1))
      assert.deepEqual(await store.setTag(HUB, 'latest', { digest: d(2), checkedAt: 2 }), {
        previous: d(1),
      })
    })
  })

  describe('when two replicas move one tag at the same time', () => {
    it('records each move exactly once, in one unbroken chain', async () => {
      const prefix = `t-${randomUUID()}`
      const [a, b] = [await open(prefix), await open(prefix)]
      const digests = Array.from({ length: 40 }, (_, i) => d(i))
      const results = await Promise.all(
        digests.map((digest, i) => {
          return (i % 2 === 0 ? a : b).setTag(HUB, 'latest', { digest, checkedAt: i })
        })
      )
      const moves = await a.tagHistory(HUB, 'latest', 100)
      assert.equal(moves.length, digests.length)
      assert.deepEqual(new Set(moves.map((m) => m.to)), new Set(digests))
      moves.forEach((move, i) => assert.equal(move.from, moves[i + 1]?.to ?? null))
      // Each caller saw a different predecessor: no two callers both replaced the same digest.
      const previous = results.map((r) => r.previous)
      assert.equal(new Set(previous).size, previous.length)
    })
    it('records one move when both set the same new digest', async () => {
      const prefix = `t-${randomUUID()}`
      const [a, b] = [await open(prefix), await open(prefix)]
      for (let round = 1; round <= 10; round++) {
        const record = { digest: d(round), checkedAt: round }
        const results = await Promise.all([a, b].map((s) => s.setTag(HUB, 't', record)))
        const moved = results.filter((r) => r.previous !== null)
        assert.equal(moved.length, round === 1 ? 0 : 1)
      }
      assert.equal((await b.tagHistory(HUB, 't', 100)).length, 10)
    })
  })

  describe('when the prefix holds data of another schema version', () => {
    it('refuses to connect with a StateSchemaError', async () => {
      const prefix = `t-${randomUUID()}`
      const raw = new Redis(server.url)
      try {
        await raw.set(stateKeys(prefix).schemaVersionKey, '2')
        await assert.rejects(
          RedisStateStore.connect({ url: server.url, prefix }),
          (err: unknown) => err instanceof StateSchemaError && err.code === 'STATE_UNAVAILABLE'
        )
      } finally {
        await raw.quit()
      }
    })
  })

  describe('when nothing listens at the url', () => {
    it('rejects connect with STATE_UNAVAILABLE after the connect timeout', async () => {
      const started = Date.now()
      await assert.rejects(
        RedisStateStore.connect({ url: 'redis://127.0.0.1:1', prefix: 'x', connectTimeoutMs: 500 }),
        isUnavailable
      )
      assert.ok(Date.now() - started < 3000)
    })
  })
})
