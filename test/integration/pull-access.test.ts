// Pull access (config `access`) against a running Customs with Debian's docker-registry as the
// upstream, with skopeo and raw requests: anonymous by default; with `anonymous: false` every /v2
// route needs HTTP Basic credentials of a configured client, wrong ones are refused alike, health
// and admin routes are unaffected, and the client name reaches quarantine records, decision events
// and the access log, never the secret.

import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { CustomsEvent } from '../../src/audit/events.js'
import { skopeoCopy, skopeoInspect } from '../helpers/clients.js'
import { standInUpstreams, startCustoms, type CustomsHandle } from '../helpers/customs.js'
import { buildImage, MANIFEST_ACCEPT, pushImage, type BuiltImage } from '../helpers/images.js'
import { CommandError, makeTempDir, removeTempDir } from '../helpers/processes.js'
import { startRegistry, type RegistryHandle } from '../helpers/registry.js'
import { ACME_NON_ROOT_POLICY, sha256hex } from '../helpers/admin.js'

const CI = { username: 'ci-bot', password: 'ci-secret-0f3c9a77d2b14e' }
const OTHER = { username: 'node-pool', password: 'pool-secret-5d1e6b0c9a' }
const ADMIN_TOKEN = 'admin-token-for-pull-access-tests'
const basic = (user: string, secret: string): string => `Basic ${Buffer.from(`${user}:${secret}`).toString('base64')}`

let registry: RegistryHandle
let work: string
let anonymous: CustomsHandle
let required: CustomsHandle
let mixed: CustomsHandle
let allowed: BuiltImage
let denied: BuiltImage
const events: CustomsEvent[] = []

function accessYaml(anonymousPulls: boolean): string {
  return `
access:
  anonymous: ${anonymousPulls}
  clients:
    - { name: ${CI.username}, sha256: "${sha256hex(CI.password)}" }
    - { name: ${OTHER.username}, sha256: "${sha256hex(OTHER.password)}" }
`
}

interface OciErrorBody {
  errors: Array<{ code: string; message: string }>
}

before(async () => {
  registry = await startRegistry()
  work = await makeTempDir('pull-access-')
  allowed = buildImage({ mediaType: 'oci', layers: [8 * 1024], config: { config: { User: '1000' } } })
  denied = buildImage({ mediaType: 'oci', layers: [8 * 1024] })
  await pushImage(registry, 'library/allowed', '1', allowed)
  await pushImage(registry, 'acme/rooted', '1', denied)
  const policies = join(work, 'policies')
  await mkdir(policies)
  await writeFile(join(policies, 'root.yaml'), ACME_NON_ROOT_POLICY)
  const common = `${standInUpstreams(registry.url, { ghcr: false })}
policy: { path: "${policies}", watch: false }
admin:
  tokens:
    - { name: ops, sha256: "${sha256hex(ADMIN_TOKEN)}", role: viewer }
`
  anonymous = await startCustoms({ config: common })
  required = await startCustoms({ config: `${common}${accessYaml(false)}` })
  mixed = await startCustoms({ config: `${common}${accessYaml(true)}` })
  required.services.events.subscribe((e) => events.push(e))
})

after(async () => {
  await mixed?.stop()
  await required?.stop()
  await anonymous?.stop()
  await registry?.stop()
  if (work !== undefined) await removeTempDir(work)
})

describe('by default (no access configuration)', () => {
  it('answers GET /v2/ with 200 and no challenge', async () => {
    const res = await fetch(`${anonymous.url}/v2/`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('www-authenticate'), null)
  })

  it('lets skopeo pull without credentials', async () => {
    const copied = await skopeoCopy(`${anonymous.host}/library/allowed:1`, join(work, 'anon'))
    assert.equal(copied.digest, allowed.manifestDigest)
  })

  it('ignores an Authorization header, as there are no clients to check it against', async () => {
    const res = await fetch(`${anonymous.url}/v2/`, { headers: { Authorization: basic('someone', 'anything') } })
    assert.equal(res.status, 200)
  })
})

describe('with anonymous: false', () => {
  const routes = [
    '/v2/',
    '/v2',
    '/v2/library/allowed/manifests/1',
    `/v2/library/allowed/blobs/${'sha256:' + '0'.repeat(64)}`,
    '/v2/library/allowed/tags/list',
    `/v2/library/allowed/referrers/${'sha256:' + '0'.repeat(64)}`,
  ]
  for (const route of routes) {
    it(`answers GET ${route} without credentials with 401 and the Basic challenge`, async () => {
      const res = await fetch(`${required.url}${route}`)
      assert.equal(res.status, 401)
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="customs"')
      const body = (await res.json()) as OciErrorBody
      assert.equal(body.errors[0]?.code, 'UNAUTHORIZED')
      assert.equal(body.errors[0]?.message, 'credentials are required to pull through Customs')
    })
  }

  it('answers HEAD of a manifest without credentials with 401 and the challenge', async () => {
    const res = await fetch(`${required.url}/v2/library/allowed/manifests/1`, { method: 'HEAD' })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="customs"')
  })

  it('refuses a wrong secret, an unknown name and a malformed header with the same 401', async () => {
    const headers = [
      basic(CI.username, 'not-the-secret'),
      basic('nobody', CI.password),
      basic(CI.username, OTHER.password),
      `Basic ${Buffer.from(CI.username).toString('base64')}`,
      `Basic ${Buffer.from(`${CI.username}:${CI.password}`.repeat(60)).toString('base64')}`,
    ]
    for (const authorization of headers) {
      const res = await fetch(`${required.url}/v2/`, { headers: { Authorization: authorization } })
      assert.equal(res.status, 401, authorization)
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="customs"')
      const body = (await res.json()) as OciErrorBody
      assert.equal(body.errors[0]?.message, 'the credentials are not valid')
    }
  })

  it('refuses a Bearer token, which it never issued', async () => {
    const res = await fetch(`${required.url}/v2/`, { headers: { Authorization: `Bearer ${CI.password}` } })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="customs"')
  })

  it('answers 200 with the right credentials, for each client', async () => {
    for (const c of [CI, OTHER]) {
      const res = await fetch(`${required.url}/v2/`, { headers: { Authorization: basic(c.username, c.password) } })
      assert.equal(res.status, 200, c.username)
    }
    const res = await fetch(`${required.url}/v2/library/allowed/manifests/1`, {
      headers: { Authorization: basic(CI.username, CI.password), Accept: MANIFEST_ACCEPT.join(', ') },
    })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('docker-content-digest'), allowed.manifestDigest)
  })

  it('leaves health and admin routes alone', async () => {
    assert.equal((await fetch(`${required.url}/healthz`)).status, 200)
    const admin = await fetch(`${required.url}/admin/v1/policy`, { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } })
    assert.equal(admin.status, 200)
    // Pull credentials are not admin credentials.
    const pullCreds = await fetch(`${required.url}/admin/v1/policy`, { headers: { Authorization: basic(CI.username, CI.password) } })
    assert.equal(pullCreds.status, 401)
    assert.equal(pullCreds.headers.get('www-authenticate'), 'Bearer realm="customs-admin"')
  })

  it('refuses skopeo without credentials', async () => {
    await assert.rejects(skopeoCopy(`${required.host}/library/allowed:1`, join(work, 'nocreds')), (err: unknown) => {
      assert.ok(err instanceof CommandError)
      assert.match(err.result.stderr, /401|unauthorized|authentication required/i)
      return true
    })
  })

  it('refuses skopeo with a wrong secret', async () => {
    const credentials = { username: CI.username, password: 'wrong' }
    await assert.rejects(skopeoCopy(`${required.host}/library/allowed:1`, join(work, 'wrong'), { credentials }), CommandError)
  })

  it('lets skopeo copy (--src-creds) and inspect (--creds) with the right credentials', async () => {
    const copied = await skopeoCopy(`${required.host}/library/allowed:1`, join(work, 'creds'), { credentials: CI })
    assert.equal(copied.digest, allowed.manifestDigest)
    const inspected = await skopeoInspect(`${required.host}/library/allowed:1`, { credentials: CI })
    assert.equal(inspected.digest, allowed.manifestDigest)
  })

  it('records the client name in the quarantine record and the decision event of a denied pull', async () => {
    await assert.rejects(skopeoCopy(`${required.host}/acme/rooted:1`, join(work, 'denied'), { credentials: CI }), CommandError)
    const record = await required.services.state.getQuarantine(
      { upstream: 'docker.io', repository: 'acme/rooted' },
      denied.manifestDigest as never
    )
    assert.ok(record !== null, 'a quarantine record')
    assert.equal(record.clients[0]?.identity, CI.username)
    assert.match(record.clients[0]?.userAgent ?? '', /skopeo/)
    const decision = events.find((e) => e.type === 'decision' && e.repository === 'acme/rooted')
    assert.equal(decision?.verdict, 'detained')
    assert.equal(decision?.client?.identity, CI.username)
    const detention = events.find((e) => e.type === 'detention' && e.repository === 'acme/rooted')
    assert.equal(detention?.client?.identity, CI.username)
  })

  it('logs the client name as user, and never the secret or the Authorization header', async () => {
    const lines = required.logs.filter((l) => l.msg === 'request' && l.user === CI.username)
    assert.ok(lines.length > 0, 'request lines name the user')
    const text = JSON.stringify(required.logs)
    for (const c of [CI, OTHER]) {
      assert.ok(!text.includes(c.password), 'no secret in the logs')
      assert.ok(!text.includes(Buffer.from(`${c.username}:${c.password}`).toString('base64')), 'no Authorization value in the logs')
    }
    assert.ok(!/authorization/i.test(text), 'no Authorization header in the logs')
  })
})

describe('with anonymous: true and clients', () => {
  it('lets a pull without credentials through, with no identity', async () => {
    const copied = await skopeoCopy(`${mixed.host}/library/allowed:1`, join(work, 'mixed-anon'))
    assert.equal(copied.digest, allowed.manifestDigest)
    const res = await fetch(`${mixed.url}/v2/`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('www-authenticate'), null)
  })

  it('refuses wrong credentials rather than pulling unnamed', async () => {
    const res = await fetch(`${mixed.url}/v2/`, { headers: { Authorization: basic(CI.username, 'wrong') } })
    assert.equal(res.status, 401)
  })

  it('names a client that presents its credentials in the quarantine record', async () => {
    const headers = { Authorization: basic(OTHER.username, OTHER.password), Accept: MANIFEST_ACCEPT.join(', ') }
    const res = await fetch(`${mixed.url}/v2/acme/rooted/manifests/1`, { headers })
    assert.equal(res.status, 403)
    const anon = await fetch(`${mixed.url}/v2/acme/rooted/manifests/1`, { headers: { Accept: MANIFEST_ACCEPT.join(', ') } })
    assert.equal(anon.status, 403)
    const record = await mixed.services.state.getQuarantine(
      { upstream: 'docker.io', repository: 'acme/rooted' },
      denied.manifestDigest as never
    )
    assert.ok(record !== null)
    assert.deepEqual(record.clients.map((c) => c.identity), [undefined, OTHER.username])
  })
})
