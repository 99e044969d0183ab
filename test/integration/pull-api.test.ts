// The pull API against an in-process fake upstream: headers, Accept negotiation, the blob gate,
// Range, routing, refused methods and paths.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'node:http'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, putImage, sha256, startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'

let upstream: FakeUpstream
let customs: CustomsHandle
const layer = Buffer.alloc(300_000, 7)
const image = ociImage([layer, Buffer.from('second layer')])

before(async () => {
  upstream = await startFakeUpstream()
  putImage(upstream, 'library/alpine', image, '3.19')
  putImage(upstream, 'org/app', image, 'v1')
  customs = await startCustoms({ config: upstreamConfig('docker.io', upstream.url, 'aliases: [hub]') })
})

after(async () => {
  await customs.stop()
  await upstream.close()
})

/** A raw HTTP request, so that paths reach the server exactly as written. */
function raw(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(customs.url)
    // The options form sends the path as written; a URL string would resolve `..` client-side.
    const req = request({ hostname, port, path, method, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

function ociCode(body: Buffer): string {
  return (JSON.parse(body.toString()) as { errors: Array<{ code: string }> }).errors[0]?.code ?? ''
}

describe('GET /v2/', () => {
  it('answers 200 without a challenge and with the API version header', async () => {
    const res = await raw('GET', '/v2/')
    assert.equal(res.status, 200)
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  })
})

describe('manifests', () => {
  it('serves the exact upstream bytes by tag with digest, type and length', async () => {
    const res = await raw('GET', '/v2/library/alpine/manifests/3.19')
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, image.manifest)
    assert.equal(res.headers['docker-content-digest'], image.digest)
    assert.equal(res.headers['content-type'], OCI_MANIFEST)
    assert.equal(res.headers['content-length'], String(image.manifest.byteLength))
  })

  it('answers HEAD with the same headers as GET and no body', async () => {
    const res = await raw('HEAD', '/v2/library/alpine/manifests/3.19')
    assert.equal(res.status, 200)
    assert.equal(res.body.byteLength, 0)
    assert.equal(res.headers['docker-content-digest'], image.digest)
    assert.equal(res.headers['content-length'], String(image.manifest.byteLength))
    assert.equal(res.headers['content-type'], OCI_MANIFEST)
  })

  it('adds library/ to one-component Docker Hub names', async () => {
    const res = await raw('GET', '/v2/alpine/manifests/3.19')
    assert.equal(res.status, 200)
    assert.equal(res.headers['docker-content-digest'], image.digest)
  })

  it('serves by digest', async () => {
    const res = await raw('GET', `/v2/library/alpine/manifests/${image.digest}`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, image.manifest)
  })

  it('answers MANIFEST_UNKNOWN when the client does not accept the stored type, never converting', async () => {
    const res = await raw('GET', '/v2/library/alpine/manifests/3.19', { Accept: DOCKER_MANIFEST })
    assert.equal(res.status, 404)
    assert.equal(ociCode(res.body), 'MANIFEST_UNKNOWN')
  })

  it('routes by the ns parameter and echoes it', async () => {
    const res = await raw('GET', '/v2/org/app/manifests/v1?ns=docker.io')
    assert.equal(res.status, 200)
    assert.equal(res.headers['oci-namespace'], 'docker.io')
  })

  it('routes by a first path component naming an upstream or alias', async () => {
    assert.equal((await raw('GET', '/v2/docker.io/org/app/manifests/v1')).status, 200)
    assert.equal((await raw('GET', '/v2/hub/org/app/manifests/v1')).status, 200)
  })

  it('refuses an unconfigured upstream with NAME_UNKNOWN and sends nothing upstream', async () => {
    const before = upstream.requests.length
    for (const path of ['/v2/evil.example.com/x/y/manifests/v1', '/v2/x/y/manifests/v1?ns=evil.example.com']) {
      const res = await raw('GET', path)
      assert.equal(res.status, 404, path)
      assert.equal(ociCode(res.body), 'NAME_UNKNOWN')
    }
    assert.equal(upstream.requests.length, before)
  })

  it('answers MANIFEST_UNKNOWN for a tag the upstream does not have', async () => {
    const res = await raw('GET', '/v2/library/alpine/manifests/nope')
    assert.equal(res.status, 404)
    assert.equal(ociCode(res.body), 'MANIFEST_UNKNOWN')
  })
})

describe('blobs', () => {
  const [layerDigest] = [sha256(layer)]

  it('serves a blob referenced by a cleared manifest, with its digest and length', async () => {
    await raw('GET', '/v2/library/alpine/manifests/3.19')
    const res = await raw('GET', `/v2/library/alpine/blobs/${layerDigest}`)
    assert.equal(res.status, 200)
    assert.deepEqual(res.body, layer)
    assert.equal(res.headers['docker-content-digest'], layerDigest)
    assert.equal(res.headers['content-length'], String(layer.byteLength))
  })

  it('answers HEAD from the manifest without fetching', async () => {
    const res = await raw('HEAD', `/v2/library/alpine/blobs/${layerDigest}`)
    assert.equal(res.status, 200)
    assert.equal(res.headers['content-length'], String(layer.byteLength))
  })

  it('serves a Range with 206 and Content-Range', async () => {
    const res = await raw('GET', `/v2/library/alpine/blobs/${layerDigest}`, { Range: 'bytes=10-19' })
    assert.equal(res.status, 206)
    assert.equal(res.headers['content-range'], `bytes 10-19/${layer.byteLength}`)
    assert.deepEqual(res.body, layer.subarray(10, 20))
    const suffix = await raw('GET', `/v2/library/alpine/blobs/${layerDigest}`, { Range: 'bytes=-5' })
    assert.deepEqual(suffix.body, layer.subarray(layer.byteLength - 5))
  })

  it('logs a Range answer written straight to the socket with its real status and bytes', async () => {
    await raw('GET', `/v2/library/alpine/blobs/${layerDigest}`, { Range: 'bytes=100-149', 'X-Request-Id': 'range-log-1' })
    const deadline = Date.now() + 2000
    let line: Record<string, unknown> | undefined
    while (line === undefined && Date.now() < deadline) {
      line = customs.logs.find((l) => l.requestId === 'range-log-1')
      if (line === undefined) await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.ok(line !== undefined, 'no access log line for the range request')
    assert.equal(line.status, 206)
    assert.equal(line.bytes, 50)
  })

  it('serves a blob and a Range to a request made in process, without node sockets', async () => {
    const whole = await customs.app.request(`/v2/library/alpine/blobs/${layerDigest}`)
    assert.equal(whole.status, 200)
    assert.deepEqual(Buffer.from(await whole.arrayBuffer()), layer)
    const part = await customs.app.request(`/v2/library/alpine/blobs/${layerDigest}`, { headers: { Range: 'bytes=10-19' } })
    assert.equal(part.status, 206)
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), layer.subarray(10, 20))
  })

  for (const range of ['bytes=abc', 'bytes=5-1', `bytes=${10_000_000}-`, 'bytes=0-1,4-5', 'items=0-1']) {
    it(`answers 416 RANGE_INVALID for ${range}`, async () => {
      const res = await raw('GET', `/v2/library/alpine/blobs/${layerDigest}`, { Range: range })
      assert.equal(res.status, 416)
      assert.equal(ociCode(res.body), 'RANGE_INVALID')
    })
  }

  it('refuses a blob no cleared manifest in that repository references', async () => {
    const res = await raw('GET', `/v2/other/repo/blobs/${layerDigest}`)
    assert.equal(res.status, 404)
    assert.equal(ociCode(res.body), 'BLOB_UNKNOWN')
  })
})

describe('bad input', () => {
  const cases: Array<[string, string, number, string]> = [
    ['uppercase hex digest', `/v2/library/alpine/blobs/sha256:${'A'.repeat(64)}`, 400, 'DIGEST_INVALID'],
    ['short digest', `/v2/library/alpine/manifests/sha256:${'a'.repeat(63)}`, 400, 'DIGEST_INVALID'],
    ['unknown algorithm', `/v2/library/alpine/blobs/md5:${'a'.repeat(32)}`, 400, 'DIGEST_INVALID'],
    ['bad tag', '/v2/library/alpine/manifests/-bad', 400, 'TAG_INVALID'],
    ['uppercase name', '/v2/Library/Alpine/manifests/1', 400, 'NAME_INVALID'],
    ['dot-dot segment', '/v2/library/../etc/manifests/1', 400, 'NAME_INVALID'],
    ['encoded dot-dot', '/v2/library/%2e%2e/etc/manifests/1', 400, 'NAME_INVALID'],
    ['encoded slash', '/v2/library%2Falpine/manifests/1', 400, 'NAME_INVALID'],
    ['empty segment', '/v2/library//alpine/manifests/1', 400, 'NAME_INVALID'],
    ['overlong name', `/v2/${'a'.repeat(300)}/manifests/1`, 400, 'NAME_INVALID'],
  ]
  for (const [what, path, status, code] of cases) {
    it(`answers ${status} ${code} for a ${what}`, async () => {
      const res = await raw('GET', path)
      assert.equal(res.status, status)
      assert.equal(ociCode(res.body), code)
    })
  }

  for (const [method, path] of <Array<[string, string]>>[
    ['PUT', '/v2/library/alpine/manifests/1'],
    ['DELETE', `/v2/library/alpine/manifests/sha256:${'a'.repeat(64)}`],
    ['POST', '/v2/library/alpine/blobs/uploads/'],
    ['PATCH', '/v2/library/alpine/blobs/uploads/abc'],
    ['DELETE', `/v2/library/alpine/blobs/sha256:${'a'.repeat(64)}`],
  ]) {
    it(`answers 405 UNSUPPORTED for ${method} ${path.slice(0, 40)}`, async () => {
      const res = await raw(method as string, path as string)
      assert.equal(res.status, 405)
      assert.equal(ociCode(res.body), 'UNSUPPORTED')
    })
  }
})

describe('listings', () => {
  it('proxies tags/list with n and rewrites the name', async () => {
    upstream.intercept = (req, res, path) => {
      if (!path.startsWith('/v2/org/app/tags/list')) return false
      res.writeHead(200, { 'Content-Type': 'application/json', Link: '</v2/org/app/tags/list?n=2&last=b>; rel="next"' })
      res.end(JSON.stringify({ name: 'org/app', tags: ['a', 'b'] }))
      return true
    }
    try {
      const res = await raw('GET', '/v2/docker.io/org/app/tags/list?n=2')
      assert.equal(res.status, 200)
      assert.deepEqual(JSON.parse(res.body.toString()), { name: 'docker.io/org/app', tags: ['a', 'b'] })
      assert.equal(res.headers.link, '</v2/docker.io/org/app/tags/list?n=2&last=b>; rel="next"')
    } finally {
      upstream.intercept = undefined
    }
  })

  it('answers n=0 with an empty list and no Link', async () => {
    const res = await raw('GET', '/v2/org/app/tags/list?n=0')
    assert.deepEqual(JSON.parse(res.body.toString()).tags, [])
    assert.equal(res.headers.link, undefined)
  })

  it('refuses a bad n with PAGINATION_NUMBER_INVALID', async () => {
    const res = await raw('GET', '/v2/org/app/tags/list?n=-1')
    assert.equal(res.status, 400)
    assert.equal(ociCode(res.body), 'PAGINATION_NUMBER_INVALID')
  })

  it('falls back to the sha256-<hex> tag when the referrers API answers 404', async () => {
    const sig = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [
      { mediaType: OCI_MANIFEST, digest: sha256(Buffer.from('sig')), size: 3, artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json' },
      { mediaType: OCI_MANIFEST, digest: sha256(Buffer.from('sbom')), size: 4, artifactType: 'application/spdx+json' },
    ] }))
    upstream.putManifest('org/app', sig, 'application/vnd.oci.image.index.v1+json', `sha256-${image.digest.slice(7)}`)
    const res = await raw('GET', `/v2/org/app/referrers/${image.digest}?artifactType=application/spdx%2Bjson`)
    assert.equal(res.status, 200)
    assert.equal(res.headers['oci-filters-applied'], 'artifactType')
    const body = JSON.parse(res.body.toString()) as { manifests: Array<{ artifactType: string }> }
    assert.deepEqual(body.manifests.map((m) => m.artifactType), ['application/spdx+json'])
  })

  it('answers an empty index when there are no referrers', async () => {
    const res = await raw('GET', `/v2/library/alpine/referrers/${sha256(Buffer.from('none'))}`)
    assert.equal(res.status, 200)
    assert.deepEqual(JSON.parse(res.body.toString()).manifests, [])
  })
})
