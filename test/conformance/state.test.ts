// One suite for the StateStore contract (src/state/store.ts), run against every implementation:
// the in-process store and the Redis store on a real redis-server, a fresh key prefix per test.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { digestOf, type Digest } from '../../src/oci/digest.js'
import { FallbackStateStore } from '../../src/state/fallback.js'
import { MemoryStateStore } from '../../src/state/memory.js'
import { RedisStateStore } from '../../src/state/redis.js'
import {
  QUARANTINE_CLIENTS_LIMIT,
  QUARANTINE_HISTORY_LIMIT,
  QUARANTINE_REFERENCES_LIMIT,
  TAG_HISTORY_LIMIT,
  effectiveState,
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

/**
 * The contract, run against whatever `open` returns; each test gets its own empty store. `peer`
 * opens another handle on the same data, as a second replica would (the store itself in process).
 */
function checkStateStore(open: () => Promise<StateStore>, peer: (store: StateStore) => Promise<StateStore>): void {
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

  describe('quarantine', () => {
    const curl = { address: '10.0.0.1', userAgent: 'curl/8' }
    const containerd = { address: '10.0.0.2', userAgent: 'containerd/2', identity: 'node-a' }

    describe('when nothing was refused', () => {
      it('returns null and an empty list', async () => {
        assert.equal(await store.getQuarantine(HUB, d(1)), null)
        assert.deepEqual(await store.listQuarantine({ limit: 10 }), { records: [] })
      })
      it('counts no records', async () => {
        assert.equal(await store.countQuarantine(), 0)
      })
    })

    describe('when a digest is refused for the first time', () => {
      it('returns a record with one refusal, the reference, reasons and client', async () => {
        await store.recordDetention(HUB, d(1), {
          reference: 'latest',
          reasons: ['policy a: rule b: unsigned'],
          client: curl,
          at: 1000,
        })
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), {
          upstream: 'docker.io',
          repository: 'x/y',
          digest: d(1),
          state: 'detained',
          references: ['latest'],
          reasons: ['policy a: rule b: unsigned'],
          firstSeen: 1000,
          lastSeen: 1000,
          refused: 1,
          clients: [curl],
        })
      })
      it('keeps empty reasons and a missing client as empty arrays', async () => {
        await store.recordDetention(HUB, d(1), { reference: d(1), reasons: [], at: 5 })
        const record = await store.getQuarantine(HUB, d(1))
        assert.deepEqual(record?.reasons, [])
        assert.deepEqual(record?.clients, [])
        assert.deepEqual(record?.references, [d(1)])
      })
    })

    describe('when the same digest is refused again', () => {
      it('counts, moves lastSeen, keeps firstSeen, takes the latest reasons', async () => {
        const first = await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['old'], client: curl, at: 1000 })
        const second = await store.recordDetention(HUB, d(1), { reference: '1.0', reasons: ['new'], client: containerd, at: 2000 })
        assert.deepEqual([first, second], [{ created: true, previous: null }, { created: false, previous: null }])
        await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['new'], client: curl, at: 3000 })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.refused, 3)
        assert.equal(record?.firstSeen, 1000)
        assert.equal(record?.lastSeen, 3000)
        assert.deepEqual(record?.reasons, ['new'])
        assert.deepEqual(record?.references, ['latest', '1.0'])
        assert.deepEqual(record?.clients, [curl, containerd])
      })
      it('counts every one of concurrent refusals', async () => {
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.recordDetention(HUB, d(1), { reference: `t${i % 3}`, reasons: ['r'], at: 100 + i })
          )
        )
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.refused, 20)
        assert.equal(record?.firstSeen, 100)
        assert.equal(record?.lastSeen, 119)
        assert.equal(record?.references.length, 3)
      })
    })

    describe('when more references and clients come than the record keeps', () => {
      it('keeps only the newest of each', async () => {
        const total = Math.max(QUARANTINE_REFERENCES_LIMIT, QUARANTINE_CLIENTS_LIMIT) + 5
        for (let i = 0; i < total; i++) {
          const client = { address: `10.1.0.${i}`, userAgent: 'ua' }
          await store.recordDetention(HUB, d(1), { reference: `t${i}`, reasons: [], client, at: i })
        }
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.references.length, QUARANTINE_REFERENCES_LIMIT)
        assert.equal(record?.references[0], `t${total - 1}`)
        assert.equal(record?.clients.length, QUARANTINE_CLIENTS_LIMIT)
        assert.equal(record?.clients[0]?.address, `10.1.0.${total - 1}`)
      })
    })

    describe('when several digests were refused', () => {
      beforeEach(async () => {
        await store.recordDetention(HUB, d(1), { reference: 'a', reasons: [], at: 100 })
        await store.recordDetention(GHCR, d(2), { reference: 'b', reasons: [], at: 300 })
        await store.recordDetention(HUB, d(3), { reference: 'c', reasons: [], at: 200 })
        await store.recordDetention({ upstream: 'docker.io', repository: 'z' }, d(4), {
          reference: 'd',
          reasons: [],
          at: 200,
        })
      })
      it('lists them by lastSeen, newest first, with their repository and digest', async () => {
        const { records, next } = await store.listQuarantine({ limit: 10 })
        assert.equal(next, undefined)
        assert.deepEqual(records.map((r) => r.lastSeen), [300, 200, 200, 100])
        assert.deepEqual(records[0] && [records[0].upstream, records[0].repository, records[0].digest], [
          'ghcr.io',
          'x/y',
          d(2),
        ])
      })
      it('filters by upstream', async () => {
        const { records } = await store.listQuarantine({ upstream: 'ghcr.io', limit: 10 })
        assert.deepEqual(records.map((r) => r.digest), [d(2)])
        const hub = await store.listQuarantine({ upstream: 'docker.io', limit: 10 })
        assert.equal(hub.records.length, 3)
        assert.deepEqual(await store.listQuarantine({ upstream: 'quay.io', limit: 10 }), { records: [] })
      })
      it('pages through every record once, ties included', async () => {
        const all = (await store.listQuarantine({ limit: 10 })).records.map((r) => r.digest)
        const seen: Digest[] = []
        let after: string | undefined
        for (let pages = 0; pages < 10; pages++) {
          const page: { records: { digest: Digest }[]; next?: string } = await store.listQuarantine({
            limit: 1,
            ...(after !== undefined ? { after } : {}),
          })
          seen.push(...page.records.map((r) => r.digest))
          if (page.next === undefined) break
          after = page.next
        }
        assert.deepEqual(seen, all)
      })
      it('counts one record per (upstream, repository, digest), refused again or released', async () => {
        assert.equal(await store.countQuarantine(), 4)
        await store.recordDetention(HUB, d(1), { reference: 'a', reasons: [], at: 400 })
        await store.releaseQuarantine(GHCR, d(2), { by: 'alice', reason: 'accepted', expires: 50_000, at: 500 })
        assert.equal(await store.countQuarantine(), 4)
        await store.recordDetention(GHCR, d(1), { reference: 'e', reasons: [], at: 600 })
        assert.equal(await store.countQuarantine(), 5)
      })
      it('moves a digest refused again to the front', async () => {
        await store.recordDetention(HUB, d(1), { reference: 'a', reasons: [], at: 400 })
        const { records } = await store.listQuarantine({ limit: 1 })
        assert.equal(records[0]?.digest, d(1))
      })
    })
  })

  describe('releases', () => {
    const release = { by: 'alice', reason: 'CVE accepted until the fix', expires: 50_000, at: 2000 }
    beforeEach(async () => {
      await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], at: 1000 })
    })

    describe('when there is no quarantine record', () => {
      it('returns false and records nothing', async () => {
        assert.equal(await store.releaseQuarantine(HUB, d(2), release), false)
        assert.equal(await store.revokeRelease(GHCR, d(1), { by: 'bob', at: 3000 }), false)
        assert.equal(await store.getQuarantine(HUB, d(2)), null)
        assert.equal(await store.getQuarantine(GHCR, d(1)), null)
      })
    })

    describe('when a detained digest is released', () => {
      it('reads back released, with the release and its history entry', async () => {
        assert.equal(await store.releaseQuarantine(HUB, d(1), release), true)
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'released')
        assert.deepEqual(record?.release, release)
        assert.deepEqual(record?.history, [
          { action: 'release', by: 'alice', at: 2000, reason: release.reason, expires: 50_000 },
        ])
        assert.equal(record?.refused, 1)
        assert.deepEqual(record?.reasons, ['unsigned'])
      })
      it('keeps the release through further refusals', async () => {
        await store.releaseQuarantine(HUB, d(1), release)
        await store.recordDetention(HUB, d(1), { reference: '1.0', reasons: [], at: 4000 })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'released')
        assert.deepEqual(record?.release, release)
        assert.equal(record?.refused, 2)
        assert.deepEqual(record?.reasons, [])
      })
    })

    describe('when a release is revoked', () => {
      it('reads back detained without the release, both actions in the history', async () => {
        await store.releaseQuarantine(HUB, d(1), release)
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: 3000 }), true)
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'detained')
        assert.equal(record?.release, undefined)
        assert.deepEqual(record?.history, [
          { action: 'revoke', by: 'bob', at: 3000 },
          { action: 'release', by: 'alice', at: 2000, reason: release.reason, expires: 50_000 },
        ])
        assert.equal(record && effectiveState(record, 2500), 'detained')
      })
    })

    describe('when a record holds no release in force', () => {
      it('refuses a revoke of a detained record: false, and nothing changes', async () => {
        const before = await store.getQuarantine(HUB, d(1))
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: 3000 }), false)
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), before)
      })
      it('refuses a revoke of a revoked record, which keeps saying revoked', async () => {
        await store.markRevoked(HUB, d(1), { reasons: ['r'], revision: 'rev-2', at: 2500 })
        const before = await store.getQuarantine(HUB, d(1))
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: 3000 }), false)
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), before)
        assert.equal(before?.state, 'revoked')
      })
      it('refuses a revoke of a release that expired, leaving its expiry to the expiry job', async () => {
        await store.releaseQuarantine(HUB, d(1), release)
        const before = await store.getQuarantine(HUB, d(1))
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: release.expires }), false)
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), before)
        assert.deepEqual((await store.expireReleases(release.expires, 10)).map((e) => e.digest), [d(1)])
        assert.deepEqual((await store.getQuarantine(HUB, d(1)))?.history?.map((h) => h.action), ['expire', 'release'])
      })
      it('refuses a second revoke of the same release', async () => {
        await store.releaseQuarantine(HUB, d(1), release)
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: 3000 }), true)
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'carol', at: 3500 }), false)
        assert.deepEqual((await store.getQuarantine(HUB, d(1)))?.history?.map((h) => [h.action, h.by]), [
          ['revoke', 'bob'],
          ['release', 'alice'],
        ])
      })
    })

    describe('when more actions come than the history keeps', () => {
      it('keeps only the newest', async () => {
        for (let i = 0; i < QUARANTINE_HISTORY_LIMIT + 3; i++) {
          await store.releaseQuarantine(HUB, d(1), { ...release, at: i })
        }
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.history?.length, QUARANTINE_HISTORY_LIMIT)
        assert.equal(record?.history?.[0]?.at, QUARANTINE_HISTORY_LIMIT + 2)
      })
    })

    describe('expireReleases', () => {
      it('detains again each release due at now, once, with an expire action', async () => {
        await store.recordDetention(HUB, d(2), { reference: '2.0', reasons: ['unsigned'], at: 1000 })
        await store.recordDetention(GHCR, d(3), { reference: '3.0', reasons: ['unsigned'], at: 1000 })
        await store.releaseQuarantine(HUB, d(1), release)
        await store.releaseQuarantine(HUB, d(2), { ...release, expires: 40_000 })
        await store.releaseQuarantine(GHCR, d(3), { ...release, expires: 90_000 })
        assert.deepEqual(await store.expireReleases(39_999, 10), [])
        const expired = await store.expireReleases(50_000, 10)
        assert.deepEqual(
          expired.map((e) => [e.upstream, e.repository, e.digest, e.release.expires]),
          [
            ['docker.io', 'x/y', d(2), 40_000],
            ['docker.io', 'x/y', d(1), 50_000],
          ]
        )
        assert.deepEqual(expired[1]?.release, release)
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'detained')
        assert.equal(record?.release, undefined)
        assert.deepEqual(record?.history?.[0], { action: 'expire', by: 'customs', at: 50_000, expires: 50_000 })
        assert.equal(record?.history?.[1]?.action, 'release')
        assert.deepEqual(record?.references, ['latest'])
        assert.equal((await store.getQuarantine(GHCR, d(3)))?.state, 'released')
        assert.deepEqual(await store.expireReleases(60_000, 10), [])
      })
      it('leaves revoked releases alone and follows a renewed expiry', async () => {
        await store.recordDetention(HUB, d(2), { reference: '2.0', reasons: ['unsigned'], at: 1000 })
        await store.releaseQuarantine(HUB, d(1), release)
        await store.revokeRelease(HUB, d(1), { by: 'bob', at: 3000 })
        await store.releaseQuarantine(HUB, d(2), { ...release, expires: 10_000 })
        await store.releaseQuarantine(HUB, d(2), { ...release, expires: 70_000, at: 5000 })
        assert.deepEqual(await store.expireReleases(60_000, 10), [])
        assert.equal((await store.getQuarantine(HUB, d(1)))?.history?.[0]?.action, 'revoke')
        assert.deepEqual((await store.expireReleases(70_000, 10)).map((e) => e.digest), [d(2)])
      })
      it('moves at most limit records per call, the earliest due first', async () => {
        await store.recordDetention(HUB, d(2), { reference: '2.0', reasons: ['unsigned'], at: 1000 })
        await store.releaseQuarantine(HUB, d(1), release)
        await store.releaseQuarantine(HUB, d(2), { ...release, expires: 40_000 })
        assert.deepEqual((await store.expireReleases(90_000, 1)).map((e) => e.digest), [d(2)])
        assert.deepEqual((await store.expireReleases(90_000, 1)).map((e) => e.digest), [d(1)])
        assert.deepEqual(await store.expireReleases(90_000, 0), [])
      })
      it('gives each expiry to exactly one of two concurrent claimers', async () => {
        const digests = Array.from({ length: 20 }, (_, i) => d(`expiry ${i}`))
        for (const [i, digest] of digests.entries()) {
          await store.recordDetention(HUB, digest, { reference: `v${i}`, reasons: ['unsigned'], at: 1000 })
          await store.releaseQuarantine(HUB, digest, { ...release, expires: 10_000 + i })
        }
        const other = await peer(store)
        try {
          const claims = await Promise.all([
            store.expireReleases(60_000, 100),
            other.expireReleases(60_000, 100),
            store.expireReleases(60_000, 100),
            other.expireReleases(60_000, 100),
          ])
          const claimed = claims.flat().map((e) => e.digest)
          assert.deepEqual([...claimed].sort(), [...digests].sort())
          for (const digest of digests) {
            const record = await store.getQuarantine(HUB, digest)
            assert.deepEqual(record?.history?.map((h) => h.action), ['expire', 'release'])
          }
        } finally {
          if (other !== store) await other.close()
        }
      })
    })

    describe('effectiveState', () => {
      it('is released before expires and detained from then on', async () => {
        await store.releaseQuarantine(HUB, d(1), release)
        const record = await store.getQuarantine(HUB, d(1))
        assert.ok(record !== null)
        assert.equal(effectiveState(record, 2000), 'released')
        assert.equal(effectiveState(record, 49_999), 'released')
        assert.equal(effectiveState(record, 50_000), 'detained')
        assert.equal(effectiveState(record, 90_000), 'detained')
      })
      it('is detained for a record never released', async () => {
        const record = await store.getQuarantine(HUB, d(1))
        assert.ok(record !== null)
        assert.equal(effectiveState(record, 0), 'detained')
      })
    })
  })

  describe('the blob gate index', () => {
    const blob = (n: number) => ({ digest: d(`blob ${n}`), size: 100 + n })
    const image = (n: number, outcome: VerdictOutcome): ManifestRecord => ({
      ...manifest(d(`image ${n}`), outcome),
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
    })
    const detained = (record: ManifestRecord): ManifestRecord => ({
      ...record,
      verdict: { ...record.verdict, outcome: 'detained', reasons: ['revoked'], revision: 'rev-2' },
    })
    // Image 1 holds blobs 1 and 2; image 2 holds blobs 2 and 3: blob 2 is shared.
    beforeEach(async () => {
      await store.recordManifest(HUB, image(1, 'cleared'), { blobs: [blob(1), blob(2)], children: [] })
      await store.recordManifest(HUB, image(2, 'cleared'), { blobs: [blob(2), blob(3)], children: [] })
    })

    describe('when an admitted manifest is detained', () => {
      it('records the verdict and drops the links only it held', async () => {
        const { unlinked } = await store.detainManifest(HUB, detained(image(1, 'cleared')))
        assert.deepEqual(unlinked, [blob(1).digest])
        assert.equal((await store.getManifest(HUB, d('image 1')))?.verdict.outcome, 'detained')
        assert.deepEqual((await store.getManifest(HUB, d('image 1')))?.verdict.reasons, ['revoked'])
        assert.equal(await store.getBlobLink(HUB, blob(1).digest), null)
        assert.deepEqual(await store.getBlobLink(HUB, blob(2).digest), blob(2))
        assert.deepEqual(await store.getBlobLink(HUB, blob(3).digest), blob(3))
      })
      it('drops a shared link once every manifest holding it is detained', async () => {
        await store.detainManifest(HUB, detained(image(1, 'cleared')))
        const { unlinked } = await store.detainManifest(HUB, detained(image(2, 'cleared')))
        assert.deepEqual(unlinked.sort(), [blob(2).digest, blob(3).digest].sort())
        assert.equal(await store.getBlobLink(HUB, blob(2).digest), null)
        assert.equal(await store.getBlobLink(HUB, blob(3).digest), null)
      })
      it('leaves the same blobs of another repository served', async () => {
        await store.recordManifest(GHCR, image(1, 'cleared'), { blobs: [blob(1)], children: [] })
        await store.detainManifest(HUB, detained(image(1, 'cleared')))
        assert.deepEqual(await store.getBlobLink(GHCR, blob(1).digest), blob(1))
      })
      it('opens the gate again when the manifest is admitted again', async () => {
        await store.detainManifest(HUB, detained(image(1, 'cleared')))
        await store.recordManifest(HUB, image(1, 'cleared'), { blobs: [blob(1), blob(2)], children: [] })
        assert.deepEqual(await store.getBlobLink(HUB, blob(1).digest), blob(1))
        const { unlinked } = await store.detainManifest(HUB, detained(image(1, 'cleared')))
        assert.deepEqual(unlinked, [blob(1).digest])
      })
      it('refuses a verdict that is not detained', async () => {
        await assert.rejects(store.detainManifest(HUB, image(1, 'cleared')))
        assert.deepEqual(await store.getBlobLink(HUB, blob(1).digest), blob(1))
      })
    })

    describe('when an admitted manifest is recorded again as detained', () => {
      it('closes the gate the same way', async () => {
        await store.recordManifest(HUB, detained(image(2, 'cleared')), { blobs: [blob(2), blob(3)], children: [] })
        assert.equal(await store.getBlobLink(HUB, blob(3).digest), null)
        assert.deepEqual(await store.getBlobLink(HUB, blob(2).digest), blob(2))
      })
    })

    describe('manifestBlobs and unheld', () => {
      it('knows the blobs of a manifest detained from the start, and opens no gate for them', async () => {
        await store.recordManifest(HUB, image(3, 'detained'), { blobs: [blob(4)], children: [] })
        assert.deepEqual(await store.manifestBlobs(HUB, d('image 3')), [blob(4).digest])
        assert.equal(await store.getBlobLink(HUB, blob(4).digest), null)
        assert.deepEqual(await store.unheld([blob(4).digest, d('image 3')]), [blob(4).digest, d('image 3')])
      })
      it('holds what an admitted manifest anywhere references, and nothing else', async () => {
        await store.recordManifest(GHCR, image(1, 'cleared'), { blobs: [blob(1)], children: [] })
        assert.deepEqual(await store.unheld([blob(1).digest, blob(2).digest, d('image 1'), d('none')]), [d('none')])
        await store.detainManifest(HUB, detained(image(1, 'cleared')))
        await store.detainManifest(HUB, detained(image(2, 'cleared')))
        assert.deepEqual(await store.unheld([blob(1).digest, blob(2).digest, blob(3).digest, d('image 1'), d('image 2')]), [
          blob(2).digest,
          blob(3).digest,
          d('image 2'),
        ])
      })
      it('is empty for a manifest never recorded', async () => {
        assert.deepEqual(await store.manifestBlobs(HUB, d('none')), [])
        assert.deepEqual(await store.unheld([]), [])
      })
    })
  })

  describe('listings', () => {
    it('walks every manifest record and tag, page by page, with their repositories', async () => {
      const want = new Set<string>()
      for (let i = 0; i < 25; i++) {
        const repo = i % 2 === 0 ? HUB : { upstream: 'host:5000', repository: `a/b:${i}` }
        await store.recordManifest(repo, manifest(d(i), 'cleared'), { blobs: [], children: [] })
        await store.setTag(repo, `t${i}`, { digest: d(i), checkedAt: i })
        want.add(`${repo.upstream} ${repo.repository} ${d(i)}`)
      }
      const manifests = new Set<string>()
      const tags = new Set<string>()
      let after: string | undefined
      let pages = 0
      do {
        const page = await store.listManifests({ limit: 4, ...(after !== undefined ? { after } : {}) })
        for (const { repo, record } of page.entries) manifests.add(`${repo.upstream} ${repo.repository} ${record.digest}`)
        after = page.next
        pages++
      } while (after !== undefined && pages < 1000)
      after = undefined
      do {
        const page = await store.listTags({ limit: 4, ...(after !== undefined ? { after } : {}) })
        for (const { repo, tag, record } of page.entries) tags.add(`${repo.upstream} ${repo.repository} ${record.digest} ${tag}`)
        after = page.next
      } while (after !== undefined)
      assert.deepEqual(manifests, want)
      assert.equal(tags.size, 25)
      assert.ok(tags.has(`host:5000 a/b:1 ${d(1)} t1`))
    })
    it('returns an empty last page when there is nothing', async () => {
      const page = await store.listManifests({ limit: 10 })
      assert.deepEqual(page.entries, [])
    })
  })

  describe('revoked and purged', () => {
    const revocation = { reasons: ["policy 'p' rule 'r': unsigned"], revision: 'rev-2', at: 5000 }

    describe('when cleared content with no quarantine record is revoked', () => {
      it('creates a revoked record with the reasons and a history entry', async () => {
        assert.deepEqual(await store.markRevoked(HUB, d(1), revocation), { created: true })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'revoked')
        assert.deepEqual(record?.reasons, revocation.reasons)
        assert.deepEqual(record?.references, [])
        assert.deepEqual(record?.clients, [])
        assert.equal(record?.refused, 0)
        assert.deepEqual(record?.history, [{ action: 'revoked', by: 'customs', at: 5000, revision: 'rev-2' }])
        assert.equal(record && effectiveState(record, 6000), 'revoked')
        const page = await store.listQuarantine({ limit: 10 })
        assert.deepEqual(page.records.map((r) => r.digest), [d(1)])
      })
    })

    describe('when a released digest is revoked by a re-evaluation', () => {
      it('drops the release and keeps the refusals', async () => {
        await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], at: 1000 })
        await store.releaseQuarantine(HUB, d(1), { by: 'alice', reason: 'ok', expires: 90_000, at: 2000 })
        assert.deepEqual(await store.markRevoked(HUB, d(1), revocation), { created: false })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'revoked')
        assert.equal(record?.release, undefined)
        assert.equal(record?.refused, 1)
        assert.deepEqual(record?.references, ['latest'])
        assert.equal(record?.history?.length, 2)
        assert.equal(record && effectiveState(record, 3000), 'revoked')
      })
      it('stays revoked through further refusals', async () => {
        await store.markRevoked(HUB, d(1), revocation)
        await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], at: 6000 })
        assert.equal((await store.getQuarantine(HUB, d(1)))?.state, 'revoked')
      })
    })

    describe('purge', () => {
      it('returns false without a quarantine record', async () => {
        assert.equal(await store.purgeQuarantine(HUB, d(9), { by: 'alice', reason: 'gone', at: 1 }), false)
        assert.equal(await store.getQuarantine(HUB, d(9)), null)
      })
      it('records purged with the action, and detained again on the next refusal', async () => {
        await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], at: 1000 })
        await store.releaseQuarantine(HUB, d(1), { by: 'alice', reason: 'ok', expires: 90_000, at: 2000 })
        assert.equal(await store.purgeQuarantine(HUB, d(1), { by: 'bob', reason: 'malware', at: 3000 }), true)
        const purged = await store.getQuarantine(HUB, d(1))
        assert.equal(purged?.state, 'purged')
        assert.equal(purged?.release, undefined)
        assert.deepEqual(purged?.history?.[0], { action: 'purge', by: 'bob', at: 3000, reason: 'malware' })
        assert.equal(purged && effectiveState(purged, 4000), 'purged')
        const refused = await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], revision: 'rev-1', at: 4000 })
        assert.deepEqual(refused, { created: false, previous: 'purged' })
        const again = await store.getQuarantine(HUB, d(1))
        assert.equal(again?.state, 'detained')
        assert.equal(again?.refused, 2)
        assert.deepEqual(again?.history?.map((h) => h.action), ['detained', 'purge', 'release'])
        assert.deepEqual(again?.history?.[0], { action: 'detained', by: 'customs', at: 4000, reasons: ['unsigned'], revision: 'rev-1' })
        const later = await store.recordDetention(HUB, d(1), { reference: 'latest', reasons: ['unsigned'], at: 5000 })
        assert.deepEqual(later, { created: false, previous: null })
        assert.equal((await store.getQuarantine(HUB, d(1)))?.history?.length, 3)
      })
    })
  })

  describe('cleared again', () => {
    const clearance = { revision: 'rev-3', at: 7000 }
    const detained = async (digest: Digest): Promise<void> => {
      await store.recordDetention(HUB, digest, { reference: 'latest', reasons: ['unsigned'], at: 1000 })
    }

    describe('when the policies clear a revoked digest again', () => {
      it('records cleared by customs at the revision, keeping the revocation, reasons and refusals', async () => {
        await detained(d(1))
        await store.markRevoked(HUB, d(1), { reasons: ["policy 'p' rule 'r': unsigned"], revision: 'rev-2', at: 5000 })
        assert.deepEqual(await store.markCleared(HUB, d(1), clearance), { previous: 'revoked' })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'cleared')
        assert.deepEqual(record?.history, [
          { action: 'cleared', by: 'customs', at: 7000, revision: 'rev-3' },
          { action: 'revoked', by: 'customs', at: 5000, revision: 'rev-2' },
        ])
        assert.deepEqual(record?.reasons, ["policy 'p' rule 'r': unsigned"])
        assert.equal(record?.refused, 1)
        assert.deepEqual(record?.references, ['latest'])
        assert.equal(record && effectiveState(record, 8000), 'cleared')
        assert.deepEqual((await store.listQuarantine({ limit: 10 })).records.map((r) => [r.digest, r.state]), [[d(1), 'cleared']])
        assert.equal(await store.countQuarantine(), 1)
      })
    })

    describe('when the policies clear a detained or purged digest', () => {
      it('records cleared and answers the state it left', async () => {
        await detained(d(1))
        await detained(d(2))
        await store.purgeQuarantine(HUB, d(2), { by: 'bob', reason: 'malware', at: 3000 })
        assert.deepEqual(await store.markCleared(HUB, d(1), clearance), { previous: 'detained' })
        assert.deepEqual(await store.markCleared(HUB, d(2), clearance), { previous: 'purged' })
        assert.equal((await store.getQuarantine(HUB, d(1)))?.state, 'cleared')
        const purged = await store.getQuarantine(HUB, d(2))
        assert.equal(purged?.state, 'cleared')
        assert.deepEqual(purged?.history?.map((h) => h.action), ['cleared', 'purge'])
      })
    })

    describe('when the policies clear a released digest', () => {
      it('drops the release, which then never expires back to detained', async () => {
        await detained(d(1))
        await store.releaseQuarantine(HUB, d(1), { by: 'alice', reason: 'ok', expires: 9000, at: 2000 })
        assert.deepEqual(await store.markCleared(HUB, d(1), clearance), { previous: 'released' })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'cleared')
        assert.equal(record?.release, undefined)
        assert.deepEqual(record?.history?.map((h) => h.action), ['cleared', 'release'])
        assert.deepEqual(await store.expireReleases(90_000, 10), [])
        assert.equal((await store.getQuarantine(HUB, d(1)))?.state, 'cleared')
      })
    })

    describe('when there is nothing to resolve', () => {
      it('creates no record for a digest never refused', async () => {
        assert.deepEqual(await store.markCleared(HUB, d(1), clearance), { previous: null })
        assert.equal(await store.getQuarantine(HUB, d(1)), null)
        assert.equal(await store.countQuarantine(), 0)
      })
      it('leaves a cleared record as it is, its history one entry long', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        assert.deepEqual(await store.markCleared(HUB, d(1), { revision: 'rev-4', at: 8000 }), { previous: null })
        assert.deepEqual((await store.getQuarantine(HUB, d(1)))?.history, [{ action: 'cleared', by: 'customs', at: 7000, revision: 'rev-3' }])
      })
      it('leaves a record in a state the clearance may not end', async () => {
        await detained(d(1))
        await detained(d(2))
        await store.markRevoked(HUB, d(2), { reasons: ['r'], revision: 'rev-2', at: 5000 })
        const onlyRevoked = { ...clearance, from: ['revoked' as const] }
        assert.deepEqual(await store.markCleared(HUB, d(1), onlyRevoked), { previous: null })
        assert.deepEqual(await store.markCleared(HUB, d(2), onlyRevoked), { previous: 'revoked' })
        const kept = await store.getQuarantine(HUB, d(1))
        assert.equal(kept?.state, 'detained')
        assert.equal(kept?.history, undefined)
        assert.equal((await store.getQuarantine(HUB, d(2)))?.state, 'cleared')
        assert.deepEqual(await store.markCleared(HUB, d(1), { ...clearance, from: [] }), { previous: null })
      })
      it('resolves only the repository and upstream asked', async () => {
        await detained(d(1))
        await store.recordDetention(GHCR, d(1), { reference: 'latest', reasons: ['unsigned'], at: 1000 })
        await store.recordDetention({ upstream: 'docker.io', repository: 'x/z' }, d(1), { reference: 'latest', reasons: ['unsigned'], at: 1000 })
        await store.markCleared(HUB, d(1), clearance)
        assert.equal((await store.getQuarantine(GHCR, d(1)))?.state, 'detained')
        assert.equal((await store.getQuarantine({ upstream: 'docker.io', repository: 'x/z' }, d(1)))?.state, 'detained')
      })
    })

    describe('when a cleared digest is refused again', () => {
      it('is detained again, once, with the refusal counted and a detained entry by customs', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        const first = await store.recordDetention(HUB, d(1), { reference: 'v2', reasons: ['new rule'], revision: 'rev-4', at: 9000 })
        const second = await store.recordDetention(HUB, d(1), { reference: 'v2', reasons: ['new rule'], revision: 'rev-4', at: 9500 })
        assert.deepEqual([first, second], [{ created: false, previous: 'cleared' }, { created: false, previous: null }])
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'detained')
        assert.equal(record?.refused, 3)
        assert.deepEqual(record?.reasons, ['new rule'])
        assert.deepEqual(record?.history, [
          { action: 'detained', by: 'customs', at: 9000, reasons: ['new rule'], revision: 'rev-4' },
          { action: 'cleared', by: 'customs', at: 7000, revision: 'rev-3' },
        ])
      })
      it('keeps empty reasons and a missing revision as they came', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        await store.recordDetention(HUB, d(1), { reference: 'v2', reasons: [], at: 9000 })
        const record = await store.getQuarantine(HUB, d(1))
        assert.deepEqual(record?.history?.[0], { action: 'detained', by: 'customs', at: 9000, reasons: [] })
      })
      it('is revoked again by a re-evaluation that detains it', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        assert.deepEqual(await store.markRevoked(HUB, d(1), { reasons: ['r'], revision: 'rev-4', at: 8000 }), { created: false })
        const record = await store.getQuarantine(HUB, d(1))
        assert.equal(record?.state, 'revoked')
        assert.deepEqual(record?.history?.map((h) => h.action), ['revoked', 'cleared'])
      })
    })

    describe('when a person acts on a cleared record', () => {
      it('refuses a release: false, and nothing changes', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        const before = await store.getQuarantine(HUB, d(1))
        assert.equal(await store.releaseQuarantine(HUB, d(1), { by: 'alice', reason: 'r', expires: 9000, at: 8000 }), false)
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), before)
        assert.deepEqual(await store.expireReleases(90_000, 10), [])
      })
      it('refuses a revoke: false, and nothing changes', async () => {
        await detained(d(1))
        await store.markCleared(HUB, d(1), clearance)
        const before = await store.getQuarantine(HUB, d(1))
        assert.equal(await store.revokeRelease(HUB, d(1), { by: 'bob', at: 8000 }), false)
        assert.deepEqual(await store.getQuarantine(HUB, d(1)), before)
      })
      it('leaves no release behind when a clearance and a release race', async () => {
        const digests = Array.from({ length: 10 }, (_, i) => d(`race ${i}`))
        for (const digest of digests) await detained(digest)
        const other = await peer(store)
        try {
          await Promise.all(
            digests.flatMap((digest, i) => [
              store.markCleared(HUB, digest, clearance),
              other.releaseQuarantine(HUB, digest, { by: 'alice', reason: 'r', expires: 9000 + i, at: 8000 }),
            ])
          )
          for (const digest of digests) {
            const record = await store.getQuarantine(HUB, digest)
            assert.equal(record?.state, 'cleared')
            assert.equal(record?.release, undefined)
          }
          assert.deepEqual(await store.expireReleases(90_000, 100), [])
        } finally {
          if (other !== store) await other.close()
        }
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
    checkStateStore(async () => new MemoryStateStore(), async (store) => store)
  })

  // The wrapper must pass the contract through unchanged while the store answers.
  describe('FallbackStateStore over MemoryStateStore', () => {
    checkStateStore(async () => new FallbackStateStore(new MemoryStateStore()), async (store) => store)
  })

  describe('RedisStateStore', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    let prefix = ''
    checkStateStore(
      () => {
        prefix = `t-${randomUUID()}`
        return RedisStateStore.connect({ url: server.url, prefix })
      },
      () => RedisStateStore.connect({ url: server.url, prefix })
    )
  })
})
