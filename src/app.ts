// The hono app assembled from its parts: access log first, then health and metrics, then the
// registry API, the admin API and, when enabled, the web console (its pages render their own
// errors as HTML); errors of every other route are rendered by the one OCI error renderer.

import { Hono } from 'hono'
import { CustomsError } from './errors.js'
import type { Env } from './http/context.js'
import { accessLog } from './http/middleware/access-log.js'
import { pullAuth } from './http/middleware/pull-auth.js'
import { errorResponse, onError } from './http/oci-error.js'
import { adminRoutes } from './http/routes/admin.js'
import { healthRoutes } from './http/routes/health.js'
import { v2Routes } from './http/routes/v2.js'
import type { Services } from './services.js'

/** The app; async because the console's module is imported only when the console is enabled. */
export async function createApp(services: Services): Promise<Hono<Env>> {
  const app = new Hono<Env>()
  app.use('*', accessLog(services.logger, services.metrics))
  app.route('/', healthRoutes({ state: services.state, storagePath: services.config.storage.path, metrics: services.metrics, policies: services.policies }))
  // Only the pull API (/v2 and below); without clients there is nothing to check, so nothing runs.
  const access = services.config.access
  if (access.clients.length > 0) app.use('/v2/*', pullAuth(access))
  app.route('/', v2Routes(services))
  app.route(
    '/',
    adminRoutes({
      tokens: services.config.admin.tokens,
      state: services.state,
      policies: services.policies,
      policyDir: services.policyDir,
      policyReloads: () => services.policyReloads(),
      logger: services.logger,
      events: services.events,
      audit: services.audit.store,
      ops: {
        upstreams: services.upstreams,
        cache: services.store,
        storage: { path: services.config.storage.path, maxSize: services.config.storage.maxSize },
        metrics: services.metrics,
      },
      reevaluation: {
        store: services.store,
        memory: services.memory,
        policyLoadOptions: services.policyLoadOptions,
        reevaluator: services.reevaluator,
      },
    })
  )
  if (services.config.console.enabled) {
    // Its pages (JSX views, styles, forms) stay out of memory in the many installs without it.
    const { consoleRoutes } = await import('./console/routes.js')
    const { sessionStoreFor } = await import('./console/session.js')
    app.route(
      '/',
      consoleRoutes({
        admin: async (path, init) => app.request(path, init),
        upstreams: services.config.upstreams.map((u) => u.name),
        secure: services.config.tls !== undefined,
        logger: services.logger,
        // With Redis state, in its Redis: a sign-in holds on whichever replica a request reaches.
        sessions: await sessionStoreFor(services.state),
      })
    )
  }
  app.notFound((c) => errorResponse(new CustomsError('NAME_UNKNOWN', 'not found'), c.req.method))
  app.onError(onError(services.logger))
  return app
}
