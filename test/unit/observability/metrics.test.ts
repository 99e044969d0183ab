// Requests are counted outside prom-client and handed to it when read: the exposition must say
// what inc() per request said, for every label set, and again after more requests.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Metrics } from '../../../src/observability/metrics.js'

describe('Metrics.countRequest', () => {
  it('exposes one series per route, method and status with its count', async () => {
    const metrics = new Metrics()
    for (let i = 0; i < 3; i++) metrics.countRequest('manifest', 'GET', 200)
    metrics.countRequest('manifest', 'HEAD', 200)
    metrics.countRequest('blob', 'GET', 404)
    const text = await metrics.registry.metrics()
    assert.match(text, /^customs_http_requests_total\{route="manifest",method="GET",status="200"\} 3$/m)
    assert.match(text, /^customs_http_requests_total\{route="manifest",method="HEAD",status="200"\} 1$/m)
    assert.match(text, /^customs_http_requests_total\{route="blob",method="GET",status="404"\} 1$/m)
  })

  it('counts on from what was read before, without counting it twice', async () => {
    const metrics = new Metrics()
    metrics.countRequest('tags', 'GET', 200)
    await metrics.registry.metrics()
    metrics.countRequest('tags', 'GET', 200)
    const { values } = await metrics.requests.get()
    assert.deepEqual(values.map((v) => [v.labels, v.value]), [[{ route: 'tags', method: 'GET', status: '200' }, 2]])
  })
})
