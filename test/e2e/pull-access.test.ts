// Real clients against a Customs that requires pull credentials (`access.anonymous: false`), with
// Debian's docker-registry standing in for docker.io: containerd with the credentials as a static
// header in hosts.toml (the way to give them to a CRI node, since kubelet's pull secrets are not
// released to a mirror) and with `ctr --user`, and dockerd through `registry-mirrors`, which
// answers Customs' Basic challenge with the docker.io credentials of the CLI's config.json. Every
// fallback points at the dead end; the access log shows who pulled.

import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ctrPull, startContainerd, writeHostsToml, type ContainerdHandle } from '../helpers/clients.js'
import { standInUpstreams, startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { dockerPull, startDockerd, type DockerdHandle } from '../helpers/docker.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { makeTempDir, removeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { sha256hex } from '../helpers/admin.js'

const HOOK_TIMEOUT = 120_000
const SLOW = { timeout: 120_000 }
const NODE = { username: 'node-pool', password: 'node-pool-secret-8e1f2d3c4b' }
const CI = { username: 'ci-bot', password: 'ci-bot-secret-7a6b5c4d3e' }
const DEV = { username: 'dev-laptop', password: 'dev-laptop-secret-1a2b3c4d' }
const basicValue = (c: { username: string; password: string }): string => Buffer.from(`${c.username}:${c.password}`).toString('base64')

let registry: RegistryHandle
let customs: CustomsHandle
let work: string
const images: Record<string, BuiltImage> = {}

/** Access-log lines of requests for `repository` (and the `/v2/` pings, which name none). */
function requestsFor(repository: string): Array<Record<string, unknown>> {
  return customs.logs.filter((l) => l.msg === 'request' && l.repository === repository)
}

before(
  async () => {
    registry = await startRegistry()
    work = await makeTempDir('e2e-pull-access')
    for (const repo of ['library/by-header', 'library/by-user', 'library/by-docker', 'library/no-creds']) {
      images[repo] = buildImage({ mediaType: 'oci', layers: [16 * 1024] })
      await pushImage(registry, repo, '1', images[repo] as BuiltImage)
    }
    customs = await startCustoms({
      config: `${standInUpstreams(registry.url, { ghcr: false })}
access:
  anonymous: false
  clients:
    - { name: ${NODE.username}, sha256: "${sha256hex(NODE.password)}" }
    - { name: ${CI.username}, sha256: "${sha256hex(CI.password)}" }
    - { name: ${DEV.username}, sha256: "${sha256hex(DEV.password)}" }
`,
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

describe('containerd', () => {
  let containerd: ContainerdHandle
  before(async () => {
    containerd = await startContainerd()
  }, { timeout: HOOK_TIMEOUT })
  after(async () => containerd?.stop(), { timeout: HOOK_TIMEOUT })

  it('pulls with the credentials as an authorization header in hosts.toml', SLOW, async () => {
    const hosts = join(work, 'hosts-header')
    await writeHostsToml(hosts, 'docker.io', customs.url, { headers: { authorization: `Basic ${basicValue(NODE)}` } })
    const pulled = await ctrPull(containerd, 'docker.io/library/by-header:1', hosts)
    assert.equal(pulled.digest, images['library/by-header']?.manifestDigest)
    const lines = requestsFor('library/by-header')
    assert.ok(lines.length > 0)
    for (const l of lines) {
      assert.equal(l.status, 200, `${String(l.method)} ${String(l.path)}`)
      assert.equal(l.user, NODE.username)
    }
  })

  it('pulls with ctr --user, answering the Basic challenge', SLOW, async () => {
    const hosts = join(work, 'hosts-user')
    await writeHostsToml(hosts, 'docker.io', customs.url)
    const pulled = await ctrPull(containerd, 'docker.io/library/by-user:1', hosts, { credentials: CI })
    assert.equal(pulled.digest, images['library/by-user']?.manifestDigest)
    const served = requestsFor('library/by-user').filter((l) => l.status === 200)
    assert.ok(served.length > 0 && served.every((l) => l.user === CI.username))
  })

  it('fails without credentials, refused before routing', SLOW, async () => {
    const hosts = join(work, 'hosts-none')
    await writeHostsToml(hosts, 'docker.io', customs.url)
    await assert.rejects(ctrPull(containerd, 'docker.io/library/no-creds:1', hosts, { timeoutMs: 60_000 }))
    // Refused before routing, so the lines carry the path but no repository.
    const lines = customs.logs.filter((l) => l.msg === 'request' && String(l.path).includes('/library/no-creds/'))
    assert.ok(lines.length > 0)
    assert.ok(lines.every((l) => l.status === 401 && l.upstream === undefined), JSON.stringify(lines))
  })
})

describe('dockerd through registry-mirrors', () => {
  let dockerd: DockerdHandle
  before(async () => {
    dockerd = await startDockerd({ registryMirrors: [customs.url] })
    // What `docker login` would store for Docker Hub: the CLI sends it with the pull, and the
    // daemon answers a mirror's challenge with the docker.io credentials.
    const cli = join(dockerd.dir, 'cli')
    await mkdir(cli, { recursive: true })
    const auths = { 'https://index.docker.io/v1/': { auth: basicValue(DEV) } }
    await writeFile(join(cli, 'config.json'), JSON.stringify({ auths }))
  }, { timeout: HOOK_TIMEOUT })
  after(async () => dockerd?.stop(), { timeout: HOOK_TIMEOUT })

  it('pulls with the docker.io credentials of config.json', SLOW, async () => {
    const pulled = await dockerPull(dockerd, 'by-docker:1')
    assert.equal(pulled.digest, images['library/by-docker']?.manifestDigest)
    const served = requestsFor('library/by-docker').filter((l) => l.status === 200)
    assert.ok(served.length > 0 && served.every((l) => l.user === DEV.username), JSON.stringify(requestsFor('library/by-docker')))
  })
})
