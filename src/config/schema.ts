// The configuration schema: its shape, its defaults (the embedded quick-start configuration), and
// the checks that need more than one field. Validated once at start into a frozen object.

import { z } from 'zod'
import { EVENT_TYPES } from '../audit/events.js'
import { trustSchema } from './trust-schema.js'
import { parseDuration, parseSize } from './units.js'

const duration = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseDuration(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

/** Node timers overflow past 2^31-1 ms (about 24.8 days) and then fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** A duration that is used as a timer, so it must fit one. */
const timerDuration = duration.refine((ms) => ms <= MAX_TIMER_MS, { message: 'must be at most 24d' })

const size = z.union([z.string(), z.number()]).transform((value, ctx) => {
  try {
    return parseSize(value)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

const httpUrl = z.string().refine(
  (value) => {
    try {
      const url = new URL(value)
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' && url.search === '' && url.hash === ''
    } catch {
      return false
    }
  },
  { message: 'must be an http(s) URL without credentials, query or fragment' }
)

/** An upstream name is the registry host clients know it by: `docker.io`, `ghcr.io`, `host:5000`. */
const upstreamName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/, 'must be a lowercase registry host such as ghcr.io or host:5000')

const hostPattern = z
  .string()
  .regex(/^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/, 'must be a host, optionally with a leading *. wildcard')

const secret = z
  .strictObject({
    value: z.string().min(1).optional(),
    file: z.string().min(1).optional(),
    env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
  })
  .refine((s) => [s.value, s.file, s.env].filter((v) => v !== undefined).length === 1, {
    message: 'set exactly one of value, file or env',
  })

const credentials = z
  .strictObject({
    username: z.string().min(1),
    password: z.union([z.string().min(1), secret]),
  })
  .describe('credentials Customs presents to this upstream (never a client credential)')

/**
 * TLS of an upstream's own (src/upstream/tls-settings.ts reads and checks the files at start);
 * paths are relative to the configuration file's folder. A client certificate needs its key and
 * the key its certificate.
 */
const upstreamTls = z
  .strictObject({
    /** CAs trusted for this upstream besides the system's, PEM: for its host, token realm and redirects. */
    ca: z.string().min(1).optional(),
    /** A client certificate (PEM, optionally followed by its chain), presented to the upstream's own origin only. */
    cert: z.string().min(1).optional(),
    /** Its private key, PEM, unencrypted. */
    key: z.string().min(1).optional(),
  })
  .superRefine((t, ctx) => {
    if (t.cert !== undefined && t.key === undefined) {
      ctx.addIssue({ code: 'custom', path: ['cert'], message: 'needs key, the private key of the client certificate' })
    }
    if (t.key !== undefined && t.cert === undefined) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: 'needs cert, the client certificate of this key' })
    }
  })

const upstream = z
  .strictObject({
    name: upstreamName,
    url: httpUrl,
    aliases: z.array(upstreamName).default([]),
    default: z.boolean().default(false),
    /** How long a tag -> digest mapping is trusted before a HEAD revalidates it. */
    tagTtl: duration.prefault('5m'),
    credentials: credentials.optional(),
    /** Hosts besides the upstream's own that may serve its token realm (auth.docker.io). */
    tokenRealmHosts: z.array(hostPattern).default([]),
    /** Per-attempt time to response headers, and the cap on a whole manifest/metadata request. */
    timeout: timerDuration.prefault('30s'),
    retries: z
      .strictObject({
        max: z.number().int().min(0).max(10).default(2),
        backoff: timerDuration.prefault('200ms'),
        maxBackoff: timerDuration.prefault('10s'),
      })
      .prefault({}),
    breaker: z
      .strictObject({
        failures: z.number().int().min(1).max(1000).default(5),
        cooldown: timerDuration.prefault('30s'),
      })
      .prefault({}),
    maxRedirects: z.number().int().min(0).max(10).default(5),
    tls: upstreamTls.optional(),
  })
  .superRefine((u, ctx) => {
    // Plain HTTP has no TLS to apply them to: settings that did nothing would read as protection.
    if (u.tls !== undefined && URL.parse(u.url)?.protocol !== 'https:') {
      ctx.addIssue({ code: 'custom', path: ['tls'], message: 'applies to https: upstreams only; url is not https:' })
    }
  })

const DEFAULT_UPSTREAMS = [
  {
    name: 'docker.io',
    url: 'https://registry-1.docker.io',
    // No `docker` alias: Docker Hub's own `docker/` namespace (docker/dockerfile) must stay reachable.
    aliases: ['index.docker.io', 'registry-1.docker.io'],
    default: true,
    tokenRealmHosts: ['auth.docker.io'],
  },
  { name: 'ghcr.io', url: 'https://ghcr.io', aliases: ['ghcr'] },
  { name: 'quay.io', url: 'https://quay.io', aliases: ['quay'] },
  { name: 'registry.k8s.io', url: 'https://registry.k8s.io', aliases: ['k8s'], tokenRealmHosts: ['*.pkg.dev'] },
  { name: 'gcr.io', url: 'https://gcr.io', aliases: ['gcr'] },
]

/**
 * HTTPS for the listener; absent, Customs serves plain HTTP. Paths are relative to the
 * configuration file's folder; src/tls/server.ts reads and checks the files at start.
 */
const tls = z
  .strictObject({
    /** The server certificate, PEM, optionally followed by its chain (`certs init` writes both). */
    cert: z.string().min(1),
    /** Its private key, PEM, unencrypted. */
    key: z.string().min(1),
    /** CAs whose client certificates are accepted (mTLS); the subject CN is logged as `client`. */
    clientCa: z.string().min(1).optional(),
    /** Refuse clients without a certificate from clientCa; false makes one optional. */
    requireClientCert: z.boolean().default(false),
  })
  .refine((t) => !t.requireClientCert || t.clientCa !== undefined, {
    path: ['requireClientCert'],
    message: 'needs tls.clientCa, the CA that signs client certificates',
  })

/** The most audit events kept in the Redis stream (and, up to its own cap, in process). */
export const AUDIT_RETENTION_MAX = 10_000_000

/** The tamper-evident audit log: where it is written besides the state store, and how much is kept. */
const audit = z.strictObject({
  /** A JSON-lines file this replica appends every event to, with its own hash chain. */
  file: z.string().min(1).optional(),
  retention: z
    .strictObject({
      events: z.number().int().min(1000).max(AUDIT_RETENTION_MAX).default(100_000),
    })
    .prefault({}),
})

/** Who may use the admin API: viewer reads, approver also decides, admin also configures. */
export const ADMIN_ROLES = ['viewer', 'approver', 'admin'] as const
export type AdminRole = (typeof ADMIN_ROLES)[number]

/** The admin API's bearer tokens, each kept only as the hex SHA-256 of the token. */
const admin = z.strictObject({
  tokens: z
    .array(
      z.strictObject({
        /** Who holds the token, for logs. */
        name: z.string().min(1).max(128),
        sha256: z
          .string()
          .regex(/^[0-9a-fA-F]{64}$/, 'must be the hex SHA-256 of the token (printf %s "$TOKEN" | sha256sum)')
          .transform((hex) => hex.toLowerCase()),
        role: z.enum(ADMIN_ROLES),
      })
    )
    .default([]),
})

/**
 * Who may pull: anyone (`anonymous`, the default, as mirrors are used), or only the clients listed,
 * each authenticating with HTTP Basic (user name = `name`, password = the secret whose SHA-256 is
 * kept). A client name cannot hold ':' (Basic splits user and password at the first one).
 */
const access = z.strictObject({
  anonymous: z.boolean().default(true),
  clients: z
    .array(
      z.strictObject({
        name: z
          .string()
          .min(1)
          .max(128)
          .regex(/^[\x21-\x39\x3b-\x7e]+$/, 'must be printable ASCII without spaces or ":"'),
        sha256: z
          .string()
          .regex(/^[0-9a-fA-F]{64}$/, 'must be the hex SHA-256 of the secret (printf %s "$SECRET" | sha256sum)')
          .transform((hex) => hex.toLowerCase()),
      })
    )
    .max(1000)
    .default([]),
})

/** The events a webhook hears when its `events` is not given: every quarantine change. */
export const DEFAULT_WEBHOOK_EVENTS = ['detention', 'release', 'revoke', 'release-expired', 'revocation', 'clearance', 'tag-move', 'purge'] as const

/** Where webhooks POST: http(s), no credentials in the URL (use the secret), no fragment. */
const webhookUrl = z.string().max(2048).refine(
  (value) => {
    try {
      const url = new URL(value)
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' && url.hash === ''
    } catch {
      return false
    }
  },
  { message: 'must be an http(s) URL without credentials or fragment' }
)

const webhook = z.strictObject({
  /** Names the webhook in logs and metrics (the URL may carry a token: never logged). */
  name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/, 'must be 1-64 letters, digits, _ . -'),
  url: webhookUrl,
  /** The HMAC-SHA256 key of Customs-Signature; inline, `{ file }` or `{ env }`, never logged. */
  secret: z.union([z.string().min(1), secret]),
  events: z.array(z.enum(EVENT_TYPES)).min(1).default([...DEFAULT_WEBHOOK_EVENTS]),
  /** One delivery attempt, to the end of the response. */
  timeout: timerDuration.prefault('10s'),
  /** Attempts per event, the first included. */
  maxAttempts: z.number().int().min(1).max(50).default(8),
  /** The first retry's delay; doubled on each retry (with jitter), up to maxBackoff. */
  backoff: timerDuration.prefault('1s'),
  /** The longest wait between attempts, a Retry-After included. */
  maxBackoff: timerDuration.prefault('5m'),
  /** Events waiting for this webhook; the oldest is dropped (and counted) beyond this. */
  queueSize: z.number().int().min(1).max(100_000).default(1000),
})

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: z.string().min(1).default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(5000),
        // Hostile clients (slow loris, idle sockets, huge headers) are bounded here; see
        // src/http/listener.ts for how each maps onto node:http.
        /** The longest a client may take to send its request headers (slow loris): 408. */
        headersTimeout: timerDuration.prefault('66s'),
        /** The longest a client may take to send its whole request, body included: 408. */
        requestTimeout: timerDuration.prefault('5m'),
        /** An idle keep-alive connection is closed after this. */
        keepAliveTimeout: timerDuration.prefault('65s'),
        /** A connection with no bytes moving either way for this long is closed. */
        idleTimeout: timerDuration.prefault('5m'),
        /** Request line plus headers larger than this are answered 431. */
        maxHeaderSize: size.pipe(z.number().min(1024, 'must be at least 1KiB').max(1024 * 1024, 'must be at most 1MiB')).prefault('16KiB'),
        /** Connections beyond this many open at once are refused at accept. */
        maxConnections: z.number().int().min(1).max(1_000_000).default(10_000),
      })
      .refine((l) => l.requestTimeout >= l.headersTimeout, { message: 'requestTimeout must be at least headersTimeout', path: ['requestTimeout'] })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .prefault({}),
    storage: z
      .strictObject({
        path: z.string().min(1).default('./data'),
        /** Least-recently-used blobs are evicted above this. */
        maxSize: size.prefault('50GiB'),
        /** How long one upstream blob fill may take before it is abandoned. */
        fillTimeout: timerDuration.prefault('30m'),
        /**
         * The in-memory cache of manifest bytes, for fast warm manifest answers. 16 MiB holds
         * thousands of manifests (most are a few KiB); a miss is one small disk read.
         */
        manifestMemory: size.prefault('16MiB'),
      })
      .prefault({}),
    state: z
      .strictObject({
        backend: z.enum(['memory', 'redis']).default('memory'),
        redis: z
          .strictObject({
            url: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
            prefix: z.string().regex(/^[a-zA-Z0-9_-]+$/).default('customs'),
          })
          .prefault({}),
        /** How long a fill lock is held without renewal before another replica may take over. */
        lockTtl: timerDuration.prefault('30s'),
      })
      .prefault({}),
    upstreams: z.array(upstream).min(1).prefault(DEFAULT_UPSTREAMS),
    tls: tls.optional(),
    trust: trustSchema.prefault({}),
    policy: z
      .strictObject({
        /** The folder of policy files; absent: the shipped default set (audit mode). */
        path: z.string().min(1).optional(),
        /** Reload when a file in the folder changes (SIGHUP always reloads). */
        watch: z.boolean().default(true),
      })
      .prefault({}),
    /** The admin API under /admin/v1/; without tokens it answers 401 to every request. */
    admin: admin.prefault({}),
    /** Who may use the pull API (/v2/); health, metrics and the admin API are not affected. */
    access: access.prefault({}),
    audit: audit.prefault({}),
    quarantine: z
      .strictObject({
        /** How often each replica detains again the digests whose release expired. */
        expiryInterval: timerDuration.refine((ms) => ms >= 100, { message: 'must be at least 100ms' }).prefault('15s'),
      })
      .prefault({}),
    notifications: z
      .strictObject({
        webhooks: z.array(webhook).max(32).default([]),
        /** How long shutdown waits for queued deliveries before dropping them. */
        drainTimeout: timerDuration.prefault('5s'),
      })
      .prefault({}),
    /** The security team's web console under /console/, a client of the admin API. */
    console: z.strictObject({ enabled: z.boolean().default(false) }).prefault({}),
  })
  .superRefine((config, ctx) => {
    const seen = new Map<string, number>()
    config.upstreams.forEach((u, i) => {
      // The path names the offending name or alias itself, so the error points at its line.
      const names: [string, (string | number)[]][] = [
        [u.name, ['upstreams', i, 'name']],
        ...u.aliases.map((a, j): [string, (string | number)[]] => [
          a,
          ['upstreams', i, 'aliases', j],
        ]),
      ]
      for (const [name, path] of names) {
        const first = seen.get(name)
        if (first !== undefined) {
          const message = `${name} already names upstreams[${first}]`
          ctx.addIssue({ code: 'custom', path, message })
        }
        seen.set(name, i)
      }
    })
    const tokenNames = new Map<string, number>()
    config.admin.tokens.forEach((t, i) => {
      const first = tokenNames.get(t.name)
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['admin', 'tokens', i, 'name'], message: `${t.name} already names admin.tokens[${first}]` })
      }
      tokenNames.set(t.name, i)
    })
    const clientNames = new Map<string, number>()
    config.access.clients.forEach((client, i) => {
      const first = clientNames.get(client.name)
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['access', 'clients', i, 'name'], message: `${client.name} already names access.clients[${first}]` })
      }
      clientNames.set(client.name, i)
    })
    if (!config.access.anonymous && config.access.clients.length === 0) {
      // Nobody could pull: surely a mistake, so say so at start rather than answer 401 to all.
      ctx.addIssue({ code: 'custom', path: ['access', 'anonymous'], message: 'false needs at least one access.clients entry' })
    }
    const hookNames = new Map<string, number>()
    config.notifications.webhooks.forEach((w, i) => {
      const first = hookNames.get(w.name)
      if (first !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['notifications', 'webhooks', i, 'name'], message: `${w.name} already names notifications.webhooks[${first}]` })
      }
      hookNames.set(w.name, i)
    })
    const defaults = config.upstreams.flatMap((u, i) => (u.default ? [i] : []))
    for (const i of defaults.slice(1)) {
      ctx.addIssue({
        code: 'custom',
        path: ['upstreams', i, 'default'],
        message: `at most one upstream may be the default (upstreams[${defaults[0]}] already is)`,
      })
    }
  })

export type ConfigInput = z.input<typeof configSchema>
/** What the schema yields: a password may still be a reference to a file or variable. */
export type ParsedConfig = z.output<typeof configSchema>
export type SecretRef = z.output<typeof secret>
type ParsedUpstream = ParsedConfig['upstreams'][number]
type ParsedWebhook = ParsedConfig['notifications']['webhooks'][number]

/** A webhook as the program sees it: its secret resolved to the string (config/load.ts). */
export type WebhookConfig = Omit<ParsedWebhook, 'secret'> & { secret: string }

/** An upstream as the program sees it: its password resolved to the string (config/load.ts). */
export type UpstreamConfig = Omit<ParsedUpstream, 'credentials'> & {
  credentials?: { username: string; password: string }
}
/** The configuration the program runs with, as config/load.ts returns it: every secret resolved. */
export type Config = Omit<ParsedConfig, 'upstreams' | 'notifications'> & {
  upstreams: UpstreamConfig[]
  notifications: Omit<ParsedConfig['notifications'], 'webhooks'> & { webhooks: WebhookConfig[] }
}
