// `customs policy test` through the real entry point: --image inspects images pushed to a real
// registry (signed keyless with an attestation, signed with a key, tampered, unsigned) as a pull
// would, prints the verdict, every rule's outcome and the signatures, and exits 0 cleared, 1
// detained, 2 when the image cannot be inspected; --cases runs a file offline; usage errors are 2.

import assert from 'node:assert/strict'
import { access, mkdir, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { DEFAULT_IDENTITY, signedAttLayer, signedSigLayer } from '../helpers/cosign.js'
import { buildImage, pushImage, randomBlob, type BuiltImage } from '../helpers/images.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../helpers/pki.js'
import { makeTempDir, removeTempDir, run, type RunResult } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { pushLegacyAttestation, pushLegacySignature } from '../helpers/signed-images.js'

const ROOT = resolve(import.meta.dirname, '../..')
const MAIN = join(ROOT, 'src/main.ts')
const BUILDER = 'https://github.com/slsa-framework/slsa-github-generator'

let registry: RegistryHandle
let pki: TestPki
let release: TestKeyPair
let work: string
let policyDir: string
let configFile: string
let storage: string
const images = new Map<string, BuiltImage>()

const POLICIES = `
apiVersion: customs.dev/v1
kind: PolicySettings
metadata: { name: settings }
spec: { unmatched: deny }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-signed }
spec:
  match:
    - { upstream: docker.io, repository: "acme/**" }
  authorities:
    - name: ci
      keyless:
        issuer: ${DEFAULT_IDENTITY.issuer}
        subjectRegExp: "https://github\\\\.com/acme/app/.*"
    - name: release-key
      key: { name: release }
  rules:
    tags: { deny: [latest] }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: no-other }
spec:
  match:
    - { upstream: docker.io, repository: "other/**" }
  authorities:
    - { name: nobody, static: fail }
`

/** `customs ...` through the real entry point; never throws on a non-zero exit. */
function customs(args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    allowFailure: true,
    timeoutMs: 60_000,
  })
}

function testImage(ref: string): Promise<RunResult> {
  return customs(['policy', 'test', policyDir, '--image', ref, '--config', configFile])
}

async function push(
  repo: string,
  tag: string,
  sign?: 'keyless' | 'keyed' | 'tampered'
): Promise<BuiltImage> {
  const image = buildImage({ mediaType: 'oci', layers: [randomBlob(2048, `${repo}:${tag}`)] })
  await pushImage(registry, repo, tag, image)
  const digest = image.manifestDigest
  if (sign === 'keyless') {
    const sig = signedSigLayer({ pki, imageDigest: digest })
    await pushLegacySignature(registry, repo, digest, [sig.layer])
    const att = signedAttLayer({
      pki,
      imageDigest: digest,
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: { runDetails: { builder: { id: BUILDER } } },
    })
    await pushLegacyAttestation(registry, repo, digest, [att.layer])
  } else if (sign === 'keyed') {
    const signer = { kind: 'keyed' as const, key: release }
    const sig = signedSigLayer({ pki, imageDigest: digest, signer, timestamps: 'none' })
    await pushLegacySignature(registry, repo, digest, [sig.layer])
  } else if (sign === 'tampered') {
    // A valid signature, but over another image's digest.
    const other = buildImage({ mediaType: 'oci', layers: [1536] }).manifestDigest
    const sig = signedSigLayer({ pki, imageDigest: other })
    await pushLegacySignature(registry, repo, digest, [sig.layer])
  }
  images.set(`${repo}:${tag}`, image)
  return image
}

before(async () => {
  registry = await startRegistry()
  pki = createTestPki()
  release = keyPair('p256')
  work = await makeTempDir('policy-test-cli')
  policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'set.yaml'), POLICIES)
  const root = await pki.writeTrustedRoot(join(work, 'trusted_root.json'))
  storage = join(work, 'storage')
  configFile = join(work, 'customs.yaml')
  await writeFile(
    configFile,
    `
storage: { path: "${storage}" }
upstreams:
  - name: docker.io
    url: "${registry.url}"
    default: true
    retries: { max: 1, backoff: 10ms, maxBackoff: 200ms }
    timeout: 5s
trust:
  roots:
    - { name: test, trustedRoot: "${root}", tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }
  keys: [{ name: release, pem: ${JSON.stringify(release.publicKeyPem)} }]
`
  )
  await push('acme/app', 'v1', 'keyless')
  await push('acme/app', 'latest', 'keyless')
  await push('acme/tool', '2.0', 'keyed')
  await push('acme/tampered', 'v1', 'tampered')
  await push('other/thing', 'v1')
})

after(async () => {
  await registry?.stop()
  if (work !== undefined) await removeTempDir(work)
})

describe('customs policy test --image', () => {
  it('clears a keyless-signed image, printing every rule, its signer and attestation', async () => {
    const r = await testImage('docker.io/acme/app:v1')
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const digest = images.get('acme/app:v1')?.manifestDigest
    assert.match(r.stdout, new RegExp(`^docker\\.io/acme/app:v1\\n  digest ${digest}\\n`))
    assert.match(r.stdout, /^verdict: cleared$/m)
    assert.match(r.stdout, /^  passed  acme-signed\/authorities$/m)
    assert.match(r.stdout, /^  passed  acme-signed\/tags$/m)
    assert.match(r.stdout, /^signatures: 1$/m)
    const subject = DEFAULT_IDENTITY.san.uri.replace(/[.?]/g, '\\$&')
    assert.match(
      r.stdout,
      new RegExp(
        `^  verified keyless ${subject} \\(issuer ${DEFAULT_IDENTITY.issuer}\\) from legacy-sig`,
        'm'
      )
    )
    assert.match(r.stdout, /^attestations: 1$/m)
    assert.match(
      r.stdout,
      new RegExp(
        `^  https://slsa\\.dev/provenance/v1: verified keyless .*; builder ${BUILDER}$`,
        'm'
      )
    )
    assert.equal(r.stderr, '')
  })

  it('clears an image signed with a trusted key, and names the key', async () => {
    const r = await testImage('docker.io/acme/tool:2.0')
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^  verified keyed release from legacy-sig/m)
    assert.match(r.stdout, /^attestations: none found$/m)
  })

  it('detains the latest tag, naming the policy and the rule, and exits 1', async () => {
    const r = await testImage('docker.io/acme/app:latest')
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^verdict: detained$/m)
    assert.match(r.stdout, /^  passed  acme-signed\/authorities$/m)
    assert.match(r.stdout, /^  failed  acme-signed\/tags: tag latest is denied$/m)
  })

  it('judges the same image by digest on its digest alone', async () => {
    const digest = images.get('acme/app:latest')?.manifestDigest ?? ''
    const r = await testImage(`docker.io/acme/app@${digest}`)
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, new RegExp(`^docker\\.io/acme/app\\n  digest ${digest}\\n`))
    assert.match(r.stdout, /^verdict: cleared$/m)
  })

  it('detains a repository another policy refuses, and exits 1', async () => {
    const r = await testImage('other/thing:v1')
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^docker\.io\/other\/thing:v1$/m)
    assert.match(
      r.stdout,
      /^  failed  no-other\/authorities: needs a verified signature from an authority \(nobody\)/m
    )
    assert.match(r.stdout, /^signatures: none found$/m)
  })

  it('shows why a signature over another digest does not count', async () => {
    const r = await testImage('docker.io/acme/tampered:v1')
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^  failed  acme-signed\/authorities: needs a verified signature/m)
    assert.match(
      r.stdout,
      /^  failed  from legacy-sig sha256:[0-9a-f]{12}…: the signature is over/m
    )
  })

  it('exits 2 when the image does not exist upstream, or the reference is malformed', async () => {
    const missing = await testImage('docker.io/acme/missing:v1')
    assert.equal(missing.code, 2, missing.stdout + missing.stderr)
    assert.match(missing.stderr, /^docker\.io\/acme\/missing:v1: cannot inspect: /m)
    const bad = await testImage('docker.io/acme/app:bad:tag')
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /invalid tag "bad:tag"/)
    const unknown = await testImage('quay.io/acme/app:v1')
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /upstream "quay\.io" is not configured/)
  })

  it('never touches the configured storage: its inspection cache is a temp folder', async () => {
    await assert.rejects(access(storage), { code: 'ENOENT' })
  })
})

describe('customs policy test --cases', () => {
  it('prints PASS and FAIL lines and exits 1 on a mismatch', async () => {
    const file = join(work, 'cases.yaml')
    await writeFile(
      file,
      `
- name: acme signed with the key
  image: { upstream: docker.io, repository: acme/app, tag: v1 }
  signatures: [{ kind: keyed, key: release }]
  expect: cleared
- name: other is refused
  image: { upstream: docker.io, repository: other/thing, tag: v1 }
  expect: cleared
`
    )
    const r = await customs(['policy', 'test', policyDir, '--cases', file, '--config', configFile])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      'PASS acme signed with the key: cleared',
      "FAIL other is refused: expected cleared, got detained: policy 'no-other' rule 'authorities': " +
        'needs a verified signature from an authority (nobody), 0 satisfied: no signature was found',
      '2 cases: 1 passed, 1 failed',
    ])
  })

  it('exits 2 with positioned problems when the cases file does not validate', async () => {
    const file = join(work, 'bad-cases.yaml')
    await writeFile(
      file,
      '- name: x\n  image: { upstream: ghcr.io, repository: a/b }\n  expect: ok\n'
    )
    const r = await customs(['policy', 'test', policyDir, '--cases', file, '--config', configFile])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assert.match(
      r.stderr,
      new RegExp(
        `^${file}:2:22 \\[0\\]\\.image\\.upstream: is not a configured upstream \\(docker\\.io\\)$`,
        'm'
      )
    )
    assert.match(
      r.stderr,
      new RegExp(
        `^${file}:3:11 \\[0\\]\\.expect: must be one of cleared, cleared-with-warnings, detained$`,
        'm'
      )
    )
    assert.match(r.stderr, /invalid cases \(2 problems\)\n$/)
  })

  it('exits 2 on usage errors: neither or both of --cases and --image', async () => {
    for (const args of [[], ['--cases', 'a.yaml', '--image', 'x']]) {
      const r = await customs(['policy', 'test', policyDir, ...args])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /customs policy test DIR --cases FILE/)
    }
  })
})
