// The `customs` command, and the only place that reads process.env and calls process.exit:
//   customs serve [--config FILE]      run the mirror
//   customs config check FILE          validate a configuration and print it, secrets redacted
//   customs certs init|renew|client    make the CA and certificates for HTTPS and mTLS
//   customs policy lint|test DIR       validate a policy folder; test it on cases or a real image
//   customs quarantine ..., decisions ls   the admin API of a running Customs
//   customs audit verify               check the audit log's hash chain (a file or the Redis stream)

import { parseArgs, type ParseArgsConfig } from 'node:util'
import { serve } from '@hono/node-server'
import type { Server } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { dirname, resolve as resolvePath } from 'node:path'
import { createApp } from './app.js'
import { AuditFileError } from './audit/file.js'
import { bootstrapConsoleToken } from './console/bootstrap.js'
import { ConfigError, loadConfig } from './config/load.js'
import type { Config } from './config/schema.js'
import { PolicyError } from './policy/load.js'
import { createLogger } from './observability/logger.js'
import { applyListenerLimits, listenerOptions } from './http/listener.js'
import { createServices } from './services.js'
import { TlsError } from './tls/errors.js'
import { loadTlsMaterial, logTlsMaterial, tlsReloader, type TlsMaterial } from './tls/server.js'
import { TrustFileError } from './verify/trust.js'

// The subcommands other than serve are imported when run (and their usage text when printed):
// their modules (node-forge, ioredis, the policy test harness) would otherwise stay resident in
// every server for nothing.

/** The whole usage text, with each subcommand module's own part. */
async function usage(): Promise<string> {
  const [{ ADMIN_USAGE }, { AUDIT_USAGE }, { CERTS_USAGE }] = await Promise.all([
    import('./cli/admin.js'),
    import('./cli/audit.js'),
    import('./cli/certs.js'),
  ])
  return `usage:
  customs serve [--config FILE]     run Customs (embedded defaults without a file; CUSTOMS_* overrides)
  customs config check FILE         validate a configuration file
  customs policy lint DIR [--config FILE]
                                    validate a policy folder (key names and upstreams from the config)
  customs policy test DIR --cases FILE [--config FILE]
                                    decide the cases in FILE offline; exit 1 on any mismatch
  customs policy test DIR --image REF [--config FILE]
                                    inspect REF (name[:tag|@digest]) from its upstream as a pull
                                    would, print every rule's outcome; exit 1 when detained
  customs policy diff DIR [--url URL] [--token TOKEN] [--json] [--days N] [--config FILE]
                                    what would change if DIR were in force, asked of a running
                                    Customs (CUSTOMS_URL, CUSTOMS_ADMIN_TOKEN); changes nothing;
                                    exit 0 no change, 1 changes, 2 trouble
${AUDIT_USAGE}${CERTS_USAGE}${ADMIN_USAGE}`
}

async function runServe(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true })
  const file = values.config ?? process.env.CUSTOMS_CONFIG
  let config
  try {
    config = await loadConfig({ ...(file !== undefined ? { file } : {}), env: process.env })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      return 2
    }
    throw err
  }
  const logger = createLogger({ level: config.log.level })
  // The quick start's console needs a way in: a generated admin token when none is configured.
  const bootstrap = await bootstrapConsoleToken(config, logger)
  if (bootstrap !== undefined) {
    config = bootstrap.config
    // Shown on the terminal once, when made, and never in the JSON log; it stays in the file.
    if (bootstrap.created !== undefined) {
      process.stderr.write(`\nCustoms console admin token (shown once; kept in ${bootstrap.file}, mode 0600):\n  ${bootstrap.created}\n\n`)
    }
  }
  // TLS files are checked before anything else starts, so a bad one stops Customs at once.
  // Relative paths are from the configuration file's folder, like secret files.
  const base = file !== undefined ? dirname(resolvePath(file)) : process.cwd()
  let tls: TlsMaterial | undefined
  if (config.tls !== undefined) {
    try {
      tls = await loadTlsMaterial(config.tls, { base })
    } catch (err) {
      if (!(err instanceof TlsError)) throw err
      process.stderr.write(`${err.message}\n`)
      return 2
    }
    logTlsMaterial(logger, tls, 'tls certificates loaded')
  }
  let services
  try {
    services = await createServices(config, logger, file !== undefined ? { baseDir: dirname(resolvePath(file)) } : {})
  } catch (err) {
    // A policy set that does not validate stops the start: there is no previous set to keep. So
    // does an upstream's TLS file or a trust file that cannot be used.
    if (err instanceof PolicyError || err instanceof AuditFileError || err instanceof TlsError || err instanceof TrustFileError) {
      process.stderr.write(`${err.message}\n`)
      return 2
    }
    throw err
  }
  const app = await createApp(services)
  // Timeouts, header size and connection cap from listen.* (src/http/listener.ts).
  const common = listenerOptions(config.listen)
  const listen = { fetch: app.fetch, hostname: config.listen.host, port: config.listen.port }
  const server = (
    tls === undefined
      ? serve({ ...listen, serverOptions: common })
      : serve({
          ...listen,
          createServer: createHttpsServer,
          serverOptions: { ...common, ...tls.serverOptions },
        })
  ) as Server
  applyListenerLimits(server, config.listen)
  if (tls !== undefined && config.tls !== undefined) {
    const https = server as unknown as HttpsServer
    // A client that does not trust the CA, or sends plain HTTP, fails here and never reaches a
    // route; at debug level this says why.
    https.on('tlsClientError', (err, socket) => {
      logger.debug({ reason: err.message, remote: socket.remoteAddress }, 'tls handshake failed')
    })
    const reload = tlsReloader(https, config.tls, { base, logger })
    process.on('SIGHUP', () => void reload())
  }
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve)
    server.once('error', reject)
  })
  // SIGHUP reloads the policy set (and the listener's certificates, above); a set that fails
  // stays out. It renews upstreams' TLS too; an upstream whose files fail keeps its settings. And
  // the trust files: all of them pass, or the previous trust stays.
  process.on('SIGHUP', () => {
    void services.reloadPolicies()
    void services.reloadUpstreamTls()
    void services.reloadTrust()
  })
  // Verdicts reached under another policy or trust revision (a restart with new trust, say) are
  // judged again in the background; a walk that finds nothing stale only reads.
  services.reevaluator.start('start')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.listen.port
  logger.info({ host: config.listen.host, port, scheme: tls === undefined ? 'http' : 'https', upstreams: config.upstreams.map((u) => u.name), state: config.state.backend, storage: config.storage.path, policies: services.policyDir, policyRevision: services.policies.current().revision, ...(config.console.enabled ? { console: '/console/' } : {}) }, 'customs listening')

  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string) => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'shutting down')
      // Stop taking connections, let answers in flight finish, then close state and storage.
      server.close(() => {
        void services.close().finally(() => {
          logger.flush()
          resolve(0)
        })
      })
      server.closeIdleConnections()
      setTimeout(() => server.closeAllConnections(), 10_000).unref()
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === 'serve' || command === undefined) return runServe(rest)
  if (command === 'certs') {
    const { certsCommand } = await import('./cli/certs.js')
    return certsCommand(rest, { stdout: process.stdout, stderr: process.stderr })
  }
  if (command === 'config' && rest[0] === 'check' && rest[1] !== undefined) {
    const { configCheck } = await import('./cli/config-check.js')
    return configCheck(rest[1], { stdout: process.stdout, stderr: process.stderr }, { env: process.env })
  }
  if (command === 'policy' && rest[0] === 'lint') return runPolicyLint(rest.slice(1))
  if (command === 'policy' && rest[0] === 'test') return runPolicyTest(rest.slice(1))
  if (command === 'policy' && rest[0] === 'diff') return runPolicyDiff(rest.slice(1))
  const adminIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }
  if (command === 'quarantine') return (await import('./cli/admin.js')).quarantineCommand(rest, adminIo)
  if (command === 'decisions') return (await import('./cli/admin.js')).decisionsCommand(rest, adminIo)
  if (command === 'audit' && rest[0] === 'verify') return runAuditVerify(rest.slice(1))
  process.stderr.write(await usage())
  return command === 'help' || command === '--help' ? 0 : 2
}

/** Parses a subcommand's arguments; prints the problem and the usage, and gives undefined, on error. */
async function cliArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true })
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${await usage()}`)
    return undefined
  }
}

/** The configuration a subcommand works with (--config, CUSTOMS_CONFIG, or the defaults). */
async function cliConfig(file: string | undefined): Promise<Config | undefined> {
  const path = file ?? process.env.CUSTOMS_CONFIG
  try {
    return await loadConfig({ ...(path !== undefined ? { file: path } : {}), env: process.env })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`${err.message}\n`)
    return undefined
  }
}

async function runPolicyLint(args: string[]): Promise<number> {
  const parsed = await cliArgs(args, { config: { type: 'string', short: 'c' } })
  if (parsed === undefined) return 2
  const { values, positionals } = parsed
  const dir = positionals[0]
  if (dir === undefined) {
    process.stderr.write(await usage())
    return 2
  }
  const config = await cliConfig(values.config)
  if (config === undefined) return 2
  const { policyLint } = await import('./cli/policy.js')
  return policyLint(dir, { stdout: process.stdout, stderr: process.stderr }, {
    keyNames: new Set(config.trust.keys.map((k) => k.name)),
    upstreams: new Set(config.upstreams.map((u) => u.name)),
  })
}

async function runPolicyDiff(args: string[]): Promise<number> {
  const parsed = await cliArgs(args, {
    config: { type: 'string', short: 'c' },
    url: { type: 'string' },
    token: { type: 'string' },
    json: { type: 'boolean' },
    days: { type: 'string' },
  })
  if (parsed === undefined) return 2
  const { values, positionals } = parsed
  const dir = positionals[0]
  const days = values.days === undefined ? undefined : /^\d{1,2}$/.test(values.days) ? Number(values.days) : NaN
  if (dir === undefined || positionals.length > 1 || (days !== undefined && !(days <= 90))) {
    process.stderr.write(await usage())
    return 2
  }
  const config = await cliConfig(values.config)
  if (config === undefined) return 2
  const { DEFAULT_CUSTOMS_URL, policyDiff } = await import('./cli/policy-diff.js')
  return policyDiff(dir, { stdout: process.stdout, stderr: process.stderr }, {
    url: values.url ?? process.env.CUSTOMS_URL ?? DEFAULT_CUSTOMS_URL,
    token: values.token ?? process.env.CUSTOMS_ADMIN_TOKEN,
    json: values.json === true,
    ...(days !== undefined ? { days } : {}),
    loadOptions: {
      keyNames: new Set(config.trust.keys.map((k) => k.name)),
      upstreams: new Set(config.upstreams.map((u) => u.name)),
    },
  })
}

// ---------------------------------------------------------------------------------------------
// customs policy test DIR (--cases FILE | --image REF) [--config FILE]

async function runPolicyTest(args: string[]): Promise<number> {
  const parsed = await cliArgs(args, {
    config: { type: 'string', short: 'c' },
    cases: { type: 'string' },
    image: { type: 'string' },
  })
  if (parsed === undefined) return 2
  const { values, positionals } = parsed
  const dir = positionals[0]
  const modes = [values.cases, values.image].filter((v) => v !== undefined).length
  if (dir === undefined || positionals.length > 1 || modes !== 1) {
    process.stderr.write(await usage())
    return 2
  }
  const config = await cliConfig(values.config)
  if (config === undefined) return 2
  const configFile = values.config ?? process.env.CUSTOMS_CONFIG
  const io = { stdout: process.stdout, stderr: process.stderr }
  const { policyTestCases, policyTestImage } = await import('./cli/policy-test.js')
  if (values.cases !== undefined) {
    const keyNames = new Set(config.trust.keys.map((k) => k.name))
    const upstreams = new Set(config.upstreams.map((u) => u.name))
    return policyTestCases(dir, values.cases, io, { keyNames, upstreams })
  }
  return policyTestImage(dir, values.image as string, io, {
    config,
    ...(configFile !== undefined ? { baseDir: dirname(resolvePath(configFile)) } : {}),
    logger: createLogger({ level: 'error', destination: process.stderr }),
  })
}

// ---------------------------------------------------------------------------------------------
// customs audit verify (--file FILE | --config FILE)

async function runAuditVerify(args: string[]): Promise<number> {
  const parsed = await cliArgs(args, { file: { type: 'string' }, config: { type: 'string', short: 'c' } })
  if (parsed === undefined) return 2
  const { values, positionals } = parsed
  if (positionals.length > 0 || (values.file === undefined) === (values.config === undefined)) {
    process.stderr.write(`customs audit verify needs exactly one of --file or --config\n${await usage()}`)
    return 2
  }
  const io = { stdout: process.stdout, stderr: process.stderr }
  const { auditVerifyConfig, auditVerifyFile } = await import('./cli/audit.js')
  if (values.file !== undefined) return auditVerifyFile(values.file, io)
  const config = await cliConfig(values.config)
  if (config === undefined) return 2
  return auditVerifyConfig(config, io)
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`customs: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  }
)
