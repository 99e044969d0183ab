// A console page while the state store is away: a 503 that says so (and when to try again), not
// the generic 500 that reads as a bug in the page.

import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { consoleRoutes } from '../../../src/console/routes.js'
import { SessionStore, type SessionBackend } from '../../../src/console/session.js'
import { CustomsError } from '../../../src/errors.js'
import { createLogger } from '../../../src/observability/logger.js'

const unavailable = (): Promise<never> => Promise.reject(new CustomsError('STATE_UNAVAILABLE', 'redis console session get failed: connection refused'))
const away: SessionBackend = { put: unavailable, get: unavailable, touch: unavailable, delete: unavailable }

describe('the console while the state store is unavailable', () => {
  it('answers 503 with Retry-After and a page that names the state store', async () => {
    const app = consoleRoutes({
      admin: () => Promise.reject(new Error('not called')),
      upstreams: ['docker.io'],
      secure: false,
      logger: createLogger({ level: 'silent' }),
      sessions: new SessionStore(away),
    })
    const res = await app.request('/console/quarantine', { headers: { Cookie: `customs_console=${'a'.repeat(43)}` } })
    assert.equal(res.status, 503)
    assert.equal(res.headers.get('retry-after'), '5')
    const html = await res.text()
    assert.match(html, /The state store is unavailable/)
    assert.match(html, /Redis/)
  })
})
