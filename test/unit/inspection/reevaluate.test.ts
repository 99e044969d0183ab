// The re-evaluation walk and the quarantine record of content it clears again, judged from
// recorded facts (a policy change, no I/O), on the in-process store and on a Redis store on a
// real redis-server: a revoked, detained or released digest the policies clear now says
// `cleared` and is announced; a record of content served all along is resolved only if it says
// `revoked`; a failure to resolve the record leaves the verdict unrecorded, so that the next walk
// tries both again; a digest admitted only by tag-scoped policies is judged by its tags, kept
// while one still admits it and revoked once none does.

import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { EventBus, type CustomsEvent } from '../../../src/audit/events.js'
import type { ManifestService } from '../../../src/inspection/manifests.js'
import { Reevaluator } from '../../../src/inspection/reevaluate.js'
import { digestOf, type Digest } from '../../../src/oci/digest.js'
import { createLogger } from '../../../src/observability/logger.js'
import { PolicyEngine } from '../../../src/policy/engine.js'
import { evaluate } from '../../../src/policy/evaluate.js'
import type { PolicySet } from '../../../src/policy/types.js'
import { MemoryStateStore } from '../../../src/state/memory.js'
import { RedisStateStore } from '../../../src/state/redis.js'
import { NO_FACTS } from '../../../src/verify/facts.js'
import type { ManifestRecord, RepoKey, StateStore, Verdict } from '../../../src/state/store.js'
import { startRedisServer, type RedisServer } from '../../helpers/redis-server.js'
import { ANY, NON_ROOT, policySet } from './sets.js'

const REPO: RepoKey = { upstream: 'docker.io', repository: 'acme/app' }
const logger = createLogger({ level: 'silent' })

// Another set that allows the same: a new revision under which nothing changes side.
const ANY_AGAIN = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-any-again }
spec:
  mode: enforce
  match: [{ repository: "acme/**" }]
  rules: {}
`

// Under unmatched: deny the digest alone is admitted by no policy; pulls by the tags named are.
const tagScoped = (name: string, tags: string): PolicySet => policySet(name, `
apiVersion: customs.dev/v1
kind: PolicySettings
metadata: { name: settings }
spec: { unmatched: deny }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: ${name} }
spec:
  mode: enforce
  match: [{ repository: "acme/**", tags: [${tags}] }]
  authorities: [{ name: any, static: pass }]
`)

function image(name: string): { record: ManifestRecord; layer: Digest } {
  const digest = digestOf(Buffer.from(`manifest ${name} ${randomUUID()}`))
  const layer = digestOf(Buffer.from(`layer ${name} ${randomUUID()}`))
  const verdict: Verdict = { outcome: 'cleared', reasons: [], revision: 'start', decidedAt: 0 }
  return {
    layer,
    record: {
      digest,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 500,
      verdict,
      facts: NO_FACTS,
      image: { mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'image', labels: {}, platforms: ['linux/amd64'], layers: 1, size: 100, user: '', annotations: {} },
    },
  }
}

function checkReevaluation(open: () => Promise<StateStore>): void {
  let state: StateStore
  let policies: PolicyEngine
  let events: CustomsEvent[]
  let reevaluator: Reevaluator
  /** The layer each manifest links when admitted, as the pull path's admission would. */
  const layers = new Map<Digest, Digest>()

  /** Puts `next` in force and walks the cache under it. */
  async function walkUnder(next: PolicySet): Promise<ReturnType<Reevaluator['current']>> {
    policies.replace(next)
    assert.equal(reevaluator.start('test'), true)
    await reevaluator.idle()
    return reevaluator.current()
  }

  /** Records an image admitted under the set in force, its layer linked. */
  async function admitted(name: string): Promise<Digest> {
    const { record, layer } = image(name)
    layers.set(record.digest, layer)
    await state.recordManifest(REPO, { ...record, verdict: { ...record.verdict, revision: revision() } }, { blobs: [{ digest: layer, size: 100 }], children: [] })
    return record.digest
  }

  /** Records an image detained under the set in force, as an inspection refusing it would. */
  async function detained(name: string): Promise<Digest> {
    const { record, layer } = image(name)
    layers.set(record.digest, layer)
    const verdict: Verdict = { outcome: 'detained', reasons: ['root'], revision: revision(), decidedAt: 0 }
    await state.recordManifest(REPO, { ...record, verdict }, { blobs: [{ digest: layer, size: 100 }], children: [] })
    return record.digest
  }

  const revision = (): string => `builtin-1:none:${policies.current().revision}`

  beforeEach(async () => {
    state = await open()
    policies = new PolicyEngine(ANY)
    events = []
    const bus = new EventBus()
    bus.subscribe((event) => events.push(event))
    // Only what a walk judging from recorded facts calls: admission links the layer back.
    const manifests = {
      admitRecord: async (repo: RepoKey, record: ManifestRecord, verdict: Partial<Verdict>) => {
        const layer = layers.get(record.digest) as Digest
        await state.recordManifest(repo, { ...record, verdict: { ...record.verdict, ...verdict, decidedAt: Date.now() } }, { blobs: [{ digest: layer, size: 100 }], children: [] })
      },
      holdChildren: async () => undefined,
      // A re-inspection under new trust records the digest's own verdict from the same facts.
      reinspect: async (repo: RepoKey, digest: Digest) => {
        const before = (await state.getManifest(repo, digest)) as ManifestRecord
        const { admittedByTags: _tags, ...rest } = before.verdict
        const own = evaluate(policies.current(), { upstream: repo.upstream, repository: repo.repository, digest, image: before.image!, verification: NO_FACTS })
        const after: ManifestRecord = { ...before, verdict: { ...rest, outcome: own.outcome, reasons: own.reasons, revision: revision(), decidedAt: Date.now() } }
        if (own.outcome === 'detained') await state.detainManifest(repo, after)
        else await state.recordManifest(repo, after, { blobs: [{ digest: layers.get(digest) as Digest, size: 100 }], children: [] })
        return after
      },
    } as unknown as ManifestService
    reevaluator = new Reevaluator({ state, policies, revision, manifests, events: bus, logger, lockTtl: 10_000 })
  })

  afterEach(async () => {
    await reevaluator.close()
    await state.close()
  })

  describe('when a revoked digest is cleared again by a walk', () => {
    it('serves it, records it cleared at the revision and announces the clearance', async () => {
      const digest = await admitted('revoked')
      assert.equal((await walkUnder(NON_ROOT)).detained, 1)
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'revoked')
      const progress = await walkUnder(ANY)
      assert.equal(progress.cleared, 1)
      assert.equal(progress.errors, 0)
      assert.equal((await state.getManifest(REPO, digest))?.verdict.outcome, 'cleared')
      assert.notEqual(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
      const record = await state.getQuarantine(REPO, digest)
      assert.equal(record?.state, 'cleared')
      assert.deepEqual(record?.history?.[0], { action: 'cleared', by: 'customs', at: record?.history?.[0]?.at, revision: revision() })
      const clearances = events.filter((e) => e.type === 'clearance')
      assert.deepEqual(
        clearances.map((e) => ({ upstream: e.upstream, repository: e.repository, digest: e.digest, revision: e.revision, verdict: e.verdict, detail: e.detail })),
        [{ upstream: 'docker.io', repository: 'acme/app', digest, revision: revision(), verdict: 'cleared', detail: { previous: 'revoked' } }]
      )
    })
  })

  describe('when a reload lands while a walk takes its lock', () => {
    it('judges by the set its revision names; the walk the reload queues judges by the new one', async () => {
      const digest = await admitted('mid-walk')
      policies.replace(NON_ROOT)
      const walkedUnder = revision()
      const acquire = state.acquireLock.bind(state)
      // The reload lands after the walk read the revision in force, before it has the lock.
      state.acquireLock = async (name, ttl) => {
        policies.replace(ANY)
        return acquire(name, ttl)
      }
      assert.equal(reevaluator.start('test'), true)
      await reevaluator.idle()
      const record = await state.getManifest(REPO, digest)
      assert.equal(record?.verdict.revision, walkedUnder)
      assert.equal(record?.verdict.outcome, 'detained', 'judged by NON_ROOT, whose revision it records')
      state.acquireLock = acquire
      assert.equal(reevaluator.start('reload'), true)
      await reevaluator.idle()
      const again = await state.getManifest(REPO, digest)
      assert.equal(again?.verdict.revision, revision())
      assert.equal(again?.verdict.outcome, 'cleared')
    })
  })

  describe('when a digest detained from the start is cleared by a walk', () => {
    it('records it cleared if a pull of it was refused, and creates no record otherwise', async () => {
      policies.replace(NON_ROOT)
      const refused = await detained('refused')
      const quiet = await detained('never refused')
      await state.recordDetention(REPO, refused, { reference: 'v1', reasons: ['root'], at: 1000 })
      const progress = await walkUnder(ANY)
      assert.equal(progress.cleared, 2)
      assert.equal((await state.getQuarantine(REPO, refused))?.state, 'cleared')
      assert.equal(await state.getQuarantine(REPO, quiet), null)
      assert.deepEqual(
        events.filter((e) => e.type === 'clearance').map((e) => [e.digest, e.detail?.previous]),
        [[refused, 'detained']]
      )
    })
  })

  describe('when a released digest is cleared by a walk', () => {
    it('drops the release, so that its expiry detains nothing', async () => {
      policies.replace(NON_ROOT)
      const digest = await detained('released')
      await state.recordDetention(REPO, digest, { reference: 'v1', reasons: ['root'], at: 1000 })
      await state.releaseQuarantine(REPO, digest, { by: 'alice', reason: 'vendor fix pending', expires: Date.now() + 60_000, at: 2000 })
      // Served by the release, as the pull path records it.
      const held = (await state.getManifest(REPO, digest)) as ManifestRecord
      const layer = { digest: layers.get(digest) as Digest, size: 100 }
      await state.recordManifest(REPO, { ...held, verdict: { ...held.verdict, outcome: 'cleared-with-warnings', detainedFor: ['root'] } }, { blobs: [layer], children: [] })
      const progress = await walkUnder(ANY)
      assert.equal(progress.errors, 0)
      const record = await state.getQuarantine(REPO, digest)
      assert.equal(record?.state, 'cleared')
      assert.equal(record?.release, undefined)
      assert.deepEqual(record?.history?.map((h) => h.action), ['cleared', 'release'])
      assert.equal((await state.getManifest(REPO, digest))?.verdict.detainedFor, undefined)
      assert.deepEqual(await state.expireReleases(Date.now() + 120_000, 10), [])
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'cleared')
      assert.notEqual(await state.getBlobLink(REPO, layer.digest), null)
    })
  })

  describe('when content cleared before is cleared again', () => {
    it('leaves a detained record alone: its refusals came from a rule on the tag, which still holds', async () => {
      const digest = await admitted('tag refused')
      // A pull by a tag a policy bans was refused while the digest itself was served.
      await state.recordDetention(REPO, digest, { reference: 'latest', reasons: ["policy 'no-latest' rule 'tags': latest"], at: 1000 })
      const progress = await walkUnder(policySet('any-again', ANY_AGAIN))
      assert.equal(progress.unchanged, 1)
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'detained')
      assert.deepEqual(events.filter((e) => e.type === 'clearance'), [])
    })
    it('resolves a record left revoked while the content was served', async () => {
      const digest = await admitted('left revoked')
      await state.markRevoked(REPO, digest, { reasons: ['root'], revision: 'an older one', at: 1000 })
      await walkUnder(policySet('any-again', ANY_AGAIN))
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'cleared')
      assert.deepEqual(events.filter((e) => e.type === 'clearance').map((e) => e.detail?.previous), ['revoked'])
    })
  })

  describe('when a digest is admitted only by a tag-scoped policy', () => {
    /** Records an image the pull path admitted by these tags, its digest alone detained. */
    async function admittedByTags(name: string, tags: readonly string[]): Promise<Digest> {
      const digest = await admitted(name)
      const record = (await state.getManifest(REPO, digest)) as ManifestRecord
      await state.recordManifest(REPO, { ...record, verdict: { ...record.verdict, admittedByTags: tags } }, { blobs: [{ digest: layers.get(digest) as Digest, size: 100 }], children: [] })
      return digest
    }

    beforeEach(() => {
      policies.replace(tagScoped('tags-v', '"v*"'))
    })

    it('keeps it admitted through a new revision that changes nothing about it', async () => {
      const digest = await admittedByTags('by tag', ['v1'])
      const progress = await walkUnder(tagScoped('tags-v-again', '"v*"'))
      assert.deepEqual([progress.detained, progress.unchanged, progress.errors], [0, 1, 0])
      const record = await state.getManifest(REPO, digest)
      assert.equal(record?.verdict.outcome, 'cleared')
      assert.equal(record?.verdict.revision, revision())
      assert.deepEqual(record?.verdict.admittedByTags, ['v1'])
      assert.notEqual(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
      assert.equal(await state.getQuarantine(REPO, digest), null)
      assert.deepEqual(events.filter((e) => e.type === 'revocation'), [])
    })

    it('keeps it admitted when the trust changed and a re-inspection finds its digest detained', async () => {
      const digest = await admittedByTags('new trust', ['v1'])
      const record = (await state.getManifest(REPO, digest)) as ManifestRecord
      await state.recordManifest(REPO, { ...record, verdict: { ...record.verdict, revision: `builtin-1:other-trust:${policies.current().revision}` } }, { blobs: [{ digest: layers.get(digest) as Digest, size: 100 }], children: [] })
      const progress = await walkUnder(policies.current())
      assert.deepEqual([progress.detained, progress.errors], [0, 0])
      const after = await state.getManifest(REPO, digest)
      assert.equal(after?.verdict.outcome, 'cleared')
      assert.deepEqual(after?.verdict.admittedByTags, ['v1'])
      assert.notEqual(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
      assert.equal(await state.getQuarantine(REPO, digest), null)
      assert.deepEqual(events.filter((e) => e.type === 'revocation'), [])
    })

    it('keeps only the tags that still admit it', async () => {
      const digest = await admittedByTags('two tags', ['v1', 'main'])
      const progress = await walkUnder(tagScoped('tags-main', '"main"'))
      assert.equal(progress.detained, 0)
      assert.deepEqual((await state.getManifest(REPO, digest))?.verdict.admittedByTags, ['main'])
      assert.notEqual(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
    })

    it('revokes it once none of its tags is admitted any more', async () => {
      const digest = await admittedByTags('tag dropped', ['v1'])
      const progress = await walkUnder(tagScoped('tags-release', '"release-*"'))
      assert.equal(progress.detained, 1)
      const record = await state.getManifest(REPO, digest)
      assert.equal(record?.verdict.outcome, 'detained')
      assert.equal(record?.verdict.admittedByTags, undefined)
      assert.equal(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'revoked')
      assert.deepEqual(events.filter((e) => e.type === 'revocation').map((e) => e.digest), [digest])
    })

    it('revokes, as before, content cleared by its digest that no tag was recorded for', async () => {
      const digest = await admitted('by digest')
      const progress = await walkUnder(tagScoped('tags-v-again', '"v*"'))
      assert.equal(progress.detained, 1)
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'revoked')
    })

    it('ends a detained record once the digest clears on its own: it was refused on its own', async () => {
      const digest = await admittedByTags('cleared later', ['v1'])
      await state.recordDetention(REPO, digest, { reference: digest, reasons: ['unmatched'], at: 1000 })
      await walkUnder(ANY)
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'cleared')
      assert.equal((await state.getManifest(REPO, digest))?.verdict.admittedByTags, undefined)
    })
  })

  describe('when the record cannot be resolved', () => {
    it('leaves the verdict unrecorded, and the next walk resolves both', async () => {
      const digest = await admitted('flaky')
      await walkUnder(NON_ROOT)
      const markCleared = state.markCleared.bind(state)
      state.markCleared = async () => {
        throw new Error('state is away')
      }
      const failed = await walkUnder(ANY)
      assert.equal(failed.errors, 1)
      assert.equal((await state.getManifest(REPO, digest))?.verdict.outcome, 'detained')
      assert.equal(await state.getBlobLink(REPO, layers.get(digest) as Digest), null)
      state.markCleared = markCleared
      const again = await walkUnder(ANY)
      assert.equal(again.cleared, 1)
      assert.equal((await state.getManifest(REPO, digest))?.verdict.outcome, 'cleared')
      assert.equal((await state.getQuarantine(REPO, digest))?.state, 'cleared')
    })
  })
}

describe('re-evaluation and the quarantine record', () => {
  describe('with the in-process store', () => {
    checkReevaluation(async () => new MemoryStateStore())
  })

  describe('with a Redis store', () => {
    let server: RedisServer
    before(async () => {
      server = await startRedisServer()
    })
    after(async () => {
      if (!server.external) await server.stop()
    })
    checkReevaluation(() => RedisStateStore.connect({ url: server.url, prefix: `t-${randomUUID()}` }))
  })
})
