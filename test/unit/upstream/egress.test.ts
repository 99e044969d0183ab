// Where Customs may connect on an upstream's behalf (src/upstream/egress.ts): which addresses are
// internal, in every spelling a URL or a resolver gives them, and the connect-time lookup that
// applies the redirect rule to the addresses a socket is given, on node's client (plain and TLS)
// and on wire.ts's own connections, against servers on loopback.

import assert from 'node:assert/strict'
import type { LookupAddress } from 'node:dns'
import { createServer as createHttpServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type LookupFunction, type Server } from 'node:net'
import { after, describe, it } from 'node:test'
import { guardedLookup, isInternalAddress, isInternalRedirect, type HostLookup } from '../../../src/upstream/egress.js'
import { keepAliveAgents, send } from '../../../src/upstream/transport.js'
import { getStreamed } from '../../../src/upstream/wire.js'

const servers: Server[] = []
after(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
})

async function listen(server: Server): Promise<number> {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

class Refused extends Error {}

/** A guard for an upstream on `upstream`, with `names` as the whole of DNS. */
function guard(upstream: string, names: Record<string, string[]>): LookupFunction {
  const resolve: HostLookup = async (host) => {
    const found = names[host]
    if (found === undefined) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
    return found
  }
  return guardedLookup(upstream, resolve, (host) => new Refused(`${host} is internal`))
}

/** What a lookup calls back with, for `options`. */
function lookUp(lookup: LookupFunction, host: string, options: { all?: boolean; family?: number }): Promise<{ error: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number }> {
  return new Promise((resolve) => lookup(host, options, (error, address, family) => resolve({ error, address, ...(family !== undefined ? { family } : {}) })))
}

describe('isInternalAddress', () => {
  it('knows an IPv4-mapped IPv6 address however it is written, as a URL rewrites it', async () => {
    // The WHATWG URL parser writes the mapped address in hex: `[::ffff:7f00:1]`, which a socket
    // connects to 127.0.0.1 all the same.
    const hosts = ['127.0.0.1', '169.254.169.254', '10.1.2.3'].map((v4) => new URL(`http://[::ffff:${v4}]/`).hostname)
    assert.deepEqual(hosts, ['[::ffff:7f00:1]', '[::ffff:a9fe:a9fe]', '[::ffff:a01:203]'])
    for (const host of hosts) {
      assert.equal(isInternalAddress(host), true, host)
      assert.equal(await isInternalRedirect('registry.example', host, async () => ['203.0.113.7']), true, host)
    }
    assert.equal(isInternalAddress('0:0:0:0:0:0:0:1'), true)
    assert.equal(isInternalAddress('[::ffff:808:808]'), false, 'a mapped public address is public')
  })

  it('judges the IPv4 address that NAT64, IPv4-compatible and 6to4 forms carry', () => {
    // As a URL writes them: NAT64's well-known prefix to the metadata address, through DNS64 in an
    // IPv6-only cluster, is `[64:ff9b::a9fe:a9fe]`.
    const url = (host: string): string => new URL(`http://[${host}]/`).hostname
    for (const host of [url('64:ff9b::169.254.169.254'), url('64:ff9b::10.0.0.1'), url('::127.0.0.1'), '[2002:a00:1::1]', '[2002:7f00:1::]', '[64:ff9b:1::1]', '[64:ff9b:1:ffff::1]']) {
      assert.equal(isInternalAddress(host), true, host)
    }
    for (const host of [url('64:ff9b::8.8.8.8'), url('::8.8.8.8'), '[2002:808:808::1]', '[64:ff9b:2::1]', '[2003:a00:1::1]']) {
      assert.equal(isInternalAddress(host), false, host)
    }
    assert.equal(url('64:ff9b::169.254.169.254'), '[64:ff9b::a9fe:a9fe]')
  })

  it('draws the ranges at their edges', () => {
    for (const host of ['0.0.0.0', '100.64.0.0', '100.127.255.255', '172.16.0.0', '172.31.255.255', '169.254.0.1', '[::]', '[fe80::1]', '[febf::1]', '[fc00::1]']) {
      assert.equal(isInternalAddress(host), true, host)
    }
    for (const host of ['100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '169.253.255.255', '[fec0::1]', '[fb00::1]', '[::2]', '11.0.0.0']) {
      assert.equal(isInternalAddress(host), false, host)
    }
  })
})

describe('guardedLookup', () => {
  it('fails the connection on every transport when the name resolves inside and the upstream is not internal', async () => {
    let connections = 0
    const port = await listen(createNetServer((socket) => (connections++, socket.destroy())))
    const lookup = guard('registry.example', { 'registry.example': ['203.0.113.7'], 'inside.example': ['198.51.100.4', '127.0.0.1'] })
    const agents = keepAliveAgents(lookup)
    for (const scheme of ['http', 'https']) {
      const url = new URL(`${scheme}://inside.example:${port}/v2/x/blobs/sha256:abc`)
      await assert.rejects(send(url, { method: 'GET', headers: {}, agents }), (err) => err instanceof Refused, `node's client, ${scheme}`)
      await assert.rejects(getStreamed(url, { headers: {}, lookup }), (err) => err instanceof Refused, `wire.ts, ${scheme}`)
    }
    assert.equal(connections, 0)
  })

  it('connects to the addresses it judged when the upstream is itself internal', async () => {
    const port = await listen(createHttpServer((_req, res) => res.end('from inside')) as unknown as Server)
    const lookup = guard('harbor.corp', { 'harbor.corp': ['10.9.8.7'], 'cdn.corp': ['127.0.0.1'] })
    const url = new URL(`http://cdn.corp:${port}/blob`)
    const res = await send(url, { method: 'GET', headers: {}, agents: keepAliveAgents(lookup) })
    assert.equal(res.status, 200)
    await res.discard()
    const streamed = await getStreamed(url, { headers: {}, lookup })
    assert.equal(streamed.status, 200)
    streamed.bodyStream()?.destroy()
  })

  it('answers in the form asked for: every address, the first, or those of one family', async () => {
    const lookup = guard('10.0.0.2', { 'dual.corp': ['fd00::7', '10.0.0.7'] })
    assert.deepEqual(await lookUp(lookup, 'dual.corp', { all: true }), { error: null, address: [{ address: 'fd00::7', family: 6 }, { address: '10.0.0.7', family: 4 }] })
    assert.deepEqual(await lookUp(lookup, 'dual.corp', {}), { error: null, address: 'fd00::7', family: 6 })
    assert.deepEqual(await lookUp(lookup, 'dual.corp', { family: 4 }), { error: null, address: '10.0.0.7', family: 4 })
  })

  it('judges every address of the name, whatever family the socket asks for', async () => {
    const lookup = guard('registry.example', { 'registry.example': ['203.0.113.7'], 'dual.example': ['2001:db8::1', '169.254.169.254'] })
    // The socket would be given only the IPv6 address; the name is refused all the same.
    assert.ok((await lookUp(lookup, 'dual.example', { family: 6 })).error instanceof Refused)
    assert.ok((await lookUp(lookup, 'dual.example', { all: true })).error instanceof Refused)
  })

  it('passes a name that does not resolve on as the resolver failed', async () => {
    const { error } = await lookUp(guard('registry.example', {}), 'nowhere.example', { all: true })
    assert.equal(error?.code, 'ENOTFOUND')
  })
})
