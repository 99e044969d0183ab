// One suite for the StateStore contract (src/state/store.ts), run against every implementation:
// the in-process store and the Redis store on a real redis-server, a fresh key prefix per test.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { digestOf, type Digest } from '../../src/oci/digest.js'
import { MemoryStateStore } from '../../src/state/memory.js'
import { RedisStateStore } from '../../src/state/redis.js'
import {
  TAG_HISTORY_LIMIT,
  type ManifestRecord,
  type RepoKey,
  type StateStore,
  type VerdictOutcome,
} from '../../src/state/store.js'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'

const HUB: RepoKey = { upstream: 'docker.io', repository: 'x/y' }
const GHCR: RepoKey = { upstream: 'ghcr.io', repository: 'x/y' }
const d = (n: number | string): Digest => digestOf(Buffer.from(`content ${n}`))

function manifest(digest: Digest, outcome: VerdictOutcome): ManifestRecord {
  const reasons = outcome === 'cleared' ? [] : ['no signature from a trusted builder']
  return {
    digest,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    size: 1234,
    verdict: { outcome, reasons, revision: 'rev-1', decidedAt: 1_700_000_000_123 },
  }
}

/** The contract, run against whatever `open` returns; each test gets its own empty store. */
function checkStateStore(open: () => Promise<StateStore>): void {
  let store: StateStore
  beforeEach(async () => {
    store = await open()
  })
  afterEach(async () => {
    await store.close()
  })

  describe('ping', () => {
    it('resolves while the store is up', async () => {
      await store.ping()
    })
  })

  describe('tags', () => {
    describe('when the tag was never set', () => {
      it('returns null and an empty history', async () => {
        assert.equal(await store.getTag(HUB, 'latest'), null)
        assert.deepEqual(await store.tagHistory(HUB, 'latest', 10), [])
      })
    })

    describe('when the tag is set for the first time', () => {
      it('returns no previous digest and records one move from null', async () => {
        assert.deepEqual(await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 100 }), {
          previous: null,
        })
        assert.deepEqual(await store.getTag(HUB, 'latest'), { digest: d(1), checkedAt: 100 })
        assert.deepEqual(await store.tagHistory(HUB, 'latest', 10), [
          { from: null, to: d(1), at: 100 },
        ])
      })
    })

    describe('when the same digest is set again', () => {
      it('returns no previous digest, updates checkedAt and adds no history', async () => {
        await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 100 })
        assert.deepEqual(await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 200 }), {
          previous: null,
        })
        assert.deepEqual(await store.getTag(HUB, 'latest'), { digest: d(1), checkedAt: 200 })
        assert.equal((await store.tagHistory(HUB, 'latest', 10)).length, 1)
      })
    })

    describe('when the tag moves', () => {
      it('returns the previous digest and lists the moves newest first', async () => {
        await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 100 })
        assert.deepEqual(await store.setTag(HUB, 'latest', { digest: d(2), checkedAt: 200 }), {
          previous: d(1),
        })
        await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 300 })
        assert.deepEqual(await store.getTag(HUB, 'latest'), { digest: d(1), checkedAt: 300 })
        assert.deepEqual(await store.tagHistory(HUB, 'latest', 10), [
          { from: d(2), to: d(1), at: 300 },
          { from: d(1), to: d(2), at: 200 },
          { from: null, to: d(1), at: 100 },
        ])
      })
      it('returns at most `limit` moves', async () => {
        for (let i = 0; i < 5; i++) {
          await store.setTag(HUB, 'latest', { digest: d(i), checkedAt: i })
        }
        const moves = await store.tagHistory(HUB, 'latest', 2)
        assert.deepEqual(moves.map((m) => m.to), [d(4), d(3)])
        assert.deepEqual(await store.tagHistory(HUB, 'latest', 0), [])
      })
    })

    describe('when the tag moves more often than TAG_HISTORY_LIMIT', () => {
      it('returns only the newest TAG_HISTORY_LIMIT moves', async () => {
        const total = TAG_HISTORY_LIMIT + 7
        for (let i = 0; i < total; i++) await store.setTag(HUB, 't', { digest: d(i), checkedAt: i })
        const moves = await store.tagHistory(HUB, 't', total)
        assert.equal(moves.length, TAG_HISTORY_LIMIT)
        assert.deepEqual(moves[0], { from: d(total - 2), to: d(total - 1), at: total - 1 })
        assert.equal(moves.at(-1)?.to, d(total - TAG_HISTORY_LIMIT))
      })
    })

    describe('when two upstreams have a repository of the same name', () => {
      it('returns each upstream its own tag and history', async () => {
        await store.setTag(HUB, 'latest', { digest: d(1), checkedAt: 1 })
        await store.setTag(GHCR, 'latest', { digest: d(2), checkedAt: 2 })
        assert.equal((await store.getTag(HUB, 'latest'))?.digest, d(1))
        assert.equal((await store.getTag(GHCR, 'latest'))?.digest, d(2))
        assert.deepEqual(await store.tagHistory(GHCR, 'latest', 10), [
          { from: null, to: d(2), at: 2 },
        ])
        assert.equal(await store.getTag({ upstream: 'quay.io', repository: 'x/y' }, 'latest'), null)
      })
      it('returns nothing across names that differ only in where a separator falls', async () => {
        const a: RepoKey = { upstream: 'host:5000', repository: 'x' }
        const b: RepoKey = { upstream: 'host', repository: '5000:x' }
        await store.setTag(a, 'v1', { digest: d(1), checkedAt: 1 })
        assert.equal(await store.getTag(b, 'v1'), null)
      })
    })
  })

  describe('manifests', () => {
    describe('when nothing was recorded', () => {
      it('returns null for the record, the blob link and the parent', async () => {
        assert.equal(await store.getManifest(HUB, d(1)), null)
        assert.equal(await store.getBlobLink(HUB, d(2)), null)
        assert.equal(await store.getParent(HUB, d(3)), null)
      })
    })

    for (const outcome of ['cleared', 'cleared-with-warnings'] as const) {
      describe(`when a ${outcome} index is recorded`, () => {
        it('returns the record as written, and links its blobs and children', async () => {
          const record = manifest(d('index'), outcome)
          const config = { digest: d('config'), size: 10 }
          const layer = { digest: d('layer'), size: 2000 }
          await store.recordManifest(HUB, record, {
            blobs: [config, layer],
            children: [d('amd64'), d('arm64')],
          })
          assert.deepEqual(await store.getManifest(HUB, d('index')), record)
          assert.deepEqual(await store.getBlobLink(HUB, d('layer')), layer)
          assert.deepEqual(await store.getBlobLink(HUB, d('config')), config)
          assert.equal(await store.getParent(HUB, d('amd64')), d('index'))
          assert.equal(await store.getParent(HUB, d('arm64')), d('index'))
          assert.equal(await store.getParent(HUB, d('index')), null)
        })
        it('returns nothing for the same digests in another upstream', async () => {
          const links = { blobs: [{ digest: d('layer'), size: 1 }], children: [d('amd64')] }
          await store.recordManifest(HUB, manifest(d('index'), outcome), links)
          assert.equal(await store.getManifest(GHCR, d('index')), null)
          assert.equal(await store.getBlobLink(GHCR, d('layer')), null)
          assert.equal(await store.getParent(GHCR, d('amd64')), null)
        })
      })
    }

    describe('when a detained manifest is recorded', () => {
      it('returns the record with its reasons but links no blobs and no children', async () => {
        const record = manifest(d('index'), 'detained')
        const links = { blobs: [{ digest: d('layer'), size: 5 }], children: [d('amd64')] }
        await store.recordManifest(HUB, record, links)
        assert.deepEqual(await store.getManifest(HUB, d('index')), record)
        assert.equal(await store.getBlobLink(HUB, d('layer')), null)
        assert.equal(await store.getParent(HUB, d('amd64')), null)
      })
    })

    describe('when a detained manifest is later recorded as cleared', () => {
      it('returns the new verdict and the links', async () => {
        const links = { blobs: [{ digest: d('layer'), size: 5 }], children: [] }
        await store.recordManifest(HUB, manifest(d('m'), 'detained'), links)
        await store.recordManifest(HUB, manifest(d('m'), 'cleared'), links)
        assert.equal((await store.getManifest(HUB, d('m')))?.verdict.outcome, 'cleared')
        assert.deepEqual(await store.getBlobLink(HUB, d('layer')), { digest: d('layer'), size: 5 })
      })
    })
  })

  describe('locks', () => {
    describe('when the lock is free', () => {
      it('returns a token and reports the lock held', async () => {
        assert.equal(await store.isLocked('fill'), false)
        const token = await store.acquireLock('fill', 5000)
        assert.equal(typeof token, 'string')
        assert.equal(await store.isLocked('fill'), true)
        assert.equal(await store.isLocked('other'), false)
      })
    })

    describe('when the lock is held', () => {
      it('returns null to a second acquirer', async () => {
        assert.notEqual(await store.acquireLock('fill', 5000), null)
        assert.equal(await store.acquireLock('fill', 5000), null)
        assert.notEqual(await store.acquireLock('other', 5000), null)
      })
      it('renews for the holder only', async () => {
        const token = await store.acquireLock('fill', 5000)
        assert.ok(token !== null)
        assert.equal(await store.renewLock('fill', token, 5000), true)
        assert.equal(await store.renewLock('fill', 'not-the-token', 5000), false)
      })
      it('releases for the holder only', async () => {
        const token = await store.acquireLock('fill', 5000)
        assert.ok(token !== null)
        await store.releaseLock('fill', 'not-the-token')
        assert.equal(await store.isLocked('fill'), true)
        await store.releaseLock('fill', token)
        assert.equal(await store.isLocked('fill'), false)
        assert.notEqual(await store.acquireLock('fill', 5000), null)
      })
    })

    describe('when the ttl passes without renewal', () => {
      it('returns the lock free, to be taken again, and refuses the old token', async () => {
        const old = await store.acquireLock('fill', 50)
        assert.ok(old !== null)
        await sleep(150)
        assert.equal(await store.isLocked('fill'), false)
        assert.equal(await store.renewLock('fill', old, 5000), false)
        const fresh = await store.acquireLock('fill', 5000)
        assert.ok(fresh !== null && fresh !== old)
        await store.releaseLock('fill', old)
        assert.equal(await store.isLocked('fill'), true)
      })
    })

    describe('when the holder renews before the ttl passes', () => {
      it('returns the lock still held after the original ttl', async () => {
        const token = await store.acquireLock('fill', 400)
        assert.ok(token !== null)
        await sleep(100)
        assert.equal(await store.renewLock('fill', token, 3000), true)
        await sleep(500)
        assert.equal(await store.isLocked('fill'), true)
      })
    })

    describe('when a lock that is not held is released', () => {
      it('resolves', async () => {
        await store.releaseLock('never-taken', 'any')
      })
    })
  })
}

describe('StateStore conformance', () => {
  describe('MemoryStateStore', () => {
    checkStateStore(async () => new MemoryStateStore())
  })

  describe('RedisStateStore', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    checkStateStore(() => RedisStateStore.connect({ url: server.url, prefix: `t-${randomUUID()}` }))
  })
})
