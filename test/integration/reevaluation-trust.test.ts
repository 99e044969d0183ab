// Re-evaluation after a trust change: an image cleared because it is signed by the trusted key
// `release` is detained (and its blobs refused) once Customs runs with a rotated `release` key,
// on the same state and cache: the recorded facts are stale, so the image is inspected again.
// Back on the original key, a walk clears it again and its quarantine record says so. The same
// rotation of a key file, put in force without a restart (services.reloadTrust, what SIGHUP calls),
// detains what the old key signed and clears what the new one signed.

import assert from 'node:assert/strict'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Digest } from '../../src/oci/digest.js'
import { MemoryStateStore } from '../../src/state/memory.js'
import { signedSigLayer } from '../helpers/cosign.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../helpers/pki.js'
import { makeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { pushLegacySignature } from '../helpers/signed-images.js'
import { sha256hex } from '../helpers/admin.js'

const ADMIN = 'admin-token-0123456789'
const POLICY = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: release-signed }
spec:
  mode: enforce
  match: [{ repository: "signed/**" }]
  authorities:
    - name: release-key
      key: { name: release }
`
const ROTATION = 'rotation'

let registry: RegistryHandle
let pki: TestPki
let signer: TestKeyPair
let rotated: TestKeyPair
let work: string
let storage: string
let policyDir: string
let image: BuiltImage
const state = new MemoryStateStore()
let customs: CustomsHandle | undefined

/** Starts a walk and waits for its end; resolves with its progress. */
async function walk(url: string): Promise<{ state: string; detained: number; cleared: number; errors: number } | undefined> {
  const res = await fetch(`${url}/admin/v1/reevaluations`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN}` } })
  assert.equal(res.status, 202)
  await res.arrayBuffer()
  let progress: { state: string; detained: number; cleared: number; errors: number } | undefined
  for (let i = 0; i < 600 && (progress === undefined || progress.state === 'running'); i++) {
    await sleep(50)
    const answer = await fetch(`${url}/admin/v1/reevaluations/current`, { headers: { Authorization: `Bearer ${ADMIN}` } })
    progress = (await answer.json()) as typeof progress
  }
  return progress
}

function start(key: TestKeyPair): Promise<CustomsHandle> {
  return startCustoms({
    state,
    storage,
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
trust:
  keys: [{ name: release, pem: ${JSON.stringify(key.publicKeyPem)} }]
policy: { path: "${policyDir}", watch: false }
admin:
  tokens:
    - { name: adam, sha256: "${sha256hex(ADMIN)}", role: admin }
`,
  })
}

async function status(url: string, accept?: string): Promise<number> {
  const res = await fetch(url, accept !== undefined ? { headers: { Accept: accept } } : {})
  await res.arrayBuffer()
  return res.status
}

before(async () => {
  registry = await startRegistry()
  pki = createTestPki()
  signer = keyPair('p256')
  rotated = keyPair('p256')
  work = await makeTempDir('reevaluation-trust-')
  storage = join(work, 'storage')
  policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'signed.yaml'), POLICY)
  image = buildImage({ mediaType: 'oci', layers: [4096] })
  await pushImage(registry, 'signed/app', 'v1', image)
  const sig = signedSigLayer({ pki, imageDigest: image.manifestDigest, signer: { kind: 'keyed', key: signer }, timestamps: 'none' })
  await pushLegacySignature(registry, 'signed/app', image.manifestDigest, [sig.layer])
})

after(async () => {
  await customs?.stop()
  await registry?.stop()
  await rm(work, { recursive: true, force: true })
})

describe('re-evaluation after the trusted key is rotated', () => {
  it('clears the image signed with the trusted key', async () => {
    customs = await start(signer)
    assert.equal(await status(`${customs.url}/v2/signed/app/manifests/v1`, image.mediaType), 200)
    assert.equal(await status(`${customs.url}/v2/signed/app/blobs/${image.layers[0]!.digest}`), 200)
    await customs.stop()
    customs = undefined
  })

  it('detains it, refuses its layer and records it revoked after a walk under the new key', async () => {
    customs = await start(rotated)
    const url = customs.url
    const progress = await walk(url)
    assert.equal(progress?.state, 'finished', JSON.stringify(progress))
    assert.equal(progress?.detained, 1, JSON.stringify(progress))
    assert.equal(progress?.errors, 0)
    // The gate is closed by the walk, before any pull of the manifest under the new trust.
    assert.equal(await status(`${url}/v2/signed/app/blobs/${image.layers[0]!.digest}`), 404)
    assert.equal(await status(`${url}/v2/signed/app/manifests/v1`, image.mediaType), 403)
    const record = await state.getQuarantine({ upstream: 'docker.io', repository: 'signed/app' }, image.manifestDigest as Digest)
    assert.equal(record?.state, 'revoked')
    await customs.stop()
    customs = undefined
  })

  it('clears it again, serves its layer and records it cleared after a walk back under the original key', async () => {
    customs = await start(signer)
    const events: Array<{ type: string; digest?: string; detail?: Readonly<Record<string, unknown>> }> = []
    customs.services.events.subscribe((event) => events.push(event))
    const progress = await walk(customs.url)
    assert.equal(progress?.state, 'finished', JSON.stringify(progress))
    assert.equal(progress?.cleared, 1, JSON.stringify(progress))
    assert.equal(progress?.errors, 0)
    assert.equal(await status(`${customs.url}/v2/signed/app/blobs/${image.layers[0]!.digest}`), 200)
    assert.equal(await status(`${customs.url}/v2/signed/app/manifests/v1`, image.mediaType), 200)
    const record = await state.getQuarantine({ upstream: 'docker.io', repository: 'signed/app' }, image.manifestDigest as Digest)
    assert.equal(record?.state, 'cleared')
    assert.deepEqual(record?.history?.map((h) => h.action), ['cleared', 'revoked'])
    const clearances = events.filter((e) => e.type === 'clearance')
    assert.deepEqual(clearances.map((e) => [e.digest, e.detail?.previous]), [[image.manifestDigest, 'revoked']])
  })
})

describe('a trusted key file rotated and reloaded without a restart (SIGHUP)', () => {
  const rotationState = new MemoryStateStore()
  const keyFile = () => join(work, 'keys', 'release.pub')
  let oldSigned: BuiltImage
  let newSigned: BuiltImage
  /** Its own Customs: the one above stays up until the file's end. */
  let running: CustomsHandle | undefined

  before(async () => {
    await mkdir(join(work, 'keys'))
    await writeFile(keyFile(), signer.publicKeyPem)
    oldSigned = buildImage({ mediaType: 'oci', layers: [4096] })
    newSigned = buildImage({ mediaType: 'oci', layers: [4096] })
    for (const [repository, built, key] of [[`signed/${ROTATION}-old`, oldSigned, signer], [`signed/${ROTATION}-new`, newSigned, rotated]] as const) {
      await pushImage(registry, repository, 'v1', built)
      const sig = signedSigLayer({ pki, imageDigest: built.manifestDigest, signer: { kind: 'keyed', key }, timestamps: 'none' })
      await pushLegacySignature(registry, repository, built.manifestDigest, [sig.layer])
    }
    running = await startCustoms({
      state: rotationState,
      baseDir: work,
      config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
trust:
  keys: [{ name: release, file: keys/release.pub }]
policy: { path: "${policyDir}", watch: false }
`,
    })
  })

  after(async () => {
    await running?.stop()
  })

  it('clears what the key in the file signed, and detains what another key signed', async () => {
    const url = (running as CustomsHandle).url
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-old/manifests/v1`, oldSigned.mediaType), 200)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-old/blobs/${oldSigned.layers[0]!.digest}`), 200)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-new/manifests/v1`, newSigned.mediaType), 403)
  })

  it('after the file is replaced and the trust reloaded, detains the old key\'s image and clears the new key\'s', async () => {
    const { services, url } = running as CustomsHandle
    const walkedUnder = services.reevaluator.current().revision
    await writeFile(keyFile(), rotated.publicKeyPem)
    const renewal = await services.reloadTrust()
    assert.equal(renewal.ok, true, renewal.error)
    assert.notEqual(renewal.revision, renewal.previous)
    // The reload started the walk; it judges both records again under the new trust.
    await services.reevaluator.idle()
    const progress = services.reevaluator.current()
    assert.equal(progress.state, 'finished', JSON.stringify(progress))
    assert.notEqual(progress.revision, walkedUnder)
    assert.equal(progress.trigger, 'trust-reload')
    assert.deepEqual([progress.detained, progress.cleared, progress.errors], [1, 1, 0], JSON.stringify(progress))
    // The gate is closed by the walk, before any pull under the new trust.
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-old/blobs/${oldSigned.layers[0]!.digest}`), 404)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-old/manifests/v1`, oldSigned.mediaType), 403)
    const record = await rotationState.getQuarantine({ upstream: 'docker.io', repository: `signed/${ROTATION}-old` }, oldSigned.manifestDigest as Digest)
    assert.equal(record?.state, 'revoked')
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-new/blobs/${newSigned.layers[0]!.digest}`), 200)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-new/manifests/v1`, newSigned.mediaType), 200)
  })

  it('keeps the trust in force when the replaced file is not a key, and says which file', async () => {
    const { services, url } = running as CustomsHandle
    await writeFile(keyFile(), signer.publicKeyPem.slice(0, 40))
    const renewal = await services.reloadTrust()
    assert.equal(renewal.ok, false)
    assert.equal(renewal.error, `trust.keys[0].file: ${keyFile()} is not a PEM public key`)
    assert.equal(renewal.revision, renewal.previous)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-new/manifests/v1`, newSigned.mediaType), 200)
    assert.equal(await status(`${url}/v2/signed/${ROTATION}-old/manifests/v1`, oldSigned.mediaType), 403)
  })
})
