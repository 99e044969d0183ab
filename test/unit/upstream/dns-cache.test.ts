// The upstream's own name, resolved once a while for its blob connections (src/upstream/dns-cache.ts):
// answers kept for their time and shared while under way, failures never kept, and a blob
// connection of wire.ts's that connects with it.

import assert from 'node:assert/strict'
import dns from 'node:dns'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import { cachedSocketLookup, cachingLookup, DNS_CACHE_MS } from '../../../src/upstream/dns-cache.js'
import { parseConfig } from '../../../src/config/load.js'
import type { UpstreamConfig } from '../../../src/config/schema.js'
import { createLogger } from '../../../src/observability/logger.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { UpstreamClient } from '../../../src/upstream/client.js'
import { readBody } from '../../../src/upstream/transport.js'
import { getStreamed } from '../../../src/upstream/wire.js'

/** A resolver that counts its lookups and answers from `names`, or fails when told to. */
function counting(names: Record<string, string[]>) {
  const asked: string[] = []
  let failing = false
  return {
    asked,
    fail: (on: boolean) => void (failing = on),
    resolve: async (host: string): Promise<readonly string[]> => {
      asked.push(host)
      await Promise.resolve()
      const found = names[host]
      if (failing || found === undefined) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
      return found
    },
  }
}

describe('cachingLookup', () => {
  it('answers a name from the first lookup until its time is up, then asks again', async () => {
    const dnsServer = counting({ 'registry.example': ['203.0.113.7'] })
    let clock = 1_000
    const lookup = cachingLookup(dnsServer.resolve, { ttlMs: DNS_CACHE_MS, now: () => clock })
    assert.deepEqual(await lookup('registry.example'), ['203.0.113.7'])
    clock += DNS_CACHE_MS - 1
    assert.deepEqual(await lookup('registry.example'), ['203.0.113.7'])
    assert.equal(dnsServer.asked.length, 1)
    clock += 1
    assert.deepEqual(await lookup('registry.example'), ['203.0.113.7'])
    assert.equal(dnsServer.asked.length, 2)
  })

  it('shares one lookup among the connections that ask while it is under way', async () => {
    const dnsServer = counting({ 'registry.example': ['203.0.113.7'] })
    const lookup = cachingLookup(dnsServer.resolve)
    const answers = await Promise.all(Array.from({ length: 10 }, () => lookup('registry.example')))
    assert.ok(answers.every((a) => a[0] === '203.0.113.7'))
    assert.equal(dnsServer.asked.length, 1)
  })

  it('keeps no failure: the next connection asks again, and a name answering later is used', async () => {
    const dnsServer = counting({ 'registry.example': ['203.0.113.7'] })
    const lookup = cachingLookup(dnsServer.resolve)
    dnsServer.fail(true)
    await assert.rejects(lookup('registry.example'), (err: NodeJS.ErrnoException) => err.code === 'ENOTFOUND')
    dnsServer.fail(false)
    assert.deepEqual(await lookup('registry.example'), ['203.0.113.7'])
    assert.equal(dnsServer.asked.length, 2)
  })

  it('keeps names apart', async () => {
    const dnsServer = counting({ 'a.example': ['203.0.113.1'], 'b.example': ['203.0.113.2'] })
    const lookup = cachingLookup(dnsServer.resolve)
    assert.deepEqual([await lookup('a.example'), await lookup('b.example'), await lookup('a.example')], [['203.0.113.1'], ['203.0.113.2'], ['203.0.113.1']])
    assert.deepEqual(dnsServer.asked, ['a.example', 'b.example'])
  })
})

describe('cachedSocketLookup on blob connections', () => {
  const servers: Server[] = []
  after(async () => {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  })

  it('resolves the name once through the system resolver for several connections, each one connecting', async () => {
    const server = createServer((_req, res) => res.end('blob'))
    servers.push(server)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    // The system resolver (node's dns.lookup, which sockets use) stands in for DNS here: the
    // upstream's name answers loopback, and every lookup of it is counted.
    const original = dns.lookup
    let lookups = 0
    dns.lookup = ((host: string, options: dns.LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void) => {
      if (host === 'registry.example') {
        lookups++
        callback(null, [{ address: '127.0.0.1', family: 4 }])
      } else original(host, options, callback)
    }) as typeof dns.lookup
    try {
      const lookup = cachedSocketLookup()
      for (let i = 0; i < 3; i++) {
        const res = await getStreamed(new URL(`http://registry.example:${port}/v2/blob`), { headers: {}, lookup })
        assert.equal(res.status, 200)
        assert.equal((await readBody(res, 1024, { tooLarge: () => new Error('too large'), broken: (cause) => cause as Error })).toString(), 'blob')
      }
      assert.equal(lookups, 1)

      // And through an upstream's client: its large blobs' own connections share the answer.
      lookups = 0
      const config = parseConfig(`upstreams:\n  - name: registry.example\n    url: http://registry.example:${port}\n    default: true\n`).upstreams[0] as UpstreamConfig
      const client = new UpstreamClient(config, { metrics: new Metrics(), logger: createLogger({ level: 'silent' }) })
      for (let i = 0; i < 3; i++) {
        const res = await client.send({ method: 'GET', path: '/v2/blob', bulk: true })
        assert.equal(res.status, 200)
        await res.discard()
      }
      assert.equal(lookups, 1)
    } finally {
      dns.lookup = original
    }
  })
})
