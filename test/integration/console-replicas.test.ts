// Two Customs processes sharing one Redis behind no sticky balancer: a console session signed in
// on one replica works on the other (pages and CSRF-checked forms alike), and signing out on
// either ends it on both.

import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js'
import { startCustomsProcess, type CustomsProcess } from '../helpers/customs-process.js'
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.js'
import { makeTempDir } from '../helpers/processes.js'
import { sha256hex } from '../helpers/admin.js'

const APPROVER = 'approver-token-for-two-replicas'

let redis: RedisServer
let upstream: FakeUpstream
let storage: string
let a: CustomsProcess
let b: CustomsProcess

before(async () => {
  redis = await startRedisServer()
  upstream = await startFakeUpstream()
  storage = await makeTempDir('console-replicas-')
  const config = `
storage: { path: ${storage} }
state: { backend: redis, redis: { url: "${redis.url}", prefix: console-replicas } }
upstreams:
  - name: docker.io
    url: ${upstream.url}
    default: true
admin:
  tokens:
    - { name: abe-approver, sha256: "${sha256hex(APPROVER)}", role: approver }
console: { enabled: true }
`
  ;[a, b] = await Promise.all([startCustomsProcess(config, { name: 'a' }), startCustomsProcess(config, { name: 'b' })])
})

after(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  await upstream?.close()
  if (redis !== undefined && !redis.external) await redis.stop()
  await rm(storage, { recursive: true, force: true })
})

/** One browser's requests, each sent to the replica the balancer picked. */
async function get(replica: CustomsProcess, path: string, cookie: string | undefined): Promise<Response> {
  return fetch(`${replica.url}${path}`, { redirect: 'manual', headers: cookie !== undefined ? { cookie } : {} })
}

async function post(replica: CustomsProcess, path: string, form: Record<string, string>, cookie?: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', origin: replica.url }
  if (cookie !== undefined) headers.cookie = cookie
  return fetch(`${replica.url}${path}`, { method: 'POST', redirect: 'manual', headers, body: new URLSearchParams(form).toString() })
}

function csrfOf(html: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(html)
  assert.ok(match !== null, 'a signed-in page with a CSRF field')
  return match[1] as string
}

describe('a console session with two replicas sharing Redis', () => {
  it('is signed in on one replica, used on the other, and ended everywhere by signing out on the other', async () => {
    const signIn = await post(a, '/console/sign-in', { token: APPROVER })
    assert.equal(signIn.status, 303)
    assert.equal(signIn.headers.get('location'), '/console/quarantine')
    const cookie = signIn.headers.get('set-cookie')?.split(';')[0]
    assert.ok(cookie !== undefined && cookie.startsWith('customs_console='))

    // The other replica knows the session: the page renders with the signed-in person ...
    const page = await get(b, '/console/quarantine', cookie)
    assert.equal(page.status, 200)
    const html = await page.text()
    assert.match(html, /abe-approver \(approver\)/)
    // ... with the CSRF token the first replica issued, which it checks on POSTs.
    const csrf = csrfOf(html)
    assert.equal(csrfOf(await (await get(a, '/console/quarantine', cookie)).text()), csrf)
    const forged = await post(b, '/console/sign-out', { _csrf: 'x'.repeat(43) }, cookie)
    assert.equal(forged.status, 403)
    await forged.body?.cancel()

    // Redis holds the session by the hash of its id: neither the cookie's id nor the token.
    const client = new Redis(redis.url)
    try {
      const keys = await client.keys('console-replicas:v1:console-session:*')
      assert.equal(keys.length, 1)
      const raw = (await client.get(keys[0] as string)) as string
      const id = cookie.slice('customs_console='.length)
      for (const secret of [id, APPROVER, csrf]) assert.ok(!raw.includes(secret) && !(keys[0] as string).includes(secret))
    } finally {
      client.disconnect()
    }

    // Signing out on the second replica ends it on the first.
    const signOut = await post(b, '/console/sign-out', { _csrf: csrf }, cookie)
    assert.equal(signOut.status, 303)
    assert.equal(signOut.headers.get('location'), '/console/sign-in')
    for (const replica of [a, b]) {
      const res = await get(replica, '/console/quarantine', cookie)
      assert.equal(res.status, 303, `${replica.url} still serves the ended session`)
      assert.equal(res.headers.get('location'), '/console/sign-in')
    }
    const late = await post(a, '/console/sign-out', { _csrf: csrf }, cookie)
    assert.equal(late.status, 303)
    assert.equal(late.headers.get('location'), '/console/sign-in')
  })
})
