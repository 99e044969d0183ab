// The admin API against a running Customs: pulls a policy denies are kept in quarantine (one
// record per digest, counted, with the reference, reasons and client), and every admin route
// refuses missing and wrong tokens and bad query parameters.

import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startCustoms, upstreamConfig, type CustomsHandle } from '../helpers/customs.js'
import { ociImage, type FakeUpstream } from '../helpers/fake-upstream.js'
import { CustomsError } from '../../src/errors.js'
import { MemoryStateStore } from '../../src/state/memory.js'
import { startWithPolicy, type PolicyCustoms } from '../helpers/admin.js'

const VIEWER = 'viewer-token-0123456789'

let upstream: FakeUpstream
let customs: CustomsHandle
let env: PolicyCustoms
const image = ociImage([Buffer.from('a layer')])

/** An admin request with `token` as bearer token; null sends no Authorization header. */
async function admin(path: string, token: string | null = VIEWER): Promise<Response> {
  return fetch(`${customs.url}${path}`, token === null ? {} : { headers: { Authorization: `Bearer ${token}` } })
}

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}

before(async () => {
  env = await startWithPolicy({
    images: [['acme/app', image]],
    tokens: [{ name: 'alice', secret: VIEWER, role: 'viewer' }],
  })
  ;({ upstream, customs } = env)
})

after(async () => {
  await env.stop()
})

describe('quarantine', () => {
  describe('when a pull is denied twice', () => {
    it('lists one record with the count, reference, reasons and client', async () => {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`${customs.url}/v2/acme/app/manifests/v1`, {
          headers: { 'User-Agent': 'quarantine-test/1.0', Accept: image.mediaType },
        })
        assert.equal(res.status, 403)
        assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
      }
      const res = await admin('/admin/v1/quarantine')
      assert.equal(res.status, 200)
      const { records, next } = (await res.json()) as {
        records: Array<Record<string, unknown> & { clients: Array<Record<string, unknown>>; reasons: string[] }>
        next?: string
      }
      assert.equal(next, undefined)
      assert.equal(records.length, 1)
      const record = records[0]
      assert.ok(record !== undefined)
      assert.equal(record.upstream, 'docker.io')
      assert.equal(record.repository, 'acme/app')
      assert.equal(record.digest, image.digest)
      assert.equal(record.state, 'detained')
      assert.equal(record.refused, 2)
      assert.deepEqual(record.references, ['v1'])
      assert.ok(record.reasons.some((r) => r.includes('must-be-non-root')), record.reasons.join('; '))
      assert.equal(record.clients.length, 1)
      assert.equal(record.clients[0]?.userAgent, 'quarantine-test/1.0')
      assert.equal(typeof record.clients[0]?.address, 'string')
    })

    it('answers the record by upstream, digest and repository', async () => {
      const res = await admin(`/admin/v1/quarantine/docker.io/${image.digest}?repository=acme/app`)
      assert.equal(res.status, 200)
      const record = (await res.json()) as { refused: number; digest: string }
      assert.equal(record.digest, image.digest)
      assert.ok(record.refused >= 2)
    })

    it('filters by upstream', async () => {
      const res = await admin('/admin/v1/quarantine?upstream=ghcr.io&limit=5')
      assert.equal(res.status, 200)
      assert.deepEqual(await res.json(), { records: [] })
    })
  })

  describe('when the record is absent', () => {
    it('answers 404 MANIFEST_UNKNOWN', async () => {
      const res = await admin(`/admin/v1/quarantine/docker.io/${image.digest}?repository=acme/other`)
      assert.equal(res.status, 404)
      assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'MANIFEST_UNKNOWN')
    })
  })
})

describe('policy', () => {
  it('answers the revision in force and the policy count', async () => {
    const res = await admin('/admin/v1/policy')
    assert.equal(res.status, 200)
    const body = (await res.json()) as { revision: string; policies: number; reloads: unknown[] }
    assert.equal(body.revision, customs.services.policies.current().revision)
    assert.equal(body.policies, 1)
    assert.deepEqual(body.reloads, [])
  })
})

describe('authentication', () => {
  const routes = [
    '/admin/v1/quarantine',
    `/admin/v1/quarantine/docker.io/${image.digest}?repository=acme/app`,
    '/admin/v1/policy',
  ]
  for (const route of routes) {
    describe(`GET ${route.split('?')[0]}`, () => {
      it('answers 401 UNAUTHORIZED with a Bearer challenge without a token', async () => {
        const res = await admin(route, null)
        assert.equal(res.status, 401)
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="customs-admin"')
        assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'UNAUTHORIZED')
      })
      it('answers 401 UNAUTHORIZED for a wrong token', async () => {
        const res = await admin(route, 'not-the-token')
        assert.equal(res.status, 401)
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="customs-admin"')
        await res.body?.cancel()
      })
      it('answers a viewer', async () => {
        const res = await admin(route)
        assert.equal(res.status, 200)
        await res.body?.cancel()
      })
    })
  }
})

describe('bad query parameters', () => {
  const cases: Array<[string, string, string]> = [
    ['limit=0', '/admin/v1/quarantine?limit=0', 'PAGINATION_NUMBER_INVALID'],
    ['limit=abc', '/admin/v1/quarantine?limit=abc', 'PAGINATION_NUMBER_INVALID'],
    ['limit above the maximum', '/admin/v1/quarantine?limit=501', 'PAGINATION_NUMBER_INVALID'],
    ['a cursor not from a page', '/admin/v1/quarantine?after=!!', 'PAGINATION_NUMBER_INVALID'],
    ['an upstream that is no name', '/admin/v1/quarantine?upstream=NOT%20A%20HOST', 'NAME_INVALID'],
    ['a bad digest', '/admin/v1/quarantine/docker.io/sha256:abc?repository=acme/app', 'DIGEST_INVALID'],
    ['no repository', `/admin/v1/quarantine/docker.io/${image.digest}`, 'NAME_INVALID'],
  ]
  for (const [what, path, code] of cases) {
    it(`answers 400 ${code} for ${what}`, async () => {
      const res = await admin(path)
      assert.equal(res.status, 400)
      const body = (await res.json()) as OciErrorBody
      assert.equal(body.errors[0]?.code, code)
      assert.ok((body.errors[0]?.message ?? '').length > 0)
    })
  }
})

describe('when the quarantine record cannot be written', () => {
  let broken: CustomsHandle
  before(async () => {
    const state = new MemoryStateStore()
    state.recordDetention = async () => {
      throw new CustomsError('STATE_UNAVAILABLE', 'redis state recordDetention failed: test')
    }
    broken = await startCustoms({
      state,
      config: `${upstreamConfig('docker.io', upstream.url)}
policy: { path: "${env.policyDir}", watch: false }
`,
    })
  })
  after(async () => {
    await broken.stop()
  })

  it('still answers 403 DENIED and logs the failure', async () => {
    const res = await fetch(`${broken.url}/v2/acme/app/manifests/v1`, { headers: { Accept: image.mediaType } })
    assert.equal(res.status, 403)
    assert.equal(((await res.json()) as OciErrorBody).errors[0]?.code, 'DENIED')
    assert.ok(broken.logs.some((l) => l.msg === 'failed to record a detention in quarantine'))
  })

  it('answers 401 to the admin API, which has no tokens', async () => {
    const res = await fetch(`${broken.url}/admin/v1/policy`, { headers: { Authorization: `Bearer ${VIEWER}` } })
    assert.equal(res.status, 401)
    assert.match(((await res.json()) as OciErrorBody).errors[0]?.message ?? '', /no admin\.tokens/)
  })
})
