// Faults a real registry will not produce, from an in-process fake upstream: lies, resets, slow
// drips, hostile challenges and redirects, oversized and malformed manifests. Each gets an OCI
// error or a clean abort; nothing unverified is ever committed to the cache.

import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { dripBlob, ociImage, putImage, send, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'

let upstream: FakeUpstream
let customs: CustomsHandle

async function start(extra = ''): Promise<void> {
  customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url, extra) })
}

beforeEach(async () => {
  upstream = await startFakeUpstream()
})

afterEach(async () => {
  await customs?.stop()
  await upstream.close()
})

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer; headers: Headers; error?: unknown }> {
  const res = await fetch(`${customs.url}${path}`, { headers })
  try {
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()), headers: res.headers }
  } catch (error) {
    return { status: res.status, body: Buffer.alloc(0), headers: res.headers, error }
  }
}

function code(body: Buffer): string {
  return (JSON.parse(body.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code ?? ''
}

/** Every file under the cache's blobs/ folder must hash to its own name. */
async function assertCacheConsistent(): Promise<number> {
  let files = 0
  const root = join(customs.storage, 'blobs', 'sha256')
  const { readFile } = await import('node:fs/promises')
  for (const prefix of await readdir(root).catch(() => [] as string[])) {
    for (const hex of await readdir(join(root, prefix))) {
      const bytes = await readFile(join(root, prefix, hex))
      assert.equal(sha256(bytes), `sha256:${hex}`, 'a cached file does not match its name')
      files++
    }
  }
  return files
}

async function cachedBlob(digest: string): Promise<boolean> {
  const hex = digest.slice(7)
  return (await readdir(join(customs.storage, 'blobs', 'sha256', hex.slice(0, 2))).catch(() => [] as string[])).includes(hex)
}

/**
 * Whether the blob is committed within a few seconds: a client's last byte goes out once the
 * bytes are verified, and the commit to the cache (datasync, rename) follows on its own.
 */
async function committedSoon(digest: string, withinMs = 5000): Promise<boolean> {
  const deadline = Date.now() + withinMs
  while (!(await cachedBlob(digest)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  return cachedBlob(digest)
}

describe('when the upstream lies about a blob', () => {
  it('aborts the response before its last byte and caches nothing', async () => {
    const layer = Buffer.alloc(2 * 1024 * 1024, 1)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/blobs/${digest}`)) return false
      const lie = Buffer.from(layer)
      lie[lie.length - 1] = 2
      send(res, 200, lie, 'application/octet-stream')
      return true
    }
    await start()
    assert.equal((await get('/v2/library/x/manifests/v1')).status, 200)
    const res = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(res.status, 200)
    assert.ok(res.error !== undefined || res.body.byteLength < layer.byteLength, 'the client must not receive the whole body')
    assert.equal(await cachedBlob(digest), false)
    await assertCacheConsistent()
  })
})

describe('when the upstream resets mid-blob', () => {
  it('aborts the response, commits nothing, and the next pull succeeds', async () => {
    const layer = Buffer.alloc(3 * 1024 * 1024, 3)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    let resets = 1
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/blobs/${digest}`) || resets-- <= 0) return false
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(layer.byteLength) })
      res.write(layer.subarray(0, 1024 * 1024), () => res.destroy())
      return true
    }
    await start()
    await get('/v2/library/x/manifests/v1')
    const first = await get(`/v2/library/x/blobs/${digest}`)
    assert.ok(first.error !== undefined || first.body.byteLength < layer.byteLength)
    assert.equal(await cachedBlob(digest), false)
    const second = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(second.status, 200)
    assert.equal(sha256(second.body), digest)
    assert.equal(await committedSoon(digest), true)
  })
})

describe('when the upstream sends more bytes than the manifest declared', () => {
  it('refuses before streaming and caches nothing', async () => {
    const layer = Buffer.alloc(4096, 5)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/blobs/${digest}`)) return false
      send(res, 200, Buffer.concat([layer, Buffer.from('extra')]), 'application/octet-stream')
      return true
    }
    await start()
    await get('/v2/library/x/manifests/v1')
    const res = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(res.status, 502)
    assert.equal(code(res.body), 'UNKNOWN')
    assert.equal(await cachedBlob(digest), false)
  })
})

describe('when a client disconnects mid-blob', () => {
  it('the fill completes and is committed', async () => {
    const layer = Buffer.alloc(8 * 1024 * 1024, 9)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    // Drip the blob so that the client is gone long before the end.
    upstream.intercept = dripBlob(digest, layer, 512 * 1024, 20)
    await start()
    await get('/v2/library/x/manifests/v1')
    const controller = new AbortController()
    const res = await fetch(`${customs.url}/v2/library/x/blobs/${digest}`, { signal: controller.signal })
    const reader = res.body!.getReader()
    await reader.read()
    controller.abort()
    assert.equal(await committedSoon(digest, 15_000), true)
    assert.equal(upstream.count((r) => r.path.includes(`/blobs/${digest}`)), 1)
    await assertCacheConsistent()
  })
})

describe('when 20 clients ask for one uncached blob at once', () => {
  it('fetches it from the upstream once and all 20 get the right bytes', async () => {
    const layer = Buffer.alloc(6 * 1024 * 1024)
    for (let i = 0; i < layer.length; i += 4) layer.writeUInt32LE((i * 2654435761) >>> 0, i)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    await start()
    await get('/v2/library/x/manifests/v1')
    const results = await Promise.all(Array.from({ length: 20 }, () => get(`/v2/library/x/blobs/${digest}`)))
    for (const r of results) {
      assert.equal(r.status, 200)
      assert.equal(sha256(r.body), digest)
    }
    assert.equal(upstream.count((r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`)), 1)
  })
})

describe('manifests the upstream gets wrong', () => {
  const cases: Array<[string, Buffer, string]> = [
    ['not JSON', Buffer.from('<html>nope</html>'), 'application/vnd.oci.image.manifest.v1+json'],
    ['over 4 MiB', Buffer.alloc(4 * 1024 * 1024 + 1, 0x20), 'application/vnd.oci.image.manifest.v1+json'],
    ['schema 1', Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'v1' })), 'application/vnd.docker.distribution.manifest.v1+prettyjws'],
    ['a type that disagrees with its body', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })), 'application/vnd.oci.image.manifest.v1+json'],
  ]
  for (const [what, bytes, type] of cases) {
    it(`refuses a manifest that is ${what}, with an OCI error`, async () => {
      upstream.putManifest('library/x', bytes, type, 'v1')
      await start()
      const res = await get('/v2/library/x/manifests/v1')
      assert.ok(res.status >= 400 && res.status < 600, `status ${res.status}`)
      assert.ok(['MANIFEST_INVALID', 'UNKNOWN'].includes(code(res.body)), code(res.body))
      assert.equal(await cachedBlob(sha256(bytes)), false)
    })
  }

  it('refuses manifest bytes whose digest is not the one asked for', async () => {
    const image = ociImage([Buffer.from('a')])
    putImage(upstream, 'library/x', image, 'v1')
    const other = ociImage([Buffer.from('b')])
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/manifests/${image.digest}`)) return false
      res.setHeader('Docker-Content-Digest', image.digest)
      send(res, 200, other.manifest, other.mediaType)
      return true
    }
    await start()
    const res = await get(`/v2/library/x/manifests/${image.digest}`)
    assert.equal(res.status, 502)
    assert.equal(await cachedBlob(image.digest), false)
    assert.equal(await cachedBlob(other.digest), false)
  })
})

describe('auth the upstream gets wrong', () => {
  it('answers a 401 loop with an error after one token round, not a loop', async () => {
    upstream.intercept = (req, res, path) => {
      if (path.startsWith('/token')) {
        send(res, 200, JSON.stringify({ token: 't', expires_in: 300 }), 'application/json')
        return true
      }
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${upstream.url}/token",service="x"`, 'Content-Length': '0' })
      res.end()
      return true
    }
    await start()
    const res = await get('/v2/library/x/manifests/v1')
    assert.equal(res.status, 404)
    assert.equal(code(res.body), 'NAME_UNKNOWN')
    assert.ok(upstream.count((r) => r.path.includes('/manifests/')) <= 4)
    assert.ok(upstream.count((r) => r.path.startsWith('/token')) <= 2)
  })

  it('refuses a token realm on a foreign host and never calls it', async () => {
    let foreignCalls = 0
    const foreign: Server = createServer((_req, res) => {
      foreignCalls++
      send(res, 200, JSON.stringify({ token: 'stolen' }), 'application/json')
    })
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.2', () => r()))
    const port = (foreign.address() as AddressInfo).port
    upstream.intercept = (_req, res) => {
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="http://127.0.0.2:${port}/token",service="x"`, 'Content-Length': '0' })
      res.end()
      return true
    }
    try {
      await start()
      const res = await get('/v2/library/x/manifests/v1')
      assert.equal(res.status, 502)
      assert.equal(foreignCalls, 0)
    } finally {
      foreign.close()
    }
  })

  // A small blob goes through node's client, a large one on a connection of its own (wire.ts):
  // both follow the redirect through the same client logic, which this checks on each path.
  for (const [what, size] of [['a small blob', 1000], ['a large blob', 2 * 1024 * 1024 + 5]] as const) {
    it(`sends configured credentials only to the upstream, never to a blob CDN it redirects to (${what})`, async () => {
      const layer = Buffer.alloc(size, 4)
      const image = ociImage([layer])
      putImage(upstream, `library/x${size}`, image, 'v1')
      const digest = sha256(layer)
      const cdnAuth: Array<string | undefined> = []
      const cdnConnection: Array<string | undefined> = []
      const cdn: Server = createServer((req, res) => {
        cdnAuth.push(req.headers.authorization)
        cdnConnection.push(req.headers.connection)
        send(res, 200, layer, 'application/octet-stream')
      })
      await new Promise<void>((r) => cdn.listen(0, '127.0.0.1', () => r()))
      const cdnUrl = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`
      upstream.intercept = (req, res, path) => {
        if (path.startsWith('/token')) {
          send(res, 200, JSON.stringify({ token: 'secret-token' }), 'application/json')
          return true
        }
        if (req.headers.authorization !== 'Bearer secret-token') {
          res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${upstream.url}/token",service="x"`, 'Content-Length': '0' })
          res.end()
          return true
        }
        if (path.includes(`/blobs/${digest}`)) {
          res.writeHead(307, { Location: `${cdnUrl}/data/${digest}?sig=1`, 'Content-Length': '0' })
          res.end()
          return true
        }
        return false
      }
      try {
        await start('credentials: { username: bot, password: hunter2 }')
        assert.equal((await get(`/v2/library/x${size}/manifests/v1`)).status, 200)
        const res = await get(`/v2/library/x${size}/blobs/${digest}`)
        assert.equal(res.status, 200)
        assert.equal(sha256(res.body), digest)
        assert.deepEqual(cdnAuth, [undefined])
        // The large blob came over a connection of its own (wire.ts), the small one kept alive.
        assert.deepEqual(cdnConnection, [size >= 1024 * 1024 ? 'close' : 'keep-alive'])
        const tokenCalls = upstream.requests.filter((r) => r.path.startsWith('/token'))
        assert.ok(tokenCalls.length >= 1)
        assert.ok(!JSON.stringify(customs.logs).includes('hunter2'), 'the password must not be logged')
        assert.ok(!JSON.stringify(customs.logs).includes('secret-token'), 'the token must not be logged')
      } finally {
        cdn.close()
      }
    })
  }

  it('refuses a redirect to a non-http scheme', async () => {
    const layer = Buffer.alloc(10, 4)
    putImage(upstream, 'library/x', ociImage([layer]), 'v1')
    upstream.intercept = (_req, res, path) => {
      if (!path.includes('/blobs/')) return false
      res.writeHead(302, { Location: 'file:///etc/passwd', 'Content-Length': '0' })
      res.end()
      return true
    }
    await start()
    await get('/v2/library/x/manifests/v1')
    const res = await get(`/v2/library/x/blobs/${sha256(layer)}`)
    assert.equal(res.status, 502)
  })
})

describe('when the upstream is down or rate-limiting', () => {
  it('serves the last cleared tag mapping, says it is stale, and answers unknown tags with 503', async () => {
    const image = ociImage([Buffer.from('layer')])
    putImage(upstream, 'library/x', image, 'v1')
    await start('tagTtl: 0s')
    assert.equal((await get('/v2/library/x/manifests/v1')).status, 200)
    upstream.intercept = (_req, res) => {
      send(res, 503, 'down', 'text/plain')
      return true
    }
    const stale = await get('/v2/library/x/manifests/v1')
    assert.equal(stale.status, 200)
    assert.equal(stale.headers.get('docker-content-digest'), image.digest)
    assert.match(stale.headers.get('customs-stale') ?? '', /UPSTREAM_UNAVAILABLE/)
    const unknown = await get('/v2/library/x/manifests/never-seen')
    assert.equal(unknown.status, 503)
    assert.equal(code(unknown.body), 'UNAVAILABLE')
  })

  it('passes 429 on as TOOMANYREQUESTS with Retry-After for content it never saw', async () => {
    upstream.intercept = (_req, res) => {
      res.writeHead(429, { 'Retry-After': '3600', 'Content-Type': 'text/plain' })
      res.end('You have reached your pull rate limit.')
      return true
    }
    await start()
    const res = await get('/v2/library/x/manifests/v1')
    assert.equal(res.status, 429)
    assert.equal(code(res.body), 'TOOMANYREQUESTS')
    assert.equal(res.headers.get('retry-after'), '3600')
    // A Retry-After beyond the backoff cap is not retried.
    assert.equal(upstream.count((r) => r.path.includes('/manifests/')), 1)
  })

  it('opens the circuit after repeated failures and stops calling the upstream', async () => {
    upstream.intercept = (_req, res) => {
      send(res, 500, 'boom', 'text/plain')
      return true
    }
    await start('breaker: { failures: 2, cooldown: 1m }')
    for (let i = 0; i < 5; i++) await get(`/v2/library/x/manifests/t${i}`)
    const calls = upstream.requests.length
    const res = await get('/v2/library/x/manifests/later')
    assert.equal(res.status, 503)
    assert.ok(res.headers.get('retry-after') !== null)
    assert.equal(upstream.requests.length, calls, 'an open circuit sends nothing upstream')
  })
})

describe('when the upstream hangs', () => {
  it('serves the cleared tag mapping as stale and answers never-seen content with 503, within the timeout', async () => {
    const image = ociImage([Buffer.from('hang')])
    putImage(upstream, 'library/x', image, 'v1')
    customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url, 'tagTtl: 0s').replace('timeout: 5s', 'timeout: 500ms') })
    assert.equal((await get('/v2/library/x/manifests/v1')).status, 200)
    // Accept the request and never answer: only Customs' own timeout ends it.
    upstream.intercept = () => true
    const stale = await get('/v2/library/x/manifests/v1')
    assert.equal(stale.status, 200)
    assert.equal(stale.headers.get('docker-content-digest'), image.digest)
    assert.ok(stale.headers.get('customs-stale') !== null)
    const unknown = await get('/v2/library/x/manifests/never-seen')
    assert.equal(unknown.status, 503)
    assert.equal(code(unknown.body), 'UNAVAILABLE')
  })
})

describe('while the circuit is open', () => {
  it('serves cleared manifests and cached blobs marked stale, then closes once the upstream heals', async () => {
    const layer = Buffer.alloc(64 * 1024, 7)
    const image = ociImage([layer])
    putImage(upstream, 'library/x', image, 'v1')
    const digest = sha256(layer)
    await start('breaker: { failures: 2, cooldown: 1s }')
    assert.equal((await get('/v2/library/x/manifests/v1')).status, 200)
    const warm = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(warm.status, 200)
    assert.equal(warm.headers.get('customs-stale'), null, 'a healthy upstream is not stale')
    let failing = true
    upstream.intercept = (_req, res) => {
      if (!failing) return false
      send(res, 502, 'bad gateway', 'text/plain')
      return true
    }
    for (let i = 0; i < 3; i++) assert.equal((await get(`/v2/library/x/manifests/gone${i}`)).status, 503)
    const calls = upstream.requests.length
    const byDigest = await get(`/v2/library/x/manifests/${image.digest}`)
    assert.equal(byDigest.status, 200)
    assert.match(byDigest.headers.get('customs-stale') ?? '', /upstream unavailable/)
    const blob = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(blob.status, 200)
    assert.equal(sha256(blob.body), digest)
    assert.match(blob.headers.get('customs-stale') ?? '', /upstream unavailable/)
    const byTag = await get('/v2/library/x/manifests/v1')
    assert.equal(byTag.status, 200)
    assert.ok(byTag.headers.get('customs-stale') !== null)
    assert.equal(upstream.requests.length, calls, 'cached content is served without calling a failing upstream')
    // The upstream heals; after the cooldown one probe goes through and closes the circuit.
    failing = false
    const deadline = Date.now() + 10_000
    let healed = await get('/v2/library/x/manifests/v2')
    while (healed.status !== 404 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
      healed = await get('/v2/library/x/manifests/v2')
    }
    assert.equal(healed.status, 404, 'a never-seen tag is answered by the healed upstream')
    const fresh = await get(`/v2/library/x/blobs/${digest}`)
    assert.equal(fresh.status, 200)
    assert.equal(fresh.headers.get('customs-stale'), null, 'a closed circuit is not stale')
    const metrics = await (await fetch(`${customs.url}/metrics`)).text()
    assert.match(metrics, /customs_upstream_circuit_open\{upstream="docker.io"\} 0/)
  })

  it('does not storm the upstream: 100 concurrent pulls of 5 unknown tags make a bounded number of requests', async () => {
    upstream.intercept = (_req, res) => {
      send(res, 503, 'down', 'text/plain')
      return true
    }
    await start('breaker: { failures: 3, cooldown: 1m }')
    const pulls = Array.from({ length: 100 }, (_, i) => get(`/v2/library/x/manifests/t${i % 5}`))
    for (const res of await Promise.all(pulls)) {
      assert.equal(res.status, 503)
      assert.equal(code(res.body), 'UNAVAILABLE')
    }
    // At most one resolution per tag at a time (single flight), each tried retries.max + 1 = 2
    // times, and new ones only until the third failure opens the circuit: a handful, where one
    // request and one retry per pull would be 200.
    const calls = upstream.requests.length
    assert.ok(calls <= 20, `${calls} upstream requests for 100 pulls: ${upstream.requests.map((r) => `${r.method} ${r.path}`).join(', ')}`)
    for (const res of await Promise.all(Array.from({ length: 50 }, (_, i) => get(`/v2/library/x/manifests/u${i}`)))) {
      assert.equal(res.status, 503)
      assert.ok(res.headers.get('retry-after') !== null)
    }
    assert.equal(upstream.requests.length, calls, 'an open circuit sends nothing upstream')
  })
})

describe('when a tag moves upstream', () => {
  it('inspects the new digest, serves it, and records the move', async () => {
    const one = ociImage([Buffer.from('one')])
    const two = ociImage([Buffer.from('two')])
    putImage(upstream, 'library/x', one, 'v1')
    await start('tagTtl: 0s')
    assert.equal((await get('/v2/library/x/manifests/v1')).headers.get('docker-content-digest'), one.digest)
    putImage(upstream, 'library/x', two, 'v1')
    assert.equal((await get('/v2/library/x/manifests/v1')).headers.get('docker-content-digest'), two.digest)
    const history = await customs.services.state.tagHistory({ upstream: 'docker.io', repository: 'library/x' }, 'v1', 10)
    assert.deepEqual(history.map((m) => [m.from, m.to]), [[one.digest, two.digest], [null, one.digest]])
  })

  it('revalidates with HEAD, not GET, when the mapping is unchanged', async () => {
    const one = ociImage([Buffer.from('one')])
    putImage(upstream, 'library/x', one, 'v1')
    await start('tagTtl: 0s')
    await get('/v2/library/x/manifests/v1')
    const gets = upstream.count((r) => r.method === 'GET' && r.path.includes('/manifests/'))
    await get('/v2/library/x/manifests/v1')
    await get('/v2/library/x/manifests/v1')
    assert.equal(upstream.count((r) => r.method === 'GET' && r.path.includes('/manifests/')), gets)
    assert.ok(upstream.count((r) => r.method === 'HEAD' && r.path.includes('/manifests/')) >= 3)
  })
})

describe('an upstream with Basic auth', () => {
  function basicOnly(): void {
    upstream.intercept = (req, res) => {
      if (req.headers.authorization === `Basic ${Buffer.from('bot:pw').toString('base64')}`) return false
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="registry"', 'Content-Length': '0' })
      res.end()
      return true
    }
  }

  it('pulls with the configured credentials', async () => {
    putImage(upstream, 'library/x', ociImage([Buffer.from('basic')]), 'v1')
    basicOnly()
    await start('credentials: { username: bot, password: pw }')
    assert.equal((await get('/v2/library/x/manifests/v1')).status, 200)
  })

  it('answers NAME_UNKNOWN without credentials, never UNAUTHORIZED (which would make Docker prompt)', async () => {
    basicOnly()
    await start()
    const res = await get('/v2/library/x/manifests/v1')
    assert.equal(res.status, 404)
    assert.equal(code(res.body), 'NAME_UNKNOWN')
  })
})

describe('Docker Hub rate-limit headers', () => {
  it('are exported as a metric', async () => {
    putImage(upstream, 'library/x', ociImage([Buffer.from('rl')]), 'v1')
    upstream.intercept = (_req, res) => {
      res.setHeader('ratelimit-limit', '100;w=21600')
      res.setHeader('ratelimit-remaining', '42;w=21600')
      return false
    }
    await start()
    await get('/v2/library/x/manifests/v1')
    const metrics = await (await fetch(`${customs.url}/metrics`)).text()
    assert.match(metrics, /customs_upstream_ratelimit_remaining\{upstream="docker.io"\} 42/)
  })
})

describe('a redirect to an internal address', () => {
  it('is refused when the upstream is not itself internal', async () => {
    const { isInternalAddress } = await import('../../src/upstream/egress.js')
    for (const host of ['169.254.169.254', '10.0.0.1', '172.20.1.1', '192.168.1.1', '127.0.0.1', '[::1]', '[fd00::1]', '[::ffff:10.0.0.1]', 'localhost']) {
      assert.equal(isInternalAddress(host), true, host)
    }
    for (const host of ['8.8.8.8', 'production.cloudflare.docker.com', '[2606:4700::1]', '172.32.0.1']) {
      assert.equal(isInternalAddress(host), false, host)
    }
  })

  it('is followed when the upstream itself is on an internal address (a private registry)', async () => {
    const layer = Buffer.alloc(10, 4)
    putImage(upstream, 'library/x', ociImage([layer]), 'v1')
    const digest = sha256(layer)
    const cdn = await startFakeUpstream()
    cdn.putBlob('library/x', layer)
    upstream.intercept = (_req, res, path) => {
      if (!path.includes(`/blobs/${digest}`)) return false
      res.writeHead(307, { Location: `${cdn.url}${path}`, 'Content-Length': '0' })
      res.end()
      return true
    }
    try {
      await start()
      await get('/v2/library/x/manifests/v1')
      assert.equal((await get(`/v2/library/x/blobs/${digest}`)).status, 200)
    } finally {
      await cdn.close()
    }
  })
})
