// The admin API's token middleware: hashed bearer tokens, roles, and the no-tokens answer, all
// rendered by the OCI error renderer.

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { Hono } from 'hono'
import type { Env } from '../../../src/http/context.js'
import { adminAuth, requireRole, type AdminToken } from '../../../src/http/middleware/admin-auth.js'
import { onError } from '../../../src/http/oci-error.js'
import { createLogger } from '../../../src/observability/logger.js'

const hex = (s: string): string => createHash('sha256').update(s).digest('hex')
const TOKENS: AdminToken[] = [
  { name: 'vera', sha256: hex('viewer-secret'), role: 'viewer' },
  { name: 'ada', sha256: hex('admin-secret'), role: 'admin' },
]

function app(tokens: readonly AdminToken[]): Hono<Env> {
  const a = new Hono<Env>()
  a.use('/admin/*', adminAuth(tokens))
  a.get('/admin/approve', requireRole('approver'), (c) => c.json({ by: c.get('admin').name }))
  a.onError(onError(createLogger({ level: 'silent' })))
  return a
}

async function call(a: Hono<Env>, authorization?: string): Promise<{ status: number; body: { errors?: Array<{ code: string; message: string }>; by?: string } }> {
  const res = await a.request('/admin/approve', authorization === undefined ? {} : { headers: { Authorization: authorization } })
  return { status: res.status, body: (await res.json()) as { errors?: Array<{ code: string; message: string }>; by?: string } }
}

describe('adminAuth', () => {
  describe('when no tokens are configured', () => {
    it('answers 401 saying so, even to a token', async () => {
      const { status, body } = await call(app([]), 'Bearer anything')
      assert.equal(status, 401)
      assert.equal(body.errors?.[0]?.code, 'UNAUTHORIZED')
      assert.match(body.errors?.[0]?.message ?? '', /no admin\.tokens are configured/)
    })
  })

  describe('when the header is missing, malformed or the token unknown', () => {
    for (const header of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer wrong-secret']) {
      it(`answers 401 for ${String(header)}`, async () => {
        const res = await app(TOKENS).request('/admin/approve', header === undefined ? {} : { headers: { Authorization: header } })
        assert.equal(res.status, 401)
        assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="customs-admin"')
      })
    }
  })

  describe('when the role is too small', () => {
    it('answers 403 DENIED naming the role needed', async () => {
      const { status, body } = await call(app(TOKENS), 'Bearer viewer-secret')
      assert.equal(status, 403)
      assert.equal(body.errors?.[0]?.code, 'DENIED')
      assert.match(body.errors?.[0]?.message ?? '', /approver/)
    })
  })

  describe('when the role is large enough', () => {
    it('lets the request through with the token holder', async () => {
      assert.deepEqual(await call(app(TOKENS), 'Bearer admin-secret'), { status: 200, body: { by: 'ada' } })
    })
  })
})
