// Builds every long-lived part from the configuration, once, in dependency order. main.ts calls it
// for the real server; tests call it with their own state store and logger.

import { EventBus } from './audit/events.js'
import type { AuditLog } from './audit/log.js'
import { createAuditLog } from './audit/setup.js'
import type { Config, UpstreamConfig } from './config/schema.js'
import { BlobStore } from './cache/blob-store.js'
import { ManifestMemory } from './cache/manifest-memory.js'
import { BlobService } from './inspection/blobs.js'
import { Inspector } from './inspection/inspector.js'
import { Listings } from './inspection/listings.js'
import { ManifestService } from './inspection/manifests.js'
import { Reevaluator } from './inspection/reevaluate.js'
import type { PolicyLoadOptions } from './policy/load.js'
import type { Logger } from './observability/logger.js'
import { Metrics } from './observability/metrics.js'
import { MemoryStateStore } from './state/memory.js'
import { FallbackStateStore } from './state/fallback.js'
import type { RepoKey, StateStore } from './state/store.js'
import picomatch from 'picomatch'
import { artifactReader } from './inspection/artifact-reader.js'
import { SignatureService } from './verify/service.js'
import { PolicyEngine } from './policy/engine.js'
import { loadPolicies } from './policy/load.js'
import { PolicyReloader, type ReloadResult } from './policy/reload.js'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inlineKeys, type PolicySet } from './policy/types.js'
import type { TrustedKey } from './verify/trust.js'
import { createPublicKey } from 'node:crypto'
import { MAX_CONFIG_BYTES } from './inspection/facts.js'
import { loadTrust } from './verify/trust.js'
import { TrustHolder, trustReloader, type TrustRenewal } from './verify/trust-reload.js'
import { SignatureVerifier } from './verify/verifier.js'
import type { Credentials } from './upstream/auth.js'
import { UpstreamPool } from './upstream/pool.js'
import { UpstreamRouter } from './upstream/routing.js'
import { upstreamTlsReloader, type UpstreamTlsRenewal } from './upstream/tls-reload.js'
import { loadUpstreamsTls, logUpstreamTls } from './upstream/tls-settings.js'
import { Notifier } from './notify/webhooks.js'
import { ReleaseExpiry } from './quarantine/expiry.js'

export interface Services {
  readonly config: Config
  readonly logger: Logger
  readonly metrics: Metrics
  readonly state: StateStore
  readonly store: BlobStore
  readonly router: UpstreamRouter
  readonly upstreams: UpstreamPool
  readonly manifests: ManifestService
  readonly blobs: BlobService
  readonly listings: Listings
  readonly policies: PolicyEngine
  /** Every decision and quarantine change, for the audit log, webhooks and metrics. */
  readonly events: EventBus
  /** The tamper-evident record of every event (store, and file when configured). */
  readonly audit: AuditLog
  /** Loads the policy folder again (SIGHUP); the previous set stays when the new one fails. */
  reloadPolicies(): Promise<ReloadResult>
  /** The recent reload attempts, oldest first (bounded), for the admin API. */
  policyReloads(): ReadonlyArray<ReloadResult & { readonly at: string }>
  /**
   * Reads every upstream's TLS files again (SIGHUP) and renews those whose files all pass; the
   * others keep their settings. Never throws: each outcome is logged.
   */
  reloadUpstreamTls(): Promise<readonly UpstreamTlsRenewal[]>
  /**
   * Reads every trust file again (SIGHUP) and puts the new trust in force when all pass, then
   * judges the cache again if its revision moved; otherwise the previous trust stays. Never throws.
   */
  reloadTrust(): Promise<TrustRenewal>
  /** The policy folder in force, when policies come from files. */
  readonly policyDir: string | undefined
  /** The bounded in-memory copy of manifest bytes (a purge drops from it too). */
  readonly memory: ManifestMemory
  /** Judges the cache again after a policy or trust change (reloads start it). */
  readonly reevaluator: Reevaluator
  /** What policy sets are validated against: trust key names and upstreams (the diff route). */
  readonly policyLoadOptions: PolicyLoadOptions
  /** Detains again the digests whose release expired (every quarantine.expiryInterval). */
  readonly releaseExpiry: ReleaseExpiry
  close(): Promise<void>
}

export interface ServiceOverrides {
  readonly state?: StateStore
  readonly metrics?: Metrics
  /** Where relative trust file paths are resolved: the configuration file's folder. */
  readonly baseDir?: string
  /** A policy set to start with instead of the configured one (tests). */
  readonly policies?: PolicySet
}

/** The shipped default policy set (audit mode), beside src/ and dist/ alike. */
export const DEFAULT_POLICY_DIR = fileURLToPath(new URL('../policies/default', import.meta.url))

/** The idle limit of an upstream blob transfer: a stalled upstream is abandoned after this. */
const FILL_IDLE_TIMEOUT_FACTOR = 2

export async function createServices(config: Config, logger: Logger, overrides: ServiceOverrides = {}): Promise<Services> {
  // Upstreams' TLS files are checked first, so that a bad one stops the start before anything
  // is opened (TlsError, naming the setting and the file).
  const base = overrides.baseDir ?? process.cwd()
  const upstreamTls = await loadUpstreamsTls(config.upstreams, { base })
  for (const [upstream, tls] of upstreamTls) logUpstreamTls(logger, upstream, tls, 'upstream tls loaded')
  // So are trust files (TrustFileError).
  const trust = new TrustHolder(await loadTrust(config.trust, base))
  const metrics = overrides.metrics ?? new Metrics({ defaultMetrics: true })
  const state = overrides.state ?? (await createState(config, logger, metrics))
  const events = new EventBus(logger)
  const audit = await createAuditLog(config, state, { metrics, logger }).catch(async (err: unknown) => {
    if (overrides.state === undefined) await state.close()
    throw err
  })
  audit.attach(events)
  // Subscribed before anything can emit, so that webhooks hear every event from the start.
  const notifier = new Notifier(config.notifications.webhooks, { metrics, logger })
  notifier.subscribe(events)
  const byName = new Map(config.upstreams.map((u) => [u.name, u]))
  const upstreamConfig = (name: string): UpstreamConfig => byName.get(name) as UpstreamConfig
  const store = await BlobStore.open({
    root: config.storage.path,
    maxSize: config.storage.maxSize,
    fillTimeout: config.storage.fillTimeout,
    idleTimeout: Math.max(...config.upstreams.map((u) => u.timeout)) * FILL_IDLE_TIMEOUT_FACTOR,
    lockTtl: config.state.lockTtl,
    state,
    metrics,
    logger,
  })
  const router = new UpstreamRouter(config.upstreams)
  const upstreams = new UpstreamPool(config.upstreams, { metrics, logger, credentials: credentialsOf, tls: upstreamTls })
  const reloadUpstreamTls = upstreamTlsReloader(config.upstreams, upstreams, { base, logger })
  const blobs = new BlobService({ upstreams, state, blobs: store, metrics })
  const listings = new Listings(upstreams)
  // The signature service reads artifacts through the manifest service, built just below.
  let manifests: ManifestService | undefined
  // Policies are loaded below; the verifier reads their inline keys at each verification.
  let policies: PolicyEngine | undefined
  const signatures = new SignatureService(
    new SignatureVerifier(trust, () => (policies === undefined ? [] : policyKeys(policies.current()))),
    () => artifactReader(manifests as ManifestService, blobs, listings),
    {
      attestations: config.trust.discovery.attestations,
      maxArtifacts: config.trust.discovery.maxArtifacts,
      negativeTtl: config.trust.discovery.negativeTtl,
      signatureRepository: signatureRepositories(config),
      onFailure: (reason) => metrics.verificationFailures.inc({ reason }),
    }
  )
  const policyDir = config.policy.path === undefined ? DEFAULT_POLICY_DIR : resolve(overrides.baseDir ?? process.cwd(), config.policy.path)
  const policyLoadOptions: PolicyLoadOptions = {
    keyNames: new Set(config.trust.keys.map((k) => k.name)),
    upstreams: new Set(config.upstreams.map((u) => u.name)),
  }
  const loadSet = () => loadPolicies(policyDir, policyLoadOptions)
  // A set that does not load at start stops the start: there is no previous set to keep.
  policies = new PolicyEngine(overrides.policies ?? (await loadSet()))
  // Built below; a reload that changes the revision judges the cache again.
  let reevaluator: Reevaluator | undefined
  const reloader = new PolicyReloader(policies, loadSet, logger, () => void reevaluator?.start('reload'))
  const reloadTrust = trustReloader(config.trust, trust, { base, logger, onChange: () => void reevaluator?.start('trust-reload') })
  if (overrides.policies === undefined && config.policy.watch) reloader.watch(policyDir)
  const inspector = new Inspector({
    signatures,
    trust,
    policies,
    metrics,
    readConfig: async (repo, config) => {
      try {
        return await blobs.readForInspection(repo, config.digest, config.size, MAX_CONFIG_BYTES)
      } catch (err) {
        // Facts from the config are then unknown; rules that need them fail, closed.
        logger.warn({ upstream: repo.upstream, repository: repo.repository, digest: config.digest, err: (err as Error).message }, 'failed to read image config')
        return undefined
      }
    },
  })
  const memory = new ManifestMemory(config.storage.manifestMemory)
  manifests = new ManifestService({
    upstreams,
    upstreamConfig,
    state,
    blobs: store,
    memory,
    inspector,
    policies,
    metrics,
    logger,
    events,
    staleRecorded: () => void reevaluator?.start('stale-verdict'),
  })
  metrics.sources.quarantineRecords = () => state.countQuarantine()
  metrics.sources.singleFlightWaiters = () => (manifests as ManifestService).waiters()
  reevaluator = new Reevaluator({
    state,
    policies,
    revision: () => inspector.revision,
    manifests,
    events,
    logger,
    lockTtl: config.state.lockTtl,
  })
  const releaseExpiry = new ReleaseExpiry({
    state,
    events,
    logger,
    intervalMs: config.quarantine.expiryInterval,
  })
  releaseExpiry.start()
  return {
    config,
    logger,
    metrics,
    state,
    store,
    router,
    upstreams,
    manifests,
    blobs,
    listings,
    policies,
    events,
    audit,
    reloadPolicies: () => reloader.reload(),
    policyReloads: () => [...reloader.history],
    reloadUpstreamTls,
    reloadTrust,
    policyDir: overrides.policies === undefined ? policyDir : undefined,
    memory,
    reevaluator,
    policyLoadOptions,
    releaseExpiry,
    async close() {
      reloader.close()
      await reevaluator?.close()
      await releaseExpiry.stop()
      await notifier.close(config.notifications.drainTimeout)
      // Before the state: the audit store writes through the state's Redis connection.
      await audit.close()
      await store.close()
      await state.close()
    },
  }
}

/** The inline keys of a policy set as trusted keys, computed once per set. */
const keyCache = new WeakMap<PolicySet, TrustedKey[]>()
function policyKeys(set: PolicySet): TrustedKey[] {
  let keys = keyCache.get(set)
  if (keys === undefined) {
    keys = inlineKeys(set).map(({ name, pem }) => {
      const key = createPublicKey(pem)
      return { name, key, type: key.asymmetricKeyType ?? 'unknown' }
    })
    keyCache.set(set, keys)
  }
  return keys
}

/** Maps a repository to where its signatures live (cosign's COSIGN_REPOSITORY), by glob. */
function signatureRepositories(config: Config): (repo: RepoKey) => RepoKey {
  const rules = config.trust.signatureRepositories.map((r) => ({ ...r, match: picomatch(r.repository) }))
  return (repo) => {
    const rule = rules.find((r) => r.upstream === repo.upstream && r.match(repo.repository))
    return rule === undefined ? repo : { upstream: repo.upstream, repository: rule.signatures }
  }
}

async function createState(config: Config, logger: Logger, metrics: Metrics): Promise<StateStore> {
  if (config.state.backend === 'redis') {
    // Imported only here: ioredis and its command table stay out of in-process installs.
    const { RedisStateStore } = await import('./state/redis.js')
    // Connects in the background: Customs starts not ready rather than exiting while Redis is away.
    const redis = RedisStateStore.open({
      url: config.state.redis.url,
      prefix: config.state.redis.prefix,
      onConnectionError: (err) => logger.warn({ err: err.message }, 'redis connection problem'),
    })
    // While Redis is away, content recently seen cleared keeps being served; the rest is refused.
    return new FallbackStateStore(redis, {
      onFallback: (op, found) => metrics.stateFallback.inc({ op, result: found ? 'found' : 'missing' }),
    })
  }
  return new MemoryStateStore()
}

/** Credentials are resolved to plain strings by config/load.ts before they get here. */
function credentialsOf(u: UpstreamConfig): Credentials | undefined {
  return u.credentials === undefined ? undefined : { username: u.credentials.username, password: u.credentials.password }
}
