// Upstream authentication: host patterns, bounded body reads, and the token flow against a real
// token server on 127.0.0.1 (anonymous and credentialed, caching, realm checks, coalescing).

import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { after, before, beforeEach, describe, it } from 'node:test'
import { CustomsError, type ErrorCode } from '../../../src/errors.js'
import {
  hostMatches,
  readBounded,
  readBoundedJson,
  UpstreamAuth,
  type AuthOptions,
} from '../../../src/upstream/auth.js'
import type { Challenge } from '../../../src/upstream/challenge.js'
import { UpstreamResponse } from '../../../src/upstream/transport.js'

function isCode(code: ErrorCode): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof CustomsError, `expected a CustomsError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  }
}

// ---------------------------------------------------------------------------------------------
// hostMatches

describe('hostMatches', () => {
  describe('when the pattern is a plain host', () => {
    it('returns true only for that exact host', () => {
      assert.equal(hostMatches('auth.docker.io', 'auth.docker.io'), true)
      assert.equal(hostMatches('auth.docker.io', 'xauth.docker.io'), false)
      assert.equal(hostMatches('auth.docker.io', 'a.auth.docker.io'), false)
      assert.equal(hostMatches('auth.docker.io', 'auth.docker.io.evil.com'), false)
      assert.equal(hostMatches('auth.docker.io', 'auth.docker.io:443'), false)
      assert.equal(hostMatches('host:5000', 'host:5000'), true)
      assert.equal(hostMatches('host:5000', 'host:5001'), false)
    })
  })

  describe('when the pattern is a *. wildcard', () => {
    it('returns true for any subdomain, however deep', () => {
      assert.equal(hostMatches('*.pkg.dev', 'us-docker.pkg.dev'), true)
      assert.equal(hostMatches('*.pkg.dev', 'a.b.c.pkg.dev'), true)
      assert.equal(hostMatches('*.pkg.dev', 'x.pkg.dev'), true)
    })

    it('returns false for a host that merely ends with the same letters (no dot boundary)', () => {
      assert.equal(hostMatches('*.pkg.dev', 'evilpkg.dev'), false)
      assert.equal(hostMatches('*.pkg.dev', 'evil-pkg.dev'), false)
      assert.equal(hostMatches('*.docker.io', 'notdocker.io'), false)
    })

    it('returns false for the apex itself, a bare dot prefix and other suffixes', () => {
      assert.equal(hostMatches('*.pkg.dev', 'pkg.dev'), false)
      assert.equal(hostMatches('*.pkg.dev', '.pkg.dev'), false)
      assert.equal(hostMatches('*.pkg.dev', 'a.pkg.dev.evil.com'), false)
      assert.equal(hostMatches('*.pkg.dev', 'a.pkg.devx'), false)
      assert.equal(hostMatches('*.pkg.dev', ''), false)
    })

    it('returns false for a subdomain with a port the pattern does not name', () => {
      assert.equal(hostMatches('*.pkg.dev', 'a.pkg.dev:8443'), false)
      assert.equal(hostMatches('*.pkg.dev:8443', 'a.pkg.dev:8443'), true)
    })
  })

  describe('when the pattern has a * that is not a leading *.', () => {
    it('returns false unless the host is spelled the same, * included', () => {
      assert.equal(hostMatches('*pkg.dev', 'evilpkg.dev'), false)
      assert.equal(hostMatches('a.*.dev', 'a.pkg.dev'), false)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// readBounded / readBoundedJson

/** A body stream of the given chunks that records whether it was cut off before its end. */
function chunked(chunks: readonly Uint8Array[], opts: { failAfter?: boolean } = {}) {
  const state = { cancelled: false, pulled: 0 }
  const stream = new Readable({
    read() {
      const next = chunks[state.pulled++]
      if (next !== undefined) this.push(next)
      else if (opts.failAfter === true) this.destroy(new Error('connection reset'))
      else this.push(null)
    },
    destroy(err, callback) {
      if (!this.readableEnded && err === null) state.cancelled = true
      callback(err)
    },
  })
  return { stream, state }
}

/** An upstream answer with `body` (a stream, or text). */
function response(body: Readable | string | null, init: { status?: number; headers?: Record<string, string> } = {}): UpstreamResponse {
  const stream = typeof body === 'string' ? Readable.from([Buffer.from(body)]) : body
  return new UpstreamResponse({ status: init.status ?? 200, headers: new Headers(init.headers), body: stream })
}

describe('readBounded', () => {
  describe('when the body is within the limit', () => {
    it('returns the bytes, across several chunks', async () => {
      const { stream } = chunked([Buffer.from('ab'), Buffer.from('cd'), Buffer.from('e')])
      const bytes = await readBounded(response(stream), 5, 'test')
      assert.equal(bytes.toString(), 'abcde')
    })

    it('returns an empty buffer for a response without a body', async () => {
      const bytes = await readBounded(response(null, { status: 204 }), 5, 'test')
      assert.equal(bytes.byteLength, 0)
    })

    it('returns the bytes of a chunk that is a view into a larger buffer', async () => {
      const big = Buffer.from('xxhelloxx')
      const { stream } = chunked([new Uint8Array(big.buffer, big.byteOffset + 2, 5)])
      assert.equal((await readBounded(response(stream), 5, 'test')).toString(), 'hello')
    })

    it('returns a buffer that owns its memory, not a slice of the shared pool', async () => {
      const { stream } = chunked([Buffer.from('small '), Buffer.from('manifest')])
      const bytes = await readBounded(response(stream), 100, 'test')
      assert.equal(bytes.toString(), 'small manifest')
      assert.equal(bytes.buffer.byteLength, bytes.byteLength)
    })
  })

  describe('when Content-Length declares more than the limit', () => {
    it('throws UPSTREAM_INVALID without reading and cancels the body', async () => {
      const { stream, state } = chunked([Buffer.from('abc')])
      const res = response(stream, { headers: { 'content-length': '100' } })
      await assert.rejects(readBounded(res, 10, 'test'), isCode('UPSTREAM_INVALID'))
      assert.equal(state.cancelled, true)
      assert.equal(state.pulled <= 1, true)
    })
  })

  describe('when Content-Length is not a number', () => {
    it('ignores it and reads the body', async () => {
      const res = response('abc', { headers: { 'content-length': 'lots' } })
      assert.equal((await readBounded(res, 10, 'test')).toString(), 'abc')
    })
  })

  describe('when the actual bytes exceed the limit', () => {
    it('throws UPSTREAM_INVALID with no Content-Length, and cancels the body', async () => {
      const { stream, state } = chunked([Buffer.alloc(6), Buffer.alloc(6), Buffer.alloc(6)])
      await assert.rejects(
        readBounded(response(stream), 10, 'test'),
        isCode('UPSTREAM_INVALID')
      )
      assert.equal(state.cancelled, true)
      assert.equal(state.pulled < 4, true)
    })

    it('throws UPSTREAM_INVALID when Content-Length understates the body', async () => {
      const { stream } = chunked([Buffer.alloc(8), Buffer.alloc(8)])
      const res = response(stream, { headers: { 'content-length': '8' } })
      await assert.rejects(readBounded(res, 10, 'test'), isCode('UPSTREAM_INVALID'))
    })

    it('returns the bytes at exactly the limit', async () => {
      const { stream } = chunked([Buffer.alloc(5, 1), Buffer.alloc(5, 2)])
      assert.equal((await readBounded(response(stream), 10, 'test')).byteLength, 10)
    })
  })

  describe('when the body breaks off', () => {
    it('throws UPSTREAM_UNAVAILABLE', async () => {
      const { stream } = chunked([Buffer.from('ab')], { failAfter: true })
      await assert.rejects(
        readBounded(response(stream), 10, 'test'),
        isCode('UPSTREAM_UNAVAILABLE')
      )
    })
  })
})

describe('readBoundedJson', () => {
  describe('when the body is a JSON object', () => {
    it('returns the object', async () => {
      assert.deepEqual(await readBoundedJson(response('{"token":"t","n":1}'), 100, 'test'), {
        token: 't',
        n: 1,
      })
    })
  })

  describe('when the body is not JSON', () => {
    for (const body of ['', 'not json', '{"a":', '<html></html>']) {
      it(`throws UPSTREAM_INVALID for ${JSON.stringify(body)}`, async () => {
        await assert.rejects(
          readBoundedJson(response(body), 100, 'test'),
          isCode('UPSTREAM_INVALID')
        )
      })
    }
  })

  describe('when the body is JSON but not an object', () => {
    for (const body of ['[]', '[{"token":"t"}]', 'null', '42', '"token"', 'true']) {
      it(`throws UPSTREAM_INVALID for ${body}`, async () => {
        await assert.rejects(
          readBoundedJson(response(body), 100, 'test'),
          isCode('UPSTREAM_INVALID')
        )
      })
    }
  })

  describe('when the body is over the limit', () => {
    it('throws UPSTREAM_INVALID', async () => {
      const body = JSON.stringify({ token: 'x'.repeat(200) })
      await assert.rejects(
        readBoundedJson(response(body), 100, 'test'),
        isCode('UPSTREAM_INVALID')
      )
    })
  })
})

// ---------------------------------------------------------------------------------------------
// UpstreamAuth against a token server

interface Seen {
  method: string
  path: string
  query: URLSearchParams
  authorization: string | undefined
  contentType: string | undefined
  body: string
}

interface Reply {
  status?: number
  json?: unknown
  text?: string
  headers?: Record<string, string>
  delayMs?: number
}

type Handler = (req: Seen) => Reply

class TokenServer {
  readonly seen: Seen[] = []
  handler: Handler = () => ({ json: { token: 'tok' } })
  #server: Server | undefined
  port = 0

  get origin(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** The same server under another host name, so that its origin differs. */
  get localhostOrigin(): string {
    return `http://localhost:${this.port}`
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => void this.#handle(req, res))
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve))
    const address = this.#server.address()
    this.port = typeof address === 'object' && address !== null ? address.port : 0
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections()
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()))
  }

  reset(handler?: Handler): void {
    this.seen.length = 0
    this.handler = handler ?? (() => ({ json: { token: 'tok' } }))
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const url = new URL(req.url ?? '/', 'http://x')
    const seen: Seen = {
      method: req.method ?? '',
      path: url.pathname,
      query: url.searchParams,
      authorization: req.headers.authorization,
      contentType: req.headers['content-type'],
      body: Buffer.concat(chunks).toString(),
    }
    this.seen.push(seen)
    const reply = this.handler(seen)
    if (reply.delayMs !== undefined) await new Promise((r) => setTimeout(r, reply.delayMs))
    const body = reply.json !== undefined ? JSON.stringify(reply.json) : (reply.text ?? '')
    res.writeHead(reply.status ?? 200, {
      'content-type': reply.json !== undefined ? 'application/json' : 'text/plain',
      ...reply.headers,
    })
    res.end(body)
  }
}

const CREDS = { username: 'robot', password: 'p@ss:word' }
const BASIC = `Basic ${Buffer.from('robot:p@ss:word').toString('base64')}`
const SCOPE = 'repository:library/alpine:pull'

describe('UpstreamAuth', () => {
  const server = new TokenServer()
  const other = new TokenServer()
  let clock = 0
  const now = () => clock

  before(async () => {
    await server.start()
    await other.start()
  })
  after(async () => {
    await server.stop()
    await other.stop()
  })
  beforeEach(() => {
    server.reset()
    other.reset()
    clock = 1_700_000_000_000
  })

  function auth(extra: Partial<AuthOptions> = {}): UpstreamAuth {
    return new UpstreamAuth({
      origin: server.origin,
      tokenRealmHosts: [],
      timeout: 5000,
      userAgent: 'customs-test',
      now,
      ...extra,
    })
  }

  function bearer(params: Record<string, string> = {}): Challenge {
    return {
      scheme: 'bearer',
      params: { realm: `${server.origin}/token`, service: 'reg.test', ...params },
    }
  }

  describe('when anonymous', () => {
    it('returns the token from a GET that carries service and each scope', async () => {
      const header = await auth().authorize(
        bearer(),
        server.origin,
        `${SCOPE} repository:other/app:pull`
      )
      assert.equal(header, 'Bearer tok')
      assert.equal(server.seen.length, 1)
      const [req] = server.seen
      assert.equal(req?.method, 'GET')
      assert.equal(req?.path, '/token')
      assert.equal(req?.query.get('service'), 'reg.test')
      assert.deepEqual(req?.query.getAll('scope'), [SCOPE, 'repository:other/app:pull'])
      assert.equal(req?.authorization, undefined)
    })

    it('keeps the query the realm already has', async () => {
      await auth().authorize(
        bearer({ realm: `${server.origin}/token?account=x` }),
        server.origin,
        SCOPE
      )
      assert.equal(server.seen[0]?.query.get('account'), 'x')
      assert.equal(server.seen[0]?.query.get('scope'), SCOPE)
    })

    it('sends no service param when the challenge names none', async () => {
      await auth().authorize(
        { scheme: 'bearer', params: { realm: `${server.origin}/token` } },
        server.origin,
        SCOPE
      )
      assert.equal(server.seen[0]?.query.has('service'), false)
    })

    it('reads access_token when token is absent', async () => {
      server.reset(() => ({ json: { access_token: 'acc' } }))
      assert.equal(await auth().authorize(bearer(), server.origin, SCOPE), 'Bearer acc')
    })

    it('counts the token request with its status', async () => {
      const statuses: Array<number | 'error'> = []
      await auth({ onTokenRequest: (s) => statuses.push(s) }).authorize(
        bearer(),
        server.origin,
        SCOPE
      )
      assert.deepEqual(statuses, [200])
    })
  })

  describe('when credentials are configured', () => {
    it('returns the token from a POST of the password grant form', async () => {
      const header = await auth({ credentials: CREDS }).authorize(bearer(), server.origin, SCOPE)
      assert.equal(header, 'Bearer tok')
      assert.equal(server.seen.length, 1)
      const [req] = server.seen
      assert.equal(req?.method, 'POST')
      assert.equal(req?.contentType, 'application/x-www-form-urlencoded')
      const form = new URLSearchParams(req?.body)
      assert.equal(form.get('grant_type'), 'password')
      assert.equal(form.get('username'), CREDS.username)
      assert.equal(form.get('password'), CREDS.password)
      assert.equal(form.get('service'), 'reg.test')
      assert.equal(form.get('scope'), SCOPE)
      assert.equal(req?.authorization, undefined)
    })

    for (const status of [404, 405, 400]) {
      it(`falls back to GET with Basic when the POST answers ${status}`, async () => {
        server.reset((req) =>
          req.method === 'POST' ? { status, text: 'no' } : { json: { token: 'via-get' } }
        )
        const header = await auth({ credentials: CREDS }).authorize(bearer(), server.origin, SCOPE)
        assert.equal(header, 'Bearer via-get')
        assert.deepEqual(
          server.seen.map((s) => s.method),
          ['POST', 'GET']
        )
        const get = server.seen[1]
        assert.equal(get?.authorization, BASIC)
        assert.equal(get?.query.get('service'), 'reg.test')
        assert.deepEqual(get?.query.getAll('scope'), [SCOPE])
      })
    }

    it('throws UPSTREAM_DENIED when the POST answers 401, without trying GET', async () => {
      server.reset(() => ({ status: 401, text: 'bad creds' }))
      await assert.rejects(
        auth({ credentials: CREDS }).authorize(bearer(), server.origin, SCOPE),
        isCode('UPSTREAM_DENIED')
      )
      assert.deepEqual(
        server.seen.map((s) => s.method),
        ['POST']
      )
    })

    it('returns Basic for a Basic challenge from its own origin', async () => {
      const a = auth({ credentials: CREDS })
      assert.equal(await a.authorize({ scheme: 'basic', params: {} }, server.origin, SCOPE), BASIC)
      assert.equal(a.cached(server.origin, SCOPE), BASIC)
      assert.equal(server.seen.length, 0)
    })
  })

  describe('when the challenge comes from an origin other than options.origin', () => {
    const foreign = (): string => server.localhostOrigin

    it('requests an anonymous token: no POST form and no Basic header', async () => {
      const a = auth({ credentials: CREDS, tokenRealmHosts: [`127.0.0.1:${server.port}`] })
      const header = await a.authorize(bearer(), foreign(), SCOPE)
      assert.equal(header, 'Bearer tok')
      assert.equal(server.seen.length, 1)
      assert.equal(server.seen[0]?.method, 'GET')
      assert.equal(server.seen[0]?.authorization, undefined)
      assert.doesNotMatch(server.seen[0]?.body ?? '', /password/)
    })

    it('throws UPSTREAM_DENIED for a Basic challenge, never giving the credentials', async () => {
      const a = auth({ credentials: CREDS })
      await assert.rejects(
        a.authorize({ scheme: 'basic', params: {} }, foreign(), SCOPE),
        isCode('UPSTREAM_DENIED')
      )
      assert.equal(a.cached(foreign(), SCOPE), undefined)
    })

    it('does not reuse the credentialed token of options.origin there', async () => {
      const a = auth({ credentials: CREDS, tokenRealmHosts: [`127.0.0.1:${server.port}`] })
      server.reset((req) => ({ json: { token: req.method === 'POST' ? 'mine' : 'anon' } }))
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer mine')
      assert.equal(await a.authorize(bearer(), foreign(), SCOPE), 'Bearer anon')
      assert.equal(a.cached(foreign(), SCOPE), 'Bearer anon')
      assert.equal(a.cached(server.origin, SCOPE), 'Bearer mine')
    })
  })

  describe('when the realm is not on the challenging host', () => {
    it('throws UPSTREAM_INVALID and never contacts the realm (another port)', async () => {
      await assert.rejects(
        auth({ credentials: CREDS }).authorize(
          bearer({ realm: `${other.origin}/token` }),
          server.origin,
          SCOPE
        ),
        isCode('UPSTREAM_INVALID')
      )
      assert.equal(other.seen.length, 0)
      assert.equal(server.seen.length, 0)
    })

    it('throws UPSTREAM_INVALID, never contacting the realm (another host name)', async () => {
      await assert.rejects(
        auth({ credentials: CREDS }).authorize(
          bearer({ realm: `${server.localhostOrigin}/token` }),
          server.origin,
          SCOPE
        ),
        isCode('UPSTREAM_INVALID')
      )
      assert.equal(server.seen.length, 0)
    })

    it('throws UPSTREAM_INVALID for a wildcard pattern that only shares a suffix', async () => {
      const a = auth({ tokenRealmHosts: ['*.0.0.1'] })
      await assert.rejects(
        a.authorize(bearer({ realm: `${other.origin}/token` }), server.localhostOrigin, SCOPE),
        isCode('UPSTREAM_INVALID')
      )
      assert.equal(other.seen.length, 0)
    })

    it('returns the token when tokenRealmHosts names the realm host', async () => {
      const a = auth({ tokenRealmHosts: [`127.0.0.1:${other.port}`] })
      other.reset(() => ({ json: { token: 'from-other' } }))
      assert.equal(
        await a.authorize(bearer({ realm: `${other.origin}/token` }), server.origin, SCOPE),
        'Bearer from-other'
      )
      assert.equal(other.seen.length, 1)
    })

    it('passes the realm check when a *. tokenRealmHosts pattern matches', async () => {
      // tok.localhost may or may not resolve here: either it is fetched or it is unreachable,
      // but it is never refused as a foreign realm.
      const attempts: Array<number | 'error'> = []
      const a = auth({
        tokenRealmHosts: [`*.localhost:${server.port}`],
        onTokenRequest: (s) => attempts.push(s),
      })
      const realm = `http://tok.localhost:${server.port}/token`
      try {
        assert.equal(await a.authorize(bearer({ realm }), server.origin, SCOPE), 'Bearer tok')
      } catch (err) {
        assert.ok(err instanceof CustomsError)
        assert.equal(err.code, 'UPSTREAM_UNAVAILABLE')
      }
      assert.equal(attempts.length, 1)
    })
  })

  describe('when the realm is missing or not an acceptable URL', () => {
    for (const realm of [
      undefined,
      '',
      'not a url',
      'ftp://127.0.0.1/token',
      'file:///etc/passwd',
    ]) {
      it(`throws UPSTREAM_INVALID for ${JSON.stringify(realm)}`, async () => {
        const params: Record<string, string> = realm === undefined ? {} : { realm }
        await assert.rejects(
          auth().authorize({ scheme: 'bearer', params }, server.origin, SCOPE),
          isCode('UPSTREAM_INVALID')
        )
        assert.equal(server.seen.length, 0)
      })
    }

    it('throws UPSTREAM_INVALID for an http realm challenged from an https origin', async () => {
      const origin = `https://127.0.0.1:${server.port}`
      await assert.rejects(
        auth({ origin }).authorize(bearer({ realm: `${server.origin}/token` }), origin, SCOPE),
        isCode('UPSTREAM_INVALID')
      )
      assert.equal(server.seen.length, 0)
    })
  })

  describe('when the token server refuses or fails', () => {
    const cases: Array<[number, ErrorCode]> = [
      [401, 'UPSTREAM_DENIED'],
      [403, 'UPSTREAM_DENIED'],
      [429, 'TOOMANYREQUESTS'],
      [500, 'UPSTREAM_UNAVAILABLE'],
      [503, 'UPSTREAM_UNAVAILABLE'],
    ]
    for (const [status, code] of cases) {
      it(`throws ${code} for ${status}`, async () => {
        server.reset(() => ({ status, text: 'nope' }))
        await assert.rejects(auth().authorize(bearer(), server.origin, SCOPE), isCode(code))
      })
    }

    it('does not follow a redirect from the token endpoint', async () => {
      server.reset(() => ({ status: 302, headers: { location: `${other.origin}/token` } }))
      await assert.rejects(
        auth().authorize(bearer(), server.origin, SCOPE),
        isCode('UPSTREAM_UNAVAILABLE')
      )
      assert.equal(other.seen.length, 0)
    })

    it('throws UPSTREAM_UNAVAILABLE and counts an error when nothing listens', async () => {
      const closed = new TokenServer()
      await closed.start()
      const realm = `${closed.origin}/token`
      const origin = closed.origin
      await closed.stop()
      const statuses: Array<number | 'error'> = []
      const a = auth({ origin, onTokenRequest: (s) => statuses.push(s) })
      await assert.rejects(
        a.authorize(bearer({ realm }), origin, SCOPE),
        isCode('UPSTREAM_UNAVAILABLE')
      )
      assert.deepEqual(statuses, ['error'])
    })

    it('does not cache a failure: the next call asks again', async () => {
      server.reset(() => ({ status: 500 }))
      const a = auth()
      await assert.rejects(
        a.authorize(bearer(), server.origin, SCOPE),
        isCode('UPSTREAM_UNAVAILABLE')
      )
      server.reset()
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer tok')
      assert.equal(server.seen.length, 1)
    })
  })

  describe('when the token response is unusable', () => {
    const bodies: Array<[string, Reply]> = [
      ['no token', { json: { expires_in: 300 } }],
      ['an empty token', { json: { token: '' } }],
      ['a non-string token', { json: { token: 42 } }],
      ['a token with a newline', { json: { token: 'a\r\nX-Injected: 1' } }],
      ['a token over 16 KiB', { json: { token: 'x'.repeat(16385) } }],
      ['a body that is not JSON', { text: 'token=abc' }],
      ['a JSON list', { json: [{ token: 't' }] }],
      ['a body over 64 KiB', { json: { token: 't', pad: 'x'.repeat(70 * 1024) } }],
    ]
    for (const [what, reply] of bodies) {
      it(`throws UPSTREAM_INVALID for ${what}`, async () => {
        server.reset(() => reply)
        await assert.rejects(
          auth().authorize(bearer(), server.origin, SCOPE),
          isCode('UPSTREAM_INVALID')
        )
      })
    }
  })

  describe('when a token was issued', () => {
    it('returns it from the cache until 10 s before it expires', async () => {
      server.reset(() => ({ json: { token: `t${server.seen.length}`, expires_in: 300 } }))
      const a = auth()
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer t1')
      clock += 289_999
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer t1')
      assert.equal(a.cached(server.origin, SCOPE), 'Bearer t1')
      assert.equal(server.seen.length, 1)
      clock += 1
      assert.equal(a.cached(server.origin, SCOPE), undefined)
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer t2')
      assert.equal(server.seen.length, 2)
    })

    it('assumes 60 s when expires_in is absent, zero or not a number', async () => {
      for (const expires of [undefined, 0, -5, '300']) {
        server.reset(() => ({ json: { token: `t${server.seen.length}`, expires_in: expires } }))
        const a = auth()
        await a.authorize(bearer(), server.origin, SCOPE)
        clock += 49_999
        assert.equal(a.cached(server.origin, SCOPE), 'Bearer t1', `expires_in ${String(expires)}`)
        clock += 1
        assert.equal(a.cached(server.origin, SCOPE), undefined, `expires_in ${String(expires)}`)
      }
    })

    it('counts the lifetime from issued_at when it is in the past', async () => {
      const issued = new Date(clock - 100_000).toISOString()
      server.reset(() => ({ json: { token: 't', expires_in: 300, issued_at: issued } }))
      const a = auth()
      await a.authorize(bearer(), server.origin, SCOPE)
      clock += 189_999
      assert.equal(a.cached(server.origin, SCOPE), 'Bearer t')
      clock += 1
      assert.equal(a.cached(server.origin, SCOPE), undefined)
    })

    it('ignores an issued_at in the future', async () => {
      const issued = new Date(clock + 3_600_000).toISOString()
      server.reset(() => ({ json: { token: 't', expires_in: 300, issued_at: issued } }))
      const a = auth()
      await a.authorize(bearer(), server.origin, SCOPE)
      clock += 290_000
      assert.equal(a.cached(server.origin, SCOPE), undefined)
    })

    it('asks again after invalidate', async () => {
      server.reset(() => ({ json: { token: `t${server.seen.length}`, expires_in: 300 } }))
      const a = auth()
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer t1')
      a.invalidate(server.origin, SCOPE)
      assert.equal(a.cached(server.origin, SCOPE), undefined)
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer t2')
    })

    it('keeps tokens for different scopes apart', async () => {
      server.reset((req) => ({ json: { token: req.query.get('scope') ?? '' } }))
      const a = auth()
      assert.equal(
        await a.authorize(bearer(), server.origin, 'repository:a:pull'),
        'Bearer repository:a:pull'
      )
      assert.equal(
        await a.authorize(bearer(), server.origin, 'repository:b:pull'),
        'Bearer repository:b:pull'
      )
      assert.equal(a.cached(server.origin, 'repository:a:pull'), 'Bearer repository:a:pull')
      assert.equal(server.seen.length, 2)
    })

    it('returns nothing from cached() for a scope never challenged', () => {
      assert.equal(auth().cached(server.origin, SCOPE), undefined)
    })
  })

  describe('when many requests for one scope authorize at once', () => {
    it('makes one token request and gives every caller its token', async () => {
      server.reset(() => ({ json: { token: 'shared' }, delayMs: 50 }))
      const a = auth({ credentials: CREDS })
      const headers = await Promise.all(
        Array.from({ length: 8 }, () => a.authorize(bearer(), server.origin, SCOPE))
      )
      assert.deepEqual(new Set(headers), new Set(['Bearer shared']))
      assert.equal(server.seen.length, 1)
    })

    it('shares one failure, then lets the next call try again', async () => {
      server.reset(() => ({ status: 401, delayMs: 50 }))
      const a = auth()
      const results = await Promise.allSettled(
        Array.from({ length: 4 }, () => a.authorize(bearer(), server.origin, SCOPE))
      )
      assert.ok(
        results.every((r) => r.status === 'rejected' && isCode('UPSTREAM_DENIED')(r.reason))
      )
      assert.equal(server.seen.length, 1)
      server.reset()
      assert.equal(await a.authorize(bearer(), server.origin, SCOPE), 'Bearer tok')
    })
  })
})
