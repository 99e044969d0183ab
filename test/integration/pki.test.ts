// Proves the offline Sigstore test PKI and signature builders against @sigstore/verify itself
// (accepts and rejects the right things), and the signature layout in a distribution 2.8 registry.

import assert from 'node:assert/strict'
import { createHash, sign, verify as cryptoVerify } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { bundleFromJSON, bundleToJSON } from '@sigstore/bundle'
import { pem } from '@sigstore/core'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { DSSEBundleBuilder, type Signer, type Witness } from '@sigstore/sign'
import {
  PolicyError,
  toSignedEntity,
  toTrustMaterial,
  VerificationError,
  Verifier,
  type KeyFinderFunc,
  type VerificationPolicy,
} from '@sigstore/verify'
import {
  DEFAULT_IDENTITY,
  signedAttLayer,
  signedDsseBundle,
  signedMessageBundle,
  signedSigLayer,
} from '../helpers/cosign.js'
import { buildImage, MediaTypes, pushImage } from '../helpers/images.js'
import {
  createTestPki,
  derUtf8String,
  keyPair,
  publicGoodTrustedRoot,
  type CosignRekorBundle,
  type TestKeyPair,
  type TestPki,
  type TlogEntryJson,
  type TrustedRootOptions,
} from '../helpers/pki.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import {
  CosignAnnotations,
  inTotoStatement,
  SigMediaTypes,
  type LegacyLayer,
} from '../helpers/sign.js'
import {
  cosignTag,
  pushBundleReferrer,
  pushLegacySignature,
  pushNotationReferrer,
} from '../helpers/signed-images.js'

// ---------------------------------------------------------------------------------------------
// A local legacy → bundle v0.1 converter (PROTOCOL §6.4); the product has its own.

/** One legacy layer as a bundle v0.1; the artifact is the blob (`.sig`) or none (`.att`). */
function legacyLayerToBundle(layer: LegacyLayer, keyHint = 'customs-test-key'): unknown {
  const ann = layer.descriptor.annotations
  const certs = `${ann[CosignAnnotations.CERTIFICATE] ?? ''}\n${ann[CosignAnnotations.CHAIN] ?? ''}`
  const pems = certs.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)
  const rawBytes = (p: string): { rawBytes: string } => ({
    rawBytes: pem.toDER(p).toString('base64'),
  })
  const tlogEntries: TlogEntryJson[] = []
  const set = ann[CosignAnnotations.BUNDLE]
  if (set !== undefined) {
    const { Payload, SignedEntryTimestamp } = JSON.parse(set) as CosignRekorBundle
    const body = JSON.parse(Buffer.from(Payload.body, 'base64').toString('utf8')) as RekorBody
    tlogEntries.push({
      logIndex: String(Payload.logIndex),
      logId: { keyId: Buffer.from(Payload.logID, 'hex').toString('base64') },
      kindVersion: { kind: body.kind, version: body.apiVersion },
      integratedTime: String(Payload.integratedTime),
      inclusionPromise: { signedEntryTimestamp: SignedEntryTimestamp },
      canonicalizedBody: Payload.body,
    })
  }
  const tsa = ann[CosignAnnotations.RFC3161]
  const token = tsa === undefined ? undefined : (JSON.parse(tsa) as RekorTimestamp)
  const signature = ann[CosignAnnotations.SIGNATURE]
  const digest = createHash('sha256').update(layer.blob).digest('base64')
  return {
    mediaType: SigMediaTypes.BUNDLE_V01,
    verificationMaterial: {
      ...(pems === null
        ? { publicKey: { hint: keyHint } }
        : { x509CertificateChain: { certificates: pems.map(rawBytes) } }),
      tlogEntries,
      ...(token === undefined
        ? {}
        : {
            timestampVerificationData: {
              rfc3161Timestamps: [{ signedTimestamp: token.SignedRFC3161Timestamp }],
            },
          }),
    },
    ...(signature === undefined
      ? { dsseEnvelope: JSON.parse(layer.blob.toString('utf8')) as unknown }
      : { messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest }, signature } }),
  }
}

interface RekorBody {
  kind: string
  apiVersion: string
}

interface RekorTimestamp {
  SignedRFC3161Timestamp: string
}

// ---------------------------------------------------------------------------------------------

const KEYLESS = { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 1 }
const TSA_ONLY = { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }
const KEYED = { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }

const REPO_OID = { id: [1, 3, 6, 1, 4, 1, 57264, 1, 12] }
const POLICY: VerificationPolicy = {
  subjectAlternativeName: `^${DEFAULT_IDENTITY.san.uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`,
  extensions: { issuer: DEFAULT_IDENTITY.issuer },
  oids: [{ oid: REPO_OID, value: derUtf8String('https://github.com/acme/app') }],
}

let pki: TestPki
const keys = new Map<string, TestKeyPair>()
const keyFinder: KeyFinderFunc = (hint) => {
  const key = keys.get(hint)
  if (key === undefined) throw new Error(`unknown key ${hint}`)
  return { publicKey: key.publicKey, validFor: () => true }
}

function verifier(thresholds: typeof KEYED, root: TrustedRootOptions = {}): Verifier {
  return new Verifier(
    toTrustMaterial(TrustedRoot.fromJSON(pki.trustedRoot(root)), keyFinder),
    thresholds
  )
}

function verifyBundle(
  json: unknown,
  artifact: Buffer | undefined,
  thresholds: typeof KEYED,
  policy?: VerificationPolicy,
  root?: TrustedRootOptions
) {
  return verifier(thresholds, root).verify(toSignedEntity(bundleFromJSON(json), artifact), policy)
}

/** Converts a legacy layer (PROTOCOL §6.4) and verifies it. */
function verifyLayer(
  layer: LegacyLayer,
  thresholds: typeof KEYED,
  policy?: VerificationPolicy,
  root?: TrustedRootOptions
) {
  const artifact = layer.descriptor.annotations[CosignAnnotations.SIGNATURE]
    ? layer.blob
    : undefined
  return verifyBundle(legacyLayerToBundle(layer), artifact, thresholds, policy, root)
}

/** Asserts a VerificationError/PolicyError with `code`, matching `detail` on message or cause. */
function rejects(fn: () => unknown, code: string, detail?: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof VerificationError || error instanceof PolicyError, String(error))
    assert.equal(error.code, code, error.message)
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : ''
    if (detail !== undefined) assert.match(`${error.message}${cause}`, detail)
    return true
  })
}

const IMAGE_DIGEST = `sha256:${'ab'.repeat(32)}`

describe('test PKI against @sigstore/verify', () => {
  before(() => {
    pki = createTestPki()
    for (const type of ['p256', 'p384', 'rsa2048', 'ed25519'] as const) {
      keys.set(type, keyPair(type))
    }
    const p256 = keys.get('p256')
    if (p256 !== undefined) keys.set('customs-test-key', p256)
  })

  it('keyless legacy .sig with a Rekor SET converts to a v0.1 bundle that verifies', () => {
    const { layer, payload } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST })
    const signer = verifyLayer(layer, KEYLESS, POLICY)
    assert.equal(signer.identity?.subjectAlternativeName, DEFAULT_IDENTITY.san.uri)
    assert.match(payload.toString('utf8'), new RegExp(`"docker-manifest-digest":"${IMAGE_DIGEST}"`))
    // Sharp edges: a plain-string OID value and a wrong issuer are policy failures.
    const plain = { oid: REPO_OID, value: Buffer.from('https://github.com/acme/app') }
    rejects(
      () => verifyLayer(layer, KEYLESS, { ...POLICY, oids: [plain] }),
      'UNTRUSTED_SIGNER_ERROR'
    )
    const google = { issuer: 'https://accounts.google.com' }
    rejects(
      () => verifyLayer(layer, KEYLESS, { ...POLICY, extensions: google }),
      'UNTRUSTED_SIGNER_ERROR'
    )
    // A tampered payload fails the tlog body check (digest) before the signature check.
    const tampered = { ...layer, blob: Buffer.from(payload.toString('utf8').replace('ab', 'cd')) }
    rejects(() => verifyLayer(tampered, KEYLESS), 'TLOG_BODY_ERROR', /digest mismatch/)
  })

  it('keyless legacy .sig with only an RFC 3161 timestamp verifies with tlogThreshold 0', () => {
    const { layer } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST, timestamps: 'tsa' })
    verifyLayer(layer, TSA_ONLY, POLICY)
    rejects(() => verifyLayer(layer, KEYLESS), 'TLOG_ERROR', /expected 1 tlog entries, got 0/)
  })

  it('keyless legacy .att (intoto 0.0.2 and dsse 0.0.1 SETs) converts and verifies', () => {
    for (const rekorKind of ['intoto', 'dsse'] as const) {
      verifyLayer(
        signedAttLayer({ pki, imageDigest: IMAGE_DIGEST, rekorKind }).layer,
        KEYLESS,
        POLICY
      )
    }
    // cosign stamps attestations over the envelope bytes; sigstore-js checks the signature bytes.
    const stamped = signedAttLayer({ pki, imageDigest: IMAGE_DIGEST, timestamps: 'tsa' })
    rejects(() => verifyLayer(stamped.layer, TSA_ONLY), 'TIMESTAMP_ERROR')
  })

  it('keyless v0.3 DSSE bundle with only a TSA timestamp verifies', () => {
    const signed = signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST })
    assert.equal(signed.bundle.mediaType, SigMediaTypes.BUNDLE_V03)
    verifyBundle(signed.bundle, undefined, TSA_ONLY, POLICY)
    assert.deepEqual(signed.statement.subject, [{ digest: { sha256: 'ab'.repeat(32) } }])
    // No TSA in the trusted root, or a TSA that is not in it: no valid timestamp.
    const noTsa = { tsa: false }
    rejects(
      () => verifyBundle(signed.bundle, undefined, TSA_ONLY, POLICY, noTsa),
      'TIMESTAMP_ERROR'
    )
    const other = signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST, tsa: pki.untrustedTsa })
    rejects(() => verifyBundle(other.bundle, undefined, TSA_ONLY), 'TIMESTAMP_ERROR')
  })

  it('keyless DSSE bundle v0.1 with a dsse SET and a TSA token counts two timestamps', () => {
    const signed = signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST, timestamps: 'both' })
    assert.equal(signed.bundle.mediaType, SigMediaTypes.BUNDLE_V01)
    const both = { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 2 }
    verifyBundle(signed.bundle, undefined, both, POLICY)
  })

  it('keyed message-signature bundles verify for P-256, P-384 and RSA; Ed25519 does not', () => {
    for (const hint of ['p256', 'p384', 'rsa2048', 'ed25519'] as const) {
      const key = keys.get(hint)
      assert.ok(key)
      const signer = { kind: 'keyed' as const, key, hint }
      const { bundle, payload, signature } = signedMessageBundle({
        pki,
        imageDigest: IMAGE_DIGEST,
        signer,
      })
      assert.equal(bundle.verificationMaterial.publicKey?.hint, hint)
      if (hint === 'ed25519') {
        // sigstore-js verifies with 'sha256', which Ed25519 refuses; node:crypto with null works.
        rejects(() => verifyBundle(bundle, payload, KEYED), 'SIGNATURE_ERROR')
        assert.ok(cryptoVerify(null, payload, key.publicKey, Buffer.from(signature, 'base64')))
        continue
      }
      verifyBundle(bundle, payload, KEYED)
      rejects(() => verifyBundle(bundle, Buffer.from('other'), KEYED), 'SIGNATURE_ERROR')
      const oneTimestamp = { ...KEYED, timestampThreshold: 1 }
      rejects(() => verifyBundle(bundle, payload, oneTimestamp), 'TIMESTAMP_ERROR', /got 0/)
    }
  })

  it('keyed legacy .sig with a Rekor SET (publicKey.hint) verifies with tlogThreshold 1', () => {
    const key = keys.get('p256')
    assert.ok(key)
    const signer = { kind: 'keyed' as const, key }
    const { layer } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST, signer })
    assert.equal(layer.descriptor.annotations[CosignAnnotations.CERTIFICATE], undefined)
    verifyLayer(layer, KEYLESS)
  })

  it('rejects a SET from a log key that is not in the trusted root, or over other fields', () => {
    const { layer } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST, rekor: pki.untrustedRekor })
    rejects(() => verifyLayer(layer, KEYLESS), 'TLOG_INCLUSION_PROMISE_ERROR')
    verifyLayer(layer, KEYLESS, POLICY, { extraTlog: true })
    const moved = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST }).layer
    const annotations = moved.descriptor.annotations
    const set = JSON.parse(annotations[CosignAnnotations.BUNDLE] ?? '') as CosignRekorBundle
    set.Payload.integratedTime += 1
    annotations[CosignAnnotations.BUNDLE] = JSON.stringify(set)
    rejects(() => verifyLayer(moved, KEYLESS), 'TLOG_INCLUSION_PROMISE_ERROR')
  })

  it('rejects a TSA token over other bytes', () => {
    const { bundle } = signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST })
    const signedTimestamp = pki.tsa.timestamp(Buffer.from('other bytes')).toString('base64')
    bundle.verificationMaterial.timestampVerificationData = {
      rfc3161Timestamps: [{ signedTimestamp }],
    }
    rejects(
      () => verifyBundle(bundle, undefined, TSA_ONLY),
      'TIMESTAMP_ERROR',
      /could not be verified/
    )
  })

  it('rejects a leaf from the untrusted CA (unless that CA is added to the root)', () => {
    const leaf = pki.untrustedCa.issueLeaf(DEFAULT_IDENTITY)
    const signer = { kind: 'keyless' as const, leaf, chainPem: pki.untrustedCa.chainPem }
    const { layer } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST, signer })
    rejects(() => verifyLayer(layer, KEYLESS), 'CERTIFICATE_ERROR', /no valid certificate path/)
    verifyLayer(layer, KEYLESS, POLICY, { extraCa: true })
  })

  it("rejects a leaf whose validity does not contain the SET's integratedTime", () => {
    const integratedTime = Math.floor(Date.now() / 1000) - 3600
    const { layer } = signedSigLayer({ pki, imageDigest: IMAGE_DIGEST, integratedTime })
    rejects(() => verifyLayer(layer, KEYLESS), 'CERTIFICATE_ERROR', /not valid or expired at/)
  })

  it('a keyless bundle with zero timestamps throws a TypeError, not a VerificationError', () => {
    const signed = signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST, timestamps: 'none' })
    assert.throws(() => verifyBundle(signed.bundle, undefined, KEYED), TypeError)
  })

  it('@sigstore/sign DSSEBundleBuilder with a fake Fulcio Signer and TSA Witness', async () => {
    const leaf = pki.fulcio.issueLeaf(DEFAULT_IDENTITY)
    const signer: Signer = {
      sign: async (data) => ({
        signature: sign('sha256', data, leaf.privateKey),
        key: { $case: 'x509Certificate', certificate: leaf.certPem },
      }),
    }
    const witness: Witness = {
      testify: async (content) => {
        const sig =
          content.$case === 'dsseEnvelope'
            ? content.dsseEnvelope.signatures[0]?.sig
            : content.messageSignature.signature
        assert.ok(sig)
        return { rfc3161Timestamps: [{ signedTimestamp: pki.tsa.timestamp(sig) }] }
      },
    }
    const statement = inTotoStatement(IMAGE_DIGEST, SigMediaTypes.COSIGN_SIGN_PREDICATE)
    const built = await new DSSEBundleBuilder({ signer, witnesses: [witness] }).create({
      data: Buffer.from(JSON.stringify(statement)),
      type: SigMediaTypes.IN_TOTO,
    })
    verifier(TSA_ONLY).verify(toSignedEntity(built), POLICY)
    // The hand-built bundle has the same shape (bundleToJSON drops the empty tlogEntries).
    const ours = bundleToJSON(
      bundleFromJSON(signedDsseBundle({ pki, imageDigest: IMAGE_DIGEST }).bundle)
    )
    const theirs = bundleToJSON(built)
    assert.equal(theirs.mediaType, ours.mediaType)
    const keysOf = (o: object | undefined): string[] => Object.keys(o ?? {}).sort()
    assert.deepEqual(keysOf(theirs.verificationMaterial), keysOf(ours.verificationMaterial))
    assert.deepEqual(keysOf(theirs.dsseEnvelope), keysOf(ours.dsseEnvelope))
  })

  it('writeTrustedRoot writes a file that TrustedRoot.fromJSON accepts', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'customs-pki-'))
    try {
      const path = await pki.writeTrustedRoot(join(dir, 'trusted_root.json'), { extraCa: true })
      const parsed = TrustedRoot.fromJSON(JSON.parse(await readFile(path, 'utf8')))
      assert.equal(parsed.certificateAuthorities.length, 2)
      assert.equal(parsed.tlogs.length, 1)
      assert.equal(parsed.timestampAuthorities[0]?.certChain?.certificates.length, 2)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('the public-good trusted root in @sigstore/tuf seeds.json parses into trust material', () => {
    const json = publicGoodTrustedRoot()
    assert.equal(json.mediaType, 'application/vnd.dev.sigstore.trustedroot+json;version=0.1')
    const trust = toTrustMaterial(TrustedRoot.fromJSON(json))
    assert.ok(trust.tlogs.length >= 1 && trust.certificateAuthorities.length >= 1)
    assert.ok(trust.ctlogs.length >= 1 && trust.timestampAuthorities.length >= 1)
    assert.ok(json.tlogs.some((t) => t.baseUrl === 'https://rekor.sigstore.dev'))
  })
})

// ---------------------------------------------------------------------------------------------

/** A plain GET (no client helpers), JSON-parsed when `accept` is given. */
async function get(registry: RegistryHandle, path: string, accept?: string) {
  const res = await fetch(`${registry.url}${path}`, accept ? { headers: { accept } } : {})
  const bytes = Buffer.from(await res.arrayBuffer())
  const digest = res.headers.get('docker-content-digest')
  return { status: res.status, digest, bytes, json: (): unknown => JSON.parse(bytes.toString()) }
}

interface ManifestJson {
  subject?: { digest: string }
  config: { digest: string }
  layers: Array<{ mediaType: string; digest: string; annotations?: Record<string, string> }>
}

interface IndexJson {
  manifests: Array<{ digest: string; artifactType?: string; annotations?: Record<string, string> }>
}

describe('signatures in a real registry (distribution 2.8)', { timeout: 120_000 }, () => {
  let registry: RegistryHandle
  const repo = 'acme/app'

  before(async () => {
    pki ??= createTestPki()
    registry = await startRegistry()
  })
  after(async () => {
    await registry?.stop()
  })

  it('a legacy .sig at sha256-<hex>.sig, referrers in the sha256-<hex> fallback', async () => {
    const image = buildImage({ mediaType: 'oci', seed: 'pki-test' })
    await pushImage(registry, repo, 'v1', image)
    const imageDigest = image.manifestDigest
    const sig = signedSigLayer({ pki, imageDigest, dockerReference: `${registry.host}/${repo}` })
    const pushedSig = await pushLegacySignature(registry, repo, imageDigest, [sig.layer])
    const { bundle } = signedDsseBundle({ pki, imageDigest })
    const predicate = SigMediaTypes.COSIGN_SIGN_PREDICATE
    const referrer = await pushBundleReferrer(registry, repo, image.descriptor, bundle, predicate)
    const notation = await pushNotationReferrer(registry, repo, image.descriptor)

    const sigTag = cosignTag(imageDigest, 'sig')
    assert.equal(sigTag, `sha256-${imageDigest.slice(7)}.sig`)
    const sigRes = await get(registry, `/v2/${repo}/manifests/${sigTag}`, MediaTypes.OCI_MANIFEST)
    assert.equal(sigRes.status, 200)
    assert.equal(sigRes.digest, pushedSig.digest)
    const [layer, ...more] = (sigRes.json() as ManifestJson).layers
    assert.ok(layer !== undefined && more.length === 0)
    assert.equal(layer.mediaType, SigMediaTypes.SIMPLE_SIGNING)
    assert.equal(layer.annotations?.[CosignAnnotations.SIGNATURE], sig.signature)
    assert.match(layer.annotations?.[CosignAnnotations.BUNDLE] ?? '', /"SignedEntryTimestamp"/)
    assert.deepEqual((await get(registry, `/v2/${repo}/blobs/${layer.digest}`)).bytes, sig.payload)

    // distribution 2.8 has no referrers API: the tag schema is the only way in.
    assert.equal((await get(registry, `/v2/${repo}/referrers/${imageDigest}`)).status, 404)
    const fallback = `/v2/${repo}/manifests/sha256-${imageDigest.slice(7)}`
    const indexRes = await get(registry, fallback, MediaTypes.OCI_INDEX)
    assert.equal(indexRes.status, 200)
    assert.equal(indexRes.digest, notation.indexDigest)
    const { manifests } = indexRes.json() as IndexJson
    assert.deepEqual(
      manifests.map((m) => [m.digest, m.artifactType]),
      [
        [referrer.digest, SigMediaTypes.BUNDLE_V03],
        [notation.digest, SigMediaTypes.NOTATION],
      ]
    )
    assert.equal(manifests[0]?.annotations?.['dev.sigstore.bundle.predicateType'], predicate)

    const refPath = `/v2/${repo}/manifests/${referrer.digest}`
    const ref = (await get(registry, refPath, MediaTypes.OCI_MANIFEST)).json() as ManifestJson
    assert.equal(ref.subject?.digest, imageDigest)
    assert.equal(ref.config.digest, `sha256:${createHash('sha256').update('{}').digest('hex')}`)
    const blob = await get(registry, `/v2/${repo}/blobs/${ref.layers[0]?.digest}`)
    verifyBundle(blob.json(), undefined, TSA_ONLY, POLICY)
  })
})
