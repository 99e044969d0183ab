// Policy bypass attempts against an enforcing policy, from a fake upstream standing in for
// docker.io (alias index.docker.io) and ghcr.io: every way of reaching a detained image's bytes
// other than the plain pull is refused. The policy admits images labelled approved=yes (an index
// by its annotation), so the detained image, the detained index and its children are all built
// here. Existing proofs this suite does not repeat: the blob gate of a detained image by digest
// (policies.test.ts), a runnable image posing as a signature (policies.test.ts), a released and
// revoked image (admin-release.test.ts), NAME_UNKNOWN for an unconfigured host (pull-api.test.ts).

import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, it } from 'node:test'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { startCustoms, standInUpstreams, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, send, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { makeTempDir } from '../helpers/processes.js'

const POLICY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: approved-only }
spec:
  mode: enforce
  match: [{ repository: "**" }]
  rules:
    labels: { approved: "yes" }
`
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const ACCEPT = `application/vnd.oci.image.manifest.v1+json, ${OCI_INDEX}`

const approved = (n: string) => ociImage([Buffer.from(`ok-${n}`)], { architecture: 'amd64', os: 'linux', config: { Labels: { approved: 'yes' } } })
const bad = ociImage([Buffer.from('bad layer bytes: never to be served')], { architecture: 'amd64', os: 'linux', config: { Labels: { approved: 'no' } } })
const good = approved('good')
const amd = approved('amd64')
const arm = ociImage([Buffer.from('ok-arm64')], { architecture: 'arm64', os: 'linux', config: { Labels: { approved: 'yes' } } })
/** An index of two approved images, itself without the annotation: detained. */
const index = Buffer.from(
  JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: amd.mediaType, digest: amd.digest, size: amd.manifest.byteLength, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: arm.mediaType, digest: arm.digest, size: arm.manifest.byteLength, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  })
)
const badLayer = sha256(bad.layers[0] as Buffer)

let upstream: FakeUpstream
let customs: CustomsHandle

/** docker.io (alias index.docker.io, the default) and ghcr.io (alias ghcr), both the fake. */
async function startWith(tagTtl = '5m'): Promise<void> {
  const dir = await makeTempDir('bypass-')
  await mkdir(join(dir, 'policies'))
  await writeFile(join(dir, 'policies', 'p.yaml'), POLICY)
  const upstreams = standInUpstreams(upstream.url).replace('    default: true\n', `    default: true\n    tagTtl: ${tagTtl}\n`)
  policyDir = join(dir, 'policies')
  customs = await startCustoms({
    config: `${upstreams}\npolicy: { path: "${policyDir}", watch: false }\nadmin:\n  tokens: [{ name: bob, sha256: "${createHash('sha256').update(APPROVER).digest('hex')}", role: approver }]\n`,
  })
}

const APPROVER = 'approver-token-for-bypass-tests'
let policyDir: string

before(async () => {
  upstream = await startFakeUpstream()
  for (const repo of ['library/bad', 'acme/app']) {
    putImage(upstream, repo, bad, 'v1')
    putImage(upstream, repo, good, 'good')
    putImage(upstream, repo, amd)
    putImage(upstream, repo, arm)
    upstream.putManifest(repo, index, OCI_INDEX, 'multi')
  }
  await startWith()
})

after(async () => {
  await customs?.stop()
  await upstream?.close()
})

async function req(path: string, init: RequestInit = {}): Promise<{ status: number; body: Buffer; headers: Headers }> {
  const res = await fetch(`${customs.url}${path}`, { ...init, headers: { accept: ACCEPT, ...(init.headers as Record<string, string>) } })
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers }
}

/** Refused, and not one byte of what is asked for in the answer. */
function refused(res: { status: number; body: Buffer; headers: Headers }, secret: Buffer, what: string): void {
  assert.ok(res.status === 403 || res.status === 404 || res.status === 400, `${what}: status ${res.status}`)
  assert.ok(!res.body.includes(secret), `${what}: the answer holds the detained bytes`)
}

describe('a detained image', () => {
  it('is refused by tag and by digest, and a good image beside it is served', async () => {
    const denied = await req('/v2/library/bad/manifests/v1')
    assert.equal(denied.status, 403)
    refused(await req(`/v2/library/bad/manifests/${bad.digest}`), bad.manifest, 'by digest')
    assert.equal((await req('/v2/library/bad/manifests/good')).status, 200)
  })

  // Every spelling of the same repository reaches the same verdict (and the same quarantine).
  const routes: Array<[string, string]> = [
    ['the default upstream, one component', '/v2/bad/manifests/v1'],
    ['the default upstream, library/', '/v2/library/bad/manifests/v1'],
    ['a docker.io path prefix', '/v2/docker.io/library/bad/manifests/v1'],
    ['a docker.io path prefix without library/', '/v2/docker.io/bad/manifests/v1'],
    ['the index.docker.io alias', '/v2/index.docker.io/library/bad/manifests/v1'],
    ['the index.docker.io alias without library/', '/v2/index.docker.io/bad/manifests/v1'],
    ['an upper-case host prefix', '/v2/DOCKER.IO/library/bad/manifests/v1'],
    ['an upper-case repository', '/v2/library/BAD/manifests/v1'],
    ['ns=docker.io', '/v2/library/bad/manifests/v1?ns=docker.io'],
    ['ns=index.docker.io', '/v2/bad/manifests/v1?ns=index.docker.io'],
    ['ns in upper case', '/v2/library/bad/manifests/v1?ns=DOCKER.IO'],
    ['ns with the path prefix too (override_path)', '/v2/docker.io/library/bad/manifests/v1?ns=docker.io'],
    ['another upstream by name', '/v2/ghcr.io/library/bad/manifests/v1'],
    ['another upstream by alias', '/v2/ghcr/library/bad/manifests/v1'],
    ['another upstream by ns', '/v2/library/bad/manifests/v1?ns=ghcr.io'],
    ['a dot segment', '/v2/library/x/../bad/manifests/v1'],
    ['an encoded slash', '/v2/library%2Fbad/manifests/v1'],
  ]
  for (const [what, path] of routes) {
    it(`is refused through ${what}, manifest and layer`, async () => {
      refused(await req(path), bad.manifest, what)
      refused(await req(path.replace('/manifests/v1', `/manifests/${bad.digest}`)), bad.manifest, `${what} by digest`)
      refused(await req(path.replace('/manifests/v1', `/blobs/${badLayer}`)), bad.layers[0] as Buffer, `${what} layer`)
    })
  }

  it('is refused on HEAD as on GET, with no digest or length to resolve it by', async () => {
    const head = await fetch(`${customs.url}/v2/library/bad/manifests/v1`, { method: 'HEAD', headers: { accept: ACCEPT } })
    assert.equal(head.status, 403)
    assert.equal(head.headers.get('docker-content-digest'), null)
    const blob = await fetch(`${customs.url}/v2/library/bad/blobs/${badLayer}`, { method: 'HEAD' })
    assert.ok(blob.status === 403 || blob.status === 404, `HEAD blob: ${blob.status}`)
    assert.equal(blob.headers.get('docker-content-digest'), null)
  })

  it('keeps its layer closed to Range requests of every shape', async () => {
    for (const range of ['bytes=0-0', 'bytes=0-', 'bytes=-5', 'bytes=1-3', 'bytes=0-0, 2-3']) {
      refused(await req(`/v2/library/bad/blobs/${badLayer}`, { headers: { range } }), (bad.layers[0] as Buffer).subarray(0, 6), range)
    }
  })

  it('does not let a good image of the same repository open the gate for its layer', async () => {
    assert.equal((await req('/v2/acme/app/manifests/good')).status, 200)
    refused(await req(`/v2/acme/app/blobs/${badLayer}`), bad.layers[0] as Buffer, 'layer beside a good image')
  })
})

describe('a detained index', () => {
  it('is refused, and so is each child manifest by digest, with its layers', async () => {
    const res = await req('/v2/acme/app/manifests/multi')
    assert.equal(res.status, 403)
    for (const child of [amd, arm]) {
      refused(await req(`/v2/acme/app/manifests/${child.digest}`), child.manifest, `child ${child.digest}`)
      const head = await fetch(`${customs.url}/v2/acme/app/manifests/${child.digest}`, { method: 'HEAD', headers: { accept: ACCEPT } })
      assert.equal(head.status, 403, 'HEAD of a child')
      refused(await req(`/v2/acme/app/blobs/${sha256(child.layers[0] as Buffer)}`), child.layers[0] as Buffer, 'child layer')
    }
  })
})

describe('children of an index detained after them', () => {
  const a = approved('late-a')
  const b = approved('late-b')
  const lateIndex = (children: Array<ReturnType<typeof ociImage>>) =>
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: children.map((c) => ({ mediaType: c.mediaType, digest: c.digest, size: c.manifest.byteLength, platform: { os: 'linux', architecture: 'amd64' } })) }))

  it('refuses a child cleared on its own before its index was detained', async () => {
    putImage(upstream, 'acme/late', a)
    const idx = lateIndex([a])
    upstream.putManifest('acme/late', idx, OCI_INDEX, 'v1')
    assert.equal((await req(`/v2/acme/late/manifests/${a.digest}`)).status, 200, 'cleared on its own first')
    assert.equal((await req('/v2/acme/late/manifests/v1')).status, 403)
    const again = await req(`/v2/acme/late/manifests/${a.digest}`)
    assert.equal(again.status, 403)
    assert.match(again.body.toString(), /listed by the detained index/)
  })

  it('after a policy change, refuses a child asked for before its index', async () => {
    putImage(upstream, 'acme/reload', b)
    upstream.putManifest('acme/reload', lateIndex([b]), OCI_INDEX, 'v1')
    assert.equal((await req('/v2/acme/reload/manifests/v1')).status, 403)
    assert.equal((await req(`/v2/acme/reload/manifests/${b.digest}`)).status, 403)
    // A new revision (an unrelated policy added): every verdict is stale.
    const before = customs.services.policies.current().revision
    await writeFile(join(policyDir, 'p.yaml'), `${POLICY}---\napiVersion: customs.dev/v1\nkind: ImagePolicy\nmetadata: { name: unrelated }\nspec:\n  match: [{ repository: "nothing/**" }]\n  rules: { nonRoot: true }\n`)
    await customs.services.reloadPolicies()
    assert.notEqual(customs.services.policies.current().revision, before)
    refused(await req(`/v2/acme/reload/manifests/${b.digest}`), b.manifest, 'child first after the reload')
    refused(await req(`/v2/acme/reload/blobs/${sha256(b.layers[0] as Buffer)}`), b.layers[0] as Buffer, 'child layer after the reload')
  })

  it('serves the children of an index a person released, and refuses them again once revoked', async () => {
    const c = approved('released')
    putImage(upstream, 'acme/released', c)
    const idx = lateIndex([c])
    const idxDigest = upstream.putManifest('acme/released', idx, OCI_INDEX, 'v1')
    assert.equal((await req('/v2/acme/released/manifests/v1')).status, 403)
    assert.equal((await req(`/v2/acme/released/manifests/${c.digest}`)).status, 403)
    const admin = (path: string, body: object) =>
      fetch(`${customs.url}/admin/v1/quarantine/docker.io/${idxDigest}/${path}`, { method: 'POST', headers: { authorization: `Bearer ${APPROVER}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    const released = await admin('release', { repository: 'acme/released', reason: 'accepted for the test', expires: new Date(Date.now() + 86_400_000).toISOString() })
    assert.equal(released.status, 200, await released.clone().text())
    assert.equal((await req('/v2/acme/released/manifests/v1')).status, 200)
    const child = await req(`/v2/acme/released/manifests/${c.digest}`)
    assert.equal(child.status, 200)
    assert.equal(child.headers.get('customs-verdict'), 'cleared-with-warnings')
    assert.equal((await admin('revoke', { repository: 'acme/released' })).status, 200)
    assert.equal((await req(`/v2/acme/released/manifests/${c.digest}`)).status, 403)
  })
})

describe('a tag that moves', () => {
  beforeEach(async () => {
    await customs.stop()
    await startWith('0s')
  })

  it('between the HEAD and the GET: the GET is judged on what it gets, never served the detained bytes', async () => {
    upstream.putManifest('library/mover', good.manifest, good.mediaType, 'v1')
    putImage(upstream, 'library/mover', good)
    putImage(upstream, 'library/mover', bad)
    const head = await fetch(`${customs.url}/v2/library/mover/manifests/v1`, { method: 'HEAD', headers: { accept: ACCEPT } })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('docker-content-digest'), good.digest)
    upstream.putManifest('library/mover', bad.manifest, bad.mediaType, 'v1')
    // tagTtl 0: the GET asks the upstream again, meets the detained digest, and refuses it.
    const get = await req('/v2/library/mover/manifests/v1')
    assert.equal(get.status, 403)
    refused(get, bad.manifest, 'GET after the move')
    refused(await req(`/v2/library/mover/blobs/${badLayer}`), bad.layers[0] as Buffer, 'layer after the move')
  })

  it('when the upstream names one digest on HEAD and answers other bytes on GET: refused', async () => {
    putImage(upstream, 'library/liar', good, 'v1')
    upstream.intercept = (req, res, path) => {
      if (req.method !== 'GET' || !path.startsWith('/v2/library/liar/manifests/')) return false
      res.setHeader('Docker-Content-Digest', good.digest)
      send(res, 200, bad.manifest, bad.mediaType)
      return true
    }
    try {
      const get = await req('/v2/library/liar/manifests/v1')
      assert.ok(get.status >= 400, `status ${get.status}`)
      assert.ok(!get.body.includes(bad.manifest))
    } finally {
      upstream.intercept = undefined
    }
  })
})
