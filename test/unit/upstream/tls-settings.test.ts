// An upstream's own TLS (upstreams[].tls): the files checked at start with errors naming the
// setting, and which connection gets what: the CA every connection made for the upstream (its
// origin, its token realm, its redirects' targets), the client certificate its origin only.

import assert from 'node:assert/strict'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { parseConfig } from '../../../src/config/load.js'
import type { UpstreamConfig } from '../../../src/config/schema.js'
import { isCustomsError } from '../../../src/errors.js'
import { createLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { createCa, issueClientCert, loadCa } from '../../../src/tls/certs.js'
import { TlsError, type TlsErrorCode } from '../../../src/tls/errors.js'
import { MAX_SETTING_FILE_BYTES } from '../../../src/tls/files.js'
import { UpstreamClient, type UpstreamRequest } from '../../../src/upstream/client.js'
import { loadUpstreamTls, loadUpstreamsTls, logUpstreamTls, tlsFor, type UpstreamTlsSettings } from '../../../src/upstream/tls-settings.js'
import { readBody } from '../../../src/upstream/transport.js'
import { makeTestPki, type TestPki } from '../../helpers/tls-pki.js'
import { logLines } from '../../helpers/logs.js'

let dir: string
let pki: TestPki

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'customs-upstream-tls-'))
  pki = await makeTestPki(dir)
})
after(() => rm(dir, { recursive: true, force: true }))

async function refusal(settings: UpstreamTlsSettings, code: TlsErrorCode, now?: Date): Promise<string> {
  try {
    await loadUpstreamTls(settings, { setting: 'upstreams[1].tls', base: dir, ...(now !== undefined ? { now } : {}) })
  } catch (err) {
    assert.ok(err instanceof TlsError, String(err))
    assert.equal(err.code, code, err.message)
    return err.message
  }
  assert.fail(`expected TlsError ${code}`)
}

describe('loadUpstreamTls', () => {
  describe('when the files are good', () => {
    it('reads relative paths from the base folder, absolute ones as they are, and gives the origin a context of its own only with a client certificate', async () => {
      const caOnly = await loadUpstreamTls({ ca: 'ca.pem' }, { setting: 'upstreams[0].tls', base: dir })
      assert.ok(caOnly.anyHost.secureContext !== undefined)
      assert.equal(caOnly.origin, caOnly.anyHost)
      assert.deepEqual(caOnly.described, { ca: pki.caFile })

      const both = await loadUpstreamTls({ ca: pki.caFile, cert: pki.clientCertFile, key: pki.clientKeyFile }, { setting: 'upstreams[0].tls', base: '/nowhere' })
      assert.ok(both.origin.secureContext !== undefined && both.origin.secureContext !== both.anyHost.secureContext)
      assert.equal(both.described.cert, pki.clientCertFile)
      assert.match(both.described.subject ?? '', /CN=customs-upstream-client/)
    })

    it('leaves the system trust alone for a client certificate without a CA', async () => {
      const tls = await loadUpstreamTls({ cert: pki.clientCertFile, key: pki.clientKeyFile }, { setting: 'upstreams[0].tls', base: dir })
      assert.deepEqual(tls.anyHost, {})
      assert.ok(tls.origin.secureContext !== undefined)
    })
  })

  describe('when a file is unusable', () => {
    it('refuses an unreadable file with FILE_UNREADABLE naming the setting, the file and the reason', async () => {
      const message = await refusal({ ca: 'missing.pem' }, 'FILE_UNREADABLE')
      assert.equal(message, `upstreams[1].tls.ca: cannot read ${join(dir, 'missing.pem')} (ENOENT)`)
      assert.match(await refusal({ cert: 'client.pem', key: 'nokey.pem' }, 'FILE_UNREADABLE'), /^upstreams\[1\]\.tls\.key: cannot read /)
    })

    it('refuses a file over 4 MiB (a wrong name, not a CA bundle) with FILE_UNREADABLE, without reading it whole', async () => {
      await writeFile(join(dir, 'huge.pem'), Buffer.alloc(MAX_SETTING_FILE_BYTES + 1, 0x41))
      const message = await refusal({ ca: 'huge.pem' }, 'FILE_UNREADABLE')
      assert.equal(message, `upstreams[1].tls.ca: cannot read ${join(dir, 'huge.pem')} (over the 4.0 MiB limit)`)
    })

    it('refuses a CA file without a CA certificate with CA_INVALID', async () => {
      await writeFile(join(dir, 'not-pem.txt'), 'hello\n')
      assert.match(await refusal({ ca: 'not-pem.txt' }, 'CA_INVALID'), /^upstreams\[1\]\.tls\.ca: .*not-pem\.txt must hold one or more PEM CA certificates$/)
      // A leaf is not a CA.
      assert.match(await refusal({ ca: 'client.pem' }, 'CA_INVALID'), /must hold one or more PEM CA certificates/)
    })

    it('refuses a certificate or key that is not PEM', async () => {
      assert.match(await refusal({ cert: 'not-pem.txt', key: 'client.key' }, 'CERT_INVALID'), /^upstreams\[1\]\.tls\.cert: .* holds no PEM certificate$/)
      assert.match(await refusal({ cert: 'client.pem', key: 'not-pem.txt' }, 'KEY_INVALID'), /^upstreams\[1\]\.tls\.key: .* is not an unencrypted PEM private key$/)
    })

    it('refuses a key that is not the certificate’s with KEY_MISMATCH naming both files', async () => {
      const message = await refusal({ cert: 'client.pem', key: 'server.key' }, 'KEY_MISMATCH')
      assert.equal(message, `upstreams[1].tls.key: ${pki.serverKeyFile} is not the key of the certificate in ${pki.clientCertFile}`)
    })

    it('refuses an expired client certificate with CERT_EXPIRED', async () => {
      const past = new Date(Date.now() - 10 * 86_400_000)
      const ca = loadCa(await createCa({ days: 30, now: past }), { now: past })
      const old = await issueClientCert(ca, 'old', { days: 1, now: past })
      await writeFile(join(dir, 'old.pem'), old.certPem)
      await writeFile(join(dir, 'old.key'), old.keyPem)
      assert.match(await refusal({ cert: 'old.pem', key: 'old.key' }, 'CERT_EXPIRED'), /^upstreams\[1\]\.tls\.cert: the certificate in .*old\.pem expired on /)
    })
  })

  describe('loadUpstreamsTls', () => {
    it('loads the upstreams that have tls, by name, and names the failing one by its index', async () => {
      await copyFile(pki.caFile, join(dir, 'ca-copy.pem'))
      const upstreams = parseConfig(
        `upstreams:\n  - name: plain.io\n    url: https://plain.io\n  - name: internal.corp\n    url: https://internal.corp\n    tls: { ca: ca-copy.pem }\n`
      ).upstreams as UpstreamConfig[]
      const loaded = await loadUpstreamsTls(upstreams, { base: dir })
      assert.deepEqual([...loaded.keys()], ['internal.corp'])
      const broken = upstreams.map((u) => (u.tls === undefined ? u : { ...u, tls: { ca: 'missing.pem' } }))
      await assert.rejects(loadUpstreamsTls(broken, { base: dir }), (err: TlsError) => err.message.startsWith('upstreams[1].tls.ca: cannot read'))
    })
  })
})

describe('logUpstreamTls', () => {
  /** The JSON lines a logger wrote. */
  function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
    const { destination, lines } = logLines()
    return { logger: createLogger({ level: 'info', destination }), lines }
  }

  it('warns when the client certificate expires within 30 days, as the listener does, and says how many days are left', async () => {
    const tls = await loadUpstreamTls({ ca: 'ca.pem', cert: pki.clientCertFile, key: pki.clientKeyFile }, { setting: 'upstreams[0].tls', base: dir })
    const notAfter = new Date(tls.described.notAfter ?? '').getTime()
    const day = 86_400_000
    const early = capture()
    logUpstreamTls(early.logger, 'internal.corp', tls, 'upstream tls loaded', notAfter - 31 * day)
    assert.deepEqual(early.lines.map((l) => l.msg), ['upstream tls loaded'])
    const late = capture()
    logUpstreamTls(late.logger, 'internal.corp', tls, 'upstream tls reloaded', notAfter - 10.5 * day)
    assert.deepEqual(late.lines.map((l) => l.msg), ['upstream tls reloaded', 'upstream tls client certificate expires soon'])
    assert.equal(late.lines[1]?.level, 'warn')
    assert.equal(late.lines[1]?.upstream, 'internal.corp')
    assert.equal(late.lines[1]?.cert, pki.clientCertFile)
    assert.equal(late.lines[1]?.days, 10)
  })

  it('has nothing to warn about without a client certificate', async () => {
    const tls = await loadUpstreamTls({ ca: 'ca.pem' }, { setting: 'upstreams[0].tls', base: dir })
    const { logger, lines } = capture()
    logUpstreamTls(logger, 'internal.corp', tls, 'upstream tls loaded')
    assert.deepEqual(lines.map((l) => l.msg), ['upstream tls loaded'])
  })
})

describe('tlsFor', () => {
  it('gives the client certificate to the upstream’s own origin only, and the CA to any', async () => {
    const tls = await loadUpstreamTls({ ca: 'ca.pem', cert: 'client.pem', key: 'client.key' }, { setting: 'upstreams[0].tls', base: dir })
    const origin = 'https://registry.corp:8443'
    assert.equal(tlsFor(tls, origin, new URL('https://registry.corp:8443/v2/')), tls.origin)
    // Another port, another host (a token realm, a CDN), or the same host over plain HTTP.
    for (const other of ['https://registry.corp/v2/', 'https://registry.corp:9443/token', 'https://auth.corp:8443/token', 'https://cdn.example/blob', 'http://registry.corp:8443/']) {
      assert.equal(tlsFor(tls, origin, new URL(other)), tls.anyHost, other)
    }
    assert.deepEqual(tlsFor(undefined, origin, new URL(origin)), {})
  })
})

/** What a test server saw: the path asked for, and the CN of the client certificate, if any. */
interface Seen {
  readonly server: 'registry' | 'elsewhere'
  readonly path: string
  readonly client: string | undefined
}

describe('an UpstreamClient with tls', () => {
  const seen: Seen[] = []
  const servers: Server[] = []
  let registry: string
  let elsewhere: string
  const blob = Buffer.from('blob bytes from the other host')

  /** An HTTPS server on 127.0.0.1 that asks for (but does not require) a client certificate. */
  type Answer = { status: number; headers?: Record<string, string>; body?: string | Buffer }

  async function serve(name: Seen['server'], handle: (path: string, auth: string | undefined) => Answer): Promise<number> {
    const server = createServer({ key: pki.pem.serverKey, cert: pki.pem.serverCert, ca: pki.pem.ca, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const socket = req.socket as TLSSocket
      const cn = socket.authorized ? socket.getPeerCertificate().subject?.CN : undefined
      seen.push({ server: name, path: (req.url ?? '').split('?')[0] as string, client: typeof cn === 'string' ? cn : undefined })
      const answer = handle(req.url ?? '', req.headers.authorization)
      res.writeHead(answer.status, answer.headers ?? {})
      res.end(answer.body)
    })
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return (server.address() as AddressInfo).port
  }

  before(async () => {
    // `localhost` is another host than 127.0.0.1 for the client, yet on loopback.
    const elsewherePort = await serve('elsewhere', (path) => (path.startsWith('/token') ? { status: 200, headers: { 'content-type': 'application/json' }, body: '{"token":"t0k3n"}' } : { status: 200, body: blob }))
    elsewhere = `https://localhost:${elsewherePort}`
    const registryPort = await serve('registry', (path, auth): Answer => {
      if (auth !== 'Bearer t0k3n') return { status: 401, headers: { 'www-authenticate': `Bearer realm="${elsewhere}/token",service="registry"` } }
      return { status: 307, headers: { location: `${elsewhere}/blob${path.slice(path.lastIndexOf('/'))}` } }
    })
    registry = `https://127.0.0.1:${registryPort}`
  })
  after(() => {
    for (const server of servers) {
      server.closeAllConnections()
      server.close()
    }
  })

  function client(tls: UpstreamTlsSettings | undefined): Promise<UpstreamClient> {
    const yaml = `upstreams:\n  - name: internal.corp\n    url: ${registry}\n    tokenRealmHosts: [${new URL(elsewhere).host}]\n    retries: { max: 0 }\n    timeout: 5s\n`
    const config = parseConfig(yaml).upstreams[0] as UpstreamConfig
    const deps = { metrics: new Metrics(), logger: createLogger({ level: 'silent' }), lookup: async () => ['127.0.0.1'] }
    if (tls === undefined) return Promise.resolve(new UpstreamClient(config, deps))
    return loadUpstreamTls(tls, { setting: 'upstreams[0].tls', base: dir }).then((loaded) => new UpstreamClient({ ...config, tls }, { ...deps, tls: loaded }))
  }

  async function fetchBlob(upstream: UpstreamClient, bulk: boolean): Promise<Buffer> {
    const req: UpstreamRequest = { method: 'GET', path: `/v2/team/app/blobs/sha256:${'a'.repeat(64)}`, repository: 'team/app', bulk }
    const res = await upstream.send(req)
    assert.equal(res.status, 200)
    return readBody(res, 1024, { tooLarge: () => new Error('too large'), broken: (cause) => cause as Error })
  }

  for (const bulk of [false, true]) {
    it(`presents the client certificate to the origin only, and trusts the CA everywhere (${bulk ? 'a large blob' : "node's client"})`, async () => {
      seen.length = 0
      const upstream = await client({ ca: pki.caFile, cert: pki.clientCertFile, key: pki.clientKeyFile })
      assert.ok((await fetchBlob(upstream, bulk)).equals(blob))
      assert.deepEqual(
        seen.map((s) => `${s.server} ${s.path.replace(/sha256:a+/, 'DIGEST')} ${s.client ?? '-'}`),
        [
          `registry /v2/team/app/blobs/DIGEST ${pki.clientName}`,
          'elsewhere /token -',
          `registry /v2/team/app/blobs/DIGEST ${pki.clientName}`,
          'elsewhere /blob/DIGEST -',
        ]
      )
    })
  }

  it('presents no certificate with a CA alone', async () => {
    seen.length = 0
    assert.ok((await fetchBlob(await client({ ca: pki.caFile }), true)).equals(blob))
    assert.equal(seen.length, 4)
    assert.ok(seen.every((s) => s.client === undefined))
  })

  it('is never built without the tls its configuration sets', () => {
    const config = parseConfig(`upstreams:\n  - name: internal.corp\n    url: ${registry}\n    tls: { ca: ca.pem }\n`).upstreams[0] as UpstreamConfig
    assert.throws(() => new UpstreamClient(config, { metrics: new Metrics(), logger: createLogger({ level: 'silent' }) }), /^Error: upstream internal\.corp: its tls settings were not loaded$/)
  })

  it('refuses the upstream without its CA: the system’s CAs do not vouch for it', async () => {
    seen.length = 0
    await assert.rejects(client(undefined).then((c) => fetchBlob(c, false)), (err) => isCustomsError(err) && err.code === 'UPSTREAM_UNAVAILABLE' && /^upstream internal\.corp is unreachable: its TLS certificate was not accepted \(\w+\)$/.test(err.message))
    assert.equal(seen.length, 0)
  })
})
