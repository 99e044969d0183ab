// Releases through the admin API against a running Customs: an approver releases a denied image,
// which is then served with a warning (manifest and blobs) until the release is revoked or
// expires; viewers may not release, and bad bodies are refused without changing anything.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { CustomsHandle } from '../helpers/customs.js'
import { ociImage } from '../helpers/fake-upstream.js'
import { sha256hex, startWithPolicy, type PolicyCustoms } from '../helpers/admin.js'

const VIEWER = 'viewer-token-0123456789'
const APPROVER = 'approver-token-0123456789'
const DAY = 24 * 60 * 60 * 1000

let customs: CustomsHandle
let env: PolicyCustoms
const image = ociImage([Buffer.from('a released layer')])
const brief = ociImage([Buffer.from('a briefly released layer')])

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}

interface RecordBody {
  state: string
  release?: { by: string; reason: string; expires: number; at: number }
  history?: Array<{ action: string; by: string }>
}

/** POSTs `body` (a string is sent as is) to an admin route with `token`. */
async function post(path: string, body: unknown, token = APPROVER, type = 'application/json'): Promise<Response> {
  return fetch(`${customs.url}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': type },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

async function record(repository: string, digest: string): Promise<RecordBody> {
  const res = await fetch(`${customs.url}/admin/v1/quarantine/docker.io/${digest}?repository=${repository}`, {
    headers: { Authorization: `Bearer ${VIEWER}` },
  })
  assert.equal(res.status, 200)
  return (await res.json()) as RecordBody
}

function pull(repository: string, tag: string, mediaType: string): Promise<Response> {
  return fetch(`${customs.url}/v2/${repository}/manifests/${tag}`, { headers: { Accept: mediaType } })
}

const release = (digest: string): string => `/admin/v1/quarantine/docker.io/${digest}/release`
const revoke = (digest: string): string => `/admin/v1/quarantine/docker.io/${digest}/revoke`
const inDays = (days: number): string => new Date(Date.now() + days * DAY).toISOString()

before(async () => {
  env = await startWithPolicy({
    images: [['acme/app', image], ['acme/brief', brief]],
    tokens: [
      { name: 'alice', secret: VIEWER, role: 'viewer' },
      { name: 'bob', secret: APPROVER, role: 'approver' },
    ],
  })
  customs = env.customs
  // Both images are denied once, so that they have quarantine records.
  for (const [repository, img] of [['acme/app', image], ['acme/brief', brief]] as const) {
    const res = await pull(repository, 'v1', img.mediaType)
    assert.equal(res.status, 403)
    await res.body?.cancel()
  }
})

after(async () => {
  await env.stop()
})

describe('release and revoke', () => {
  const layer = image.layers[0] as Buffer
  const blobUrl = (): string => `${customs.url}/v2/acme/app/blobs/${'sha256:' + sha256hex(layer.toString())}`

  it('keeps the layer blob closed while the image is detained', async () => {
    const res = await fetch(blobUrl())
    assert.notEqual(res.status, 200)
    await res.body?.cancel()
  })

  it('answers 403 DENIED to a viewer, and changes nothing', async () => {
    const res = await post(release(image.digest), { repository: 'acme/app', reason: 'x', expires: inDays(1) }, VIEWER)
    assert.equal(res.status, 403)
    assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
    assert.equal((await record('acme/app', image.digest)).state, 'detained')
  })

  describe('when the body is not acceptable', () => {
    const cases: Array<[string, unknown, string?]> = [
      ['an expiry in the past', { repository: 'acme/app', reason: 'x', expires: inDays(-1) }],
      ['an expiry beyond 90 days', { repository: 'acme/app', reason: 'x', expires: inDays(91) }],
      ['an expiry that is no RFC 3339 time', { repository: 'acme/app', reason: 'x', expires: 'tomorrow' }],
      ['malformed JSON', '{"repository": "acme/app", '],
      ['an unknown field', { repository: 'acme/app', reason: 'x', expires: inDays(1), extra: true }],
      ['a missing reason', { repository: 'acme/app', expires: inDays(1) }],
      ['a huge body', { repository: 'acme/app', reason: 'x'.repeat(20_000), expires: inDays(1) }],
      ['a body that is not JSON', 'repository=acme/app', 'application/x-www-form-urlencoded'],
    ]
    for (const [what, body, type] of cases) {
      it(`answers 400 for ${what}, and changes nothing`, async () => {
        const res = await post(release(image.digest), body, APPROVER, type)
        assert.equal(res.status, 400)
        const error = ((await res.json()) as OciErrorBody).errors[0]
        assert.equal(error?.code, 'UNSUPPORTED')
        assert.ok((error?.message ?? '').length > 0)
        const after = await record('acme/app', image.digest)
        assert.equal(after.state, 'detained')
        assert.equal(after.history, undefined)
      })
    }
  })

  it('answers 404 MANIFEST_UNKNOWN for a digest never refused', async () => {
    const res = await post(release(image.digest), { repository: 'acme/other', reason: 'x', expires: inDays(1) })
    assert.equal(res.status, 404)
    assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'MANIFEST_UNKNOWN')
  })

  it('serves a released image by tag with a warning, and its layer blob', async () => {
    const res = await post(release(image.digest), { repository: 'acme/app', reason: 'CVE-1 accepted', expires: inDays(7) })
    assert.equal(res.status, 200)
    const body = (await res.json()) as RecordBody
    assert.equal(body.state, 'released')
    assert.equal(body.release?.by, 'bob')
    assert.equal(body.release?.reason, 'CVE-1 accepted')
    const log = customs.logs.find((l) => l.msg === 'admin action' && l.action === 'release')
    assert.equal(log?.by, 'bob')
    assert.equal(log?.digest, image.digest)
    assert.equal(log?.repository, 'acme/app')

    const pulled = await pull('acme/app', 'v1', image.mediaType)
    assert.equal(pulled.status, 200)
    assert.equal(pulled.headers.get('customs-verdict'), 'cleared-with-warnings')
    assert.deepEqual(Buffer.from(await pulled.arrayBuffer()), image.manifest)
    const blob = await fetch(blobUrl())
    assert.equal(blob.status, 200)
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), layer)
  })

  it('answers 403 to a viewer revoking', async () => {
    const res = await post(revoke(image.digest), { repository: 'acme/app' }, VIEWER)
    assert.equal(res.status, 403)
    await res.body?.cancel()
  })

  it('denies the image again once the release is revoked', async () => {
    const res = await post(revoke(image.digest), { repository: 'acme/app' })
    assert.equal(res.status, 200)
    const body = (await res.json()) as RecordBody
    assert.equal(body.state, 'detained')
    assert.equal(body.release, undefined)
    assert.deepEqual(body.history?.map((h) => [h.action, h.by]), [['revoke', 'bob'], ['release', 'bob']])
    assert.ok(customs.logs.some((l) => l.msg === 'admin action' && l.action === 'revoke' && l.by === 'bob'))

    for (const ref of ['v1', image.digest]) {
      const pulled = await pull('acme/app', ref, image.mediaType)
      assert.equal(pulled.status, 403, ref)
      assert.equal(((await pulled.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
    }
  })

  it('refuses to revoke again, with 400 UNSUPPORTED naming the state, and changes nothing', async () => {
    const before = await record('acme/app', image.digest)
    const res = await post(revoke(image.digest), { repository: 'acme/app' })
    assert.equal(res.status, 400)
    const error = ((await res.json()) as OciErrorBody & { errors: Array<{ detail?: unknown }> }).errors[0]
    assert.equal(error?.code, 'UNSUPPORTED')
    assert.equal(error?.message, `docker.io/acme/app@${image.digest} holds no release to revoke: it is detained`)
    assert.deepEqual(error?.detail, { state: 'detained' })
    assert.deepEqual(await record('acme/app', image.digest), before)
    assert.equal(customs.logs.filter((l) => l.msg === 'admin action' && l.action === 'revoke').length, 1)
  })

  it('answers 404 MANIFEST_UNKNOWN to a revoke of a digest never refused', async () => {
    const res = await post(revoke(image.digest), { repository: 'acme/other' })
    assert.equal(res.status, 404)
    assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'MANIFEST_UNKNOWN')
  })

  it('answers 400 for an unknown field on revoke', async () => {
    const res = await post(revoke(image.digest), { repository: 'acme/app', reason: 'x' })
    assert.equal(res.status, 400)
    await res.body?.cancel()
  })
})

describe('when a release expires', () => {
  it('is served until then and denied from then on', async () => {
    const expires = new Date(Date.now() + 2000).toISOString()
    const res = await post(release(brief.digest), { repository: 'acme/brief', reason: 'briefly', expires })
    assert.equal(res.status, 200)
    await res.body?.cancel()
    const served = await pull('acme/brief', 'v1', brief.mediaType)
    assert.equal(served.status, 200)
    assert.equal(served.headers.get('customs-verdict'), 'cleared-with-warnings')
    await served.body?.cancel()

    await sleep(Math.max(0, Date.parse(expires) - Date.now()) + 200)
    const denied = await pull('acme/brief', 'v1', brief.mediaType)
    assert.equal(denied.status, 403)
    assert.equal(((await denied.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
    assert.equal((await record('acme/brief', brief.digest)).state, 'detained')
  })
})
