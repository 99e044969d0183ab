// `customs serve` over HTTPS with certificates from the real `customs certs` CLI, checked with
// node, curl, skopeo and containerd: the CA is trusted, plain HTTP is not served, mTLS refuses
// clients without a certificate and logs the CN of the others, SIGHUP swaps in a renewal.

import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { copyFile, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join, resolve } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { certsCommand } from '../../src/cli/certs.js'
import { ctr, startContainerd, type ContainerdHandle } from '../helpers/clients.js'
import {
  ociImage,
  putImage,
  startFakeUpstream,
  type FakeUpstream,
} from '../helpers/fake-upstream.js'
import { freePort, waitFor } from '../helpers/ports.js'
import {
  isolatedEnv,
  makeTempDir,
  run,
  spawnService,
  tailFile,
  type RunResult,
  type ServiceProcess,
} from '../helpers/processes.js'

const ROOT = resolve(import.meta.dirname, '../..')
const MAIN = join(ROOT, 'src/main.ts')

/** `customs ...` through the real entry point; never throws on a non-zero exit. */
function customs(args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    allowFailure: true,
    timeoutMs: 60_000,
  })
}

/** In-process `customs certs`, for the steps after the CLI itself was checked. */
async function certs(...args: string[]): Promise<void> {
  let stderr = ''
  const io = { stdout: { write: () => true }, stderr: { write: (t: string) => (stderr += t) } }
  assert.equal(await certsCommand(args, io), 0, stderr)
}

interface TlsClient {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
}

interface Answer {
  status: number
  body: string
  /** The serial of the certificate the server presented. */
  serial: string
}

/** One GET over a fresh connection (no agent, no session reuse). */
function get(url: string, tls: TlsClient = {}): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(url, { ...tls, agent: false, timeout: 5000 }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body, serial }))
      res.on('error', reject)
    })
    req.once('timeout', () => req.destroy(new Error('timed out')))
    req.once('error', reject)
    req.end()
  })
}

function plainGet(url: string): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest(url, { agent: false, timeout: 5000 }, (res) => {
      res.resume()
      resolvePromise(res.statusCode ?? 0)
    })
    req.once('timeout', () => req.destroy(new Error('timed out')))
    req.once('error', reject)
    req.end()
  })
}

interface Served {
  readonly url: string
  readonly port: number
  readonly process: ServiceProcess
  /** The JSON `request` lines logged so far. */
  requests(): Record<string, unknown>[]
}

const started: ServiceProcess[] = []

/** `customs serve` with a `tls:` section, waiting until /v2/ answers over HTTPS as `client`. */
async function serveHttps(
  name: string,
  tlsYaml: string,
  client: TlsClient,
  upstream: FakeUpstream
): Promise<Served> {
  const dir = await makeTempDir(`tls-${name}`)
  const port = await freePort()
  const config = join(dir, 'customs.yaml')
  await writeFile(
    config,
    `listen: { host: 127.0.0.1, port: ${port} }\nlog: { level: info }\n` +
      `storage: { path: ${join(dir, 'data')} }\n` +
      `upstreams:\n  - name: docker.io\n    url: ${upstream.url}\n    default: true\n${tlsYaml}`
  )
  const child = spawnService({
    name,
    command: process.execPath,
    args: ['--import', 'tsx', MAIN, 'serve', '--config', config],
    dir,
    cwd: ROOT,
    env: isolatedEnv(),
  })
  started.push(child)
  const url = `https://127.0.0.1:${port}`
  await waitFor(
    `HTTPS answer from ${url}`,
    async () => (await get(`${url}/v2/`, client)).status,
    30_000,
    {
      abortIf: () => (child.isRunning() ? undefined : `customs exited:\n${child.tail()}`),
    }
  )
  const requests = (): Record<string, unknown>[] =>
    tailFile(child.logFile, 10_000)
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((line) => line.msg === 'request')
  return { url, port, process: child, requests }
}

/** The logged request line carrying this request id, once it is written. */
function logged(served: Served, requestId: string): Promise<Record<string, unknown>> {
  return waitFor(
    `the access line of ${requestId}`,
    () => served.requests().find((r) => r.requestId === requestId),
    5000
  )
}

function getWithId(url: string, tls: TlsClient, requestId: string): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest(
      url,
      { ...tls, agent: false, headers: { 'x-request-id': requestId } },
      (res) => {
        res.resume()
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: '', serial: '' }))
      }
    )
    req.once('error', reject)
    req.end()
  })
}

let work: string
let certDir: string
let ca: Buffer
let upstream: FakeUpstream
const image = ociImage([Buffer.from('layer over tls')])

before(async () => {
  work = await makeTempDir('tls')
  certDir = join(work, 'certs')
  upstream = await startFakeUpstream()
  putImage(upstream, 'library/app', image, '1')
})

after(async () => {
  await Promise.all(started.map((c) => c.stop()))
  await upstream?.close()
})

describe('customs certs through the real CLI', () => {
  it('returns 0 for init and writes the four files, keys 0600', async () => {
    const result = await customs([
      'certs',
      'init',
      '--hosts',
      '127.0.0.1,localhost',
      '--out',
      certDir,
    ])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /server certificate for localhost,127\.0\.0\.1: valid until/)
    ca = await readFile(join(certDir, 'ca.crt'))
    assert.equal((await stat(join(certDir, 'server.key'))).mode & 0o777, 0o600)
    assert.equal((await stat(join(certDir, 'ca.key'))).mode & 0o777, 0o600)
  })
  it('returns 1 for a second init, with the reason on stderr and no stack trace', async () => {
    const result = await customs(['certs', 'init', '--hosts', '127.0.0.1', '--out', certDir])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^customs certs: .*ca\.crt already exists/)
    assert.doesNotMatch(result.stderr, /\n\s+at /)
    assert.deepEqual(await readFile(join(certDir, 'ca.crt')), ca)
  })
  it('returns 2 for bad --hosts, naming the entry', async () => {
    const result = await customs([
      'certs',
      'init',
      '--hosts',
      'http://x',
      '--out',
      join(work, 'unused'),
    ])
    assert.equal(result.code, 2)
    assert.equal(
      result.stderr,
      'customs certs: --hosts: "http://x" is a URL; give the host name alone: write x\n'
    )
  })
  it('returns 0 for a client certificate', async () => {
    const result = await customs(['certs', 'client', '--name', 'node-1', '--out', certDir])
    assert.equal(result.code, 0, result.stderr)
  })
})

describe('customs serve with tls', () => {
  let served: Served

  before(async () => {
    assert.ok(ca !== undefined, 'needs the certificates from the CLI tests')
    served = await serveHttps(
      'https',
      `tls:\n  cert: ${join(certDir, 'server.crt')}\n  key: ${join(certDir, 'server.key')}\n`,
      { ca },
      upstream
    )
  })

  describe('when the client trusts the generated CA', () => {
    it('returns /v2/ over HTTPS, by IP address and by name', async () => {
      assert.deepEqual((await get(`${served.url}/v2/`, { ca })).status, 200)
      assert.equal((await get(`https://localhost:${served.port}/v2/`, { ca })).status, 200)
    })
    it('returns a manifest pulled from the upstream', async () => {
      const answer = await get(`${served.url}/v2/library/app/manifests/1`, { ca })
      assert.equal(answer.status, 200)
      assert.equal(answer.body, image.manifest.toString())
    })
    it('logs no client identity without mTLS', async () => {
      await getWithId(`${served.url}/v2/`, { ca }, 'no-mtls-1')
      assert.equal((await logged(served, 'no-mtls-1')).client, undefined)
    })
  })

  describe('when the client does not trust the CA', () => {
    it('refuses the connection', async () => {
      await assert.rejects(get(`${served.url}/v2/`), (err: NodeJS.ErrnoException) => {
        assert.match(err.code ?? '', /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE/)
        return true
      })
    })
  })

  describe('when the client speaks plain HTTP', () => {
    it('gets no answer', async () => {
      await assert.rejects(plainGet(`http://127.0.0.1:${served.port}/v2/`))
    })
  })

  describe('when curl is given the CA', () => {
    it('returns {} for /v2/, and fails with exit 60 without it', async () => {
      const ok = await run('curl', [
        '-sS',
        '--cacert',
        join(certDir, 'ca.crt'),
        `${served.url}/v2/`,
      ])
      assert.equal(ok.stdout, '{}')
      const refused = await run('curl', ['-sS', `${served.url}/v2/`], { allowFailure: true })
      assert.equal(refused.code, 60)
    })
  })

  describe('when skopeo uses a certs.d folder with the CA', () => {
    it('pulls the manifest; without the folder it shows the unknown-authority error', async () => {
      const certsD = join(work, 'skopeo-certs.d')
      await mkdir(certsD, { recursive: true })
      await copyFile(join(certDir, 'ca.crt'), join(certsD, 'ca.crt'))
      const ref = `docker://127.0.0.1:${served.port}/library/app:1`
      const ok = await skopeo(['inspect', '--raw', '--cert-dir', certsD, ref])
      assert.equal(ok.code, 0, ok.stderr)
      assert.equal(ok.stdout, image.manifest.toString())
      const refused = await skopeo(['inspect', '--raw', ref])
      assert.notEqual(refused.code, 0)
      assert.match(refused.stderr, /x509: certificate signed by unknown authority/)
    })
  })

  describe('when the certificate is renewed and Customs gets SIGHUP', () => {
    it('serves the new certificate on new connections without a restart', async () => {
      const before1 = (await get(`${served.url}/v2/`, { ca })).serial
      await certs('renew', '--out', certDir)
      const renewed = new X509Certificate(await readFile(join(certDir, 'server.crt'))).serialNumber
      assert.notEqual(renewed, before1)
      process.kill(served.process.pid, 'SIGHUP')
      const now = await waitFor(
        'the renewed certificate',
        async () => {
          const serial = (await get(`${served.url}/v2/`, { ca })).serial
          return serial === renewed ? serial : undefined
        },
        10_000
      )
      assert.equal(now, renewed)
      assert.ok(served.process.isRunning())
    })
  })
})

describe('customs serve with required client certificates', () => {
  let served: Served
  let clientCert: Buffer
  let clientKey: Buffer

  before(async () => {
    clientCert = await readFile(join(certDir, 'node-1.crt'))
    clientKey = await readFile(join(certDir, 'node-1.key'))
    const tls =
      `tls:\n  cert: ${join(certDir, 'server.crt')}\n  key: ${join(certDir, 'server.key')}\n` +
      `  clientCa: ${join(certDir, 'ca.crt')}\n  requireClientCert: true\n`
    served = await serveHttps('mtls', tls, { ca, cert: clientCert, key: clientKey }, upstream)
  })

  describe('when the client has no certificate', () => {
    it('refuses it', async () => {
      await assert.rejects(get(`${served.url}/v2/`, { ca }))
    })
  })

  describe('when the client certificate is from another CA', () => {
    it('refuses it', async () => {
      const other = join(work, 'other-ca')
      await certs('init', '--hosts', 'x.io', '--out', other)
      await certs('client', '--name', 'intruder', '--out', other)
      const cert = await readFile(join(other, 'intruder.crt'))
      const key = await readFile(join(other, 'intruder.key'))
      await assert.rejects(get(`${served.url}/v2/`, { ca, cert, key }))
    })
  })

  describe('when the client has a certificate from `certs client`', () => {
    it('serves it and logs its CN as the client', async () => {
      const answer = await getWithId(
        `${served.url}/v2/`,
        { ca, cert: clientCert, key: clientKey },
        'mtls-1'
      )
      assert.equal(answer.status, 200)
      assert.equal((await logged(served, 'mtls-1')).client, 'node-1')
    })
  })

  describe('when skopeo has the client pair in its certs.d folder', () => {
    it('pulls, and the CN is logged', async () => {
      const certsD = join(work, 'skopeo-mtls.d')
      await mkdir(certsD, { recursive: true })
      await copyFile(join(certDir, 'ca.crt'), join(certsD, 'ca.crt'))
      await copyFile(join(certDir, 'node-1.crt'), join(certsD, 'client.cert'))
      await copyFile(join(certDir, 'node-1.key'), join(certsD, 'client.key'))
      const result = await skopeo([
        'inspect',
        '--raw',
        '--cert-dir',
        certsD,
        `docker://127.0.0.1:${served.port}/library/app:1`,
      ])
      assert.equal(result.code, 0, result.stderr)
      const line = await waitFor(
        'a skopeo manifest line',
        () =>
          served
            .requests()
            .find(
              (r) =>
                String(r.path).includes('/manifests/') && String(r.userAgent).includes('skopeo')
            ),
        5000
      )
      assert.equal(line.client, 'node-1')
    })
  })
})

describe('containerd pulling through Customs over mTLS', () => {
  let served: Served
  let containerd: ContainerdHandle | undefined

  before(async () => {
    const tls =
      `tls:\n  cert: ${join(certDir, 'server.crt')}\n  key: ${join(certDir, 'server.key')}\n` +
      `  clientCa: ${join(certDir, 'ca.crt')}\n  requireClientCert: true\n`
    const client = {
      ca,
      cert: await readFile(join(certDir, 'node-1.crt')),
      key: await readFile(join(certDir, 'node-1.key')),
    }
    served = await serveHttps('containerd-mtls', tls, client, upstream)
    containerd = await startContainerd()
  })

  after(async () => {
    await containerd?.stop()
  })

  describe('when hosts.toml has the CA and the client pair', () => {
    it('fetches the image, and the CN is logged', async () => {
      assert.ok(containerd !== undefined)
      const dir = await hostsToml(join(work, 'hosts-mtls'), served.url, {
        ca: join(certDir, 'ca.crt'),
        client: [join(certDir, 'node-1.crt'), join(certDir, 'node-1.key')],
      })
      const fetched = await ctr(
        containerd,
        ['content', 'fetch', '--hosts-dir', dir, 'docker.io/library/app:1'],
        { allowFailure: true }
      )
      assert.equal(fetched.code, 0, fetched.stderr)
      const line = await waitFor(
        'a containerd manifest line',
        () =>
          served
            .requests()
            .find(
              (r) =>
                String(r.path).includes('/manifests/') && String(r.userAgent).includes('containerd')
            ),
        5000
      )
      assert.equal(line.client, 'node-1')
    })
  })

  describe('when hosts.toml has the CA but no client pair', () => {
    it('fails to fetch', async () => {
      assert.ok(containerd !== undefined)
      const dir = await hostsToml(join(work, 'hosts-no-client'), served.url, {
        ca: join(certDir, 'ca.crt'),
      })
      const fetched = await ctr(
        containerd,
        ['content', 'fetch', '--hosts-dir', dir, 'docker.io/library/app:2'],
        { allowFailure: true }
      )
      assert.notEqual(fetched.code, 0)
      assert.match(fetched.stderr, /remote error: tls: certificate required/)
    })
  })

  describe('when hosts.toml has no CA', () => {
    it('fails with the unknown-authority error', async () => {
      assert.ok(containerd !== undefined)
      const dir = await hostsToml(join(work, 'hosts-no-ca'), served.url, {
        client: [join(certDir, 'node-1.crt'), join(certDir, 'node-1.key')],
      })
      const fetched = await ctr(
        containerd,
        ['content', 'fetch', '--hosts-dir', dir, 'docker.io/library/app:3'],
        { allowFailure: true }
      )
      assert.notEqual(fetched.code, 0)
      assert.match(fetched.stderr, /x509: certificate signed by unknown authority/)
    })
  })
})

describe('customs serve with optional client certificates', () => {
  let served: Served

  before(async () => {
    const tls =
      `tls:\n  cert: ${join(certDir, 'server.crt')}\n  key: ${join(certDir, 'server.key')}\n` +
      `  clientCa: ${join(certDir, 'ca.crt')}\n`
    served = await serveHttps('mtls-optional', tls, { ca }, upstream)
  })

  describe('when the client has no certificate', () => {
    it('serves it without a client identity', async () => {
      assert.equal((await getWithId(`${served.url}/v2/`, { ca }, 'optional-1')).status, 200)
      assert.equal((await logged(served, 'optional-1')).client, undefined)
    })
  })
  describe('when the client has a certificate from the CA', () => {
    it('logs its CN', async () => {
      const tls = {
        ca,
        cert: await readFile(join(certDir, 'node-1.crt')),
        key: await readFile(join(certDir, 'node-1.key')),
      }
      assert.equal((await getWithId(`${served.url}/v2/`, tls, 'optional-2')).status, 200)
      assert.equal((await logged(served, 'optional-2')).client, 'node-1')
    })
  })
})

describe('customs serve with bad tls files', () => {
  async function start(tlsYaml: string): Promise<RunResult> {
    const dir = await makeTempDir('tls-bad')
    const config = join(dir, 'customs.yaml')
    await writeFile(
      config,
      `listen: { host: 127.0.0.1, port: ${await freePort()} }\n` +
        `storage: { path: ${join(dir, 'data')} }\n${tlsYaml}`
    )
    return customs(['serve', '--config', config])
  }

  describe('when the key is not the certificate’s', () => {
    it('exits 2 with one line naming both files', async () => {
      const result = await start(
        `tls:\n  cert: ${join(certDir, 'server.crt')}\n  key: ${join(certDir, 'ca.key')}\n`
      )
      assert.equal(result.code, 2)
      assert.equal(
        result.stderr,
        `tls.key: ${join(certDir, 'ca.key')} is not the key of the certificate in ` +
          `${join(certDir, 'server.crt')}\n`
      )
    })
  })
  describe('when a file is missing', () => {
    it('exits 2 with one line naming it, resolved from the configuration folder', async () => {
      const result = await start('tls:\n  cert: nope/server.crt\n  key: nope/server.key\n')
      assert.equal(result.code, 2)
      assert.match(result.stderr, /^tls\.cert: cannot read \/.*\/nope\/server\.crt \(ENOENT\)\n$/)
    })
  })
})

/**
 * `<dir>/docker.io/hosts.toml` sending docker.io to Customs over HTTPS, with the CA and client
 * pair as docs/tls.md shows them; `server` is a dead end, so nothing falls back to the upstream.
 */
async function hostsToml(
  dir: string,
  url: string,
  tls: { ca?: string; client?: [string, string] }
): Promise<string> {
  const q = (s: string): string => JSON.stringify(s)
  const lines = [
    'server = "http://127.0.0.1:9"',
    '',
    `[host.${q(url)}]`,
    '  capabilities = ["pull", "resolve"]',
  ]
  if (tls.ca !== undefined) lines.push(`  ca = ${q(tls.ca)}`)
  if (tls.client !== undefined) lines.push(`  client = [[${tls.client.map(q).join(', ')}]]`)
  await mkdir(join(dir, 'docker.io'), { recursive: true })
  await writeFile(join(dir, 'docker.io', 'hosts.toml'), `${lines.join('\n')}\n`)
  return dir
}

/** skopeo with its own accept-anything policy and empty registries.conf, never failing. */
async function skopeo(args: readonly string[]): Promise<RunResult> {
  const dir = await makeTempDir('tls-skopeo')
  const policy = join(dir, 'policy.json')
  const registries = join(dir, 'registries.conf')
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
  await writeFile(registries, 'unqualified-search-registries = []\n')
  const env = isolatedEnv({
    HOME: dir,
    XDG_RUNTIME_DIR: dir,
    XDG_CONFIG_HOME: dir,
    REGISTRY_AUTH_FILE: join(dir, 'auth.json'),
  })
  const [command, ...rest] = args
  return run(
    'skopeo',
    [
      '--policy',
      policy,
      '--registries-conf',
      registries,
      command ?? '',
      '--retry-times',
      '0',
      '--no-creds',
      ...rest,
    ],
    {
      env,
      allowFailure: true,
      timeoutMs: 60_000,
    }
  )
}
