// End-to-end pulls by real clients through Customs, with Debian's docker-registry as the upstream
// standing in for docker.io and ghcr.io: dockerd through `registry-mirrors`, containerd's ctr
// through hosts.toml (ns routing and an override_path host), and podman through a registries.conf
// mirror (path routing). Every fallback points at the dead end 127.0.0.1:9, and the assertions
// read Customs' access log to show that each client's requests reached Customs and none failed.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import {
  buildImage,
  buildIndex,
  pushImage,
  pushIndex,
  type BuiltImage,
  type BuiltIndex,
} from '../helpers/images.js'
import {
  ctrPull,
  startContainerd,
  writeHostsToml,
  type ContainerdHandle,
} from '../helpers/clients.js'
import { DEAD_END, makeTempDir, removeTempDir } from '../helpers/processes.js'
import { standInUpstreams, startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { dockerPull, startDockerd, type DockerdHandle } from '../helpers/docker.js'
import { mirrorRegistriesConf, podmanPull } from '../helpers/podman.js'

const HOOK_TIMEOUT = 120_000
/** For one test: a pull, or two. */
const SLOW = { timeout: 120_000 }
/** The namespace of images that exist nowhere: pulls of them must end at the dead end. */
const MISSING = 'missing'

let registry: RegistryHandle
let customs: CustomsHandle
let work: string
let dockerImage: BuiltImage
let ociImage: BuiltImage
let amd64: BuiltImage
let index: BuiltIndex

/** One access-log line of Customs. */
interface RequestLog {
  method: string
  path: string
  status: number
  upstream?: string
  repository?: string
  userAgent: string
}

/** Customs' access-log lines whose User-Agent starts with `agent` (since `from`, an index). */
function requestsFrom(agent: string, from = 0): RequestLog[] {
  return customs.logs
    .slice(from)
    .filter((l) => l.msg === 'request' && String(l.userAgent ?? '').startsWith(agent))
    .map((l) => ({
      method: String(l.method),
      path: String(l.path),
      status: Number(l.status),
      ...(typeof l.upstream === 'string' ? { upstream: l.upstream } : {}),
      ...(typeof l.repository === 'string' ? { repository: l.repository } : {}),
      userAgent: String(l.userAgent),
    }))
}

/** Asserts that the requests exist, all succeeded, and each one named `upstream` (bar `/v2/`). */
function assertAllServed(requests: RequestLog[], upstream: string, who: string): void {
  assert.ok(requests.length > 0, `${who} sent no request to Customs`)
  const failed = requests.filter((r) => r.status >= 400)
  assert.deepEqual(failed, [], `${who}: no request to Customs failed (a failure means a fallback)`)
  const routed = requests.filter((r) => r.path !== '/v2/' && r.path !== '/v2')
  assert.ok(routed.length > 0, `${who} fetched manifests and blobs through Customs`)
  for (const r of routed) assert.equal(r.upstream, upstream, `${who}: ${r.method} ${r.path}`)
}

/** A client's output must never mention the dead end: that would be a fallback attempt. */
function assertNoFallback(output: string, who: string): void {
  assert.ok(!output.includes(DEAD_END), `${who} tried the dead end ${DEAD_END}:\n${output}`)
  assert.ok(!output.includes('registry-1.docker.io'), `${who} tried Docker Hub:\n${output}`)
}

before(
  async () => {
    registry = await startRegistry()
    work = await makeTempDir('e2e-clients')
    dockerImage = buildImage({ mediaType: 'docker', layers: [64 * 1024, 8 * 1024] })
    ociImage = buildImage({ mediaType: 'oci', layers: [32 * 1024], pretty: true })
    amd64 = buildImage({
      mediaType: 'oci',
      layers: [16 * 1024],
      config: { architecture: 'amd64', os: 'linux' },
    })
    const arm64 = buildImage({
      mediaType: 'oci',
      layers: [16 * 1024],
      config: { architecture: 'arm64', os: 'linux' },
    })
    index = buildIndex([amd64, arm64], 'oci')
    // One repository per client, so each pull starts cold and the logs tell the clients apart.
    await pushImage(registry, 'library/schema2', '1', dockerImage)
    await pushImage(registry, 'org/oci', '1.0', ociImage)
    await pushIndex(registry, 'library/multi', 'latest', index)
    await pushIndex(registry, 'org/app', '1.1', index)
    await pushIndex(registry, 'org/tool', '2', index)
    await pushIndex(registry, 'library/podman-multi', '3', index)
    await pushImage(registry, 'org/podman-oci', '1', ociImage)
    // The same registry stands in for Docker Hub and for ghcr.io.
    customs = await startCustoms({
      config: standInUpstreams(registry.url),
    })
  },
  { timeout: HOOK_TIMEOUT }
)

after(
  async () => {
    await customs?.stop()
    await registry?.stop()
    if (work !== undefined) await removeTempDir(work)
  },
  { timeout: HOOK_TIMEOUT }
)

describe('dockerd through registry-mirrors', () => {
  let dockerd: DockerdHandle

  before(
    async () => {
      dockerd = await startDockerd({ registryMirrors: [customs.url] })
    },
    { timeout: HOOK_TIMEOUT }
  )

  after(async () => dockerd?.stop(), { timeout: HOOK_TIMEOUT })

  it('pulls a Docker schema2 image with the upstream digest', SLOW, async () => {
    const pulled = await dockerPull(dockerd, 'schema2:1')
    assert.equal(pulled.digest, dockerImage.manifestDigest)
    assert.equal(pulled.reportedDigest, dockerImage.manifestDigest)
    assert.equal(pulled.id, dockerImage.configDigest)
  })

  it('pulls an OCI image with the upstream digest', SLOW, async () => {
    const pulled = await dockerPull(dockerd, 'org/oci:1.0')
    assert.equal(pulled.digest, ociImage.manifestDigest)
    assert.equal(pulled.id, ociImage.configDigest)
  })

  it('pulls a multi-arch index: the index digest, the amd64 image', SLOW, async () => {
    const pulled = await dockerPull(dockerd, 'docker.io/library/multi:latest')
    assert.equal(pulled.digest, index.manifestDigest)
    assert.equal(pulled.id, amd64.configDigest)
  })

  it('sent every request to Customs, classic shape (no ns), and never fell back', async () => {
    const requests = requestsFrom('docker/')
    assertAllServed(requests, 'docker.io', 'dockerd')
    assert.ok(requests.some((r) => r.path === '/v2/'), 'dockerd pings the mirror with GET /v2/')
    const repositories = new Set(requests.map((r) => r.repository).filter((r) => r !== undefined))
    assert.deepEqual([...repositories].sort(), ['library/multi', 'library/schema2', 'org/oci'])
    assert.ok(requests.some((r) => r.path === '/v2/library/schema2/manifests/1'))
    assertNoFallback(dockerd.process.tail(10_000), 'dockerd')
    assert.doesNotMatch(dockerd.process.tail(10_000), /Attempting next endpoint/)
  })

  it('falls back to Docker Hub for a missing image, and ends at the dead end', SLOW, async () => {
    // The control for the checks above: a fallback is visible, and cannot leave the machine.
    const error = await dockerPull(dockerd, `${MISSING}/docker:1`).then(
      () => assert.fail('pulled an image that does not exist'),
      (e: unknown) => String(e)
    )
    assert.match(error, /registry-1\.docker\.io.*127\.0\.0\.1:9: connect: connection refused/)
    const log = dockerd.process.tail(50)
    assert.match(log, /Attempting next endpoint for pull after error: manifest unknown/)
  })
})

describe('containerd (ctr --hosts-dir) through hosts.toml', () => {
  let containerd: ContainerdHandle

  before(
    async () => {
      containerd = await startContainerd()
    },
    { timeout: HOOK_TIMEOUT }
  )

  after(async () => containerd?.stop(), { timeout: HOOK_TIMEOUT })

  it('pulls a ghcr.io image routed by ns', SLOW, async () => {
    const hosts = join(work, 'hosts-ns')
    await writeHostsToml(hosts, 'ghcr.io', customs.url)
    const from = customs.logs.length
    const pulled = await ctrPull(containerd, 'ghcr.io/org/app:1.1', hosts)
    assert.equal(pulled.digest, index.manifestDigest)
    assertNoFallback(pulled.stdout + pulled.stderr, 'ctr')
    const requests = requestsFrom('containerd', from)
    assertAllServed(requests, 'ghcr.io', 'containerd (ns)')
    assert.ok(requests.some((r) => r.method === 'HEAD' && r.path === '/v2/org/app/manifests/1.1'))
    for (const r of requests) assert.ok(r.path.startsWith('/v2/org/app/'), r.path)
  })

  it('pulls through an override_path host, routed by path', SLOW, async () => {
    const hosts = join(work, 'hosts-override')
    await writeHostsToml(hosts, 'ghcr.io', `${customs.url}/v2/ghcr.io`, { overridePath: true })
    const from = customs.logs.length
    const pulled = await ctrPull(containerd, 'ghcr.io/org/tool:2', hosts)
    assert.equal(pulled.digest, index.manifestDigest)
    assertNoFallback(pulled.stdout + pulled.stderr, 'ctr')
    const requests = requestsFrom('containerd', from)
    assertAllServed(requests, 'ghcr.io', 'containerd (override_path)')
    const resolve = '/v2/ghcr.io/org/tool/manifests/2'
    assert.ok(requests.some((r) => r.method === 'HEAD' && r.path === resolve))
    for (const r of requests) {
      assert.ok(r.path.startsWith('/v2/ghcr.io/org/tool/'), r.path)
      assert.equal(r.repository, 'org/tool')
    }
  })

  it('falls back to the dead-end server for a missing image', SLOW, async () => {
    const hosts = join(work, 'hosts-ns')
    const error = await ctrPull(containerd, `ghcr.io/${MISSING}/ctr:1`, hosts).then(
      () => assert.fail('pulled an image that does not exist'),
      (e: unknown) => String(e)
    )
    assert.match(error, /127\.0\.0\.1:9.*connection refused/)
  })
})

describe('podman through a registries.conf mirror', () => {
  let conf: string

  before(() => {
    conf = mirrorRegistriesConf([{ prefix: 'docker.io', mirror: `${customs.host}/docker.io` }])
  })

  it('pulls a multi-arch index and an OCI image by path routing', SLOW, async () => {
    const from = customs.logs.length
    const multi = await podmanPull('docker.io/library/podman-multi:3', conf)
    assert.equal(multi.digest, index.manifestDigest)
    assertNoFallback(multi.stdout + multi.stderr, 'podman')
    const oci = await podmanPull('docker.io/org/podman-oci:1', conf)
    assert.equal(oci.digest, ociImage.manifestDigest)
    assertNoFallback(oci.stdout + oci.stderr, 'podman')
    const requests = requestsFrom('containers/', from)
    assertAllServed(requests, 'docker.io', 'podman')
    for (const r of requests) {
      assert.ok(r.path === '/v2/' || r.path.startsWith('/v2/docker.io/'), r.path)
    }
    assert.ok(requests.some((r) => r.path === '/v2/docker.io/library/podman-multi/manifests/3'))
    const repositories = new Set(requests.map((r) => r.repository).filter((r) => r !== undefined))
    assert.deepEqual([...repositories].sort(), ['library/podman-multi', 'org/podman-oci'])
  })

  it('falls back to the dead-end location for a missing image', SLOW, async () => {
    const error = await podmanPull(`docker.io/${MISSING}/podman:1`, conf).then(
      () => assert.fail('pulled an image that does not exist'),
      (e: unknown) => String(e)
    )
    assert.match(error, /Mirrors also failed: \[127\.0\.0\.1:\d+\/docker\.io\//)
    assert.match(error, /127\.0\.0\.1:9: connect: connection refused/)
  })
})

describe('Customs saw only the clients above', () => {
  it('answered every request from every client without an error', () => {
    const all = requestsFrom('').filter((r) => !r.repository?.startsWith(`${MISSING}/`))
    const failed = all.filter((r) => r.status >= 400)
    assert.deepEqual(failed, [])
    const agents = new Set(all.map((r) => r.userAgent.split('/')[0]))
    for (const agent of ['docker', 'containerd', 'containers']) assert.ok(agents.has(agent), agent)
  })
})
