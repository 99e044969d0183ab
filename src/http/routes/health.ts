// /healthz (the process answers), /readyz (state answers, storage is writable, a policy set is in
// force) and /metrics.

import { Hono } from 'hono'
import { access, constants } from 'node:fs/promises'
import type { Metrics } from '../../observability/metrics.js'
import { EMPTY_POLICY_SET, type PolicyEngine } from '../../policy/engine.js'
import type { StateStore } from '../../state/store.js'
import type { Env } from '../context.js'

export function healthRoutes(deps: { state: StateStore; storagePath: string; metrics: Metrics; policies?: PolicyEngine }): Hono<Env> {
  const app = new Hono<Env>()
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const checks: Record<string, string> = {}
    await deps.state.ping().then(
      () => (checks.state = 'ok'),
      (err: Error) => (checks.state = err.message)
    )
    await access(deps.storagePath, constants.W_OK).then(
      () => (checks.storage = 'ok'),
      () => (checks.storage = 'not writable')
    )
    // Services load a set before the port opens and a failed reload keeps the previous one; the
    // engine's empty placeholder set means nothing was loaded, and would clear every image.
    let revision: string | undefined
    if (deps.policies !== undefined) {
      const set = deps.policies.current()
      checks.policies = set === EMPTY_POLICY_SET ? 'no policy set loaded' : 'ok'
      revision = set.revision
    }
    const ready = Object.values(checks).every((v) => v === 'ok')
    return c.json({ status: ready ? 'ready' : 'not ready', checks, ...(revision !== undefined ? { policyRevision: revision } : {}) }, ready ? 200 : 503)
  })
  app.get('/metrics', async (c) => {
    return c.body(await deps.metrics.registry.metrics(), 200, { 'Content-Type': deps.metrics.registry.contentType })
  })
  return app
}
