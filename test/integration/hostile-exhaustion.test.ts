// Resource exhaustion: slow-loris clients, a thousand idle sockets, huge headers, a full connection
// table, and upstreams that send an endless or never-finishing manifest or blob. Each is bounded
// by a timeout or a size limit (listen.* here set short), nothing unverified is committed, and
// Customs keeps answering other clients meanwhile. Deadlines bound every wait; nothing asserts a
// duration.

import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { connect, type Socket } from 'node:net'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'

/**
 * Short limits, so that the server's own timeouts close what the tests hold open; idleTimeout
 * well above what a pull takes on a loaded machine, since it would cut a client waiting for one.
 */
const IDLE_MS = 4_000
const LIMITS = `
listen:
  headersTimeout: 1s
  requestTimeout: 2s
  keepAliveTimeout: 2s
  idleTimeout: ${IDLE_MS}ms
`

function config(upstreamUrl: string, listen = LIMITS, upstreamExtra = ''): string {
  return `${listen}
upstreams:
  - name: docker.io
    url: ${upstreamUrl}
    default: true
    timeout: 2s
    retries: { max: 0 }
${upstreamExtra}
`
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`)
    await sleep(50)
  }
}

interface Held {
  readonly socket: Socket
  closed: boolean
  received: string
}

/** Opens a raw TCP connection to Customs and records what comes back and when it is closed. */
function hold(customs: CustomsHandle, send?: string): Promise<Held> {
  const [host, port] = customs.host.split(':') as [string, string]
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), host)
    const held: Held = { socket, closed: false, received: '' }
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => {
      if (held.received.length < 4096) held.received += d
    })
    socket.on('error', () => {})
    socket.on('close', () => (held.closed = true))
    socket.once('connect', () => {
      if (send !== undefined) socket.write(send)
      resolve(held)
    })
    socket.once('error', reject)
  })
}

async function pull(customs: CustomsHandle, image: ReturnType<typeof ociImage>, repo = 'library/x', tag = 'v1'): Promise<void> {
  const m = await fetch(`${customs.url}/v2/${repo}/manifests/${tag}`, { headers: { accept: image.mediaType } })
  assert.equal(m.status, 200, await m.clone().text())
  assert.equal(sha256(Buffer.from(await m.arrayBuffer())), image.digest)
  for (const layer of image.layers) {
    const b = await fetch(`${customs.url}/v2/${repo}/blobs/${sha256(layer)}`)
    assert.equal(b.status, 200)
    assert.equal(sha256(Buffer.from(await b.arrayBuffer())), sha256(layer))
  }
}

function code(body: string): string {
  return (JSON.parse(body) as { errors: Array<{ code: string }> }).errors[0]?.code ?? ''
}

describe('hostile clients', () => {
  let upstream: FakeUpstream
  let customs: CustomsHandle
  const image = ociImage([Buffer.alloc(256 * 1024, 7)])

  before(async () => {
    upstream = await startFakeUpstream()
    putImage(upstream, 'library/x', image, 'v1')
    customs = await startCustoms({ config: config(upstream.url) })
  })

  after(async () => {
    await customs?.stop()
    await upstream?.close()
  })

  it('closes 1000 idle and 20 slow-loris connections after its timeouts, serving a pull meanwhile', async () => {
    const held: Held[] = []
    // In batches, so that the accept queue of a busy machine is not what is tested.
    for (let i = 0; i < 1000; i += 100) held.push(...(await Promise.all(Array.from({ length: 100 }, () => hold(customs)))))
    const loris = await Promise.all(Array.from({ length: 20 }, () => hold(customs, 'GET /v2/ HTTP/1.1\r\nHost: x\r\n')))
    const drip = setInterval(() => {
      for (const l of loris) if (!l.closed) l.socket.write(`X-Drip-${Math.random().toString(36).slice(2, 6)}: a\r\n`)
    }, 100)
    try {
      await pull(customs, image)
      assert.equal((await fetch(`${customs.url}/healthz`)).status, 200)
      // Every held connection is closed by the server, not by this test.
      await waitUntil('the server closes every idle connection', () => held.every((h) => h.closed))
      await waitUntil('the server closes every slow-loris connection', () => loris.every((l) => l.closed))
      for (const l of loris) assert.match(l.received, /^HTTP\/1\.1 408 /, 'a slow-loris client is told 408')
    } finally {
      clearInterval(drip)
      for (const h of [...held, ...loris]) h.socket.destroy()
    }
    await pull(customs, image)
  })

  it('closes the connection of a client that stops reading a blob, and keeps serving', async () => {
    const big = ociImage([Buffer.alloc(24 * 1024 * 1024, 9)])
    putImage(upstream, 'library/big', big, 'v1')
    assert.equal((await fetch(`${customs.url}/v2/library/big/manifests/v1`)).status, 200)
    const digest = sha256(big.layers[0] as Buffer)
    const reader = await hold(customs, `GET /v2/library/big/blobs/${digest} HTTP/1.1\r\nHost: x\r\n\r\n`)
    let bytes = 0
    reader.socket.on('data', (d: string) => (bytes += d.length))
    // Read nothing after the first bytes, from that very read on: polling for them first let a
    // fast fill deliver all 24 MiB before the pause, and there was then nothing left to stall.
    reader.socket.once('data', () => reader.socket.pause())
    try {
      await waitUntil('the first bytes of the answer', () => reader.received.length > 0)
      assert.match(reader.received, /^HTTP\/1\.1 200 /)
      // Read nothing for several idle timeouts: the server's writes stall on the full socket and
      // it closes the connection. A paused socket cannot see that, so read again afterwards: the
      // stream ends short of the blob.
      await sleep(3 * IDLE_MS)
      reader.socket.resume()
      await waitUntil('the connection ends', () => reader.closed)
      assert.ok(bytes < big.layers[0]!.byteLength, `received ${bytes} bytes, the whole blob`)
    } finally {
      reader.socket.destroy()
    }
    await pull(customs, image)
  })

  it('closes a connection that sent part of a request line and then nothing', async () => {
    const partial = await hold(customs, 'G')
    try {
      await waitUntil('the server closes the connection', () => partial.closed)
    } finally {
      partial.socket.destroy()
    }
  })

  it('answers 431 to headers over listen.maxHeaderSize, and keeps serving', async () => {
    const huge = await hold(customs, `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`)
    try {
      await waitUntil('an answer', () => huge.received.length > 0 || huge.closed)
      assert.match(huge.received, /^HTTP\/1\.1 431 /)
    } finally {
      huge.socket.destroy()
    }
    const many = await hold(customs, `GET /v2/ HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: y\r\n`).join('')}\r\n`)
    try {
      await waitUntil('an answer', () => many.received.length > 0 || many.closed)
      assert.match(many.received, /^HTTP\/1\.1 431 /)
    } finally {
      many.socket.destroy()
    }
    await pull(customs, image)
  })

  it('answers 408 to a request body sent slower than requestTimeout (admin API)', async () => {
    const slow = await hold(customs, 'POST /admin/v1/quarantine HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{')
    const drip = setInterval(() => !slow.closed && slow.socket.write(' '), 100)
    try {
      await waitUntil('the server ends the request', () => slow.closed)
      assert.match(slow.received, /^HTTP\/1\.1 (408|4\d\d) /)
    } finally {
      clearInterval(drip)
      slow.socket.destroy()
    }
  })
})

describe('a full connection table', () => {
  it('refuses connections past listen.maxConnections, and serves again once idle ones are closed', async () => {
    const upstream = await startFakeUpstream()
    const image = ociImage([Buffer.from('cap')])
    putImage(upstream, 'library/x', image, 'v1')
    const customs = await startCustoms({ config: config(upstream.url, `${LIMITS}  maxConnections: 20\n`) })
    const held: Held[] = []
    try {
      for (let i = 0; i < 20; i++) held.push(await hold(customs))
      const extra = await hold(customs)
      await waitUntil('the connection past the cap is closed', () => extra.closed)
      assert.equal(extra.received, '', 'a refused connection gets no answer')
      await waitUntil('the idle connections are closed', () => held.every((h) => h.closed))
      await pull(customs, image)
    } finally {
      for (const h of held) h.socket.destroy()
      await customs.stop()
      await upstream.close()
    }
  })
})

/** The test's own bound on an "endless" answer: far past every limit Customs applies. */
const ENDLESS_CAP = 512 * 1024 * 1024

/** Writes to `res` as fast as the socket takes it, without end (up to ENDLESS_CAP); counts it. */
function endless(res: ServerResponse, type: string, stats: { written: number; closed: boolean }, chunk = Buffer.alloc(64 * 1024, 0x20)): void {
  res.writeHead(200, { 'Content-Type': type })
  res.on('close', () => (stats.closed = true))
  const pump = (): void => {
    if (res.destroyed || res.writableEnded) return
    if (stats.written >= ENDLESS_CAP) return void res.end()
    stats.written += chunk.byteLength
    if (res.write(chunk)) setImmediate(pump)
    else res.once('drain', pump)
  }
  pump()
}

describe('an upstream that never stops', () => {
  let upstream: FakeUpstream
  let customs: CustomsHandle
  const good = ociImage([Buffer.alloc(64 * 1024, 1)])

  beforeEach(async () => {
    upstream = await startFakeUpstream()
    putImage(upstream, 'library/good', good, 'v1')
    // idleTimeout above the upstream timeout: a client waiting on a slow upstream is not idle.
    customs = await startCustoms({ config: config(upstream.url, LIMITS.replace(`idleTimeout: ${IDLE_MS}ms`, 'idleTimeout: 10s')) })
  })

  afterEach(async () => {
    await customs?.stop()
    await upstream?.close()
  })

  async function cacheFiles(): Promise<string[]> {
    const out: string[] = []
    for (const sub of ['blobs', 'tmp']) {
      const walk = async (dir: string): Promise<void> => {
        for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
          if (e.isDirectory()) await walk(join(dir, e.name))
          else out.push(join(dir, e.name))
        }
      }
      await walk(join(customs.storage, sub))
    }
    return out
  }

  it('refuses an endless manifest at the 4 MiB limit with an OCI error, reading no further', async () => {
    const stats = { written: 0, closed: false }
    upstream.intercept = (req, res, path) => {
      if (!path.includes('/library/endless/manifests/')) return false
      if (req.method === 'HEAD') {
        // No digest on HEAD: Customs must GET the manifest by tag.
        res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' })
        res.end()
        return true
      }
      endless(res, 'application/vnd.oci.image.manifest.v1+json', stats)
      return true
    }
    const [endlessRes] = await Promise.all([fetch(`${customs.url}/v2/library/endless/manifests/v1`), pull(customs, good, 'library/good')])
    const body = await endlessRes.text()
    assert.equal(endlessRes.status, 502, body)
    assert.equal(code(body), 'UNKNOWN')
    assert.match(body, /more than the 4194304-byte limit/)
    await waitUntil('the upstream connection is closed', () => stats.closed)
    // What the upstream got into the socket before it was closed: the limit plus socket buffers.
    assert.ok(stats.written < 4 * 1024 * 1024 + 32 * 1024 * 1024, `upstream wrote ${stats.written} bytes`)
    assert.ok(!JSON.stringify(await cacheFiles()).includes('endless'))
  })

  it('fails a manifest the upstream trickles forever after the upstream timeout', async () => {
    let closed = false
    upstream.intercept = (_req, res, path) => {
      if (!path.includes('/library/trickle/manifests/')) return false
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' })
      const timer = setInterval(() => res.write(' '), 100)
      res.on('close', () => {
        clearInterval(timer)
        closed = true
      })
      return true
    }
    const [res] = await Promise.all([fetch(`${customs.url}/v2/library/trickle/manifests/v1`), pull(customs, good, 'library/good')])
    assert.ok(res.status === 502 || res.status === 503, `status ${res.status}`)
    assert.ok(['UNKNOWN', 'UNAVAILABLE'].includes(code(await res.text())))
    await waitUntil('the upstream connection is closed', () => closed)
  })

  it('cuts an endless blob after its declared size, commits nothing, and closes the upstream connection', async () => {
    const layer = Buffer.alloc(1024 * 1024, 2)
    const image = ociImage([layer])
    putImage(upstream, 'library/blob', image, 'v1')
    const digest = sha256(layer)
    const stats = { written: 0, closed: false }
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/blobs/${digest}`)) return false
      // No Content-Length: the size is only known from the manifest.
      endless(res, 'application/octet-stream', stats, layer.subarray(0, 64 * 1024))
      return true
    }
    assert.equal((await fetch(`${customs.url}/v2/library/blob/manifests/v1`)).status, 200)
    const [res] = await Promise.all([fetch(`${customs.url}/v2/library/blob/blobs/${digest}`), pull(customs, good, 'library/good')])
    let received = 0
    let cut = false
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) received += chunk.byteLength
    } catch {
      cut = true
    }
    assert.ok(res.status !== 200 || cut || received < layer.byteLength, 'the client must not receive a whole blob')
    await waitUntil('the upstream connection is closed', () => stats.closed)
    assert.ok(stats.written < layer.byteLength + 32 * 1024 * 1024, `upstream wrote ${stats.written} bytes`)
    const files = await cacheFiles()
    assert.ok(!files.some((f) => f.includes(digest.slice(7))), `a file for the blob remains: ${files.join(', ')}`)
    assert.ok(!files.some((f) => f.includes(`${join('tmp', '')}`) && f.endsWith('.part')), 'a partial file remains')
    // The gate is still open for the cleared image: a later, honest answer is served.
    upstream.intercept = undefined
    const again = await fetch(`${customs.url}/v2/library/blob/blobs/${digest}`)
    assert.equal(again.status, 200)
    assert.equal(sha256(Buffer.from(await again.arrayBuffer())), digest)
  })
})
