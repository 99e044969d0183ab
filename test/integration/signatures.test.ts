// Signatures and attestations verified at pull time: signed images pushed to a real
// docker-registry in both storage formats (legacy cosign tags, Sigstore bundle referrers), pulled
// through Customs, and the recorded facts checked, positive cases and each attack.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { buildImage, buildIndex, pushImage, pushIndex, randomBlob, type BuiltImage } from '../helpers/images.js'
import { makeTempDir } from '../helpers/processes.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../helpers/pki.js'
import { DEFAULT_IDENTITY, signedAttLayer, signedDsseBundle, signedSigLayer } from '../helpers/cosign.js'
import { legacySigLayer, SigMediaTypes } from '../helpers/sign.js'
import { cosignTag, pushBundleReferrer, pushLegacyAttestation, pushLegacySignature, pushNotationReferrer } from '../helpers/signed-images.js'
import type { Digest } from '../../src/oci/digest.js'
import type { VerificationFacts } from '../../src/verify/facts.js'

let registry: RegistryHandle
let customs: CustomsHandle
let pki: TestPki
let release: TestKeyPair
let ed: TestKeyPair
let rsa: TestKeyPair
let p384: TestKeyPair
let counter = 0

before(async () => {
  registry = await startRegistry()
  pki = createTestPki()
  release = keyPair('p256')
  ed = keyPair('ed25519')
  rsa = keyPair('rsa2048')
  p384 = keyPair('p384')
  const dir = await makeTempDir('signatures-')
  const root = await pki.writeTrustedRoot(join(dir, 'trusted_root.json'))
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
trust:
  roots:
    - { name: test, trustedRoot: "${root}", tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }
  keys:
    - name: release
      pem: ${JSON.stringify(release.publicKeyPem)}
    - name: edkey
      pem: ${JSON.stringify(ed.publicKeyPem)}
    - name: rsakey
      pem: ${JSON.stringify(rsa.publicKeyPem)}
    - name: p384key
      pem: ${JSON.stringify(p384.publicKeyPem)}
  signatureRepositories:
    - { upstream: docker.io, repository: "acme/elsewhere-*", signatures: acme/signatures }
`,
  })
})

after(async () => {
  await customs?.stop()
  await registry?.stop()
})

/** A fresh image in a fresh repository, pushed; returns its repository and digest. */
async function image(name = 'app'): Promise<{ repo: string; built: BuiltImage; digest: Digest }> {
  const repo = `acme/${name}-${++counter}`
  const built = buildImage({ mediaType: 'oci', layers: [randomBlob(2048, `${name}-${counter}`)] })
  await pushImage(registry, repo, 'v1', built)
  return { repo, built, digest: built.manifestDigest as Digest }
}

/** Pulls the image's tag through Customs and returns the facts recorded for its digest. */
async function pull(repo: string, digest: Digest, ref = 'v1'): Promise<VerificationFacts> {
  const res = await fetch(`${customs.url}/v2/${repo}/manifests/${ref}`)
  assert.equal(res.status, 200, await res.text())
  const record = await customs.services.state.getManifest({ upstream: 'docker.io', repository: repo }, digest)
  assert.ok(record?.facts, 'facts were recorded')
  return record.facts
}

describe('legacy cosign signatures (.sig)', () => {
  it('verifies a keyless signature with a Rekor SET and records the identity', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
    const facts = await pull(repo, digest)
    const [sig] = facts.signatures
    assert.equal(sig?.verified, true, sig?.reason)
    assert.equal(sig?.kind, 'keyless')
    assert.equal(sig?.root, 'test')
    assert.equal(sig?.tlog, true)
    assert.equal(sig?.identity?.subject, DEFAULT_IDENTITY.san.uri)
    assert.equal(sig?.identity?.issuer, DEFAULT_IDENTITY.issuer)
    assert.equal(sig?.identity?.extensions.sourceRepositoryUri, 'https://github.com/acme/app')
    assert.equal(sig?.identity?.extensions.sourceRepositoryRef, 'refs/tags/v1.0.0')
  })

  it('verifies a keyed P-256 signature without a log entry, naming the key', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: release }, timestamps: 'none' })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, true, sig?.reason)
    assert.equal(sig?.kind, 'keyed')
    assert.equal(sig?.key, 'release')
    assert.equal(sig?.tlog, false)
  })

  it('verifies a keyed Ed25519 signature', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: ed }, timestamps: 'none' })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, true, sig?.reason)
    assert.equal(sig?.key, 'edkey')
  })

  for (const [which, key] of [['rsakey', () => rsa], ['p384key', () => p384]] as const) {
    it(`verifies a keyed signature by ${which}`, async () => {
      const { repo, digest } = await image()
      const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: key() }, timestamps: 'none' })
      await pushLegacySignature(registry, repo, digest, [signed.layer])
      const [sig] = (await pull(repo, digest)).signatures
      assert.equal(sig?.verified, true, sig?.reason)
      assert.equal(sig?.key, which)
    })
  }

  it('verifies a keyed signature with a transparency-log entry, checking the entry', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: release }, timestamps: 'rekor' })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, true, sig?.reason)
    assert.equal(sig?.tlog, true)
    assert.equal(sig?.root, 'test')
    assert.ok(sig?.signedAt)
  })

  it('fails a keyed signature whose log entry comes from an untrusted log', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: release }, timestamps: 'rekor', rekor: pki.untrustedRekor })
    await pushLegacySignature(registry, repo, digest, [signed.layer])
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, false)
    assert.match(sig?.reason ?? '', /TLOG/)
  })

  it('finds signatures in the configured signature repository', async () => {
    const { repo, digest } = await image('elsewhere')
    const signed = signedSigLayer({ pki, imageDigest: digest })
    await pushLegacySignature(registry, repo, digest, [signed.layer], { signatureRepo: 'acme/signatures' })
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, true, sig?.reason)
  })

  const attacks: Array<[string, (digest: Digest, other: Digest) => ReturnType<typeof legacySigLayer>, RegExp]> = [
    ['a key nobody trusts', (d) => signedSigLayer({ pki, imageDigest: d, signer: { kind: 'keyed', key: keyPair('p256') }, timestamps: 'none' }).layer, /SIGNATURE_ERROR/],
    ["a signature over another image's digest", (_d, other) => signedSigLayer({ pki, imageDigest: other }).layer, /signature is over/],
    ['a certificate from an untrusted CA', (d) => signedSigLayer({ pki, imageDigest: d, signer: { kind: 'keyless', leaf: pki.untrustedCa.issueLeaf(DEFAULT_IDENTITY), chainPem: pki.untrustedCa.chainPem } }).layer, /CERTIFICATE_ERROR/],
    ['a signing time outside the certificate', (d) => signedSigLayer({ pki, imageDigest: d, integratedTime: Math.floor(Date.now() / 1000) + 3600 }).layer, /CERTIFICATE_ERROR/],
    ['a SET from another log key', (d) => signedSigLayer({ pki, imageDigest: d, rekor: pki.untrustedRekor }).layer, /TLOG/],
    ['no trusted time at all', (d) => signedSigLayer({ pki, imageDigest: d, timestamps: 'none' }).layer, /no trusted signing time/],
    ['a leaf that is not for code signing', (d) => signedSigLayer({ pki, imageDigest: d, leafOptions: { ...DEFAULT_IDENTITY, eku: 'serverAuth' } }).layer, /codeSigning/],
    ['a tampered payload', (d) => {
      const s = signedSigLayer({ pki, imageDigest: d })
      const payload = Buffer.from(s.payload.toString().replace('registry.test.invalid', 'evil.test.invalid'))
      return legacySigLayer({ payload, signature: s.signature, certPem: (s.signer as { leaf: { certPem: string } }).leaf.certPem, ...(s.entry ? { set: s.entry } : {}) })
    }, /ERROR/],
    ['tampered signature bytes', (d) => {
      const s = signedSigLayer({ pki, imageDigest: d, signer: { kind: 'keyed', key: release }, timestamps: 'none' })
      const bytes = Buffer.from(s.signature, 'base64')
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff
      return legacySigLayer({ payload: s.payload, signature: bytes.toString('base64') })
    }, /SIGNATURE_ERROR|verification failed/],
  ]
  for (const [what, layerFor, reason] of attacks) {
    it(`records ${what} as a failed signature, never a verified one`, async () => {
      const { repo, digest } = await image()
      const other = (await image()).digest
      await pushLegacySignature(registry, repo, digest, [layerFor(digest, other)])
      const facts = await pull(repo, digest)
      assert.equal(facts.signatures.length, 1)
      assert.equal(facts.signatures[0]?.verified, false)
      assert.match(facts.signatures[0]?.reason ?? '', reason)
    })
  }

  it('refuses an oversized signature layer without fetching it', async () => {
    const { repo, digest } = await image()
    const big = randomBlob(1024 * 1024 + 1, 'big')
    await pushLegacySignature(registry, repo, digest, [legacySigLayer({ payload: big, signature: 'AAAA' })])
    const facts = await pull(repo, digest)
    assert.equal(facts.signatures[0]?.verified, false)
    assert.match(facts.signatures[0]?.reason ?? '', /over the limit/)
  })
})

describe('Sigstore bundles as OCI 1.1 referrers (cosign v3), through the tag fallback', () => {
  it('verifies a keyless DSSE bundle with an RFC 3161 timestamp', async () => {
    const { repo, built, digest } = await image()
    const signed = signedDsseBundle({ pki, imageDigest: digest })
    await pushBundleReferrer(registry, repo, built.descriptor, signed.bundle, SigMediaTypes.COSIGN_SIGN_PREDICATE)
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.source, 'referrer')
    assert.equal(sig?.verified, true, sig?.reason)
    assert.equal(sig?.tlog, false)
    assert.ok(sig?.signedAt)
  })

  it('fails a timestamp over other bytes', async () => {
    const { repo, built, digest } = await image()
    const signed = signedDsseBundle({ pki, imageDigest: digest })
    const vm = signed.bundle.verificationMaterial as { timestampVerificationData: { rfc3161Timestamps: Array<{ signedTimestamp: string }> } }
    vm.timestampVerificationData.rfc3161Timestamps[0] = { signedTimestamp: pki.tsa.timestamp(Buffer.from('other bytes')).toString('base64') }
    await pushBundleReferrer(registry, repo, built.descriptor, signed.bundle, SigMediaTypes.COSIGN_SIGN_PREDICATE)
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, false)
    assert.match(sig?.reason ?? '', /TIMESTAMP_ERROR/)
  })

  it('fails a keyless bundle with no timestamp, without crashing', async () => {
    const { repo, built, digest } = await image()
    const signed = signedDsseBundle({ pki, imageDigest: digest, timestamps: 'none' })
    await pushBundleReferrer(registry, repo, built.descriptor, signed.bundle, SigMediaTypes.COSIGN_SIGN_PREDICATE)
    const [sig] = (await pull(repo, digest)).signatures
    assert.equal(sig?.verified, false)
    assert.match(sig?.reason ?? '', /no trusted signing time/)
  })

  it('verifies an SBOM attestation bundle and exposes the predicate', async () => {
    const { repo, built, digest } = await image()
    const signed = signedDsseBundle({ pki, imageDigest: digest, predicateType: 'https://spdx.dev/Document', predicate: { spdxVersion: 'SPDX-2.3' } })
    await pushBundleReferrer(registry, repo, built.descriptor, signed.bundle, 'https://spdx.dev/Document')
    const facts = await pull(repo, digest)
    assert.equal(facts.signatures.length, 0)
    const [att] = facts.attestations
    assert.equal(att?.verified, true, att?.reason)
    assert.equal(att?.predicateType, 'https://spdx.dev/Document')
    assert.deepEqual(att?.predicate, { sbom: { format: 'spdx' } })
  })

  it('recognises a notation signature as present but unverified', async () => {
    const { repo, built, digest } = await image()
    await pushNotationReferrer(registry, repo, built.descriptor)
    const facts = await pull(repo, digest)
    assert.equal(facts.notation, 1)
    assert.equal(facts.signatures.length, 0)
  })
})

describe('legacy attestations (.att)', () => {
  it('verifies a SLSA provenance attestation and exposes the builder and source', async () => {
    const { repo, digest } = await image()
    const signed = signedAttLayer({
      pki,
      imageDigest: digest,
      predicateType: 'https://slsa.dev/provenance/v0.2',
      predicate: { builder: { id: 'https://github.com/slsa-framework/slsa-github-generator' }, invocation: { configSource: { uri: 'git+https://github.com/acme/app' } } },
    })
    await pushLegacyAttestation(registry, repo, digest, [signed.layer])
    const [att] = (await pull(repo, digest)).attestations
    assert.equal(att?.verified, true, att?.reason)
    assert.deepEqual(att?.predicate?.slsa, { builderId: 'https://github.com/slsa-framework/slsa-github-generator', sourceUri: 'git+https://github.com/acme/app' })
  })

  it('fails an attestation whose statement is about another image', async () => {
    const { repo, digest } = await image()
    const other = (await image()).digest
    const signed = signedAttLayer({ pki, imageDigest: other, predicateType: 'https://slsa.dev/provenance/v0.2' })
    await pushLegacyAttestation(registry, repo, digest, [signed.layer])
    const [att] = (await pull(repo, digest)).attestations
    assert.equal(att?.verified, false)
    assert.match(att?.reason ?? '', /no subject/)
  })
})

describe('multi-arch images', () => {
  it('a platform manifest pulled by digest inherits the facts of the signed index that lists it', async () => {
    const repo = `acme/multi-${++counter}`
    const amd64 = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, `m${counter}a`)], config: { architecture: 'amd64', os: 'linux' } })
    const arm64 = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, `m${counter}b`)], config: { architecture: 'arm64', os: 'linux' } })
    const index = buildIndex([amd64, arm64], 'oci')
    await pushIndex(registry, repo, 'v1', index)
    const indexDigest = index.manifestDigest as Digest
    await pushLegacySignature(registry, repo, indexDigest, [signedSigLayer({ pki, imageDigest: indexDigest }).layer])
    assert.equal((await pull(repo, indexDigest)).signatures[0]?.verified, true)
    const child = amd64.manifestDigest as Digest
    const facts = await pull(repo, child, child)
    assert.equal(facts.inheritedFrom, indexDigest)
    assert.equal(facts.signatures[0]?.verified, true)
  })

  it('a platform manifest with no known parent is searched on its own digest', async () => {
    const repo = `acme/orphan-${++counter}`
    const amd64 = buildImage({ mediaType: 'oci', layers: [randomBlob(1024, `o${counter}`)] })
    const index = buildIndex([amd64], 'oci')
    await pushIndex(registry, repo, 'v1', index)
    const child = amd64.manifestDigest as Digest
    await pushLegacySignature(registry, repo, child, [signedSigLayer({ pki, imageDigest: child }).layer])
    const facts = await pull(repo, child, child)
    assert.equal(facts.inheritedFrom, undefined)
    assert.equal(facts.signatures[0]?.verified, true)
  })
})

describe('pass-through and cost', () => {
  it('serves the signature manifest and its payload to downstream verifiers, and repeats cost no upstream lookup', async () => {
    const { repo, digest } = await image()
    const signed = signedSigLayer({ pki, imageDigest: digest })
    const pushed = await pushLegacySignature(registry, repo, digest, [signed.layer])
    await pull(repo, digest)
    const sig = await fetch(`${customs.url}/v2/${repo}/manifests/${cosignTag(digest, 'sig')}`)
    assert.equal(sig.status, 200)
    assert.equal(sig.headers.get('docker-content-digest'), pushed.digest)
    const blob = await fetch(`${customs.url}/v2/${repo}/blobs/${signed.layer.descriptor.digest}`)
    assert.deepEqual(Buffer.from(await blob.arrayBuffer()), signed.payload)
    // With the upstream gone, the cleared digest and its facts are still there: nothing was asked.
    await registry.kill()
    try {
      const again = await fetch(`${customs.url}/v2/${repo}/manifests/${digest}`)
      assert.equal(again.status, 200)
      const record = await customs.services.state.getManifest({ upstream: 'docker.io', repository: repo }, digest)
      assert.equal(record?.facts?.signatures[0]?.verified, true)
    } finally {
      await registry.restart()
    }
  })
})

describe('verification failures in /metrics', () => {
  /** customs_verification_failures_total{reason} as scraped. */
  async function failures(reason: string): Promise<number> {
    const text = await (await fetch(`${customs.url}/metrics`)).text()
    const m = new RegExp(`^customs_verification_failures_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)
    return m === null ? 0 : Number(m[1])
  }

  const cases: Array<[string, (digest: Digest, other: Digest) => ReturnType<typeof legacySigLayer>, string]> = [
    ['a key nobody trusts', (d) => signedSigLayer({ pki, imageDigest: d, signer: { kind: 'keyed', key: keyPair('p256') }, timestamps: 'none' }).layer, 'untrusted'],
    ["a signature over another image's digest", (_d, other) => signedSigLayer({ pki, imageDigest: other }).layer, 'binding'],
    ['no trusted time at all', (d) => signedSigLayer({ pki, imageDigest: d, timestamps: 'none' }).layer, 'no-trusted-time'],
    ['a leaf that is not for code signing', (d) => signedSigLayer({ pki, imageDigest: d, leafOptions: { ...DEFAULT_IDENTITY, eku: 'serverAuth' } }).layer, 'certificate'],
    ['an oversized signature layer', () => legacySigLayer({ payload: randomBlob(1024 * 1024 + 1, 'big-metric'), signature: 'AAAA' }), 'malformed'],
  ]
  for (const [what, layerFor, reason] of cases) {
    it(`counts ${what} under reason ${reason}`, async () => {
      const { repo, digest } = await image()
      const other = (await image()).digest
      await pushLegacySignature(registry, repo, digest, [layerFor(digest, other)])
      const before = await failures(reason)
      const facts = await pull(repo, digest)
      assert.equal(facts.signatures[0]?.verified, false)
      assert.equal(await failures(reason), before + 1)
    })
  }
})
