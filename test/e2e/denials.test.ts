// A policy deny seen through real clients: Customs runs with an enforcing policy that no image of
// `acme/**` can satisfy (and one that admits `ok/**`), and dockerd (registry-mirrors), podman (a
// registries.conf mirror) and containerd's ctr (hosts.toml) pull from it, with every fallback at
// the dead end 127.0.0.1:9. Each deny must fail the pull, leave no image behind, and show in
// Customs' access log as 403 DENIED on the manifest only (no blob is ever asked for). What the user
// is told differs by client, and the tests pin it down:
// - dockerd falls back to registry-1.docker.io after the mirror's 403, so the CLI shows only the
//   fallback's error; Customs' message is in dockerd's own log ("Attempting next endpoint ...").
//   Addressed directly (not as a mirror), the CLI shows Customs' message.
// - podman's error lists the mirror's failure, with Customs' message, before the primary's; it
//   retries the denied pull, and is denied again each time.
// - ctr resolves with HEAD, which has no body: it shows "403 Forbidden" without the message.

import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { join } from 'node:path'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import {
  ctrImageDigest,
  ctrPull,
  startContainerd,
  writeHostsToml,
  type ContainerdHandle,
} from '../helpers/clients.js'
import {
  CommandError,
  DEAD_END,
  makeTempDir,
  removeTempDir,
  type RunResult,
} from '../helpers/processes.js'
import { standInUpstreams, startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { docker, dockerPull, startDockerd, type DockerdHandle } from '../helpers/docker.js'
import { mirrorRegistriesConf, podmanPull } from '../helpers/podman.js'

const HOOK_TIMEOUT = 120_000
/** For one test: a pull, or two (podman retries a failed pull three times, a second apart). */
const SLOW = { timeout: 120_000 }

const POLICIES = `
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: acme-denied }
spec:
  mode: enforce
  match:
    - repository: "acme/**"
  authorities:
    - { name: nobody, static: fail }
---
apiVersion: customs.dev/v1
kind: ImagePolicy
metadata: { name: ok-admitted }
spec:
  mode: enforce
  match:
    - repository: "ok/**"
  authorities:
    - { name: anyone, static: pass }
`

/** The reason Customs gives for every `acme/**` image. */
const REASON =
  "policy 'acme-denied' rule 'authorities': needs a verified signature from an authority " +
  '(nobody), 0 satisfied: no signature was found'

/** One repository per client and outcome: each pull starts cold, and its log lines stand apart. */
const REPOS = [
  'acme/denied',
  'acme/direct',
  'acme/podman-denied',
  'acme/ctr-closed',
  'acme/ctr-fallback',
  'ok/allowed',
  'ok/podman-allowed',
] as const
type Repo = (typeof REPOS)[number]

let registry: RegistryHandle
let customs: CustomsHandle
let work: string
const images = new Map<Repo, BuiltImage>()

function image(repo: Repo): BuiltImage {
  const built = images.get(repo)
  if (built === undefined) throw new Error(`no image pushed for ${repo}`)
  return built
}

/** Customs' message for a denied pull of `docker.io/<repo>:v1`. */
function deniedMessage(repo: Repo): string {
  return `docker.io/${repo}:v1 (${image(repo).manifestDigest}) is denied: ${REASON}`
}

/** One access-log line of Customs. */
interface RequestLog {
  method: string
  path: string
  status: number
  error?: string
  userAgent: string
}

/** Customs' access-log lines for `repository` (since `from`, an index into the logs). */
function requestsFor(repository: Repo, from = 0): RequestLog[] {
  return customs.logs
    .slice(from)
    .filter((l) => l.msg === 'request' && l.repository === repository)
    .map((l) => ({
      method: String(l.method),
      path: String(l.path),
      status: Number(l.status),
      ...(typeof l.error === 'string' ? { error: l.error } : {}),
      userAgent: String(l.userAgent),
    }))
}

/**
 * Every request for `repository` was for its manifest by tag and answered 403 DENIED: the deny
 * held, and the client never got as far as a blob. Returns the requests.
 */
function assertOnlyDenied(repository: Repo, from: number, agent: string): RequestLog[] {
  const requests = requestsFor(repository, from)
  assert.ok(requests.length > 0, `no request for ${repository} reached Customs`)
  for (const r of requests) {
    assert.ok(r.userAgent.startsWith(agent), `${r.method} ${r.path} from ${r.userAgent}`)
    assert.match(r.path, new RegExp(`/${repository}/manifests/v1$`), `${r.method} ${r.path}`)
    assert.equal(r.status, 403, `${r.method} ${r.path}`)
    assert.equal(r.error, 'DENIED', `${r.method} ${r.path}`)
  }
  return requests
}

/** Every request for `repository` was answered without an error, and some fetched blobs. */
function assertAllServed(repository: Repo, from: number): void {
  const requests = requestsFor(repository, from)
  assert.deepEqual(
    requests.filter((r) => r.status >= 400),
    [],
    `every request for ${repository} was served`
  )
  assert.ok(requests.some((r) => r.path.includes('/blobs/')), `${repository}: blobs were fetched`)
}

/** The output of a client command that must fail (not time out). */
async function failureOf(pull: Promise<unknown>, what: string): Promise<RunResult> {
  const error = await pull.then(
    () => assert.fail(`${what} succeeded`),
    (e: unknown) => e
  )
  assert.ok(error instanceof CommandError, `${what} failed to run: ${String(error)}`)
  assert.equal(error.timedOut, false, `${what} timed out`)
  return error.result
}

/** The text a service wrote to its log file after `offset` bytes. */
function logSince(file: string, offset: number): string {
  return readFileSync(file).subarray(offset).toString('utf8')
}

function logSize(file: string): number {
  return readFileSync(file).length
}

before(
  async () => {
    registry = await startRegistry()
    work = await makeTempDir('e2e-denials')
    const policyDir = join(work, 'policies')
    await mkdir(policyDir)
    await writeFile(join(policyDir, 'policies.yaml'), POLICIES)
    for (const repo of REPOS) {
      const built = buildImage({ mediaType: 'oci', layers: [8 * 1024] })
      await pushImage(registry, repo, 'v1', built)
      images.set(repo, built)
    }
    customs = await startCustoms({
      config: `${standInUpstreams(registry.url, { ghcr: false })}policy: { path: ${JSON.stringify(policyDir)}, watch: false }\n`,
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

  it('pulls an admitted image from the mirror, without falling back', SLOW, async () => {
    const from = customs.logs.length
    const offset = logSize(dockerd.process.logFile)
    const pulled = await dockerPull(dockerd, 'ok/allowed:v1')
    assert.equal(pulled.digest, image('ok/allowed').manifestDigest)
    assert.equal(pulled.id, image('ok/allowed').configDigest)
    assertAllServed('ok/allowed', from)
    assert.doesNotMatch(logSince(dockerd.process.logFile, offset), /Attempting next endpoint/)
  })

  it('fails a denied pull; the CLI shows the fallback error, its log the deny', SLOW, async () => {
    const from = customs.logs.length
    const offset = logSize(dockerd.process.logFile)
    const result = await failureOf(dockerPull(dockerd, 'acme/denied:v1'), 'docker pull')

    // The mirror's 403 makes dockerd try Docker Hub, and only that last error reaches the user.
    assert.equal(
      result.stderr.trim(),
      'Error response from daemon: Get "https://registry-1.docker.io/v2/": proxyconnect tcp: ' +
        `dial tcp ${DEAD_END}: connect: connection refused`
    )
    assert.doesNotMatch(result.stderr, /denied|403/i, 'the CLI never shows the deny')

    // Customs answered the HEAD and the GET of the manifest with 403 DENIED, and nothing else.
    const requests = assertOnlyDenied('acme/denied', from, 'docker/')
    assert.ok(requests.some((r) => r.method === 'GET'), 'dockerd fetched the 403 body')

    // dockerd's log has Customs' whole message, then the fallback's failure.
    const log = logSince(dockerd.process.logFile, offset)
    const attempt = 'Attempting next endpoint for pull after error: denied: '
    assert.ok(log.includes(attempt + deniedMessage('acme/denied')), `dockerd logged:\n${log}`)
    // logrus escapes the quotes: Get \"https://...\"
    const handler = '/images/create returned error: Get \\"https://registry-1.docker.io/v2/\\"'
    assert.ok(log.includes(handler), `dockerd logged:\n${log}`)

    const inspect = await docker(dockerd, ['image', 'inspect', 'acme/denied:v1'], {
      allowFailure: true,
    })
    assert.notEqual(inspect.code, 0, 'no image was stored')
  })

  it('addressed directly (no mirror, no fallback), the CLI shows the deny', SLOW, async () => {
    // 127.0.0.0/8 is an insecure registry by default, so dockerd pulls from it over plain HTTP.
    const from = customs.logs.length
    const result = await docker(dockerd, ['pull', `${customs.host}/acme/direct:v1`], {
      allowFailure: true,
    })
    assert.notEqual(result.code, 0)
    assert.equal(
      result.stderr.trim(),
      `Error response from daemon: pull access denied for ${customs.host}/acme/direct, ` +
        "repository does not exist or may require 'docker login': " +
        `denied: ${deniedMessage('acme/direct')}`
    )
    const requests = assertOnlyDenied('acme/direct', from, 'docker/')
    assert.deepEqual(
      requests.map((r) => r.method),
      ['HEAD', 'GET']
    )
  })
})

describe('podman through a registries.conf mirror', () => {
  let conf: string

  before(() => {
    conf = mirrorRegistriesConf([{ prefix: 'docker.io', mirror: `${customs.host}/docker.io` }])
  })

  it('pulls an admitted image from the mirror', SLOW, async () => {
    const from = customs.logs.length
    const pulled = await podmanPull('docker.io/ok/podman-allowed:v1', conf)
    assert.equal(pulled.digest, image('ok/podman-allowed').manifestDigest)
    assert.ok(!(pulled.stdout + pulled.stderr).includes(DEAD_END), 'no fallback')
    assertAllServed('ok/podman-allowed', from)
  })

  it("fails a denied pull, showing Customs' message for the mirror", SLOW, async () => {
    const from = customs.logs.length
    const repo = 'acme/podman-denied'
    const result = await failureOf(podmanPull(`docker.io/${repo}:v1`, conf), 'podman pull')
    const final = result.stderr.trim().split('\n').at(-1) ?? ''
    const mirror = `${customs.host}/docker.io/${repo}`
    assert.equal(
      final,
      `Error: initializing source docker://${repo}:v1: (Mirrors also failed: [${mirror}:v1: ` +
        `reading manifest v1 in ${mirror}: denied: ${deniedMessage(repo)}]): ` +
        `${DEAD_END}/${repo}:v1: pinging container registry ${DEAD_END}: ` +
        `Get "https://${DEAD_END}/v2/": dial tcp ${DEAD_END}: connect: connection refused`
    )
    // podman 4 retries the pull (three times, a second apart), each retry logged as a warning
    // with the same error; every attempt asked Customs once for the manifest, and was denied.
    const retries = result.stderr.split('\n').filter((l) => l.includes('Failed, retrying in'))
    for (const line of retries) assert.ok(line.includes(`denied: ${deniedMessage(repo)}`), line)
    const requests = assertOnlyDenied(repo, from, 'containers/')
    assert.deepEqual(
      requests.map((r) => r.method),
      Array<string>(retries.length + 1).fill('GET')
    )
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

  it('fails closed with Customs as the server too: 403 Forbidden, no fallback', SLOW, async () => {
    const hosts = join(work, 'hosts-closed')
    await writeHostsToml(hosts, 'docker.io', customs.url, { server: customs.url })
    const from = customs.logs.length
    const ref = 'docker.io/acme/ctr-closed:v1'
    const result = await failureOf(ctrPull(containerd, ref, hosts), 'ctr pull')
    // ctr's progress loop sometimes logs its own cancellation as the pull fails (seen once in
    // CI): that line, and only that one, may come before the error.
    const lines = result.stderr.trim().split('\n')
    const others = lines.slice(0, -1).filter((l) => !/level=error msg="active check failed" error="context canceled"$/.test(l))
    assert.deepEqual(others, [], result.stderr)
    assert.equal(
      lines.at(-1),
      `ctr: failed to resolve reference "${ref}": pulling from host ${customs.host} failed ` +
        'with status code [manifests v1]: 403 Forbidden'
    )
    assert.ok(!result.stderr.includes(DEAD_END))
    // A HEAD answer has no body: the policy's message cannot reach ctr.
    assert.ok(!result.stderr.includes('is denied'))
    const requests = assertOnlyDenied('acme/ctr-closed', from, 'containerd/')
    // Once as the mirror, once as the server.
    assert.deepEqual(
      requests.map((r) => r.method),
      ['HEAD', 'HEAD']
    )
    assert.equal(await ctrImageDigest(containerd, ref), undefined, 'no image was stored')
  })

  it('with the dead-end server as fallback, still fails naming the 403', SLOW, async () => {
    // The default hosts.toml of these tests: Customs as the mirror, the dead end as the server.
    const hosts = join(work, 'hosts-fallback')
    await writeHostsToml(hosts, 'docker.io', customs.url)
    const from = customs.logs.length
    const ref = 'docker.io/acme/ctr-fallback:v1'
    const result = await failureOf(ctrPull(containerd, ref, hosts), 'ctr pull')
    const lines = result.stderr.trim().split('\n')
    // containerd tries the server after the mirror's 403, and reports the first error.
    const tried = lines[0] ?? ''
    assert.match(tried, /level=info msg="trying next host" error="failed to do request: Head /)
    assert.ok(tried.includes(`dial tcp ${DEAD_END}: connect: connection refused`), tried)
    assert.ok(tried.endsWith(`host="${DEAD_END}"`), tried)
    assert.equal(
      lines.at(-1),
      `ctr: failed to resolve reference "${ref}": pulling from host ${customs.host} failed ` +
        'with status code [manifests v1]: 403 Forbidden'
    )
    assert.ok(!result.stderr.includes('is denied'))
    const requests = assertOnlyDenied('acme/ctr-fallback', from, 'containerd/')
    assert.deepEqual(
      requests.map((r) => r.method),
      ['HEAD']
    )
    assert.equal(await ctrImageDigest(containerd, ref), undefined, 'no image was stored')
  })
})
