// Policies from real files decide pulls of signed, unsigned and tampered images from a real
// registry: skopeo and containerd see 403 DENIED with the policy, rule and reason; audit mode,
// exceptions, the blob gate of a detained image, and hot reload keeping the last good set.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { makeTempDir } from '../helpers/processes.js'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { createTestPki, keyPair, type TestKeyPair, type TestPki } from '../helpers/pki.js'
import { DEFAULT_IDENTITY, signedSigLayer } from '../helpers/cosign.js'
import { pushLegacySignature } from '../helpers/signed-images.js'
import { ctrPull, skopeoCopy, startContainerd, writeHostsToml, type ContainerdHandle } from '../helpers/clients.js'
import { CommandError } from '../helpers/processes.js'
import { parsePolicyDocuments } from '../../src/policy/load.js'

let registry: RegistryHandle
let customs: CustomsHandle
let containerd: ContainerdHandle
let pki: TestPki
let release: TestKeyPair
let inline: TestKeyPair
let work: string
let policyDir: string

const INLINE = () => `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: inline-key }
spec:
  match: [{ repository: "inline/**" }]
  authorities:
    - name: vendor
      key:
        pem: ${JSON.stringify(inline.publicKeyPem)}
`

const ENFORCE = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-signed }
spec:
  mode: enforce
  match:
    - repository: "acme/**"
  authorities:
    - name: ci
      keyless:
        issuer: ${DEFAULT_IDENTITY.issuer}
        subjectRegExp: "https://github\\\\.com/acme/app/.*"
    - name: release-key
      key: { name: release }
  rules:
    tags:
      deny: [latest]
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: watch-only }
spec:
  mode: audit
  match:
    - repository: "audit/**"
  rules:
    nonRoot: true
---
apiVersion: customs.dev/v1
kind: PolicyException
metadata: { name: legacy-waiver }
spec:
  images: [{ repository: acme/legacy }]
  waives: [{ policy: acme-signed, rules: [authorities] }]
  reason: migration to signed builds, JIRA-123
  owner: platform@acme.example
  expires: 2099-01-01
`

async function push(repo: string, tag: string, sign?: 'keyless' | 'keyed' | 'tampered'): Promise<BuiltImage> {
  const image = buildImage({ mediaType: 'oci', layers: [4096] })
  await pushImage(registry, repo, tag, image)
  const digest = image.manifestDigest
  if (sign === 'keyless') await pushLegacySignature(registry, repo, digest, [signedSigLayer({ pki, imageDigest: digest }).layer])
  if (sign === 'keyed') {
    await pushLegacySignature(registry, repo, digest, [signedSigLayer({ pki, imageDigest: digest, signer: { kind: 'keyed', key: release }, timestamps: 'none' }).layer])
  }
  if (sign === 'tampered') {
    // A valid signature, but over another image's digest.
    const other = buildImage({ mediaType: 'oci', layers: [2048] }).manifestDigest
    await pushLegacySignature(registry, repo, digest, [signedSigLayer({ pki, imageDigest: other }).layer])
  }
  return image
}

before(async () => {
  registry = await startRegistry()
  pki = createTestPki()
  release = keyPair('p256')
  inline = keyPair('p256')
  work = await makeTempDir('policies-')
  policyDir = join(work, 'policies')
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'acme.yaml'), ENFORCE)
  await writeFile(join(policyDir, 'inline.yaml'), INLINE())
  const root = await pki.writeTrustedRoot(join(work, 'trusted_root.json'))
  customs = await startCustoms({
    config: `
upstreams: [{ name: docker.io, url: "${registry.url}", default: true }]
trust:
  roots: [{ name: test, trustedRoot: "${root}", tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 1 }]
  keys: [{ name: release, pem: ${JSON.stringify(release.publicKeyPem)} }]
policy: { path: "${policyDir}", watch: false }
`,
  })
  containerd = await startContainerd()
})

after(async () => {
  await containerd?.stop()
  await customs?.stop()
  await registry?.stop()
})

function errorOf(res: { errors: Array<{ code: string; message: string }> }): { code: string; message: string } {
  return res.errors[0] ?? { code: '', message: '' }
}

describe('an enforcing policy', () => {
  it('lets keyless and keyed signed images through skopeo', async () => {
    const a = await push('acme/app', 'v1', 'keyless')
    assert.equal((await skopeoCopy(`${customs.host}/acme/app:v1`, join(work, 'a'))).digest, a.manifestDigest)
    const b = await push('acme/tool', 'v1', 'keyed')
    assert.equal((await skopeoCopy(`${customs.host}/acme/tool:v1`, join(work, 'b'))).digest, b.manifestDigest)
  })

  it('denies an unsigned image with 403 DENIED naming the policy, rule and reason', async () => {
    await push('acme/unsigned', 'v1')
    const res = await fetch(`${customs.url}/v2/acme/unsigned/manifests/v1`)
    assert.equal(res.status, 403)
    const err = errorOf((await res.json()) as never)
    assert.equal(err.code, 'DENIED')
    assert.match(err.message, /policy 'acme-signed' rule 'authorities'/)
    assert.match(err.message, /no signature was found/)
    await assert.rejects(skopeoCopy(`${customs.host}/acme/unsigned:v1`, join(work, 'c')), (e: unknown) => {
      assert.ok(e instanceof CommandError)
      assert.match(String(e.message), /denied|403/i)
      return true
    })
  })

  it('denies an image whose signature is over another digest', async () => {
    await push('acme/tampered', 'v1', 'tampered')
    const res = await fetch(`${customs.url}/v2/acme/tampered/manifests/v1`)
    assert.equal(res.status, 403)
    assert.match(errorOf((await res.json()) as never).message, /signature is over/)
  })

  it('denies the latest tag, while the same digest by digest passes', async () => {
    const image = await push('acme/app', 'latest', 'keyless')
    const byTag = await fetch(`${customs.url}/v2/acme/app/manifests/latest`)
    assert.equal(byTag.status, 403)
    assert.match(errorOf((await byTag.json()) as never).message, /rule 'tags': tag latest is denied/)
    assert.equal((await fetch(`${customs.url}/v2/acme/app/manifests/${image.manifestDigest}`)).status, 200)
  })

  it('keeps the blobs of a detained image behind the gate', async () => {
    const image = await push('acme/gated', 'v1')
    assert.equal((await fetch(`${customs.url}/v2/acme/gated/manifests/v1`)).status, 403)
    const layer = image.layers[0]?.digest as string
    const blob = await fetch(`${customs.url}/v2/acme/gated/blobs/${layer}`)
    assert.equal(blob.status, 404)
    assert.equal(errorOf((await blob.json()) as never).code, 'BLOB_UNKNOWN')
  })

  it('makes containerd fail the pull with the 403', async () => {
    const hosts = join(work, 'hosts')
    await writeHostsToml(hosts, 'docker.io', customs.url)
    await assert.rejects(ctrPull(containerd, 'docker.io/acme/unsigned:v1', hosts), (e: unknown) => {
      assert.match(String((e as Error).message), /403 Forbidden|denied/i)
      return true
    })
  })

  it('judges a runnable image like any other, whatever artifact fields it claims or where it is found', async () => {
    const victim = await push('acme/victim', 'v1')
    // A runnable image posing as a signature: artifactType and subject set, tar layers.
    const posing = buildImage({ mediaType: 'oci', layers: [4096], artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json', subject: victim.descriptor })
    await pushImage(registry, 'acme/victim', `sha256-${victim.manifestDigest.slice(7)}.sig`, posing)
    assert.equal((await fetch(`${customs.url}/v2/acme/victim/manifests/v1`)).status, 403)
    const direct = await fetch(`${customs.url}/v2/acme/victim/manifests/${posing.manifestDigest}`)
    assert.equal(direct.status, 403)
    const layer = posing.layers[0]?.digest as string
    assert.equal((await fetch(`${customs.url}/v2/acme/victim/blobs/${layer}`)).status, 404)
  })

  it('lets an image through under an active exception', async () => {
    const image = await push('acme/legacy', 'v1')
    const res = await fetch(`${customs.url}/v2/acme/legacy/manifests/v1`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('docker-content-digest'), image.manifestDigest)
  })
})

describe('a policy with an inline key', () => {
  it('admits an image signed by that key, which trust.keys does not have, and refuses others', async () => {
    const image = buildImage({ mediaType: 'oci', layers: [4096] })
    await pushImage(registry, 'inline/app', 'v1', image)
    const signed = signedSigLayer({ pki, imageDigest: image.manifestDigest, signer: { kind: 'keyed', key: inline }, timestamps: 'none' })
    await pushLegacySignature(registry, 'inline/app', image.manifestDigest, [signed.layer])
    const ok = await fetch(`${customs.url}/v2/inline/app/manifests/v1`)
    assert.equal(ok.status, 200, await ok.text())
    const other = await push('inline/other', 'v1', 'keyed')
    assert.ok(other)
    assert.equal((await fetch(`${customs.url}/v2/inline/other/manifests/v1`)).status, 403)
  })
})

describe('an audit policy', () => {
  it('serves the image and marks the answer', async () => {
    await push('audit/root-image', 'v1')
    const res = await fetch(`${customs.url}/v2/audit/root-image/manifests/v1`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('customs-verdict'), 'cleared-with-warnings')
    assert.ok(customs.logs.some((l) => l.msg === 'audit policy would deny image' && String(l.repository) === 'audit/root-image'))
  })
})

describe('a tag-scoped policy under unmatched: deny', () => {
  it('admits a pull by a matching tag, and then serves its blobs', async () => {
    const image = await push('tagged/app', 'v1')
    const set = parsePolicyDocuments(
      [
        {
          path: 'inline.yaml',
          text: `apiVersion: customs.dev/v1
kind: PolicySettings
metadata: { name: settings }
spec: { unmatched: deny }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: tagged }
spec:
  match: [{ repository: "tagged/**", tags: ["v*"] }]
  authorities: [{ name: any, static: pass }]
`,
        },
      ],
      { keyNames: new Set(['release']) }
    )
    const previous = customs.services.policies.current()
    customs.services.policies.replace(set)
    try {
      const byTag = await fetch(`${customs.url}/v2/tagged/app/manifests/v1`)
      assert.equal(byTag.status, 200, await byTag.text())
      const layer = image.layers[0]?.digest as string
      assert.equal((await fetch(`${customs.url}/v2/tagged/app/blobs/${layer}`)).status, 200)
      // The same image by a tag the policy does not name is unmatched, so refused.
      await pushImage(registry, 'tagged/app', 'main', image)
      assert.equal((await fetch(`${customs.url}/v2/tagged/app/manifests/main`)).status, 403)
    } finally {
      customs.services.policies.replace(previous)
    }
  })
})

describe('hot reload', () => {
  it('applies a new set, and keeps the last good one when a new file does not validate', async () => {
    await push('acme/reloaded', 'v1')
    assert.equal((await fetch(`${customs.url}/v2/acme/reloaded/manifests/v1`)).status, 403)
    const waiver = `
apiVersion: customs.dev/v1
kind: PolicyException
metadata: { name: reload-waiver }
spec:
  images: [{ repository: acme/reloaded }]
  waives: [{ policy: acme-signed }]
  reason: testing reload
  owner: tests
  expires: 2099-01-01
`
    await writeFile(join(policyDir, 'waiver.yaml'), waiver)
    const good = await customs.services.reloadPolicies()
    assert.equal(good.ok, true)
    assert.equal((await fetch(`${customs.url}/v2/acme/reloaded/manifests/v1`)).status, 200)

    await writeFile(join(policyDir, 'broken.yaml'), 'apiVersion: customs.dev/v1\nkind: ImagePolicy\nmetadata: { name: broken }\nspec: { mode: sometimes }\n')
    const bad = await customs.services.reloadPolicies()
    assert.equal(bad.ok, false)
    assert.equal(bad.revision, good.revision, 'the previous set stays in force')
    assert.equal((await fetch(`${customs.url}/v2/acme/reloaded/manifests/v1`)).status, 200)
    await rm(join(policyDir, 'broken.yaml'))
  })
})
