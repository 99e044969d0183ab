// Where Customs may connect on an upstream's behalf (src/upstream/egress.ts): which addresses are
// internal, in every spelling a URL or a resolver gives them.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isInternalAddress, isInternalRedirect } from '../../../src/upstream/egress.js'

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

  it('draws the ranges at their edges', () => {
    for (const host of ['0.0.0.0', '100.64.0.0', '100.127.255.255', '172.16.0.0', '172.31.255.255', '169.254.0.1', '[::]', '[fe80::1]', '[febf::1]', '[fc00::1]']) {
      assert.equal(isInternalAddress(host), true, host)
    }
    for (const host of ['100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '169.253.255.255', '[fec0::1]', '[fb00::1]', '[::2]', '11.0.0.0']) {
      assert.equal(isInternalAddress(host), false, host)
    }
  })
})
