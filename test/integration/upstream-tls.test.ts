// Customs against a real docker-registry serving HTTPS under a CA made in the test: a pull works
// with the upstream's `tls.ca` and is refused with an OCI error without it; a registry that
// requires client certificates (`clientcas`) is reachable only with `tls.cert` and `tls.key`;
// a large blob's second connection resumes the first one's TLS session; and `customs serve` renews
// its client certificate on SIGHUP, or keeps the one it has when the new files are unusable.

import assert from 'node:assert/strict'
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { after, afterEach, before, describe, it } from 'node:test'
import { parseConfig } from '../../src/config/load.js'
import type { UpstreamConfig } from '../../src/config/schema.js'
import { createLogger } from '../../src/observability/logger.js'
import { Metrics } from '../../src/observability/metrics.js'
import { UpstreamClient } from '../../src/upstream/client.js'
import { loadUpstreamTls } from '../../src/upstream/tls-settings.js'
import { readBody } from '../../src/upstream/transport.js'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, pushImage, type BuiltImage } from '../helpers/images.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { freePort, waitFor } from '../helpers/ports.js'
import { makeTempDir, removeTempDir, run } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { makeTestPki, type TestPki } from '../helpers/tls-pki.js'

const REPO = 'team/app'
/** Large enough to be a blob a fill streams, small enough for a shared test machine. */
const LAYER = 3 * 1024 * 1024

let dir: string
let pki: TestPki
/** HTTPS with a server certificate from the test CA. */
let registry: RegistryHandle
/** The same, and it requires a client certificate from the test CA. */
let mtls: RegistryHandle
let image: BuiltImage
let customs: CustomsHandle | undefined

before(async () => {
  dir = await makeTempDir('upstream-tls')
  pki = await makeTestPki(dir)
  const server = { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile }
  ;[registry, mtls] = await Promise.all([
    startRegistry({ tls: { ...server, client: { ca: pki.pem.ca } } }),
    startRegistry({ tls: { ...server, clientCaFiles: [pki.caFile], client: { ca: pki.pem.ca, cert: pki.pem.clientCert, key: pki.pem.clientKey } } }),
  ])
  image = buildImage({ mediaType: 'oci', layers: [LAYER] })
  await Promise.all([pushImage(registry, REPO, 'v1', image), pushImage(mtls, REPO, 'v1', image)])
})

after(async () => {
  await Promise.all([registry?.stop(), mtls?.stop()])
  await removeTempDir(dir)
})

afterEach(async () => {
  await customs?.stop()
  customs = undefined
})

/** Customs with `upstream` as its one upstream and `tls` (YAML flow) as its tls section, paths from the PKI's folder. */
async function start(upstream: RegistryHandle, tls?: string): Promise<CustomsHandle> {
  customs = await startCustoms({ config: upstreamConfig('registry.corp', upstream.url, tls === undefined ? '' : `tls: ${tls}`), baseDir: dir })
  return customs
}

async function get(path: string): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(`${(customs as CustomsHandle).url}${path}`, { headers: { accept: image.mediaType } })
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) }
}

/** The first OCI error of an error answer. */
function ociError(body: Buffer): { code: string; message: string } {
  const parsed = JSON.parse(body.toString()) as { errors: Array<{ code: string; message: string }> }
  return parsed.errors[0] as { code: string; message: string }
}

/** Pulls the image's manifest and every blob through Customs, checking each against what was pushed. */
async function pullsWhole(): Promise<void> {
  const manifest = await get(`/v2/${REPO}/manifests/v1`)
  assert.equal(manifest.status, 200, manifest.body.toString())
  assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest)
  for (const blob of [{ digest: image.configDigest, bytes: image.config }, ...image.layers]) {
    const got = await get(`/v2/${REPO}/blobs/${blob.digest}`)
    assert.equal(got.status, 200, blob.digest)
    assert.ok(got.body.equals(blob.bytes), blob.digest)
  }
}

describe('an upstream behind a private CA', () => {
  it('serves a pull through Customs with tls.ca', async () => {
    const started = await start(registry, '{ ca: ca.pem }')
    await pullsWhole()
    const loaded = started.logs.find((l) => l.msg === 'upstream tls loaded')
    assert.equal(loaded?.ca, pki.caFile)
  })

  it('refuses the pull with an OCI error without tls.ca, and goes on serving', async () => {
    await start(registry)
    const refused = await get(`/v2/${REPO}/manifests/v1`)
    assert.equal(refused.status, 503)
    const error = ociError(refused.body)
    assert.equal(error.code, 'UNAVAILABLE')
    assert.match(error.message, /^upstream registry\.corp is unreachable: its TLS certificate was not accepted \([A-Z_]+\)$/)
    assert.equal((await get('/v2/')).status, 200)
  })
})

describe('an upstream that requires a client certificate', () => {
  it('refuses the pull with an OCI error when Customs has only the CA', async () => {
    await start(mtls, '{ ca: ca.pem }')
    const refused = await get(`/v2/${REPO}/manifests/v1`)
    assert.equal(refused.status, 503)
    const error = ociError(refused.body)
    assert.equal(error.code, 'UNAVAILABLE')
    // Go answers the missing certificate with an alert; the connection may be reset before it is read.
    assert.match(error.message, /^upstream registry\.corp is unreachable(: it refused the TLS handshake \(ERR_SSL_\w+\))?$/)
  })

  it('serves a pull through Customs with tls.cert and tls.key', async () => {
    await start(mtls, '{ ca: ca.pem, cert: client.pem, key: client.key }')
    await pullsWhole()
  })
})

describe('TLS session resumption through the UpstreamClient', () => {
  for (const [name, tls] of [
    ['a CA', { ca: 'ca.pem' }],
    ['a CA and a client certificate', { ca: 'ca.pem', cert: 'client.pem', key: 'client.key' }],
  ] as const) {
    it(`resumes the session on a large blob's next connection, with ${name}`, async () => {
      const upstream = tls.cert === undefined ? registry : mtls
      const config = { ...(parseConfig(upstreamConfig('registry.corp', upstream.url)).upstreams[0] as UpstreamConfig), tls }
      const metrics = new Metrics()
      const client = new UpstreamClient(config, {
        metrics,
        logger: createLogger({ level: 'silent' }),
        tls: await loadUpstreamTls(tls, { setting: 'upstreams[0].tls', base: dir }),
      })
      const layer = image.layers[0] as BuiltImage['layers'][number]
      for (let i = 0; i < 2; i++) {
        const res = await client.send({ method: 'GET', path: `/v2/${REPO}/blobs/${layer.digest}`, repository: REPO, bulk: true })
        assert.equal(res.status, 200)
        const bytes = await readBody(res, LAYER * 2, { tooLarge: () => new Error('too large'), broken: (cause) => cause as Error })
        assert.ok(bytes.equals(layer.bytes))
      }
      // Each GET went on a connection of its own: the first a full handshake, the second resumed.
      const handshakes = (await metrics.tlsHandshakes.get()).values.map((v) => `${v.labels.upstream} resumed=${v.labels.resumed}: ${v.value}`)
      assert.deepEqual(handshakes.sort(), ['registry.corp resumed=false: 1', 'registry.corp resumed=true: 1'])
    })
  }
})

describe('customs serve with an upstream TLS file it cannot use', () => {
  it('exits 2 with one line naming the setting and both files, resolved from the configuration folder', async () => {
    const config = join(dir, 'customs.yaml')
    await writeFile(
      config,
      `listen: { host: 127.0.0.1, port: ${await freePort()} }\nstorage: { path: ${join(dir, 'data')} }\n` +
        upstreamConfig('registry.corp', registry.url, 'tls: { ca: ca.pem, cert: client.pem, key: server.key }')
    )
    const root = resolve(import.meta.dirname, '../..')
    const result = await run(process.execPath, ['--import', 'tsx', join(root, 'src/main.ts'), 'serve', '--config', config], { cwd: root, allowFailure: true, timeoutMs: 60_000 })
    assert.equal(result.code, 2)
    assert.equal(result.stderr, `upstreams[0].tls.key: ${pki.serverKeyFile} is not the key of the certificate in ${pki.clientCertFile}\n`)
  })
})

describe('customs serve renewing an upstream client certificate on SIGHUP', () => {
  /** The registry requires a client certificate from one of the CAs in this file. */
  let clientCas: string
  /** A client certificate of another CA, for the rotation. */
  let rotated: TestPki
  let rotating: RegistryHandle
  let served: CustomsProcess | undefined
  const images = Array.from({ length: 3 }, () => buildImage({ mediaType: 'oci', layers: [64 * 1024] }))
  const current = { cert: '', key: '' }

  before(async () => {
    await mkdir(join(dir, 'rotated'))
    rotated = await makeTestPki(join(dir, 'rotated'), 'rotated-client')
    clientCas = join(dir, 'client-cas.pem')
    current.cert = join(dir, 'current.pem')
    current.key = join(dir, 'current.key')
    await writeFile(clientCas, pki.pem.ca + rotated.pem.ca)
    // The tests' own pushes (and readiness probes) present the rotated certificate.
    rotating = await startRegistry({
      tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile, clientCaFiles: [clientCas], client: { ca: pki.pem.ca, cert: rotated.pem.clientCert, key: rotated.pem.clientKey } },
    })
    for (const [i, built] of images.entries()) await pushImage(rotating, REPO, `v${i + 1}`, built)
    await copyFile(pki.clientCertFile, current.cert)
    await copyFile(pki.clientKeyFile, current.key)
  })

  after(async () => {
    await served?.stop()
    await rotating?.stop()
  })

  /** Every JSON line Customs logged so far. */
  async function logs(): Promise<Array<Record<string, unknown>>> {
    const text = await readFile((served as CustomsProcess).process.logFile, 'utf8')
    return text.split('\n').flatMap((line) => (line.startsWith('{') ? [JSON.parse(line) as Record<string, unknown>] : []))
  }

  /** Sends SIGHUP and waits for the `count`th log line with message `msg`. */
  async function sighup(msg: string, count: number): Promise<Record<string, unknown>> {
    process.kill((served as CustomsProcess).process.pid, 'SIGHUP')
    return waitFor(msg, async () => (await logs()).filter((l) => l.msg === msg)[count - 1], 30_000)
  }

  /** Pulls `built` as tag `tag` through Customs: its manifest and every blob, checked. */
  async function pulls(tag: string, built: BuiltImage): Promise<void> {
    const base = (served as CustomsProcess).url
    const manifest = await fetch(`${base}/v2/${REPO}/manifests/${tag}`, { headers: { accept: built.mediaType } })
    assert.equal(manifest.status, 200, await manifest.clone().text())
    assert.equal(manifest.headers.get('docker-content-digest'), built.manifestDigest)
    for (const blob of [{ digest: built.configDigest, bytes: built.config }, ...built.layers]) {
      const got = await fetch(`${base}/v2/${REPO}/blobs/${blob.digest}`)
      assert.equal(got.status, 200, blob.digest)
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(blob.bytes), blob.digest)
    }
  }

  it('pulls with the new certificate after a rotation, and with the previous one after a broken rotation', async () => {
    served = await startCustomsProcess(
      `storage: { path: ${join(dir, 'sighup-data')} }\n` +
        upstreamConfig('registry.corp', rotating.url, `tls: { ca: ${pki.caFile}, cert: ${current.cert}, key: ${current.key} }`)
    )
    await pulls('v1', images[0] as BuiltImage)

    // The rotation: the new certificate and key in place, then SIGHUP.
    await copyFile(rotated.clientCertFile, current.cert)
    await copyFile(rotated.clientKeyFile, current.key)
    const renewed = await sighup('upstream tls reloaded', 1)
    assert.equal(renewed.upstream, 'registry.corp')
    assert.match(String(renewed.subject), /CN=rotated-client/)
    // The registry now trusts the new certificate's CA only: a pull works only with the new one.
    await rotating.kill()
    await writeFile(clientCas, rotated.pem.ca)
    await rotating.restart()
    await pulls('v2', images[1] as BuiltImage)

    // A broken rotation: the certificate file is cut short. Customs logs it and keeps the new one.
    await writeFile(current.cert, rotated.pem.clientCert.slice(0, 200))
    const failed = await sighup('upstream tls reload failed; its previous settings stay in force', 1)
    assert.equal(failed.upstream, 'registry.corp')
    assert.match(String(failed.reason), new RegExp(`^upstreams\\[0\\]\\.tls\\.cert: .*${current.cert.replaceAll('.', '\\.')}`))
    assert.ok(!JSON.stringify(await logs()).includes('PRIVATE KEY'))
    await pulls('v3', images[2] as BuiltImage)
    assert.ok(served.process.isRunning())
  })
})
