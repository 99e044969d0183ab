// Starts Customs in this process on a free loopback port, with a configuration built from the
// defaults plus the test's upstreams, a temp storage folder, and logs kept for assertions.

import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { createApp } from '../../src/app.js'
import { applyListenerLimits, listenerOptions } from '../../src/http/listener.js'
import { parseConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { createLogger } from '../../src/observability/logger.js'
import { Metrics } from '../../src/observability/metrics.js'
import { createServices, type Services } from '../../src/services.js'
import type { StateStore } from '../../src/state/store.js'
import { logLines } from './logs.js'

export interface CustomsHandle {
  readonly url: string
  readonly host: string
  readonly services: Services
  /** The hono app itself, for requests made in process (`app.request`). */
  readonly app: Awaited<ReturnType<typeof createApp>>
  readonly storage: string
  /** Every JSON log line written so far. */
  readonly logs: Array<Record<string, unknown>>
  stop(): Promise<void>
}

export interface StartOptions {
  /** YAML configuration text; `storage.path` is set to a temp folder unless it is given. */
  readonly config?: string
  readonly state?: StateStore
  readonly storage?: string
  /** Where relative paths in the configuration (upstreams' TLS files, trust files) are resolved. */
  readonly baseDir?: string
}

export async function startCustoms(options: StartOptions = {}): Promise<CustomsHandle> {
  const storage = options.storage ?? (await mkdtemp(join(tmpdir(), 'customs-storage-')))
  const parsed = parseConfig(options.config ?? '', { env: {} }) as Config
  const config: Config = { ...parsed, storage: { ...parsed.storage, path: storage } }
  const { destination, lines: logs } = logLines()
  const logger = createLogger({ level: 'debug', destination })
  const services = await createServices(config, logger, {
    metrics: new Metrics(),
    ...(options.state !== undefined ? { state: options.state } : {}),
    ...(options.baseDir !== undefined ? { baseDir: options.baseDir } : {}),
  })
  const app = await createApp(services)
  // The listener limits production runs with (listen.*), so that tests exercise them too.
  const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0, serverOptions: listenerOptions(config.listen) }) as Server
  applyListenerLimits(server, config.listen)
  await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    services,
    app,
    storage,
    logs,
    async stop() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await services.close()
      if (options.storage === undefined) await rm(storage, { recursive: true, force: true })
    },
  }
}

/** A configuration whose only upstream is `url` under `name`, the default; retries kept short. */
export function upstreamConfig(name: string, url: string, extra = ''): string {
  return `
upstreams:
  - name: ${JSON.stringify(name)}
    url: ${url}
    default: true
    retries: { max: 1, backoff: 10ms, maxBackoff: 200ms }
    timeout: 5s
${extra
  .split('\n')
  .map((l) => (l.trim() === '' ? '' : `    ${l}`))
  .join('\n')}
`
}

/**
 * `upstreams:` YAML in which one registry stands in for Docker Hub (the default) and, unless
 * `ghcr` is false, for ghcr.io (alias `ghcr`): the real-client tests' usual setup.
 */
export function standInUpstreams(url: string, options: { ghcr?: boolean } = {}): string {
  const ghcr = options.ghcr === false ? '' : `  - name: ghcr.io\n    url: ${url}\n    aliases: [ghcr]\n`
  return `upstreams:\n  - name: docker.io\n    url: ${url}\n    default: true\n    aliases: [index.docker.io]\n${ghcr}`
}
