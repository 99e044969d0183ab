// Signature discovery over a scripted artifact reader: the three sources (referrers, `.sig`,
// `.att`) are asked at once, not one after another; the candidates come in a fixed order whatever
// answered first; `maxArtifacts` bounds what is read, not only what is kept, even against a
// signature manifest listing thousands of layers; a source's reads run at most four at a time;
// and a source or one referrer that fails costs only its own candidates, with the error said.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { digestOf, type Digest } from '../../../src/oci/digest.js'
import type { Descriptor } from '../../../src/oci/manifest.js'
import { referrersTag } from '../../../src/oci/reference.js'
import type { RepoKey } from '../../../src/state/store.js'
import { DSSE_MEDIA_TYPE, SIMPLE_SIGNING_MEDIA_TYPE } from '../../../src/verify/cosign-legacy.js'
import { ArtifactType, discover, type ArtifactReader } from '../../../src/verify/discover.js'

const REPO: RepoKey = { upstream: 'docker.io', repository: 'acme/app' }
const SUBJECT = digestOf(Buffer.from('the image'))
const SIG_TAG = `${referrersTag(SUBJECT)}.sig`
const ATT_TAG = `${referrersTag(SUBJECT)}.att`
const OPTIONS = { attestations: true, maxArtifacts: 16 }

const SIGNATURE = 'dev.cosignproject.cosign/signature'
const ENVELOPE = Buffer.from(JSON.stringify({ payloadType: 'application/vnd.in-toto+json', payload: 'e30=', signatures: [] }))

interface Layer {
  mediaType: string
  digest: Digest
  size: number
  annotations?: Record<string, string>
}

/** A cosign-style manifest of `layers`, as the reader hands it over. */
function manifestOf(layers: readonly Layer[]): { digest: Digest; bytes: Buffer; mediaType: string } {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(Buffer.from('{}')), size: 2 }
  const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers }))
  return { digest: digestOf(bytes), bytes, mediaType: 'application/vnd.oci.image.manifest.v1+json' }
}

/** `n` simple-signing layers, each a blob of its own named `name-i`. */
function sigLayers(name: string, n: number, blobs: Map<Digest, Buffer>): Layer[] {
  return Array.from({ length: n }, (_, i) => {
    const bytes = Buffer.from(`${name}-${i}`)
    const digest = digestOf(bytes)
    blobs.set(digest, bytes)
    return { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, digest, size: bytes.length, annotations: { [SIGNATURE]: 'AAAA' } }
  })
}

/**
 * A reader over manifests and blobs held in maps, recording every call. `gate` holds a call until
 * the test opens it; `failing` names references whose reads reject.
 */
class ScriptedReader implements ArtifactReader {
  readonly manifests = new Map<string, { digest: Digest; bytes: Buffer; mediaType: string }>()
  readonly blobs = new Map<Digest, Buffer>()
  referrerList: Descriptor[] = []
  readonly calls: string[] = []
  readonly failing = new Set<string>()
  readonly #gates = new Map<string, Promise<void>>()
  inFlightBlobs = 0
  mostBlobsAtOnce = 0

  /** Holds calls naming `key` until the returned function is called. */
  gate(key: string): () => void {
    let open!: () => void
    this.#gates.set(key, new Promise((resolve) => (open = resolve)))
    return open
  }

  async #call(key: string): Promise<void> {
    this.calls.push(key)
    await this.#gates.get(key)
    if (this.failing.has(key)) throw new Error(`${key} is unreachable`)
  }

  async referrers(): Promise<Descriptor[]> {
    await this.#call('referrers')
    return this.referrerList
  }

  async manifest(_repo: RepoKey, reference: string): Promise<{ digest: Digest; bytes: Buffer; mediaType: string } | null> {
    await this.#call(reference)
    return this.manifests.get(reference) ?? null
  }

  async blob(_repo: RepoKey, digest: Digest): Promise<Buffer> {
    this.inFlightBlobs++
    this.mostBlobsAtOnce = Math.max(this.mostBlobsAtOnce, this.inFlightBlobs)
    try {
      await this.#call(digest)
      await new Promise((resolve) => setImmediate(resolve))
      const bytes = this.blobs.get(digest)
      if (bytes === undefined) throw new Error(`no blob ${digest}`)
      return bytes
    } finally {
      this.inFlightBlobs--
    }
  }
}

/** A referrer carrying a Sigstore bundle: its manifest and one-layer bundle blob, in `reader`. */
function bundleReferrer(reader: ScriptedReader, name: string): Descriptor {
  const bundle = Buffer.from(JSON.stringify({ mediaType: ArtifactType.BUNDLE_V03, name }))
  const layer = { mediaType: ArtifactType.BUNDLE_V03, digest: digestOf(bundle), size: bundle.length }
  reader.blobs.set(layer.digest, bundle)
  const manifest = manifestOf([layer])
  reader.manifests.set(manifest.digest, manifest)
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: ArtifactType.BUNDLE_V03, digest: manifest.digest, size: manifest.bytes.length }
}

describe('discover', () => {
  it('asks for the referrers, the .sig and the .att at once', async () => {
    const reader = new ScriptedReader()
    const opens = ['referrers', SIG_TAG, ATT_TAG].map((key) => reader.gate(key))
    const discovering = discover(reader, REPO, SUBJECT, OPTIONS)
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(reader.calls, ['referrers', SIG_TAG, ATT_TAG], 'all three asked before any answered')
    for (const open of opens) open()
    assert.deepEqual(await discovering, { candidates: [], notation: 0, errors: [] })
  })

  it('does not ask for the .att when attestations are off', async () => {
    const reader = new ScriptedReader()
    await discover(reader, REPO, SUBJECT, { ...OPTIONS, attestations: false })
    assert.deepEqual(reader.calls, ['referrers', SIG_TAG])
  })

  it('orders the candidates referrers, .sig, .att, whichever answered first', async () => {
    const reader = new ScriptedReader()
    reader.referrerList = [bundleReferrer(reader, 'r0')]
    reader.manifests.set(SIG_TAG, manifestOf(sigLayers('sig', 1, reader.blobs)))
    const envelope = { mediaType: DSSE_MEDIA_TYPE, digest: digestOf(ENVELOPE), size: ENVELOPE.length }
    reader.blobs.set(envelope.digest, ENVELOPE)
    reader.manifests.set(ATT_TAG, manifestOf([envelope]))
    const openReferrers = reader.gate('referrers')
    const openSig = reader.gate(SIG_TAG)
    const discovering = discover(reader, REPO, SUBJECT, OPTIONS)
    // The .att answers first, then the .sig, the referrers last.
    await new Promise((resolve) => setTimeout(resolve, 5))
    openSig()
    await new Promise((resolve) => setTimeout(resolve, 5))
    openReferrers()
    const found = await discovering
    assert.deepEqual(found.candidates.map((c) => c.source), ['referrer', 'legacy-sig', 'legacy-att'])
    assert.ok(found.candidates.every((c) => c.error === undefined && c.bundle !== undefined))
    assert.deepEqual(found.errors, [])
  })

  it('reads no more than maxArtifacts signature layers of a manifest listing thousands, four at a time', async () => {
    const reader = new ScriptedReader()
    reader.manifests.set(SIG_TAG, manifestOf(sigLayers('many', 5000, reader.blobs)))
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.equal(found.candidates.length, 16)
    assert.equal(reader.calls.filter((c) => c.startsWith('sha256:')).length, 16, 'blobs read')
    assert.equal(reader.mostBlobsAtOnce, 4)
  })

  it('reads no more than maxArtifacts layers of a cosign OCI 1.1 signature referrer either', async () => {
    const reader = new ScriptedReader()
    const manifest = manifestOf(sigLayers('referred', 5000, reader.blobs))
    reader.manifests.set(manifest.digest, manifest)
    reader.referrerList = [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: ArtifactType.COSIGN_OCI11_SIG, digest: manifest.digest, size: manifest.bytes.length }]
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.equal(found.candidates.length, 16)
    assert.ok(found.candidates.every((c) => c.source === 'referrer' && c.error === undefined))
    assert.equal(reader.calls.filter((c) => c.startsWith('sha256:') && c !== manifest.digest).length, 16, 'blobs read')
  })

  it('keeps referrers first and cuts the whole to maxArtifacts', async () => {
    const reader = new ScriptedReader()
    reader.referrerList = Array.from({ length: 10 }, (_, i) => bundleReferrer(reader, `r${i}`))
    reader.manifests.set(SIG_TAG, manifestOf(sigLayers('sig', 10, reader.blobs)))
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.equal(found.candidates.length, 16)
    assert.deepEqual(
      found.candidates.map((c) => c.source),
      [...Array<string>(10).fill('referrer'), ...Array<string>(6).fill('legacy-sig')]
    )
  })

  it('counts Notation referrers without reading them, and skips layers of other types', async () => {
    const reader = new ScriptedReader()
    const notation = { mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: ArtifactType.NOTATION, digest: digestOf(Buffer.from('n')), size: 1 }
    reader.referrerList = [notation, notation, bundleReferrer(reader, 'r0')]
    const other = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(Buffer.from('x')), size: 10 * 1024 * 1024 }
    reader.manifests.set(SIG_TAG, manifestOf([other, ...sigLayers('sig', 1, reader.blobs)]))
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.equal(found.notation, 2)
    assert.deepEqual(found.candidates.map((c) => c.source), ['referrer', 'legacy-sig'])
    assert.ok(!reader.calls.includes(notation.digest))
    assert.ok(!reader.calls.includes(other.digest))
  })

  it('says which source failed and keeps what the others found', async () => {
    const reader = new ScriptedReader()
    reader.manifests.set(SIG_TAG, manifestOf(sigLayers('sig', 2, reader.blobs)))
    reader.failing.add('referrers')
    reader.failing.add(ATT_TAG)
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.deepEqual(found.candidates.map((c) => c.source), ['legacy-sig', 'legacy-sig'])
    assert.deepEqual(found.errors, ['referrers: referrers is unreachable', `${ATT_TAG}: ${ATT_TAG} is unreachable`])
  })

  it('loses only the candidates of a referrer that cannot be read', async () => {
    const reader = new ScriptedReader()
    const [first, broken, last] = ['r0', 'r1', 'r2'].map((name) => bundleReferrer(reader, name)) as [Descriptor, Descriptor, Descriptor]
    reader.referrerList = [first, broken, last]
    reader.failing.add(broken.digest)
    const found = await discover(reader, REPO, SUBJECT, OPTIONS)
    assert.deepEqual(found.candidates.map((c) => c.artifact), [first.digest, last.digest])
    assert.deepEqual(found.errors, [`referrer ${broken.digest}: ${broken.digest} is unreachable`])
  })
})
