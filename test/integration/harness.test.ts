// Proves the test harness without Customs: real registry (plain and token auth), synthetic images
// pushed over HTTP, and skopeo and containerd pulling them straight from the registry.

import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import {
  ctr,
  ctrPull,
  skopeoCopy,
  skopeoInspect,
  startContainerd,
  writeHostsToml,
  type ContainerdHandle,
} from '../helpers/clients.js'
import {
  buildImage,
  buildIndex,
  fetchBlob,
  fetchManifest,
  MediaTypes,
  pushImage,
  pushIndex,
  pushManifestBytes,
  randomBlob,
  randomTarLayer,
  referrersTagFor,
  sha256Digest,
  tarLayer,
  type BuildImageOptions,
  type BuiltImage,
  type BuiltIndex,
} from '../helpers/images.js'
import { freePort, waitForHttp } from '../helpers/ports.js'
import {
  CommandError,
  makeTempDir,
  removeTempDir,
  run,
  spawnService,
} from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'

const SLOW = { timeout: 300_000 }

describe('synthetic images', () => {
  it('randomBlob is deterministic, seed-dependent and makes 200 MiB (the bench blob) in one piece', () => {
    assert.deepEqual(randomBlob(1000, 'a'), randomBlob(1000, 'a'))
    assert.notDeepEqual(randomBlob(1000, 'a'), randomBlob(1000, 'b'))
    // A prefix of a longer blob is the shorter blob: the keystream does not depend on size.
    assert.deepEqual(randomBlob(5 * 1024 * 1024, 7).subarray(0, 1000), randomBlob(1000, 7))
    // No time bound: these machines are shared and noisy; the bench reports its own set-up times.
    const big = randomBlob(200 * 1024 * 1024, 'big')
    assert.equal(big.length, 200 * 1024 * 1024)
  })

  it('randomTarLayer has exactly the requested size and a matching diffId', () => {
    for (const size of [1536, 2048, 4097, 1_000_003]) {
      const layer = randomTarLayer(size, 's')
      assert.equal(layer.bytes.length, size)
      assert.equal(layer.diffId, sha256Digest(layer.bytes))
    }
    assert.throws(() => randomTarLayer(1000, 's'), RangeError)
  })

  it('buildImage writes the config fields and digests the exact bytes', () => {
    const options: BuildImageOptions = {
      mediaType: 'oci',
      layers: [tarLayer([{ path: 'etc/hello', content: 'hi\n' }]), 3000],
      config: {
        architecture: 'arm64',
        variant: 'v8',
        config: { User: '1000', Labels: { a: 'b' } },
      },
      seed: 'fixed',
      pretty: true,
    }
    const image = buildImage(options)
    const manifest = JSON.parse(image.manifest.toString('utf8')) as {
      mediaType: string
      config: { digest: string; size: number }
      layers: { mediaType: string; digest: string }[]
    }
    const config = JSON.parse(image.config.toString('utf8')) as {
      architecture: string
      config: { User: string; Labels: Record<string, string> }
      rootfs: { diff_ids: string[] }
    }
    assert.equal(image.manifestDigest, sha256Digest(image.manifest))
    assert.equal(manifest.mediaType, MediaTypes.OCI_MANIFEST)
    assert.equal(manifest.config.digest, image.configDigest)
    assert.deepEqual(
      manifest.layers.map((l) => l.mediaType),
      [MediaTypes.OCI_LAYER_GZIP, MediaTypes.OCI_LAYER]
    )
    assert.equal(config.architecture, 'arm64')
    assert.equal(config.config.User, '1000')
    assert.deepEqual(config.config.Labels, { a: 'b' })
    assert.deepEqual(config.rootfs.diff_ids, image.layers.map((l) => l.diffId))
    assert.deepEqual(image.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' })
    assert.ok(image.manifest.toString('utf8').includes('\n   "schemaVersion"'))
    // Same inputs, same bytes.
    assert.equal(buildImage(options).manifestDigest, image.manifestDigest)
  })
})

describe('processes', () => {
  it('run() kills a hung command at its timeout and reports it', async () => {
    await assert.rejects(run('sleep', ['30'], { timeoutMs: 300 }), (e: unknown) => {
      return e instanceof CommandError && e.timedOut
    })
  })

  it('run() reports stderr of a failing command', async () => {
    await assert.rejects(run('sh', ['-c', 'echo boom >&2; exit 3']), /exited with 3[\s\S]*boom/)
  })

  it('a service logs to its file and stops on SIGTERM', async () => {
    const dir = await makeTempDir('svc')
    try {
      const port = await freePort()
      const svc = spawnService({
        name: 'http',
        command: process.execPath,
        args: [
          '-e',
          `require('http').createServer((q, s) => s.end('ok'))` +
            `.listen(${port}, '127.0.0.1', () => console.log('up'))`,
        ],
        dir,
      })
      assert.equal(await waitForHttp(`http://127.0.0.1:${port}/`, 30_000), 200)
      assert.match(svc.tail(), /up/)
      const exit = await svc.stop(5000)
      assert.equal(exit.signal, 'SIGTERM')
      assert.equal(svc.isRunning(), false)
    } finally {
      await removeTempDir(dir)
    }
  })
})

/** Pushes the three kinds of image every registry test uses. */
async function pushFixtures(registry: RegistryHandle): Promise<{
  docker: BuiltImage
  oci: BuiltImage
  index: BuiltIndex
}> {
  const hello = tarLayer([{ path: 'hello.txt', content: 'hello' }])
  const docker = buildImage({ mediaType: 'docker', layers: [4096, hello] })
  const nonRoot = { config: { User: '65532' } }
  const oci = buildImage({ mediaType: 'oci', layers: [8192], config: nonRoot })
  const amd64 = buildImage({ mediaType: 'oci', layers: [2048] })
  const arm64 = buildImage({
    mediaType: 'oci',
    layers: [2048],
    config: { architecture: 'arm64', variant: 'v8' },
  })
  const index = buildIndex([amd64, arm64], 'oci')
  assert.equal((await pushImage(registry, 'library/x', '1', docker)).digest, docker.manifestDigest)
  assert.equal((await pushImage(registry, 'library/oci', 'v1', oci)).digest, oci.manifestDigest)
  const pushed = await pushIndex(registry, 'library/multi', 'v1', index)
  assert.equal(pushed.digest, index.manifestDigest)
  return { docker, oci, index }
}

describe('registry without auth', SLOW, () => {
  let registry: RegistryHandle
  let fixtures: Awaited<ReturnType<typeof pushFixtures>>
  let tmp: string

  before(async () => {
    registry = await startRegistry()
    tmp = await makeTempDir('harness')
    fixtures = await pushFixtures(registry)
  })
  after(async () => {
    await registry?.stop()
    if (tmp !== undefined) await removeTempDir(tmp)
  })

  it('serves what was pushed, byte for byte', async () => {
    const got = await fetchManifest(registry, 'library/x', '1')
    assert.equal(got.status, 200)
    assert.equal(got.mediaType, MediaTypes.DOCKER_MANIFEST)
    assert.equal(got.digest, fixtures.docker.manifestDigest)
    assert.equal(got.headerDigest, fixtures.docker.manifestDigest)
    const layer = fixtures.docker.layers[0]
    assert.ok(layer !== undefined)
    const blob = await fetchBlob(registry, 'library/x', layer.digest)
    assert.equal(blob.status, 200)
    assert.equal(sha256Digest(blob.body), layer.digest)
  })

  it('skopeo copies a Docker schema2 image with the same digest', async () => {
    const copied = await skopeoCopy(`${registry.host}/library/x:1`, join(tmp, 'docker'))
    assert.equal(copied.digest, fixtures.docker.manifestDigest, copied.stderr)
  })

  it('skopeo copies an OCI image with the same digest (dir: and oci:)', async () => {
    const dir = await skopeoCopy(`${registry.host}/library/oci:v1`, join(tmp, 'oci-dir'))
    assert.equal(dir.digest, fixtures.oci.manifestDigest, dir.stderr)
    const layout = await skopeoCopy(`${registry.host}/library/oci:v1`, join(tmp, 'oci-layout'), {
      format: 'oci',
    })
    assert.equal(layout.digest, fixtures.oci.manifestDigest, layout.stderr)
  })

  it('skopeo copies a 2-platform index with --all, and one platform without', async () => {
    const { index } = fixtures
    const src = `${registry.host}/library/multi:v1`
    const all = await skopeoCopy(src, join(tmp, 'multi'), { all: true })
    assert.equal(all.digest, index.manifestDigest, all.stderr)
    assert.deepEqual(all.childDigests, index.children.map((c) => c.manifestDigest).sort())
    const arm = await skopeoCopy(src, join(tmp, 'multi-arm'), {
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    })
    assert.equal(arm.digest, index.children[1]?.manifestDigest, arm.stderr)
  })

  it('skopeo inspect --raw returns the exact manifest bytes', async () => {
    const inspected = await skopeoInspect(`${registry.host}/library/multi:v1`)
    assert.equal(inspected.digest, fixtures.index.manifestDigest)
    assert.deepEqual(inspected.manifest, fixtures.index.manifest)
  })

  it('accepts a hand-made artifact with a subject and a referrers fallback index', async () => {
    const subject = fixtures.oci.descriptor
    const artifact = buildImage({
      mediaType: 'oci',
      artifactType: 'application/vnd.example.sbom',
      configBytes: Buffer.from('{}'),
      configMediaType: MediaTypes.OCI_EMPTY,
      layers: [{ bytes: Buffer.from('{"sbom":true}'), mediaType: 'application/json' }],
      subject,
    })
    await pushImage(registry, 'library/oci', undefined, artifact)
    const fallback = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.OCI_INDEX,
        manifests: [{ ...artifact.descriptor, artifactType: 'application/vnd.example.sbom' }],
      })
    )
    const tag = referrersTagFor(subject.digest)
    const type = MediaTypes.OCI_INDEX
    const pushed = await pushManifestBytes(registry, 'library/oci', tag, fallback, type)
    assert.equal(pushed, sha256Digest(fallback))
    const accept = [MediaTypes.OCI_INDEX]
    const got = await fetchManifest(registry, 'library/oci', tag, { accept })
    assert.equal(got.status, 200)
    assert.deepEqual(got.bytes, fallback)
    const byDigest = await fetchManifest(registry, 'library/oci', artifact.manifestDigest)
    assert.deepEqual(byDigest.bytes, artifact.manifest)
  })

  it('streams a 64 MiB layer up and down', async () => {
    const image = buildImage({ mediaType: 'oci', layers: [64 * 1024 * 1024] })
    await pushImage(registry, 'library/big', 'v1', image)
    const layer = image.layers[0]
    assert.ok(layer !== undefined)
    const blob = await fetchBlob(registry, 'library/big', layer.digest)
    assert.equal(blob.body.length, layer.size)
    assert.equal(sha256Digest(blob.body), layer.digest)
  })

  it('kill() takes the registry down and restart() brings it back with its data', async () => {
    await registry.kill()
    await assert.rejects(fetchManifest(registry, 'library/x', '1'), /ECONNREFUSED/)
    await registry.restart()
    const again = await fetchManifest(registry, 'library/x', '1')
    assert.equal(again.digest, fixtures.docker.manifestDigest)
  })
})

describe('registry with token auth', SLOW, () => {
  let registry: RegistryHandle
  let fixtures: Awaited<ReturnType<typeof pushFixtures>>
  let tmp: string

  before(async () => {
    registry = await startRegistry({ auth: 'token' })
    tmp = await makeTempDir('harness-token')
    fixtures = await pushFixtures(registry)
  })
  after(async () => {
    await registry?.stop()
    if (tmp !== undefined) await removeTempDir(tmp)
  })

  it('challenges anonymous requests with a Bearer realm', async () => {
    const res = await fetch(`${registry.url}/v2/library/x/manifests/1`)
    assert.equal(res.status, 401)
    const challenge = res.headers.get('www-authenticate') ?? ''
    assert.match(challenge, /^Bearer /)
    assert.ok(challenge.includes(`realm="${registry.realm}"`), challenge)
    assert.ok(challenge.includes(`service="${registry.service}"`), challenge)
    assert.ok(challenge.includes('scope="repository:library/x:pull"'), challenge)
  })

  it('recorded credentialed token requests for the pushes', () => {
    const pushes = registry.tokenRequests.filter((r) =>
      r.requested.some((a) => a.name === 'library/x' && a.actions.includes('push'))
    )
    assert.ok(pushes.length > 0)
    for (const r of pushes) {
      assert.equal(r.withCredentials, true)
      assert.equal(r.username, registry.credentials?.username)
      assert.equal(r.status, 200)
      assert.deepEqual(r.granted, [
        { type: 'repository', name: 'library/x', actions: ['pull', 'push'] },
      ])
    }
  })

  it('lets anonymous clients pull, and records the anonymous token request', async () => {
    registry.tokenRequests.length = 0
    const got = await fetchManifest({ url: registry.url }, 'library/x', '1')
    assert.equal(got.status, 200)
    assert.equal(got.digest, fixtures.docker.manifestDigest)
    assert.equal(registry.tokenRequests.length, 1)
    const request = registry.tokenRequests[0]
    assert.equal(request?.method, 'GET')
    assert.equal(request?.withCredentials, false)
    assert.deepEqual(request?.scopes, ['repository:library/x:pull'])
    assert.equal(request?.service, registry.service)
  })

  it('refuses an anonymous push', async () => {
    const image = buildImage({ mediaType: 'oci', layers: [2048] })
    await assert.rejects(pushImage({ url: registry.url }, 'library/x', 'anon', image), /HTTP 401/)
    const last = registry.tokenRequests.at(-1)
    assert.deepEqual(last?.requested, [
      { type: 'repository', name: 'library/x', actions: ['pull', 'push'] },
    ])
    assert.deepEqual(last?.granted, [{ type: 'repository', name: 'library/x', actions: ['pull'] }])
  })

  it('answers wrong credentials with 401, on GET and on the password grant', async () => {
    const wrong = { url: registry.url, credentials: { username: 'customs-test', password: 'nope' } }
    const image = buildImage({ mediaType: 'oci' })
    await assert.rejects(pushImage(wrong, 'library/x', 'wrong', image), /answered 401/)
    assert.equal(registry.tokenRequests.at(-1)?.status, 401)
    assert.equal(registry.tokenRequests.at(-1)?.withCredentials, true)
    const form = new URLSearchParams({
      grant_type: 'password',
      username: 'customs-test',
      password: 'nope',
      service: registry.service ?? '',
      scope: 'repository:library/x:pull',
    })
    const res = await fetch(registry.realm ?? '', { method: 'POST', body: form })
    assert.equal(res.status, 401)
  })

  it('issues access_token for the password grant, usable for push', async () => {
    const credentials = registry.credentials
    assert.ok(credentials !== undefined)
    const form = new URLSearchParams({
      grant_type: 'password',
      username: credentials.username,
      password: credentials.password,
      service: registry.service ?? '',
      scope: 'repository:library/x:pull,push',
      client_id: 'harness',
    })
    const res = await fetch(registry.realm ?? '', { method: 'POST', body: form })
    assert.equal(res.status, 200)
    const body = (await res.json()) as { access_token: string; expires_in: number }
    assert.equal(body.expires_in, 300)
    const upload = await fetch(`${registry.url}/v2/library/x/blobs/uploads/`, {
      method: 'POST',
      headers: { authorization: `Bearer ${body.access_token}` },
    })
    assert.equal(upload.status, 202)
    const last = registry.tokenRequests.at(-1)
    assert.equal(last?.method, 'POST')
    assert.equal(last?.grantType, 'password')
    assert.equal(last?.withCredentials, true)
  })

  it('skopeo pulls anonymously and with credentials', async () => {
    registry.tokenRequests.length = 0
    const src = `${registry.host}/library/multi:v1`
    const anon = await skopeoCopy(src, join(tmp, 'anon'), { all: true })
    assert.equal(anon.digest, fixtures.index.manifestDigest, anon.stderr)
    assert.ok(registry.tokenRequests.every((r) => !r.withCredentials && r.status === 200))
    assert.ok(registry.tokenRequests.some((r) => r.userAgent?.startsWith('skopeo/') === true))
    const authed = await skopeoCopy(`${registry.host}/library/oci:v1`, join(tmp, 'authed'), {
      credentials: registry.credentials,
    })
    assert.equal(authed.digest, fixtures.oci.manifestDigest, authed.stderr)
    assert.ok(registry.tokenRequests.some((r) => r.withCredentials && r.status === 200))
  })

  it('refuses anonymous pulls when anonymousPull is false', async () => {
    const closed = await startRegistry({ auth: 'token', anonymousPull: false })
    try {
      const image = buildImage({ mediaType: 'docker' })
      await pushImage(closed, 'private/app', 'v1', image)
      assert.equal((await fetchManifest({ url: closed.url }, 'private/app', 'v1')).status, 401)
      assert.equal((await fetchManifest(closed, 'private/app', 'v1')).digest, image.manifestDigest)
    } finally {
      await closed.stop()
    }
  })
})

describe('containerd pulling straight from the registry', SLOW, () => {
  let registry: RegistryHandle
  let tokenRegistry: RegistryHandle
  let containerd: ContainerdHandle
  let tmp: string
  let fixtures: Awaited<ReturnType<typeof pushFixtures>>

  before(async () => {
    ;[registry, tokenRegistry, containerd, tmp] = await Promise.all([
      startRegistry(),
      startRegistry({ auth: 'token' }),
      startContainerd(),
      makeTempDir('harness-ctr'),
    ])
    fixtures = await pushFixtures(registry)
  })
  after(async () => {
    await containerd?.stop()
    await registry?.stop()
    await tokenRegistry?.stop()
    if (tmp !== undefined) await removeTempDir(tmp)
  })

  it('pulls and unpacks docker.io/library/x:1 through a hosts.toml mirror', async () => {
    const hosts = join(tmp, 'hosts-plain')
    const file = await writeHostsToml(hosts, 'docker.io', registry.url)
    assert.ok(existsSync(file))
    const pulled = await ctrPull(containerd, 'docker.io/library/x:1', hosts)
    assert.equal(pulled.digest, fixtures.docker.manifestDigest, pulled.stderr)
    const check = await ctr(containerd, ['image', 'check'])
    assert.match(check.stdout, /docker\.io\/library\/x:1\s+\S+\s+\S+\s+complete/)
  })

  it('pulls one platform of an index, and all platforms', async () => {
    const hosts = join(tmp, 'hosts-plain')
    const ref = 'docker.io/library/multi:v1'
    const arm = await ctrPull(containerd, ref, hosts, { platform: 'linux/arm64' })
    assert.equal(arm.digest, fixtures.index.manifestDigest, arm.stderr)
    await ctr(containerd, ['image', 'rm', ref])
    const all = await ctrPull(containerd, ref, hosts, { allPlatforms: true })
    assert.equal(all.digest, fixtures.index.manifestDigest, all.stderr)
  })

  it('honours override_path', async () => {
    const hosts = join(tmp, 'hosts-override')
    await writeHostsToml(hosts, 'docker.io', `${registry.url}/v2`, { overridePath: true })
    const pulled = await ctrPull(containerd, 'docker.io/library/oci:v1', hosts)
    assert.equal(pulled.digest, fixtures.oci.manifestDigest, pulled.stderr)
  })

  it('fails (no fallback to the internet) when the mirror lacks the image', async () => {
    const hosts = join(tmp, 'hosts-plain')
    const pull = ctrPull(containerd, 'docker.io/library/absent:1', hosts, { timeoutMs: 60_000 })
    await assert.rejects(pull, (e: unknown) => {
      assert.ok(e instanceof CommandError)
      // The mirror's 404 makes containerd try `server`: the dead end refuses, nothing goes out.
      assert.match(e.result.stderr, /StatusNotFound/)
      assert.match(e.result.stderr, /127\.0\.0\.1:9\b.*connection refused/)
      assert.doesNotMatch(e.result.stderr, /registry-1\.docker\.io/)
      return true
    })
  })

  it('pulls from a token registry anonymously (GET) and with credentials (POST)', async () => {
    const layer = tarLayer([{ path: 'a', content: 'a' }])
    const image = buildImage({ mediaType: 'docker', layers: [layer] })
    await pushImage(tokenRegistry, 'library/tok', '1', image)
    const hosts = join(tmp, 'hosts-token')
    await writeHostsToml(hosts, 'docker.io', tokenRegistry.url)
    tokenRegistry.tokenRequests.length = 0
    const anon = await ctrPull(containerd, 'docker.io/library/tok:1', hosts)
    assert.equal(anon.digest, image.manifestDigest, anon.stderr)
    assert.ok(tokenRegistry.tokenRequests.length > 0)
    assert.ok(tokenRegistry.tokenRequests.every((r) => r.method === 'GET' && !r.withCredentials))
    await ctr(containerd, ['image', 'rm', 'docker.io/library/tok:1'])
    tokenRegistry.tokenRequests.length = 0
    const authed = await ctrPull(containerd, 'docker.io/library/tok:1', hosts, {
      credentials: tokenRegistry.credentials,
    })
    assert.equal(authed.digest, image.manifestDigest, authed.stderr)
    assert.ok(
      tokenRegistry.tokenRequests.some(
        (r) => r.method === 'POST' && r.grantType === 'password' && r.status === 200
      ),
      JSON.stringify(tokenRegistry.tokenRequests)
    )
  })
})
