// Real clients pulling through Customs from a real upstream: Debian's docker-registry (CNCF
// distribution) as docker.io and ghcr.io, skopeo (copy, --all) and containerd's ctr with hosts.toml
// mirrors. The digests every client ends up with must equal the upstream's.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { buildImage, buildIndex, pushImage, pushIndex, type BuiltImage, type BuiltIndex } from '../helpers/images.js'
import { ctrPull, skopeoCopy, startContainerd, writeHostsToml, type ContainerdHandle } from '../helpers/clients.js'
import { makeTempDir } from '../helpers/processes.js'
import { standInUpstreams, startCustoms, type CustomsHandle } from '../helpers/customs.js'

let registry: RegistryHandle
let customs: CustomsHandle
let containerd: ContainerdHandle
let work: string
let dockerImage: BuiltImage
let ociImage: BuiltImage
let index: BuiltIndex

before(async () => {
  registry = await startRegistry()
  work = await makeTempDir('real-clients-')
  dockerImage = buildImage({ mediaType: 'docker', layers: [64 * 1024, 8 * 1024] })
  ociImage = buildImage({ mediaType: 'oci', layers: [32 * 1024], pretty: true })
  const amd64 = buildImage({ mediaType: 'oci', layers: [16 * 1024], config: { architecture: 'amd64', os: 'linux' } })
  const arm64 = buildImage({ mediaType: 'oci', layers: [16 * 1024], config: { architecture: 'arm64', os: 'linux' } })
  index = buildIndex([amd64, arm64], 'oci')
  await pushImage(registry, 'library/schema2', '1', dockerImage)
  await pushImage(registry, 'org/oci', '1.0', ociImage)
  await pushIndex(registry, 'library/multi', 'latest', index)
  await pushIndex(registry, 'org/app', '1.1', index)
  // The same registry stands in for Docker Hub and for ghcr.io.
  customs = await startCustoms({
    config: standInUpstreams(registry.url),
  })
  containerd = await startContainerd()
})

after(async () => {
  await containerd?.stop()
  await customs?.stop()
  await registry?.stop()
})

describe('skopeo through Customs', () => {
  it('copies a Docker schema2 image with the upstream digest', async () => {
    const copied = await skopeoCopy(`${customs.host}/library/schema2:1`, join(work, 'schema2'))
    assert.equal(copied.digest, dockerImage.manifestDigest)
  })

  it('copies an OCI image byte for byte, indentation included', async () => {
    const copied = await skopeoCopy(`${customs.host}/docker.io/org/oci:1.0`, join(work, 'oci'))
    assert.equal(copied.digest, ociImage.manifestDigest)
    assert.deepEqual(copied.manifest, ociImage.manifest)
  })

  it('copies a multi-arch index with --all, every child digest intact', async () => {
    const copied = await skopeoCopy(`${customs.host}/library/multi:latest`, join(work, 'multi'), { all: true })
    assert.equal(copied.digest, index.manifestDigest)
    assert.deepEqual([...copied.childDigests].sort(), index.children.map((c) => c.manifestDigest).sort())
  })

  it('copies through a path-prefixed upstream alias (the podman/CRI-O shape)', async () => {
    const copied = await skopeoCopy(`${customs.host}/ghcr/org/app:1.1`, join(work, 'ghcr'), { all: true })
    assert.equal(copied.digest, index.manifestDigest)
  })

  it('records the children of an index with their parent', async () => {
    const repo = { upstream: 'docker.io', repository: 'library/multi' }
    for (const child of index.children) {
      assert.equal(await customs.services.state.getParent(repo, child.manifestDigest as never), index.manifestDigest)
    }
  })
})

describe('containerd through Customs', () => {
  it('pulls and unpacks docker.io and ghcr.io images through hosts.toml mirrors, with ns', async () => {
    const hosts = join(work, 'hosts')
    await writeHostsToml(hosts, 'docker.io', customs.url)
    await writeHostsToml(hosts, 'ghcr.io', customs.url)
    const hub = await ctrPull(containerd, 'docker.io/library/multi:latest', hosts)
    assert.equal(hub.digest, index.manifestDigest)
    const gh = await ctrPull(containerd, 'ghcr.io/org/app:1.1', hosts, { allPlatforms: true })
    assert.equal(gh.digest, index.manifestDigest)
    const schema2 = await ctrPull(containerd, 'docker.io/library/schema2:1', hosts)
    assert.equal(schema2.digest, dockerImage.manifestDigest)
    const requests = customs.logs.filter((l) => l.msg === 'request' && String(l.userAgent ?? '').startsWith('containerd'))
    assert.ok(requests.some((l) => l.method === 'HEAD' && l.upstream === 'ghcr.io'), 'containerd resolves with HEAD, routed by ns')
    assert.ok(requests.every((l) => Number(l.status) < 400), 'no request from containerd failed')
  })
})

describe('a token-protected upstream', () => {
  it('pulls anonymously, and with credentials through the password grant', async () => {
    const secured = await startRegistry({ auth: 'token' })
    const image = buildImage({ mediaType: 'oci', layers: [8 * 1024] })
    await pushImage(secured, 'team/app', 'v1', image)
    const credentials = secured.credentials as { username: string; password: string }
    // The token server listens on its own port: a realm on another host:port needs the allowlist.
    const realmHost = new URL(secured.realm as string).host
    const refused = await startCustoms({ config: `upstreams: [{ name: docker.io, url: "${secured.url}", default: true }]` })
    const anonymous = await startCustoms({
      config: `upstreams: [{ name: docker.io, url: "${secured.url}", default: true, tokenRealmHosts: ["${realmHost}"] }]`,
    })
    const authed = await startCustoms({
      config: `
upstreams:
  - name: docker.io
    url: ${secured.url}
    default: true
    tokenRealmHosts: ["${realmHost}"]
    credentials: { username: ${credentials.username}, password: ${JSON.stringify(credentials.password)} }
`,
    })
    try {
      secured.tokenRequests.length = 0
      const denied = await fetch(`${refused.url}/v2/team/app/manifests/v1`)
      assert.equal(denied.status, 502, 'a realm on another host:port is refused without the allowlist')
      assert.equal(secured.tokenRequests.length, 0)
      secured.tokenRequests.length = 0
      const a = await skopeoCopy(`${anonymous.host}/team/app:v1`, join(work, 'anon'))
      assert.equal(a.digest, image.manifestDigest)
      assert.ok(secured.tokenRequests.length > 0 && secured.tokenRequests.every((r) => !r.withCredentials))
      secured.tokenRequests.length = 0
      const b = await skopeoCopy(`${authed.host}/team/app:v1`, join(work, 'authed'))
      assert.equal(b.digest, image.manifestDigest)
      assert.ok(secured.tokenRequests.some((r) => r.method === 'POST' && r.grantType === 'password' && r.withCredentials))
      // One token per scope, cached: a second pull asks the token server nothing new.
      const before = secured.tokenRequests.length
      await skopeoCopy(`${authed.host}/team/app:v1`, join(work, 'authed-again'))
      assert.equal(secured.tokenRequests.length, before)
      assert.ok(!JSON.stringify(authed.logs).includes(credentials.password))
    } finally {
      await refused.stop()
      await anonymous.stop()
      await authed.stop()
      await secured.stop()
    }
  })
})
