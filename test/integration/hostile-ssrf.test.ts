// SSRF and credential safety. Customs only ever talks to configured upstreams: a name or ns naming
// another host, a token realm elsewhere, a redirect to an internal address are refused, and the
// hosts they name (recording servers here) receive nothing. Configured credentials go to their
// own upstream only, and an upstream that echoes them back cannot get them into a client answer
// or a log line. Existing proofs not repeated here (upstream-faults.test.ts): a realm on a foreign
// host with no credentials, credentials never sent to a blob CDN, a redirect to file://, a 401
// loop; real-clients.test.ts: the token registry's password never logged.

import assert from 'node:assert/strict'
import dns, { type LookupAddress } from 'node:dns'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { isIP, type AddressInfo } from 'node:net'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, send, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { parseConfig } from '../../src/config/load.js'
import type { UpstreamConfig } from '../../src/config/schema.js'
import { CustomsError } from '../../src/errors.js'
import { createLogger } from '../../src/observability/logger.js'
import { Metrics } from '../../src/observability/metrics.js'
import { UpstreamClient } from '../../src/upstream/client.js'
import { isInternalRedirect, resolvesInternal, type HostLookup } from '../../src/upstream/egress.js'

const PASSWORD = 'pw-5ecret-Zq81'
const TOKEN = 'tok-5ecret-Hk27'
const BASIC = `Basic ${Buffer.from(`bot:${PASSWORD}`).toString('base64')}`

/** A server that answers 200 to everything and records what it was sent. */
interface Recorder {
  readonly url: string
  readonly host: string
  readonly seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>
  close(): Promise<void>
}

async function recorder(host = '127.0.0.2'): Promise<Recorder> {
  const seen: Recorder['seen'] = []
  const server: Server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    send(res, 200, JSON.stringify({ token: 'from-the-recorder', access_token: 'from-the-recorder' }), 'application/json')
  })
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${host}:${port}`,
    host: `${host}:${port}`,
    seen,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function get(customs: CustomsHandle, path: string): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`${customs.url}${path}`)
  return { status: res.status, text: await res.text(), headers: res.headers }
}

function code(text: string): string {
  return (JSON.parse(text) as { errors: Array<{ code: string }> }).errors[0]?.code ?? ''
}

/** Neither the secret password nor the token appears in `what`. */
function clean(what: unknown, where: string): void {
  const text = typeof what === 'string' ? what : JSON.stringify(what)
  for (const secret of [PASSWORD, TOKEN, Buffer.from(`bot:${PASSWORD}`).toString('base64')]) {
    assert.ok(!text.includes(secret), `${where} holds a secret`)
  }
}

let upstream: FakeUpstream
let foreign: Recorder
let customs: CustomsHandle | undefined

beforeEach(async () => {
  upstream = await startFakeUpstream()
  foreign = await recorder()
})

afterEach(async () => {
  await customs?.stop()
  customs = undefined
  await upstream.close()
  await foreign.close()
})

describe('a request naming a host that is not configured', () => {
  it('answers NAME_UNKNOWN or NAME_INVALID and sends nothing anywhere, whatever the spelling', async () => {
    putImage(upstream, 'library/x', ociImage([Buffer.from('x')]), 'v1')
    customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url) })
    const h = foreign.host
    const paths = [
      `/v2/${h}/library/x/manifests/v1`,
      `/v2/library/x/manifests/v1?ns=${h}`,
      `/v2/library/x/manifests/v1?ns=${encodeURIComponent(`http://${h}`)}`,
      `/v2/library/x/manifests/v1?ns=${encodeURIComponent(`bot@${h}`)}`,
      `/v2/library/x/manifests/v1?ns=169.254.169.254`,
      `/v2/169.254.169.254/latest/manifests/v1`,
      `/v2/localhost:${h.split(':')[1]}/library/x/manifests/v1`,
      `/v2/${h}/library/x/blobs/${sha256(Buffer.from('x'))}`,
      `/v2/${h}/library/x/tags/list`,
      `/v2/library/x/tags/list?ns=${h}`,
      `/v2/${h}/library/x/referrers/${sha256(Buffer.from('x'))}`,
    ]
    for (const path of paths) {
      const res = await get(customs, path)
      assert.ok(res.status === 404 || res.status === 400, `${path}: ${res.status}`)
      assert.ok(['NAME_UNKNOWN', 'NAME_INVALID'].includes(code(res.text)), `${path}: ${res.text}`)
    }
    assert.deepEqual(foreign.seen, [])
    assert.equal(upstream.requests.length, 0, 'nor to the configured upstream')
  })
})

describe('a token realm that is not the upstream', () => {
  /** The upstream challenges every request with a Bearer realm at `realm`. */
  function challengeWith(realm: string): void {
    upstream.intercept = (_req, res) => {
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm}",service="registry"`, 'Content-Length': '0' })
      res.end()
      return true
    }
  }

  const CREDENTIALS = `credentials: { username: bot, password: ${PASSWORD} }`

  for (const [what, realm] of [
    ['on a foreign (private) host', () => `${foreign.url}/token`],
    ['on the upstream host at another port', () => `${foreign.url.replace('127.0.0.2', '127.0.0.1')}/token`],
    ['at the cloud metadata address', () => 'http://169.254.169.254/latest/meta-data/iam'],
    ['with a non-http scheme', () => 'file:///etc/passwd'],
  ] as const) {
    it(`is refused ${what}: never contacted, no credentials sent, none logged`, async () => {
      const local = what.includes('another port') ? await recorder('127.0.0.1') : undefined
      try {
        challengeWith(local !== undefined ? `${local.url}/token` : realm())
        customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url, CREDENTIALS) })
        const res = await get(customs, '/v2/library/x/manifests/v1')
        assert.ok(res.status >= 400, `status ${res.status}`)
        clean(res, 'the answer')
        assert.deepEqual(foreign.seen, [])
        assert.deepEqual(local?.seen ?? [], [])
        // The upstream itself never got the password either: only a token (which it never gave).
        assert.ok(upstream.requests.every((r) => r.headers.authorization === undefined))
        clean(customs.logs, 'the logs')
      } finally {
        await local?.close()
      }
    })
  }
})

describe('an upstream that echoes credentials back', () => {
  const image = ociImage([Buffer.from('echoed')])

  beforeEach(() => {
    putImage(upstream, 'library/x', image, 'v1')
    // Token auth on the upstream's own origin; every answer it gives repeats what it was sent.
    upstream.intercept = (req, res, path) => {
      const auth = req.headers.authorization ?? ''
      // What it was sent, raw and decoded, kept to characters a header may carry.
      const echo = `${auth} ${Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString('latin1')}`.replace(/[^\x20-\x7e]/g, '?')
      if (path.startsWith('/token')) {
        if (req.headers.authorization !== BASIC && !String(req.headers['content-type']).includes('form')) {
          res.writeHead(401, { 'Content-Type': 'application/json', 'X-Echo': echo })
          return void res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: `bad credentials ${echo}` }] })), true
        }
        let body = ''
        req.on('data', (d: Buffer) => (body += d.toString()))
        req.on('end', () => send(res, 200, JSON.stringify({ token: TOKEN, access_token: TOKEN, echo, body }), 'application/json'))
        return true
      }
      if (req.headers.authorization !== `Bearer ${TOKEN}`) {
        res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${upstream.url}/token",service="registry",error="${echo.trim()}"`, 'Content-Length': '0' })
        return void res.end(), true
      }
      res.setHeader('X-Echo', echo)
      res.setHeader('Warning', `199 - "${echo}"`)
      if (path.includes('/manifests/missing') || path.includes('/blobs/sha256:' + '0'.repeat(64))) {
        send(res, 404, JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: `not found for ${echo}`, detail: { authorization: echo } }] }), 'application/json')
        return true
      }
      if (path.includes('/tags/list')) {
        // Not tag names (spaces): the listing is refused whole. A secret shaped like a tag name
        // would be indistinguishable from one, and passed on like any tag.
        send(res, 200, JSON.stringify({ name: 'library/x', tags: ['v1', echo] }), 'application/json')
        return true
      }
      if (path.includes('/manifests/broken')) {
        send(res, 500, `internal error while handling ${echo}`, 'text/plain')
        return true
      }
      return false
    }
  })

  it('keeps them out of every answer and every log line, and sends the password to its own token endpoint only', async () => {
    customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url, `credentials: { username: bot, password: ${PASSWORD} }`) })
    const answers = [
      await get(customs, '/v2/library/x/manifests/v1'),
      await get(customs, `/v2/library/x/blobs/${sha256(image.layers[0] as Buffer)}`),
      await get(customs, '/v2/library/x/manifests/missing'),
      await get(customs, '/v2/library/x/manifests/broken'),
      await get(customs, `/v2/library/x/manifests/sha256:${'0'.repeat(64)}`),
      await get(customs, '/v2/library/x/tags/list'),
    ]
    assert.equal(answers[0]?.status, 200)
    assert.equal(answers[1]?.status, 200)
    for (const a of answers) {
      // Headers too: nothing of the upstream's echo is passed on.
      clean([a.status, a.text, [...a.headers.entries()]], `the answer ${a.status} ${a.text.slice(0, 80)}`)
    }
    clean(customs.logs, 'the logs')
    // The password went to the token endpoint of the upstream's own origin, and nowhere else.
    const withPassword = upstream.requests.filter((r) => r.headers.authorization === BASIC || r.path.startsWith('/token'))
    assert.ok(withPassword.length >= 1)
    assert.ok(withPassword.every((r) => r.path.startsWith('/token')), 'only the token endpoint is sent the password')
    assert.deepEqual(foreign.seen, [])
  })
})

describe('a redirect to an internal address, from an upstream on the internet', () => {
  // Every test server is on loopback, so an upstream "on the internet" exists only for the
  // resolver: these names and addresses are given to the check by an injected lookup.
  const PUBLIC = '203.0.113.7'
  const names: Record<string, string[]> = {
    'registry.example': [PUBLIC],
    'cdn.example': ['198.51.100.9'],
    'metadata.attacker.example': ['169.254.169.254'],
    'mixed.attacker.example': ['198.51.100.10', '10.1.2.3'],
    'v6.attacker.example': ['::ffff:127.0.0.2'],
  }
  const lookup = async (host: string): Promise<string[]> => {
    const found = names[host]
    if (found === undefined) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return found
  }

  it('judges names by the addresses they resolve to', async () => {
    assert.equal(await resolvesInternal('registry.example', lookup), false)
    assert.equal(await resolvesInternal('cdn.example', lookup), false)
    assert.equal(await resolvesInternal('metadata.attacker.example', lookup), true)
    assert.equal(await resolvesInternal('mixed.attacker.example', lookup), true, 'one internal address is enough')
    assert.equal(await resolvesInternal('v6.attacker.example', lookup), true)
    assert.equal(await resolvesInternal('unresolvable.example', lookup), false)
    assert.equal(await resolvesInternal('10.0.0.1', lookup), true)
    assert.equal(await resolvesInternal('[fd00::1]', lookup), true)
    assert.equal(await resolvesInternal('8.8.8.8', lookup), false)
  })

  it('is refused for an internal IP literal and for a name resolving to an internal address', async () => {
    const refused = ['10.0.0.5', '169.254.169.254', '[::1]', 'metadata.attacker.example', 'mixed.attacker.example', 'v6.attacker.example']
    for (const to of refused) assert.equal(await isInternalRedirect('registry.example', to, lookup), true, to)
    for (const to of ['cdn.example', '198.51.100.1', 'unresolvable.example']) assert.equal(await isInternalRedirect('registry.example', to, lookup), false, to)
    // A private registry (itself internal, by literal or by name) may send Customs to its own network.
    names['harbor.corp'] = ['10.9.8.7']
    for (const from of ['10.0.0.2', 'harbor.corp', 'localhost']) assert.equal(await isInternalRedirect(from, 'metadata.attacker.example', lookup), false, from)
  })

  /** A client for the upstream at `url` that resolves names with `resolve`. */
  function client(url: string, resolve: HostLookup): UpstreamClient {
    const config = parseConfig(upstreamConfig('registry.example', url), { env: {} }).upstreams[0] as UpstreamConfig
    return new UpstreamClient(config, { metrics: new Metrics(), logger: createLogger({ level: 'silent' }), lookup: resolve })
  }

  /** A service inside the network, on loopback, that counts the connections it is sent. */
  async function internalService(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let connections = 0
    const server = createServer((_req, res) => send(res, 200, 'internal', 'text/plain'))
    server.on('connection', () => connections++)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.2', () => resolve()))
    return {
      port: (server.address() as AddressInfo).port,
      connections: () => connections,
      async close() {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      },
    }
  }

  /** The upstream redirects every blob GET to `location`. */
  function redirectBlobsTo(location: string): void {
    upstream.intercept = (_req, res, path) => {
      if (!path.includes('/blobs/')) return false
      res.writeHead(307, { Location: location, 'Content-Length': '0' })
      res.end()
      return true
    }
  }

  /**
   * Points node's own resolver at `answer` until the returned function is called. The connection to
   * the upstream's own host resolves through it, as before; so would a redirect's target, had the
   * client left it to node.
   */
  function systemResolver(answer: HostLookup): () => void {
    const original = dns.lookup
    const patched = (host: string, options: dns.LookupOptions | LookupCallback, callback?: LookupCallback) => {
      const done = (typeof options === 'function' ? options : callback) as LookupCallback
      answer(host).then(
        (addresses) => {
          const found = addresses.map((address) => ({ address, family: isIP(address) }))
          if (typeof options === 'object' && options.all === true) done(null, found)
          else done(null, found[0]?.address ?? '', found[0]?.family)
        },
        (err: NodeJS.ErrnoException) => done(err, '')
      )
    }
    dns.lookup = patched as unknown as typeof dns.lookup
    return () => {
      dns.lookup = original
    }
  }
  type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

  const blob = `/v2/library/x/blobs/${sha256(Buffer.from('x'))}`

  for (const [how, bulk] of [["node's client (a small blob)", false], ['a connection of its own (wire.ts, a large blob)', true]] as const) {
    it(`is refused when the name answers the check with a public address and the connection with an internal one, on ${how}`, async () => {
      const inside = await internalService()
      // A hostile DNS server: public the first time it is asked, loopback (127.0.0.2) after.
      let asked = 0
      const hostile: HostLookup = async (host) => {
        if (host === 'rebind.attacker.example') return ++asked === 1 ? ['198.51.100.20'] : ['127.0.0.2']
        return lookup(host)
      }
      // The upstream is registry.example, public to the redirect rule, and reached on loopback: the
      // test server stands in for its public address. Every other name is the hostile server's.
      const restore = systemResolver(async (host) => (host === 'registry.example' ? ['127.0.0.1'] : hostile(host)))
      try {
        redirectBlobsTo(`http://rebind.attacker.example:${inside.port}/data`)
        const registry = client(upstream.url.replace('127.0.0.1', 'registry.example'), hostile)
        await assert.rejects(registry.send({ method: 'GET', path: blob, repository: 'library/x', bulk }), (err) => {
          assert.ok(err instanceof CustomsError)
          assert.equal(err.code, 'UPSTREAM_INVALID')
          assert.match(err.message, /rebind\.attacker\.example resolved to one when connecting/)
          return true
        })
        assert.equal(upstream.count((r) => r.path === blob), 1, 'the upstream was asked once and redirected')
        assert.equal(asked, 2, 'once for the check, once for the connection')
        assert.equal(inside.connections(), 0)
      } finally {
        restore()
        await inside.close()
      }
    })

    it(`is followed to a name resolving inside when the upstream is itself internal, on ${how}`, async () => {
      const inside = await internalService()
      try {
        redirectBlobsTo(`http://cdn.corp.example:${inside.port}/data`)
        const registry = client(upstream.url, async (host) => (host === 'cdn.corp.example' ? ['127.0.0.2'] : lookup(host)))
        const res = await registry.send({ method: 'GET', path: blob, repository: 'library/x', bulk })
        assert.equal(res.status, 200)
        await res.discard()
        assert.equal(inside.connections(), 1)
      } finally {
        await inside.close()
      }
    })
  }
})
