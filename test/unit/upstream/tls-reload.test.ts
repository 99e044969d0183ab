// Renewing an upstream's TLS on SIGHUP (upstream/tls-reload.ts, UpstreamClient.renewTls), against
// an HTTPS server on 127.0.0.1 that trusts two CAs and records which client certificate each
// request came with and on which connection: files that pass are used by new connections, node's
// and wire.ts's alike; files that fail leave the previous settings in force, with one error line;
// an answer under way finishes, and no connection or TLS session of the old settings serves a
// request made after the renewal.

import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { after, before, beforeEach, describe, it } from 'node:test'
import { parseConfig } from '../../../src/config/load.js'
import type { UpstreamConfig } from '../../../src/config/schema.js'
import { createLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import type { UpstreamClient } from '../../../src/upstream/client.js'
import { UpstreamPool } from '../../../src/upstream/pool.js'
import { upstreamTlsReloader, type UpstreamTlsRenewal } from '../../../src/upstream/tls-reload.js'
import { loadUpstreamTls } from '../../../src/upstream/tls-settings.js'
import { TlsSessions } from '../../../src/upstream/tls-sessions.js'
import { readBody } from '../../../src/upstream/transport.js'
import { waitFor } from '../../helpers/ports.js'
import { makeTestPki, type TestPki } from '../../helpers/tls-pki.js'
import { logLines } from '../../helpers/logs.js'

const TLS = { ca: 'ca.pem', cert: 'current.pem', key: 'current.key' }

let dir: string
/** The server's CA and the first client certificate (CN customs-upstream-client). */
let pki: TestPki
/** Another CA's client certificate (CN rotated-client), which the server trusts too. */
let rotated: TestPki
let server: Server
let origin: string

/** What the server saw of each request: the client certificate's CN and the connection's port. */
interface Seen {
  readonly path: string
  readonly client: string | undefined
  readonly port: number
}
const seen: Seen[] = []
/** The server side of every open connection, by the client's port. */
const open = new Map<number, Socket>()
/** Answers of /slow wait for this to be called before their last bytes. */
let finishSlow: (() => void) | undefined

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-tls-reload-'))
  pki = await makeTestPki(dir)
  await mkdir(join(dir, 'rotated'))
  rotated = await makeTestPki(join(dir, 'rotated'), 'rotated-client')
  server = createServer(
    { key: pki.pem.serverKey, cert: pki.pem.serverCert, ca: [pki.pem.ca, rotated.pem.ca], requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      const socket = req.socket as TLSSocket
      const cn = socket.getPeerCertificate().subject?.CN
      seen.push({ path: req.url ?? '', client: typeof cn === 'string' ? cn : undefined, port: socket.remotePort ?? 0 })
      if (req.url === '/v2/slow') {
        res.writeHead(200, { 'content-length': '10' })
        res.write('01234')
        finishSlow = () => res.end('56789')
        return
      }
      res.writeHead(200, { 'content-length': '2' })
      res.end('ok')
    }
  )
  // Idle connections stay open on this side: only the client may be what closes them.
  server.keepAliveTimeout = 600_000
  server.on('secureConnection', (socket: TLSSocket) => {
    const port = socket.remotePort ?? 0
    open.set(port, socket)
    socket.once('close', () => open.delete(port))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
})

after(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await rm(dir, { recursive: true, force: true })
})

beforeEach(async () => {
  seen.length = 0
  await useClientCert(pki)
})

/** Puts `of`'s client certificate and key where the configuration points. */
async function useClientCert(of: TestPki): Promise<void> {
  await copyFile(of.clientCertFile, join(dir, TLS.cert))
  await copyFile(of.clientKeyFile, join(dir, TLS.key))
}

interface Setup {
  readonly client: UpstreamClient
  readonly reload: () => Promise<UpstreamTlsRenewal[]>
  readonly metrics: Metrics
  /** Every JSON log line written so far. */
  readonly logs: Array<Record<string, unknown>>
}

/** One upstream with TLS, its pool and its reloader, as createServices builds them. */
async function setup(): Promise<Setup> {
  const yaml = `upstreams:\n  - name: internal.corp\n    url: ${origin}\n    retries: { max: 0 }\n    timeout: 5s\n    tls: { ca: ${TLS.ca}, cert: ${TLS.cert}, key: ${TLS.key} }\n`
  const upstreams = parseConfig(yaml).upstreams as UpstreamConfig[]
  const { destination, lines: logs } = logLines()
  const logger = createLogger({ level: 'info', destination })
  const metrics = new Metrics()
  const tls = new Map([['internal.corp', await loadUpstreamTls(upstreams[0]?.tls as NonNullable<UpstreamConfig['tls']>, { setting: 'upstreams[0].tls', base: dir })]])
  const pool = new UpstreamPool(upstreams, { metrics, logger, credentials: () => undefined, tls })
  return { client: pool.get('internal.corp'), reload: upstreamTlsReloader(upstreams, pool, { base: dir, logger }), metrics, logs }
}

/** GETs `path` and reads the answer whole; the server's record of it. */
async function get(client: UpstreamClient, path: string, bulk = false): Promise<Seen> {
  const before = seen.length
  const res = await client.send({ method: 'GET', path, bulk })
  assert.equal(res.status, 200)
  await readBody(res, 1024, { tooLarge: () => new Error('too large'), broken: (cause) => cause as Error })
  return seen[before] as Seen
}

describe('upstreamTlsReloader', () => {
  describe('when the rotated files pass', () => {
    for (const bulk of [false, true]) {
      it(`presents the new client certificate on the next connection (${bulk ? 'a large blob' : "node's client"})`, async () => {
        const { client, reload, logs } = await setup()
        assert.equal((await get(client, '/v2/one', bulk)).client, pki.clientName)
        await useClientCert(rotated)
        assert.deepEqual(await reload(), [{ upstream: 'internal.corp' }])
        assert.equal((await get(client, '/v2/two', bulk)).client, 'rotated-client')
        const renewed = logs.filter((l) => l.msg === 'upstream tls reloaded')
        assert.equal(renewed.length, 1)
        assert.equal(renewed[0]?.upstream, 'internal.corp')
        assert.match(String(renewed[0]?.subject), /CN=rotated-client/)
      })
    }
  })

  describe('when a file fails its checks', () => {
    it('keeps the previous settings and logs one error line naming the setting and the file, without key material', async () => {
      const { client, reload, logs } = await setup()
      assert.equal((await get(client, '/v2/one')).client, pki.clientName)
      // A rotation caught half-way: the new key is in place, the certificate is not yet.
      await copyFile(rotated.clientKeyFile, join(dir, TLS.key))
      const [renewal] = await reload()
      const reason = `upstreams[0].tls.key: ${join(dir, TLS.key)} is not the key of the certificate in ${join(dir, TLS.cert)}`
      assert.deepEqual(renewal, { upstream: 'internal.corp', error: reason })
      const errors = logs.filter((l) => l.level === 'error' || l.level === 50)
      assert.equal(errors.length, 1, JSON.stringify(logs))
      assert.equal(errors[0]?.reason, reason)
      assert.equal(errors[0]?.upstream, 'internal.corp')
      assert.ok(!JSON.stringify(logs).includes('PRIVATE KEY'))
      assert.equal(logs.filter((l) => l.msg === 'upstream tls reloaded').length, 0)
      // Node's client goes on as before; a large blob's connection, always a new one, shows the
      // settings in force are the previous ones.
      assert.equal((await get(client, '/v2/two')).client, pki.clientName)
      assert.equal((await get(client, '/v2/three', true)).client, pki.clientName)
    })

    it('renews once the files are whole again', async () => {
      const { client, reload } = await setup()
      await writeFile(join(dir, TLS.cert), 'half a certificate\n')
      assert.match((await reload())[0]?.error ?? '', /^upstreams\[0\]\.tls\.cert: .*current\.pem holds no PEM certificate$/)
      await useClientCert(rotated)
      assert.deepEqual(await reload(), [{ upstream: 'internal.corp' }])
      assert.equal((await get(client, '/v2/one')).client, 'rotated-client')
    })
  })

  describe('connections made under the old settings', () => {
    it('closes an idle keep-alive connection at the renewal rather than reuse it', async () => {
      const { client, reload } = await setup()
      const first = await get(client, '/v2/one')
      // Kept alive: the next request goes on the same connection.
      assert.equal((await get(client, '/v2/two')).port, first.port)
      await useClientCert(rotated)
      await reload()
      // Sooner than any idle timeout of the client's (60 s) would close it.
      await waitFor('the idle connection to close', () => !open.has(first.port), 20_000)
      const after = await get(client, '/v2/three')
      assert.notEqual(after.port, first.port)
      assert.equal(after.client, 'rotated-client')
    })

    it('lets an answer under way finish, then closes its connection instead of reusing it', async () => {
      const { client, reload } = await setup()
      const res = await client.send({ method: 'GET', path: '/v2/slow' })
      assert.equal(res.status, 200)
      const body = readBody(res, 1024, { tooLarge: () => new Error('too large'), broken: (cause) => cause as Error })
      const slow = seen.at(-1) as Seen
      await useClientCert(rotated)
      await reload()
      ;(finishSlow as () => void)()
      assert.equal((await body).toString(), '0123456789')
      await waitFor('the finished connection to close', () => !open.has(slow.port), 20_000)
      const next = await get(client, '/v2/next')
      assert.notEqual(next.port, slow.port)
      assert.equal(next.client, 'rotated-client')
    })
  })

  describe('TLS sessions of large blobs', () => {
    it('resumes a session under the same settings but never one from before the renewal', async () => {
      const { client, reload, metrics } = await setup()
      const handshakes = async () =>
        Object.fromEntries((await metrics.tlsHandshakes.get()).values.map((v) => [`resumed=${String(v.labels.resumed)}`, v.value]))
      await get(client, '/v2/one', true)
      await get(client, '/v2/two', true)
      assert.deepEqual(await handshakes(), { 'resumed=false': 1, 'resumed=true': 1 })
      // The same files again: a renewal is new settings all the same.
      assert.deepEqual(await reload(), [{ upstream: 'internal.corp' }])
      assert.equal((await get(client, '/v2/three', true)).client, pki.clientName)
      assert.deepEqual(await handshakes(), { 'resumed=false': 2, 'resumed=true': 1 })
    })

    it('keys sessions apart for two loads of the same files', async () => {
      const load = () => loadUpstreamTls(TLS, { setting: 'upstreams[0].tls', base: dir })
      const [before, after] = [await load(), await load()]
      const sessions = new TlsSessions(4)
      assert.notEqual(sessions.key('127.0.0.1', 443, before.origin), sessions.key('127.0.0.1', 443, after.origin))
      assert.notEqual(sessions.key('127.0.0.1', 443, before.anyHost), sessions.key('127.0.0.1', 443, after.anyHost))
    })
  })
})
