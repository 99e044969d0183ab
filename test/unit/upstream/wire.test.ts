// The blob GET on a connection of its own (src/upstream/wire.ts), against real node:http, node:net
// and TLS servers on loopback: the three ways a body is framed, interim answers, heads split
// across reads, strict refusal of malformed heads and chunk framing, bodies cut short, aborts,
// backpressure, bytes that arrive before the body is started, and TLS with a test CA, resuming
// kept sessions only where they were earned.

import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer as createTlsServer, type ConnectionOptions, type Server as TlsServer, type TlsOptions } from 'node:tls'
import { after, describe, it } from 'node:test'
import type { BodyStream } from '../../../src/upstream/body.js'
import { TlsSessions } from '../../../src/upstream/tls-sessions.js'
import { getStreamed, parseHead, WireError, framing } from '../../../src/upstream/wire.js'

const servers: Server[] = []
after(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
})

async function listen(server: Server): Promise<URL> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/x/blobs/sha256:abc?q=1`)
}

function httpServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<URL> {
  return listen(createHttpServer(handler) as unknown as Server)
}

/** A server that writes `parts` to each connection as they are, then closes it. */
function rawServer(parts: ReadonlyArray<string | Buffer>, options: { end?: boolean } = {}): Promise<URL> {
  return listen(
    createNetServer((socket) => {
      socket.on('error', () => {})
      socket.once('data', async () => {
        for (const part of parts) {
          socket.write(part)
          await sleep(2)
        }
        if (options.end !== false) socket.end()
      })
    })
  )
}

interface Collected {
  bytes: Buffer
  error: Error | undefined
}

function collect(body: BodyStream | null): Promise<Collected> {
  assert.ok(body !== null)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    body.start({
      data: (view) => chunks.push(Buffer.from(view)),
      end: () => resolve({ bytes: Buffer.concat(chunks), error: undefined }),
      error: (error) => resolve({ bytes: Buffer.concat(chunks), error }),
    })
  })
}

/**
 * Reads a body with a sink that offers the rest of one growing buffer as the read target, as a
 * fill's segments do; counts the bytes that arrived in place.
 */
function collectInPlace(body: BodyStream | null, size: number): Promise<{ bytes: Buffer; inPlace: number }> {
  assert.ok(body !== null)
  const memory = Buffer.alloc(size + 1024 * 1024)
  let filled = 0
  let inPlace = 0
  let ended = false
  return new Promise((resolve, reject) => {
    body.start({
      target: () => {
        // A fill would take a segment for a read that never comes.
        if (ended) reject(new Error('the sink was asked for memory after the body ended'))
        return memory.subarray(filled)
      },
      data: (view) => {
        if (view.buffer === memory.buffer && view.byteOffset === memory.byteOffset + filled) inPlace += view.byteLength
        else memory.set(view, filled)
        filled += view.byteLength
      },
      end: () => {
        ended = true
        // A moment for the read callback that ended the body to return, and node to ask again.
        setImmediate(() => resolve({ bytes: memory.subarray(0, filled), inPlace }))
      },
      error: reject,
    })
  })
}

describe('getStreamed', () => {
  it('reads a Content-Length body and sends the request head it was given', async () => {
    const blob = randomBytes(3 * 1024 * 1024 + 17)
    let seen: IncomingMessage | undefined
    const url = await httpServer((req, res) => {
      seen = req
      res.writeHead(200, { 'Content-Length': blob.byteLength, 'Docker-Content-Digest': 'sha256:abc' })
      res.end(blob)
    })
    const res = await getStreamed(url, { headers: { Authorization: 'Bearer t', 'User-Agent': 'customs/test' } })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('docker-content-digest'), 'sha256:abc')
    const got = await collect(res.bodyStream())
    assert.equal(got.error, undefined)
    assert.ok(got.bytes.equals(blob))
    assert.equal(seen?.url, '/v2/x/blobs/sha256:abc?q=1')
    assert.equal(seen?.headers.host, url.host)
    assert.equal(seen?.headers.connection, 'close')
    assert.equal(seen?.headers.authorization, 'Bearer t')
    assert.equal(seen?.headers['user-agent'], 'customs/test')
  })

  it("reads a body into the sink's memory when it offers some, and only the body", async () => {
    const blob = randomBytes(2 * 1024 * 1024 + 5)
    const chunkedUrl = await httpServer((_req, res) => {
      res.writeHead(200)
      res.end(blob)
    })
    const lengthUrl = await httpServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': blob.byteLength })
      // Written in pieces, so that most reads happen after the body is started.
      const pieces = [blob.subarray(0, 100), blob.subarray(100, 1024 * 1024), blob.subarray(1024 * 1024)]
      void (async () => {
        for (const piece of pieces) {
          res.write(piece)
          await sleep(20)
        }
        res.end()
      })()
    })
    for (const [url, framed] of [[lengthUrl, 'length'], [chunkedUrl, 'chunked']] as const) {
      const { bytes, inPlace } = await collectInPlace((await getStreamed(url, { headers: {} })).bodyStream(), blob.byteLength)
      assert.deepEqual(bytes, blob, framed)
      if (framed === 'length') assert.ok(inPlace >= blob.byteLength - 1024 * 1024, `only ${inPlace} bytes were read in place`)
      // Chunk framing is interleaved with the body: never read into the sink's memory.
      else assert.equal(inPlace, 0)
    }
  })

  it('decodes a chunked body', async () => {
    const parts = [randomBytes(1), randomBytes(70_000), randomBytes(5), randomBytes(1_200_000)]
    const url = await httpServer(async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' })
      for (const part of parts) {
        res.write(part)
        await sleep(1)
      }
      res.end()
    })
    const res = await getStreamed(url, { headers: {} })
    assert.equal(res.headers.get('transfer-encoding'), 'chunked')
    const got = await collect(res.bodyStream())
    assert.equal(got.error, undefined)
    assert.ok(got.bytes.equals(Buffer.concat(parts)))
  })

  it('decodes chunk sizes, extensions and trailers split across reads', async () => {
    const url = await rawServer(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '4;ext=1\r', '\nab', 'cd\r\n', 'A\r\n0123456789', '\r\n0\r\nDigest: x\r', '\n', '\r\n'])
    const got = await collect((await getStreamed(url, { headers: {} })).bodyStream())
    assert.equal(got.error, undefined)
    assert.equal(got.bytes.toString(), 'abcd0123456789')
  })

  it('reads a body delimited by the connection closing', async () => {
    const url = await rawServer(['HTTP/1.1 200 OK\r\nServer: old\r\n\r\nhello ', 'world'])
    const got = await collect((await getStreamed(url, { headers: {} })).bodyStream())
    assert.equal(got.error, undefined)
    assert.equal(got.bytes.toString(), 'hello world')
  })

  it('parses a head that arrives a byte at a time, and skips an interim answer', async () => {
    const text = 'HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc'
    const url = await rawServer([...text])
    const res = await getStreamed(url, { headers: {} })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-a'), '1')
    assert.equal((await collect(res.bodyStream())).bytes.toString(), 'abc')
  })

  it('gives 204, 304 and a zero Content-Length an empty body', async () => {
    for (const [status, extra] of [[204, ''], [304, ''], [200, 'Content-Length: 0\r\n']] as const) {
      const url = await rawServer([`HTTP/1.1 ${status} X\r\n${extra}\r\n`], { end: false })
      const res = await getStreamed(url, { headers: {} })
      assert.equal(res.status, status)
      const got = await collect(res.bodyStream())
      assert.equal(got.error, undefined)
      assert.equal(got.bytes.byteLength, 0)
    }
  })

  it('answers a redirect or an error with its status and headers, and the body on demand', async () => {
    const url = await rawServer(['HTTP/1.1 307 Temporary Redirect\r\nLocation: https://cdn.example/b\r\nContent-Length: 5\r\n\r\nmoved'])
    const res = await getStreamed(url, { headers: {} })
    assert.equal(res.status, 307)
    assert.equal(res.headers.get('location'), 'https://cdn.example/b')
    await res.discard()
  })

  it('refuses malformed heads before any body is read', async () => {
    const heads = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\n\r\n',
      'ICY 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nNo-Colon\r\n\r\n',
      'HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n',
      'HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\n\r\n',
      `HTTP/1.1 200 OK\r\n${'X-Pad: '.padEnd(70 * 1024, 'a')}\r\n\r\n`,
    ]
    for (const head of heads) {
      const url = await rawServer([head])
      await assert.rejects(getStreamed(url, { headers: {} }), WireError, JSON.stringify(head.slice(0, 60)))
    }
  })

  it('takes repeated, equal Content-Length fields', async () => {
    const url = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok'])
    assert.equal((await collect((await getStreamed(url, { headers: {} })).bodyStream())).bytes.toString(), 'ok')
  })

  it('ends the body with an error on malformed chunk framing', async () => {
    const bodies = ['zz\r\nab\r\n0\r\n\r\n', '2\r\nabc\r\n0\r\n\r\n', '2\nab\r\n0\r\n\r\n', `${'1'.repeat(13)}\r\n`, `2;${'x'.repeat(5000)}\r\n`, '0\r\nBad Trailer\r\n\r\n']
    for (const body of bodies) {
      const url = await rawServer([`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${body}`])
      const got = await collect((await getStreamed(url, { headers: {} })).bodyStream())
      assert.ok(got.error instanceof WireError, `${JSON.stringify(body.slice(0, 30))}: ${String(got.error)}`)
    }
  })

  it('ends a body cut short with an error, never with its end', async () => {
    const short = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', 'x'.repeat(50)])
    const a = await collect((await getStreamed(short, { headers: {} })).bodyStream())
    assert.match(String(a.error), /50 bytes before the body's end/)
    assert.equal(a.bytes.byteLength, 50)
    const chunked = await rawServer(['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n'])
    const b = await collect((await getStreamed(chunked, { headers: {} })).bodyStream())
    assert.match(String(b.error), /before the body's last chunk/)
  })

  it('rejects when the connection is refused or closed before an answer', async () => {
    const closed = await listen(createNetServer((socket) => socket.destroy()))
    await assert.rejects(getStreamed(closed, { headers: {} }))
    const server = createNetServer()
    const dead = await listen(server)
    await new Promise((resolve) => server.close(resolve))
    servers.splice(servers.indexOf(server), 1)
    await assert.rejects(getStreamed(dead, { headers: {} }), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED')
  })

  it('refuses a header value that would split the request, before connecting', async () => {
    let connections = 0
    const url = await listen(createNetServer((socket) => (connections++, socket.destroy())))
    await assert.rejects(getStreamed(url, { headers: { Authorization: 'Bearer a\r\nX-Evil: 1' } }), /Invalid character/)
    assert.equal(connections, 0)
  })

  it('rejects on an abort before the head, and ends the body with an error on one after', async () => {
    const silent = await listen(createNetServer((socket) => socket.on('error', () => {})))
    const early = new AbortController()
    const pending = getStreamed(silent, { headers: {}, signal: early.signal })
    early.abort(new Error('gave up'))
    await assert.rejects(pending, /gave up/)

    const url = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'], { end: false })
    const late = new AbortController()
    const res = await getStreamed(url, { headers: {}, signal: late.signal })
    const got = collect(res.bodyStream())
    await sleep(20)
    late.abort(new Error('fill timed out'))
    assert.match(String((await got).error), /fill timed out/)
  })

  it('keeps what arrives before the body is started, and a failure too', async () => {
    const url = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab', 'cdef'])
    const res = await getStreamed(url, { headers: {} })
    await sleep(50)
    assert.equal((await collect(res.bodyStream())).bytes.toString(), 'abcdef')
    const cut = await rawServer(['HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab'])
    const res2 = await getStreamed(cut, { headers: {} })
    await sleep(50)
    const got = await collect(res2.bodyStream())
    assert.equal(got.bytes.toString(), 'ab')
    assert.ok(got.error !== undefined)
  })

  it('reads nothing more while paused, and everything after resume', async () => {
    const blob = randomBytes(32 * 1024 * 1024)
    const url = await httpServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': blob.byteLength })
      res.end(blob)
    })
    const body = (await getStreamed(url, { headers: {} })).bodyStream()
    assert.ok(body !== null)
    const chunks: Buffer[] = []
    let received = 0
    let paused = false
    const done = new Promise<Error | undefined>((resolve) => {
      body.start({
        data(view) {
          chunks.push(Buffer.from(view))
          received += view.byteLength
          if (!paused && received >= 1024 * 1024) {
            paused = true
            body.pause()
          }
        },
        end: () => resolve(undefined),
        error: resolve,
      })
    })
    await sleep(100)
    // One read (at most 1 MiB) may already be in hand when the pause comes.
    const whilePaused = received
    assert.ok(whilePaused < 3 * 1024 * 1024, `received ${whilePaused} bytes while paused`)
    await sleep(50)
    assert.equal(received, whilePaused)
    body.resume()
    assert.equal(await done, undefined)
    assert.ok(Buffer.concat(chunks).equals(blob))
  })

  it('hears nothing more after destroy, and closes the connection', async () => {
    let closed!: () => void
    const serverSawClose = new Promise<void>((resolve) => (closed = resolve))
    const url = await listen(
      createNetServer((socket: Socket) => {
        socket.on('error', () => {})
        socket.on('close', () => closed())
        socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc'))
      })
    )
    const body = (await getStreamed(url, { headers: {} })).bodyStream()
    assert.ok(body !== null)
    const calls: string[] = []
    body.start({ data: () => calls.push('data'), end: () => calls.push('end'), error: () => calls.push('error') })
    body.destroy()
    await serverSawClose
    await sleep(20)
    assert.ok(!calls.includes('end') && !calls.includes('error'), calls.join(','))
  })

  describe('over TLS', () => {
    const dir = mkdtempSync(join(tmpdir(), 'customs-wire-'))
    after(() => rmSync(dir, { recursive: true, force: true }))
    const key = join(dir, 'key.pem')
    const cert = join(dir, 'cert.pem')
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })

    async function tlsServer(blob: Buffer): Promise<URL> {
      const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (socket) => {
        socket.on('error', () => {})
        socket.once('data', () => socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.byteLength}\r\n\r\n`), blob])))
      })
      const url = await listen(server as unknown as Server)
      url.protocol = 'https:'
      return url
    }

    it('reads a body from a server the given CA vouches for', async () => {
      const blob = randomBytes(2 * 1024 * 1024 + 3)
      const url = await tlsServer(blob)
      const got = await collect((await getStreamed(url, { headers: {} }, { ca: readFileSync(cert) })).bodyStream())
      assert.equal(got.error, undefined)
      assert.ok(got.bytes.equals(blob))
    })

    it("reads the body into the sink's memory over TLS too", async () => {
      const blob = randomBytes(2 * 1024 * 1024 + 3)
      const url = await tlsServer(blob)
      const res = await getStreamed(url, { headers: {} }, { ca: readFileSync(cert) })
      const { bytes, inPlace } = await collectInPlace(res.bodyStream(), blob.byteLength)
      assert.ok(bytes.equals(blob))
      assert.ok(inPlace > 0, 'no byte was read in place')
    })

    it('refuses a server nobody vouches for', async () => {
      const url = await tlsServer(Buffer.from('x'))
      await assert.rejects(getStreamed(url, { headers: {} }), /self[- ]signed/i)
    })

    describe('when sessions are kept', () => {
      const otherKey = join(dir, 'other-key.pem')
      const otherCert = join(dir, 'other-cert.pem')
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', otherKey, '-out', otherCert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
      const blob = randomBytes(1024 * 1024 + 9)

      /** A TLS server that records, per connection, whether it resumed a session. */
      async function resumingServer(options: TlsOptions = {}): Promise<{ url: URL; server: TlsServer; reused: boolean[] }> {
        const reused: boolean[] = []
        const server = createTlsServer({ key: readFileSync(key), cert: readFileSync(cert), ...options }, (socket) => {
          reused.push(socket.isSessionReused())
          socket.on('error', () => {})
          socket.once('data', () => socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${blob.byteLength}\r\n\r\n`), blob])))
        })
        const url = await listen(server as unknown as Server)
        url.protocol = 'https:'
        return { url, server, reused }
      }

      async function fetchBlob(url: URL, sessions: TlsSessions, tls: ConnectionOptions = { ca: readFileSync(cert) }): Promise<void> {
        const got = await collect((await getStreamed(url, { headers: {}, sessions }, tls)).bodyStream())
        assert.equal(got.error, undefined)
        assert.ok(got.bytes.equals(blob))
      }

      it('resumes the session of the last connection to the same server', async () => {
        const { url, reused } = await resumingServer()
        const handshakes: boolean[] = []
        const sessions = new TlsSessions(4, (resumed) => handshakes.push(resumed))
        await fetchBlob(url, sessions)
        assert.equal(sessions.size, 1)
        await fetchBlob(url, sessions)
        await fetchBlob(url, sessions)
        assert.deepEqual(reused, [false, true, true])
        // What the client saw, as the handshake metric counts it.
        assert.deepEqual(handshakes, [false, true, true])
        assert.equal(sessions.size, 1)
      })

      it("offers no other port's, server name's or trust's session", async () => {
        const a = await resumingServer()
        // B would resume A's tickets if offered them: it decrypts them with the same keys.
        const b = await resumingServer({ ticketKeys: a.server.getTicketKeys() })
        const sessions = new TlsSessions(8)
        await fetchBlob(a.url, sessions)
        await fetchBlob(b.url, sessions)
        await fetchBlob(b.url, sessions)
        assert.deepEqual(b.reused, [false, true])
        // The same host and port as before, but verified under another name, then other CAs.
        await fetchBlob(a.url, sessions, { ca: readFileSync(cert), servername: 'localhost' })
        await fetchBlob(a.url, sessions, { ca: [readFileSync(cert), readFileSync(otherCert)] })
        assert.deepEqual(a.reused, [false, false, false])
        await fetchBlob(a.url, sessions)
        assert.deepEqual(a.reused, [false, false, false, true])
        assert.equal(sessions.size, 4)
      })

      it('still refuses a certificate nobody vouches for when a session for that address is kept', async () => {
        const { url, server, reused } = await resumingServer()
        const sessions = new TlsSessions(4)
        const tls = { ca: readFileSync(cert) }
        await fetchBlob(url, sessions, tls)
        const key = sessions.key(url.hostname, Number(url.port), tls)
        assert.ok(key !== undefined && sessions.get(key) !== undefined)
        // Another certificate (and with it, other ticket keys) at the same address.
        server.setSecureContext({ key: readFileSync(otherKey), cert: readFileSync(otherCert) })
        await assert.rejects(getStreamed(url, { headers: {}, sessions }, tls), /self[- ]signed/i)
        assert.equal(sessions.size, 0)
        assert.ok(!reused.includes(true))
        // Nor does a connection that lets an unauthorized server through keep its session.
        await fetchBlob(url, sessions, { ca: readFileSync(cert), rejectUnauthorized: false })
        assert.equal(sessions.size, 0)
      })
    })
  })
})

describe('parseHead and framing', () => {
  it('joins repeated fields and drops values Headers refuses', () => {
    const { status, headers } = parseHead('HTTP/1.0 404 Not Found\r\nA: 1\r\nA: 2\r\nB:\r\nC: \t x \t')
    assert.equal(status, 404)
    assert.equal(headers.get('a'), '1, 2')
    assert.equal(headers.get('b'), '')
    assert.equal(headers.get('c'), 'x')
  })

  it('frames by Transfer-Encoding, then Content-Length, then the close', () => {
    assert.deepEqual(framing(200, new Headers({ 'transfer-encoding': 'Chunked' })), { kind: 'chunked' })
    assert.deepEqual(framing(200, new Headers({ 'content-length': '12' })), { kind: 'length', remaining: 12 })
    assert.deepEqual(framing(200, new Headers()), { kind: 'close' })
    assert.deepEqual(framing(304, new Headers({ 'content-length': '12' })), { kind: 'none' })
  })
})
