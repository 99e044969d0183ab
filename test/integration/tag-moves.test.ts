// Tag moves against a real docker-registry: a tag re-pushed with an image signed by another key, or
// unsigned, is flagged (tag-move event, metric, tag recorded) by default, and detained under a
// policy with tagMoves.signerChange: detain until a person releases the new digest. Pulls by
// digest are unaffected; a first sighting is no move; unsigned to unsigned is `none`.

import assert from 'node:assert/strict'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { CustomsEvent } from '../../src/audit/events.js'
import type { Digest } from '../../src/oci/digest.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { signedSigLayer } from '../helpers/cosign.js'
import { buildImage, pushImage, randomBlob, type BuiltImage } from '../helpers/images.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../helpers/pki.js'
import { makeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { pushLegacySignature } from '../helpers/signed-images.js'

let registry: RegistryHandle
let customs: CustomsHandle
let pki: TestPki
let release: TestKeyPair
let mallory: TestKeyPair
let work: string
let counter = 0
const events: CustomsEvent[] = []

before(async () => {
  registry = await startRegistry()
  pki = createTestPki()
  release = keyPair('p256')
  mallory = keyPair('p256')
  work = await makeTempDir('tag-moves-')
  const policies = join(work, 'policies')
  await mkdir(policies)
  await writeFile(
    join(policies, 'pinned.yaml'),
    `apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: pinned-signers }
spec:
  mode: enforce
  match: [{ repository: "acme/pinned-*" }]
  tagMoves: { signerChange: detain }
  rules: { maxLayers: 10 }
`
  )
  const root = await pki.writeTrustedRoot(join(work, 'trusted_root.json'))
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true, tagTtl: 0s }]
policy: { path: "${policies}", watch: false }
trust:
  roots:
    - { name: test, trustedRoot: "${root}", tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }
  keys:
    - { name: release, pem: ${JSON.stringify(release.publicKeyPem)} }
    - { name: mallory, pem: ${JSON.stringify(mallory.publicKeyPem)} }
`,
  })
  customs.services.events.subscribe((e) => events.push(e))
})

after(async () => {
  await customs?.stop()
  await registry?.stop()
  if (work !== undefined) await rm(work, { recursive: true, force: true })
})

/** A fresh image pushed at `repo:tag`, signed with `key` (or unsigned); returns its digest. */
async function push(repo: string, tag: string, key?: TestKeyPair): Promise<Digest> {
  const built: BuiltImage = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, `tag-moves-${++counter}`)] })
  await pushImage(registry, repo, tag, built)
  const digest = built.manifestDigest as Digest
  if (key !== undefined) {
    const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key }, timestamps: 'none' })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
  }
  return digest
}

async function pull(repo: string, ref: string): Promise<{ status: number; digest: string | null; verdict: string | null; message: string }> {
  const res = await fetch(`${customs.url}/v2/${repo}/manifests/${ref}`, {
    headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' },
  })
  const body = await res.text()
  const message = res.status === 200 ? '' : ((JSON.parse(body) as { errors: Array<{ message: string }> }).errors[0]?.message ?? '')
  return { status: res.status, digest: res.headers.get('docker-content-digest'), verdict: res.headers.get('customs-verdict'), message }
}

const movesOf = (repo: string): CustomsEvent[] => events.filter((e) => e.type === 'tag-move' && e.repository === repo)

async function movesCounted(change: string): Promise<number> {
  const metric = await customs.services.metrics.tagMoves.get()
  return metric.values.find((v) => v.labels.upstream === 'docker.io' && v.labels.change === change)?.value ?? 0
}

describe('tag moves flagged (the default)', () => {
  it('records and announces each move with what changed of the signers', async () => {
    const repo = 'acme/flag-app'
    const key = { upstream: 'docker.io', repository: repo }
    const a = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).digest, a)
    assert.deepEqual(movesOf(repo), [], 'a first sighting is no move')
    const changedBefore = await movesCounted('signer-changed')

    const b = await push(repo, 'v1', mallory)
    const moved = await pull(repo, 'v1')
    assert.equal(moved.status, 200)
    assert.equal(moved.digest, b)
    assert.equal((await customs.services.state.getTag(key, 'v1'))?.digest, b)
    const [first] = movesOf(repo)
    assert.equal(first?.reference, 'v1')
    assert.equal(first?.digest, b)
    assert.deepEqual(first?.detail, { tag: 'v1', from: a, to: b, previousSigners: ['key:release'], newSigners: ['key:mallory'], change: 'signer-changed', outcome: 'moved' })
    assert.equal(await movesCounted('signer-changed'), changedBefore + 1)
    assert.ok(customs.logs.some((l) => l.msg === 'tag moved to a digest its previous signers did not sign' && l.to === b))

    const c = await push(repo, 'v1')
    assert.equal((await pull(repo, 'v1')).digest, c)
    assert.equal(movesOf(repo)[1]?.detail?.change, 'signature-lost')

    const d = await push(repo, 'v1')
    assert.equal((await pull(repo, 'v1')).digest, d)
    assert.equal(movesOf(repo)[2]?.detail?.change, 'none', 'unsigned to unsigned')
    assert.deepEqual(movesOf(repo)[2]?.detail?.previousSigners, [])

    // Pulled again unchanged: no further move.
    assert.equal((await pull(repo, 'v1')).digest, d)
    assert.equal(movesOf(repo).length, 3)
  })
})

describe('tag moves detained by policy', () => {
  it('refuses the moved tag naming both digests and signers, until the new digest is released', async () => {
    const repo = 'acme/pinned-app'
    const key = { upstream: 'docker.io', repository: repo }
    const a = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).status, 200)

    const b = await push(repo, 'v1', mallory)
    const refused = await pull(repo, 'v1')
    assert.equal(refused.status, 403)
    for (const part of [`docker.io/${repo}:v1`, a, b, 'key:release', 'key:mallory', 'pinned-signers', 'the signer changed']) {
      assert.ok(refused.message.includes(part), `${part} in ${refused.message}`)
    }
    assert.equal((await customs.services.state.getTag(key, 'v1'))?.digest, a, 'the recorded tag did not move')
    const record = await customs.services.state.getQuarantine(key, b)
    assert.equal(record?.state, 'detained')
    assert.deepEqual(record?.references, ['v1'])
    assert.equal(movesOf(repo).length, 1)
    assert.deepEqual(movesOf(repo)[0]?.detail, { tag: 'v1', from: a, to: b, previousSigners: ['key:release'], newSigners: ['key:mallory'], change: 'signer-changed', outcome: 'detained' })
    assert.ok(events.some((e) => e.type === 'detention' && e.digest === b))

    // Refused again, announced once.
    assert.equal((await pull(repo, 'v1')).status, 403)
    assert.equal(movesOf(repo).length, 1)
    assert.equal((await customs.services.state.getQuarantine(key, b))?.refused, 2)

    // A pull by digest is no tag move: the digest is cleared on its own.
    const byDigest = await pull(repo, b)
    assert.equal(byDigest.status, 200)
    assert.equal(byDigest.verdict, null)

    // A person releases the new digest: the move is accepted and recorded.
    await customs.services.state.releaseQuarantine(key, b, { by: 'alice', reason: 'key rotation', expires: Date.now() + 3_600_000, at: Date.now() })
    const accepted = await pull(repo, 'v1')
    assert.equal(accepted.status, 200)
    assert.equal(accepted.digest, b)
    assert.equal(accepted.verdict, 'cleared-with-warnings')
    assert.equal((await customs.services.state.getTag(key, 'v1'))?.digest, b)
    assert.equal(movesOf(repo)[1]?.detail?.outcome, 'moved')
    // From then on the tag is the new digest's: served cleared, no move.
    const after = await pull(repo, 'v1')
    assert.equal(after.status, 200)
    assert.equal(after.verdict, null)
    assert.equal(movesOf(repo).length, 2)
  })

  it('refuses a move to an unsigned image as a lost signature', async () => {
    const repo = 'acme/pinned-lost'
    const a = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).status, 200)
    const c = await push(repo, 'v1')
    const refused = await pull(repo, 'v1')
    assert.equal(refused.status, 403)
    assert.ok(refused.message.includes(`moved from ${a} (signed by key:release) to ${c} (unsigned): the signature was lost`), refused.message)
  })

  it('lets a move through that keeps the signer, and one from unsigned to unsigned', async () => {
    const repo = 'acme/pinned-same'
    await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).status, 200)
    const b = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).digest, b)
    const unsigned = 'acme/pinned-unsigned'
    await push(unsigned, 'v1')
    assert.equal((await pull(unsigned, 'v1')).status, 200)
    const d = await push(unsigned, 'v1')
    const moved = await pull(unsigned, 'v1')
    assert.equal(moved.status, 200)
    assert.equal(moved.digest, d)
    assert.equal(movesOf(unsigned)[0]?.detail?.change, 'none')
  })

  it('treats a move back to a previously seen digest as a move from the current one', async () => {
    const repo = 'acme/pinned-back'
    const a = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).status, 200)
    const b = await push(repo, 'v1', release)
    assert.equal((await pull(repo, 'v1')).digest, b)
    // The upstream puts v1 back on the first image: same signer, accepted as a move.
    const res = await fetch(`${registry.url}/v2/${repo}/manifests/${a}`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } })
    const bytes = Buffer.from(await res.arrayBuffer())
    const put = await fetch(`${registry.url}/v2/${repo}/manifests/v1`, { method: 'PUT', headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }, body: bytes })
    assert.equal(put.status, 201)
    assert.equal((await pull(repo, 'v1')).digest, a)
    assert.deepEqual(movesOf(repo).at(-1)?.detail, { tag: 'v1', from: b, to: a, previousSigners: ['key:release'], newSigners: ['key:release'], change: 'none', outcome: 'moved' })
  })
})
