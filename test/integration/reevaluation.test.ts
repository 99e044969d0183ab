// Re-evaluation against a running Customs and a real registry upstream: a policy change detains
// content that was cleared (manifest 403, blobs refused, quarantine record `revoked`) and a
// change back clears it again (record `cleared`, announced); a revoked release closes the blob
// gate; a purge removes the cached files and a later pull detains again; a detained image the
// pull path clears under a newer revision has its record cleared too; the policy diff (admin
// route and CLI) shows the change and changes nothing; bad input is refused with 400 and changes
// nothing; a digest admitted only by a tag-scoped policy stays admitted through a reload that
// changes nothing about it, and is detained once no policy admits it any more.

import assert from 'node:assert/strict'
import { access, mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { CustomsEvent } from '../../src/audit/events.js'
import type { Digest } from '../../src/oci/digest.js'
import { loadPolicies } from '../../src/policy/load.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, buildIndex, pushImage, pushIndex, type BuiltImage, type BuiltIndex } from '../helpers/images.js'
import { makeTempDir, run } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { sha256hex } from '../helpers/admin.js'

const ROOT = resolve(import.meta.dirname, '../..')
const MAIN = join(ROOT, 'src/main.ts')
const VIEWER = 'viewer-token-0123456789'
const APPROVER = 'approver-token-0123456789'
const ADMIN = 'admin-token-0123456789'
const DAY = 24 * 60 * 60 * 1000

// held/** is denied by every set: it is detained from the start, for release, revoke and purge.
const HELD = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: held-non-root }
spec:
  mode: enforce
  match: [{ repository: "held/**" }]
  rules: { nonRoot: true }
`
// The images are built without a user (root): this set detains reeval/**.
const DENY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: reeval-non-root }
spec:
  mode: enforce
  match: [{ repository: "reeval/**" }]
  rules: { nonRoot: true }
`

let registry: RegistryHandle
let customs: CustomsHandle
let work: string
let policyDir: string
let denyDir: string
let app: BuiltImage
let held: BuiltImage
let brief: BuiltImage
let multi: BuiltIndex

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}
interface Progress {
  state: string
  total: number
  done: number
  cleared: number
  detained: number
  unchanged: number
  errors: number
  revision: string
  startedAt?: string
  finishedAt?: string
}
interface DiffBody {
  current: string
  candidate: string
  judged: number
  changes: Array<{ upstream: string; repository: string; digest: string; tags: string[]; before: string; after: string; reasons: string[] }>
}

function admin(method: string, path: string, token: string, body?: unknown, type = 'application/json'): Promise<Response> {
  return fetch(`${customs.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { 'Content-Type': type } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  })
}

async function status(url: string, accept?: string): Promise<number> {
  const res = await fetch(url, accept !== undefined ? { headers: { Accept: accept } } : {})
  await res.arrayBuffer()
  return res.status
}

/** The test's environment without a CUSTOMS_CONFIG of its own: the CLI then uses the defaults. */
function cliEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.CUSTOMS_CONFIG
  delete env.CUSTOMS_ADMIN_TOKEN
  delete env.CUSTOMS_URL
  return env
}

const manifestUrl = (repo: string, ref: string): string => `${customs.url}/v2/${repo}/manifests/${ref}`
const blobUrl = (repo: string, digest: string): string => `${customs.url}/v2/${repo}/blobs/${digest}`
const pullStatus = (repo: string, image: BuiltImage, ref = 'v1'): Promise<number> => status(manifestUrl(repo, ref), image.mediaType)

interface QuarantineBody {
  state: string
  reasons: string[]
  release?: unknown
  history?: Array<{ action: string; by: string; at: number; revision?: string; reasons?: string[] }>
}

async function quarantine(repo: string, digest: string): Promise<QuarantineBody> {
  const res = await admin('GET', `/admin/v1/quarantine/docker.io/${digest}?repository=${repo}`, VIEWER)
  assert.equal(res.status, 200)
  return (await res.json()) as QuarantineBody
}

/** The audit log's events of one type about one digest, newest first. */
async function audited(type: string, digest: string): Promise<CustomsEvent[]> {
  const res = await admin('GET', `/admin/v1/audit?type=${type}&limit=500`, ADMIN)
  assert.equal(res.status, 200)
  const { entries } = (await res.json()) as { entries: Array<{ event: CustomsEvent }> }
  return entries.map((e) => e.event).filter((e) => e.digest === digest)
}

/** Swaps the policy folder's content and reloads; resolves with the new policy revision. */
async function setPolicies(files: Record<string, string>): Promise<string> {
  await rm(policyDir, { recursive: true, force: true })
  await mkdir(policyDir)
  for (const [name, text] of Object.entries(files)) await writeFile(join(policyDir, name), text)
  const result = await customs.services.reloadPolicies()
  assert.equal(result.ok, true, result.error)
  return result.revision
}

/** Polls the progress route until the walk under this policy revision has ended. */
async function finished(policyRevision: string): Promise<Progress> {
  for (let i = 0; i < 600; i++) {
    const res = await admin('GET', '/admin/v1/reevaluations/current', VIEWER)
    assert.equal(res.status, 200)
    const progress = (await res.json()) as Progress
    if (progress.revision.endsWith(`:${policyRevision}`) && progress.state !== 'running') return progress
    await sleep(50)
  }
  throw new Error('the re-evaluation did not end')
}

before(async () => {
  registry = await startRegistry()
  work = await makeTempDir('reevaluation-')
  policyDir = join(work, 'policies')
  denyDir = join(work, 'deny')
  await mkdir(policyDir)
  await mkdir(denyDir)
  await writeFile(join(policyDir, 'held.yaml'), HELD)
  await writeFile(join(denyDir, 'held.yaml'), HELD)
  await writeFile(join(denyDir, 'deny.yaml'), DENY)
  app = buildImage({ mediaType: 'oci', layers: [4096, 2048] })
  held = buildImage({ mediaType: 'oci', layers: [3072] })
  await pushImage(registry, 'reeval/app', 'v1', app)
  await pushImage(registry, 'held/app', 'v1', held)
  multi = buildIndex([buildImage({ mediaType: 'oci', layers: [2048] })], 'oci')
  await pushIndex(registry, 'reeval/multi', 'v1', multi)
  brief = buildImage({ mediaType: 'oci', layers: [2048] })
  await pushImage(registry, 'held/brief', 'v1', brief)
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
policy: { path: "${policyDir}", watch: false }
admin:
  tokens:
    - { name: vera, sha256: "${sha256hex(VIEWER)}", role: viewer }
    - { name: april, sha256: "${sha256hex(APPROVER)}", role: approver }
    - { name: adam, sha256: "${sha256hex(ADMIN)}", role: admin }
`,
  })
})

after(async () => {
  await customs?.stop()
  await registry?.stop()
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

describe('re-evaluation after a policy change', () => {
  const layer = (): string => app.layers[0]!.digest

  it('serves the image while the policies clear it', async () => {
    assert.equal(await pullStatus('reeval/app', app), 200)
    assert.equal(await status(blobUrl('reeval/app', layer())), 200)
    assert.equal(await status(blobUrl('reeval/app', app.configDigest)), 200)
  })

  it('serves an index and its child while the policies clear them', async () => {
    const child = multi.children[0]!
    assert.equal(await status(manifestUrl('reeval/multi', 'v1'), multi.mediaType), 200)
    assert.equal(await status(manifestUrl('reeval/multi', child.manifestDigest), child.mediaType), 200)
    assert.equal(await status(blobUrl('reeval/multi', child.layers[0]!.digest)), 200)
  })

  describe('the policy diff', () => {
    const documents = [
      { path: 'held.yaml', text: HELD },
      { path: 'deny.yaml', text: DENY },
    ]

    it('lists the image the new set would detain, with its tag, and changes nothing', async () => {
      const res = await admin('POST', '/admin/v1/policy/diff', ADMIN, { documents })
      assert.equal(res.status, 200)
      const diff = (await res.json()) as DiffBody
      const change = diff.changes.find((c) => c.digest === app.manifestDigest)
      assert.deepEqual(
        change && { ...change, reasons: change.reasons.length > 0 },
        { upstream: 'docker.io', repository: 'reeval/app', digest: app.manifestDigest, tags: ['v1'], before: 'cleared', after: 'detained', reasons: true }
      )
      assert.notEqual(diff.current, diff.candidate)
      assert.equal(await pullStatus('reeval/app', app), 200)
      assert.equal(await status(blobUrl('reeval/app', layer())), 200)
    })

    it('judges the tags pulled in the last days from the audit log: a tag rule is seen', async () => {
      const NO_V1 = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: reeval-no-v1 }
spec:
  mode: enforce
  match: [{ repository: "reeval/app" }]
  rules: { tags: { deny: [v1] } }
`
      const tagDocuments = [{ path: 'held.yaml', text: HELD }, { path: 'no-v1.yaml', text: NO_V1 }]
      const find = (diff: DiffBody) => diff.changes.find((c) => c.digest === app.manifestDigest && c.after === 'detained')
      const withDecisions = (await (await admin('POST', '/admin/v1/policy/diff', ADMIN, { documents: tagDocuments })).json()) as DiffBody
      const change = find(withDecisions)
      assert.ok(change !== undefined, JSON.stringify(withDecisions.changes))
      assert.ok(change.tags.includes('v1'))
      assert.ok(change.reasons.some((r) => r.includes('reeval-no-v1')), change.reasons.join('; '))
      // Without the decisions only the inventory is judged, by digest: a tag rule sees nothing.
      const inventoryOnly = (await (await admin('POST', '/admin/v1/policy/diff', ADMIN, { documents: tagDocuments, days: 0 })).json()) as DiffBody
      assert.equal(find(inventoryOnly), undefined)
    })

    it('answers an empty list for the set in force', async () => {
      const res = await admin('POST', '/admin/v1/policy/diff', ADMIN, { documents: [{ path: 'held.yaml', text: HELD }] })
      assert.equal(res.status, 200)
      assert.deepEqual(((await res.json()) as DiffBody).changes, [])
    })

    it('prints the change from the CLI, exits 1, and changes nothing', async () => {
      const result = await run(process.execPath, ['--import', 'tsx', MAIN, 'policy', 'diff', denyDir, '--url', customs.url], {
        cwd: ROOT,
        allowFailure: true,
        timeoutMs: 60_000,
        env: { ...cliEnv(), CUSTOMS_ADMIN_TOKEN: ADMIN },
      })
      assert.equal(result.code, 1, result.stderr)
      assert.match(result.stdout, /docker\.io\/reeval\/app/)
      assert.match(result.stdout, /cleared\s+detained/)
      assert.match(result.stdout, /[1-9]\d* would change/)
      const json = await run(process.execPath, ['--import', 'tsx', MAIN, 'policy', 'diff', policyDir, '--url', customs.url, '--token', ADMIN, '--json'], {
        cwd: ROOT,
        allowFailure: true,
        timeoutMs: 60_000,
        env: cliEnv(),
      })
      assert.equal(json.code, 0, json.stderr)
      assert.deepEqual((JSON.parse(json.stdout) as DiffBody).changes, [])
      assert.equal(await pullStatus('reeval/app', app), 200)
    })

    const bad: Array<[string, unknown, number?]> = [
      ['an unknown field', { documents, extra: 1 }],
      ['days out of range', { documents, days: 91 }],
      ['a path that is not a policy file', { documents: [{ path: '../etc/passwd', text: HELD }] }],
      ['a policy that does not validate', { documents: [{ path: 'bad.yaml', text: 'apiVersion: customs.dev/v1\nkind: ImagePolicy\nmetadata: { name: x }\nspec: { bogus: 1 }\n' }] }],
      ['YAML that does not parse', { documents: [{ path: 'bad.yaml', text: 'a: [1, 2\n' }] }],
      ['an oversized policy text', { documents: [{ path: 'big.yaml', text: `# ${'x'.repeat(1024 * 1024 + 10)}` }] }],
      ['an oversized body', { documents: Array.from({ length: 5 }, (_, i) => ({ path: `f${i}.yaml`, text: `# ${'x'.repeat(1000 * 1000)}` })) }],
    ]
    for (const [what, body] of bad) {
      it(`answers 400 for ${what}, and changes nothing`, async () => {
        const res = await admin('POST', '/admin/v1/policy/diff', ADMIN, body)
        assert.equal(res.status, 400)
        const error = ((await res.json()) as OciErrorBody).errors[0]
        assert.equal(error?.code, 'UNSUPPORTED')
        assert.ok((error?.message ?? '').length > 0)
        assert.equal(await pullStatus('reeval/app', app), 200)
      })
    }

    it('positions the problems of a policy that does not validate', async () => {
      const text = 'apiVersion: customs.dev/v1\nkind: ImagePolicy\nmetadata: { name: x }\nspec: { bogus: 1 }\n'
      const res = await admin('POST', '/admin/v1/policy/diff', ADMIN, { documents: [{ path: 'bad.yaml', text }] })
      assert.equal(res.status, 400)
      assert.match(((await res.json()) as OciErrorBody).errors[0]?.message ?? '', /bad\.yaml:\d+:\d+/)
    })

    it('refuses a viewer', async () => {
      const res = await admin('POST', '/admin/v1/policy/diff', VIEWER, { documents })
      assert.equal(res.status, 403)
      await res.arrayBuffer()
    })
  })

  describe('without a valid admin token', () => {
    const routes: Array<[string, string]> = [
      ['POST', '/admin/v1/reevaluations'],
      ['GET', '/admin/v1/reevaluations/current'],
      ['POST', '/admin/v1/policy/diff'],
      ['POST', `/admin/v1/quarantine/docker.io/sha256:${'a'.repeat(64)}/purge`],
    ]
    for (const [method, path] of routes) {
      it(`answers 401 to ${method} ${path.replace(/sha256:a+/, 'sha256:…')} with no token or a wrong one`, async () => {
        const none = await fetch(`${customs.url}${path}`, { method })
        assert.equal(none.status, 401)
        assert.equal(((await none.json()) as OciErrorBody).errors[0]?.code, 'UNAUTHORIZED')
        const wrong = await admin(method, path, 'not-a-token-of-this-customs', method === 'POST' ? {} : undefined)
        assert.equal(wrong.status, 401)
        await wrong.arrayBuffer()
      })
    }
  })

  describe('when the new set denies the cleared image', () => {
    let progress: Progress
    before(async () => {
      const revision = await setPolicies({ 'held.yaml': HELD, 'deny.yaml': DENY })
      progress = await finished(revision)
    })

    it('walks the cache and counts the image detained', () => {
      assert.equal(progress.state, 'finished')
      assert.ok(progress.detained >= 1, JSON.stringify(progress))
      assert.equal(progress.errors, 0)
      assert.equal(progress.done, progress.total)
      assert.ok(progress.startedAt !== undefined && progress.finishedAt !== undefined)
    })

    it('denies the manifest with 403 DENIED', async () => {
      const res = await fetch(manifestUrl('reeval/app', 'v1'), { headers: { Accept: app.mediaType } })
      assert.equal(res.status, 403)
      assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
    })

    it('refuses its blobs, as those of a detained image', async () => {
      for (const digest of [layer(), app.layers[1]!.digest, app.configDigest]) {
        const res = await fetch(blobUrl('reeval/app', digest))
        assert.equal(res.status, 404)
        assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'BLOB_UNKNOWN')
      }
    })

    it('denies the child of an index by digest and refuses its layer (nonRoot judges images, not the index)', async () => {
      const child = multi.children[0]!
      assert.equal(await status(blobUrl('reeval/multi', child.layers[0]!.digest)), 404)
      assert.equal(await status(manifestUrl('reeval/multi', child.manifestDigest), child.mediaType), 403)
    })

    it('records the digest as revoked, with the reasons', async () => {
      const record = await quarantine('reeval/app', app.manifestDigest)
      assert.equal(record.state, 'revoked')
      assert.match(record.reasons.join(' '), /reeval-non-root/)
      assert.equal(record.history?.[0]?.action, 'revoked')
    })
  })

  describe('when a set that clears it again is put in force', () => {
    let progress: Progress
    before(async () => {
      const revision = await setPolicies({ 'held.yaml': HELD })
      progress = await finished(revision)
      assert.ok(progress.cleared >= 1, JSON.stringify(progress))
    })

    it('serves the manifest and its blobs again', async () => {
      assert.equal(await pullStatus('reeval/app', app), 200)
      assert.equal(await status(blobUrl('reeval/app', layer())), 200)
    })

    it('records the digest as cleared again, by customs at the new revision, its revocation kept in the history', async () => {
      const record = await quarantine('reeval/app', app.manifestDigest)
      assert.equal(record.state, 'cleared')
      assert.deepEqual(record.history?.map((h) => h.action), ['cleared', 'revoked'])
      assert.deepEqual(record.history?.[0], { action: 'cleared', by: 'customs', at: record.history?.[0]?.at, revision: progress.revision })
      assert.match(record.reasons.join(' '), /reeval-non-root/)
    })

    it('announces the clearance in the audit log, naming the state it ends', async () => {
      const [event, ...more] = await audited('clearance', app.manifestDigest)
      assert.equal(more.length, 0)
      assert.deepEqual(
        event && { type: event.type, upstream: event.upstream, repository: event.repository, revision: event.revision, verdict: event.verdict, detail: event.detail },
        { type: 'clearance', upstream: 'docker.io', repository: 'reeval/app', revision: progress.revision, verdict: 'cleared', detail: { previous: 'revoked' } }
      )
    })
  })

  describe('the trigger route', () => {
    it('starts a walk for an admin, which finds nothing stale', async () => {
      const res = await admin('POST', '/admin/v1/reevaluations', ADMIN)
      assert.equal(res.status, 202)
      await res.arrayBuffer()
      for (let i = 0; i < 600; i++) {
        const progress = (await (await admin('GET', '/admin/v1/reevaluations/current', VIEWER)).json()) as Progress & { trigger?: string }
        if (progress.trigger === 'adam' && progress.state !== 'running') {
          assert.equal(progress.state, 'finished')
          assert.equal(progress.detained + progress.cleared + progress.errors, 0)
          return
        }
        await sleep(50)
      }
      assert.fail('the re-evaluation did not end')
    })

    it('refuses a viewer', async () => {
      const res = await admin('POST', '/admin/v1/reevaluations', VIEWER)
      assert.equal(res.status, 403)
      await res.arrayBuffer()
    })
  })
})

describe('release, revoke and purge of a detained image', () => {
  const layer = (): Digest => held.layers[0]!.digest as Digest
  const purge = (digest: string): string => `/admin/v1/quarantine/docker.io/${digest}/purge`
  const exists = (digest: Digest): Promise<boolean> =>
    access(customs.services.store.paths.blob(digest)).then(
      () => true,
      () => false
    )

  before(async () => {
    assert.equal(await pullStatus('held/app', held), 403)
  })

  it('serves the image and its layer while a release holds', async () => {
    const expires = new Date(Date.now() + DAY).toISOString()
    const res = await admin('POST', `/admin/v1/quarantine/docker.io/${held.manifestDigest}/release`, APPROVER, { repository: 'held/app', reason: 'try it', expires })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    assert.equal(await pullStatus('held/app', held), 200)
    assert.equal(await status(blobUrl('held/app', layer())), 200)
    // The fill commits the file just after the last byte went out: wait for it.
    for (let i = 0; i < 200 && !(await exists(layer())); i++) await sleep(25)
    assert.ok(await exists(layer()))
  })

  it('refuses the layer at once after the release is revoked', async () => {
    const res = await admin('POST', `/admin/v1/quarantine/docker.io/${held.manifestDigest}/revoke`, APPROVER, { repository: 'held/app' })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    assert.equal(await status(blobUrl('held/app', layer())), 404)
    assert.equal(await pullStatus('held/app', held), 403)
  })

  it('refuses the layer of a release that expired, from the next pull of the manifest on', async () => {
    assert.equal(await pullStatus('held/brief', brief), 403)
    const expires = new Date(Date.now() + 2000).toISOString()
    const res = await admin('POST', `/admin/v1/quarantine/docker.io/${brief.manifestDigest}/release`, APPROVER, { repository: 'held/brief', reason: 'briefly', expires })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    assert.equal(await pullStatus('held/brief', brief), 200)
    assert.equal(await status(blobUrl('held/brief', brief.layers[0]!.digest)), 200)
    while (Date.now() <= Date.parse(expires)) await sleep(100)
    assert.equal(await pullStatus('held/brief', brief), 403)
    assert.equal(await status(blobUrl('held/brief', brief.layers[0]!.digest)), 404)
  })

  describe('purge', () => {
    const bad: Array<[string, string | undefined, unknown, string?]> = [
      ['an unknown field', undefined, { repository: 'held/app', reason: 'x', extra: true }],
      ['a missing reason', undefined, { repository: 'held/app' }],
      ['an invalid digest', 'sha256:nothex', { repository: 'held/app', reason: 'x' }],
      ['an invalid repository', undefined, { repository: 'Held/../app', reason: 'x' }],
      ['a body that is not JSON', undefined, 'repository=held/app', 'text/plain'],
    ]
    for (const [what, digest, body, type] of bad) {
      it(`answers 400 for ${what}, and changes nothing`, async () => {
        const res = await admin('POST', purge(digest ?? held.manifestDigest), ADMIN, body, type)
        assert.equal(res.status, 400)
        await res.arrayBuffer()
        assert.equal((await quarantine('held/app', held.manifestDigest)).state, 'detained')
        assert.ok(await exists(layer()))
      })
    }

    it('refuses an approver', async () => {
      const res = await admin('POST', purge(held.manifestDigest), APPROVER, { repository: 'held/app', reason: 'x' })
      assert.equal(res.status, 403)
      await res.arrayBuffer()
      assert.ok(await exists(layer()))
    })

    it('answers 404 for a digest never refused', async () => {
      const res = await admin('POST', purge(app.manifestDigest), ADMIN, { repository: 'held/app', reason: 'x' })
      assert.equal(res.status, 404)
      await res.arrayBuffer()
    })

    it('removes the cached files and records purged', async () => {
      const res = await admin('POST', purge(held.manifestDigest), ADMIN, { repository: 'held/app', reason: 'malware found' })
      assert.equal(res.status, 200)
      const body = (await res.json()) as { state: string; removed: string[]; history: Array<{ action: string; by: string; at: number; reason?: string }> }
      assert.equal(body.state, 'purged')
      assert.deepEqual(body.history[0], { action: 'purge', by: 'adam', at: body.history[0]?.at, reason: 'malware found' })
      for (const digest of [layer(), held.configDigest as Digest, held.manifestDigest as Digest]) {
        assert.ok(body.removed.includes(digest), digest)
        assert.equal(await exists(digest), false)
      }
    })

    it('detains a later pull again, and says so in the history and the events', async () => {
      assert.equal(await pullStatus('held/app', held), 403)
      const record = await quarantine('held/app', held.manifestDigest)
      assert.equal(record.state, 'detained')
      const [detained, purged] = record.history ?? []
      assert.deepEqual([detained?.action, detained?.by, detained?.reasons], ['detained', 'customs', record.reasons])
      assert.equal(purged?.action, 'purge')
      const detentions = await audited('detention', held.manifestDigest)
      assert.deepEqual(detentions.filter((e) => e.detail?.previous !== undefined).map((e) => e.detail?.previous), ['purged'])
      assert.equal(await status(blobUrl('held/app', layer())), 404)
    })
  })
})

describe('a detained image the pull path clears under a newer revision', () => {
  let revision: string

  before(async () => {
    // held/app was refused again after its purge: its record says detained.
    assert.equal((await quarantine('held/app', held.manifestDigest)).state, 'detained')
    const dir = join(work, 'deny-only')
    await mkdir(dir)
    await writeFile(join(dir, 'deny.yaml'), DENY)
    // Put in force without a reload, so that no re-evaluation runs: the pull alone clears it.
    const set = await loadPolicies(dir, customs.services.policyLoadOptions)
    customs.services.policies.replace(set)
    revision = set.revision
  })

  it('serves it and records it cleared, by customs at the revision in force', async () => {
    assert.equal(await pullStatus('held/app', held), 200)
    assert.equal(await status(blobUrl('held/app', held.layers[0]!.digest)), 200)
    const record = await quarantine('held/app', held.manifestDigest)
    assert.equal(record.state, 'cleared')
    const [entry] = record.history ?? []
    assert.equal(entry?.action, 'cleared')
    assert.equal(entry?.by, 'customs')
    assert.ok(entry?.revision?.endsWith(`:${revision}`), entry?.revision)
    const events = await audited('clearance', held.manifestDigest)
    assert.deepEqual(events.map((e) => [e.revision, e.detail?.previous]), [[entry?.revision, 'detained']])
  })

  it('refuses a release of what the policies clear, and changes nothing', async () => {
    const expires = new Date(Date.now() + DAY).toISOString()
    const res = await admin('POST', `/admin/v1/quarantine/docker.io/${held.manifestDigest}/release`, APPROVER, { repository: 'held/app', reason: 'no need', expires })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'UNSUPPORTED')
    const record = await quarantine('held/app', held.manifestDigest)
    assert.equal(record.state, 'cleared')
    assert.equal(record.release, undefined)
  })

  it('refuses a revoke, which has no release to end, and changes nothing', async () => {
    const before = await quarantine('held/app', held.manifestDigest)
    const res = await admin('POST', `/admin/v1/quarantine/docker.io/${held.manifestDigest}/revoke`, APPROVER, { repository: 'held/app' })
    assert.equal(res.status, 400)
    const error = ((await res.json()) as OciErrorBody).errors[0]
    assert.equal(error?.code, 'UNSUPPORTED')
    assert.match(error?.message ?? '', /holds no release to revoke: it is cleared$/)
    assert.deepEqual(await quarantine('held/app', held.manifestDigest), before)
    assert.equal(await pullStatus('held/app', held), 200)
  })

  it('detains it again when a newer revision refuses it, and announces the detention', async () => {
    const set = await loadPolicies(policyDir, customs.services.policyLoadOptions)
    customs.services.policies.replace(set)
    assert.equal(await pullStatus('held/app', held), 403)
    const record = await quarantine('held/app', held.manifestDigest)
    assert.equal(record.state, 'detained')
    const [detained, cleared] = record.history ?? []
    assert.deepEqual([detained?.action, detained?.by, detained?.reasons], ['detained', 'customs', record.reasons])
    assert.notEqual(detained?.revision, cleared?.revision)
    assert.equal(cleared?.action, 'cleared')
    const [detention] = await audited('detention', held.manifestDigest)
    assert.equal(detention?.detail?.previous, 'cleared')
    assert.equal(detention?.revision, detained?.revision)
  })
})

describe('a digest served all along whose pulls by one tag a policy refuses', () => {
  const noLatest = (name: string): string => `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: ${name} }
spec:
  mode: enforce
  match: [{ repository: "tagged/**" }]
  rules: { tags: { deny: [latest] } }
`
  let tagged: BuiltImage

  /** Puts in force, without a reload (no re-evaluation), a set of this one policy. */
  async function replaceWith(name: string): Promise<void> {
    const dir = join(work, name)
    await mkdir(dir)
    await writeFile(join(dir, 'policy.yaml'), noLatest(name))
    customs.services.policies.replace(await loadPolicies(dir, customs.services.policyLoadOptions))
  }

  before(async () => {
    tagged = buildImage({ mediaType: 'oci', layers: [2048] })
    await pushImage(registry, 'tagged/app', 'v1', tagged)
    await pushImage(registry, 'tagged/app', 'latest', tagged)
    await replaceWith('no-latest')
    assert.equal(await pullStatus('tagged/app', tagged), 200)
    assert.equal(await pullStatus('tagged/app', tagged, 'latest'), 403)
    assert.equal((await quarantine('tagged/app', tagged.manifestDigest)).state, 'detained')
  })

  it('keeps its record detained when a newer revision inspects the digest and clears it again', async () => {
    await replaceWith('no-latest-again')
    assert.equal(await pullStatus('tagged/app', tagged), 200)
    const record = await quarantine('tagged/app', tagged.manifestDigest)
    assert.equal(record.state, 'detained')
    assert.equal(record.history, undefined)
    assert.deepEqual(await audited('clearance', tagged.manifestDigest), [])
    assert.equal(await pullStatus('tagged/app', tagged, 'latest'), 403)
  })
})

// Under `unmatched: deny`, the digest alone is admitted by no policy: only pulls by a `v*` tag are.
const settingsDenyUnmatched = `
apiVersion: customs.dev/v1
kind: PolicySettings
metadata: { name: settings }
spec: { unmatched: deny }
`
const tagScoped = (tags: string): string => `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: tag-admits }
spec:
  mode: enforce
  match: [{ repository: "tagadmit/**", tags: [${tags}] }]
  authorities: [{ name: any, static: pass }]
`
// A policy about other repositories: reloading with it makes a new revision and changes nothing here.
const OTHER = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: other-non-root }
spec:
  mode: enforce
  match: [{ repository: "other/**" }]
  rules: { nonRoot: true }
`

describe('a digest admitted only by a tag-scoped policy', () => {
  let image: BuiltImage
  const repo = 'tagadmit/app'
  const layer = (): string => image.layers[0]!.digest

  async function quarantineStatus(): Promise<number> {
    const res = await admin('GET', `/admin/v1/quarantine/docker.io/${image.manifestDigest}?repository=${repo}`, VIEWER)
    await res.arrayBuffer()
    return res.status
  }

  before(async () => {
    image = buildImage({ mediaType: 'oci', layers: [2048] })
    await pushImage(registry, repo, 'v1', image)
    const revision = await setPolicies({ 'held.yaml': HELD, 'settings.yaml': settingsDenyUnmatched, 'tags.yaml': tagScoped('"v*"') })
    await finished(revision)
    assert.equal(await pullStatus(repo, image), 200)
  })

  it('serves it by tag, by digest (as containerd asks after resolving the tag) and its blobs', async () => {
    assert.equal(await pullStatus(repo, image, image.manifestDigest), 200)
    assert.equal(await status(blobUrl(repo, layer())), 200)
    assert.equal(await status(blobUrl(repo, image.configDigest)), 200)
    assert.equal(await quarantineStatus(), 404)
  })

  describe('after a reload that changes nothing about it', () => {
    let progress: Progress
    before(async () => {
      const revision = await setPolicies({ 'held.yaml': HELD, 'settings.yaml': settingsDenyUnmatched, 'tags.yaml': tagScoped('"v*"'), 'other.yaml': OTHER })
      progress = await finished(revision)
    })

    it('does not revoke it: the walk counts nothing detained', () => {
      assert.equal(progress.state, 'finished')
      assert.equal(progress.errors, 0)
      assert.equal(progress.detained, 0)
    })

    it('serves its blobs and its manifest by digest, before any pull by tag', async () => {
      assert.equal(await status(blobUrl(repo, layer())), 200)
      assert.equal(await status(blobUrl(repo, image.configDigest)), 200)
      assert.equal(await pullStatus(repo, image, image.manifestDigest), 200)
    })

    it('serves it by tag', async () => {
      assert.equal(await pullStatus(repo, image), 200)
    })

    it('has no quarantine record, and no revocation in the audit log', async () => {
      assert.equal(await quarantineStatus(), 404)
      assert.deepEqual(await audited('revocation', image.manifestDigest), [])
      assert.deepEqual(await audited('detention', image.manifestDigest), [])
    })
  })

  describe('after a reload under which no policy admits it any more', () => {
    let progress: Progress
    before(async () => {
      const revision = await setPolicies({ 'held.yaml': HELD, 'settings.yaml': settingsDenyUnmatched, 'tags.yaml': tagScoped('"v2*"') })
      progress = await finished(revision)
    })

    it('detains it (fail closed): its blobs are unknown, its manifest denied by digest and by tag', async () => {
      assert.equal(progress.detained, 1)
      assert.equal(await status(blobUrl(repo, layer())), 404)
      assert.equal(await status(blobUrl(repo, image.configDigest)), 404)
      assert.equal(await pullStatus(repo, image, image.manifestDigest), 403)
      assert.equal(await pullStatus(repo, image), 403)
    })

    it('records it revoked and announces the revocation', async () => {
      assert.equal((await quarantine(repo, image.manifestDigest)).state, 'revoked')
      assert.equal((await audited('revocation', image.manifestDigest)).length, 1)
    })
  })
})
