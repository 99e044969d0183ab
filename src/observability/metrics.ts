// Prometheus metrics. One registry per app instance (not prom-client's global one), so that tests
// can run several apps in one process and read each one's counters.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** Kinds of upstream failure: a bounded label set, whatever the error text says. */
export const UPSTREAM_ERROR_KINDS = ['connection', 'timeout', 'server', 'rate-limited', 'denied', 'invalid', 'circuit-open'] as const
export type UpstreamErrorKind = (typeof UPSTREAM_ERROR_KINDS)[number]

/**
 * Why a signature or attestation failed verification, as a bounded label: malformed (unreadable
 * artifact or bundle), no-trusted-time, certificate (not a code-signing certificate), untrusted
 * (no configured root or key verifies it), binding (the signed payload is not about this digest).
 */
export const VERIFICATION_FAILURES = ['malformed', 'no-trusted-time', 'certificate', 'untrusted', 'binding'] as const
export type VerificationFailure = (typeof VERIFICATION_FAILURES)[number]

export class Metrics {
  readonly registry = new Registry()

  /** route -> method -> status -> requests answered, since start; see countRequest(). */
  readonly #requestCounts = new Map<string, Map<string, Map<number, number>>>()

  /** Read only: counted through countRequest(), filled in from its tally when scraped. */
  readonly requests: Counter<'route' | 'method' | 'status'> = new Counter({
    name: 'customs_http_requests_total',
    help: 'Requests answered, by route kind, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
    collect: () => {
      this.requests.reset()
      for (const [route, methods] of this.#requestCounts) {
        for (const [method, statuses] of methods) {
          for (const [status, n] of statuses) this.requests.inc({ route, method, status: String(status) }, n)
        }
      }
    },
  })

  readonly requestDuration = new Histogram({
    name: 'customs_http_request_duration_seconds',
    help: 'Time to answer, headers and body, by route kind',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  })

  readonly cache = new Counter({
    name: 'customs_cache_requests_total',
    help: 'Blob and manifest lookups by result: hit, miss (fetched upstream) or join (joined a fill)',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  })

  readonly bytesServed = new Counter({
    name: 'customs_bytes_served_total',
    help: 'Blob bytes sent to clients',
    registers: [this.registry],
  })

  readonly bytesFetched = new Counter({
    name: 'customs_upstream_bytes_fetched_total',
    help: 'Blob bytes fetched from upstreams',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })

  readonly tlsHandshakes = new Counter({
    name: 'customs_upstream_tls_handshakes_total',
    help: 'TLS handshakes of large-blob connections to upstreams and their CDNs, by whether a kept session was resumed',
    labelNames: ['upstream', 'resumed'] as const,
    registers: [this.registry],
  })

  readonly upstreamRequests = new Counter({
    name: 'customs_upstream_requests_total',
    help: 'Requests sent to upstreams, by method and status (error for transport failures)',
    labelNames: ['upstream', 'method', 'status'] as const,
    registers: [this.registry],
  })

  readonly rateLimitRemaining = new Gauge({
    name: 'customs_upstream_ratelimit_remaining',
    help: 'The pull quota an upstream last reported (Docker Hub ratelimit-remaining)',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })

  readonly breakerOpen = new Gauge({
    name: 'customs_upstream_circuit_open',
    help: '1 while the upstream circuit breaker is open',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })

  readonly verdicts = new Counter({
    name: 'customs_verdicts_total',
    help: 'Inspection verdicts by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  })

  readonly staleServed = new Counter({
    name: 'customs_stale_tags_served_total',
    help: 'Tag answers served from the last cleared mapping because the upstream failed',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  })

  readonly stateFallback = new Counter({
    name: 'customs_state_fallback_total',
    help: 'Reads answered from the in-process memory of recent verdicts while state was unavailable, by found or missing',
    labelNames: ['op', 'result'] as const,
    registers: [this.registry],
  })

  readonly fills = new Counter({
    name: 'customs_blob_fills_total',
    help: 'Upstream blob fills by result: committed, mismatch, failed',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })

  readonly cacheBytes = new Gauge({
    name: 'customs_cache_bytes',
    help: 'Bytes of committed blobs on disk',
    registers: [this.registry],
  })

  readonly evictions = new Counter({
    name: 'customs_cache_evictions_total',
    help: 'Blobs removed from the cache, by cause: limit (to stay under storage.maxSize) or admin',
    labelNames: ['cause'] as const,
    registers: [this.registry],
  })

  readonly upstreamDuration = new Histogram({
    name: 'customs_upstream_request_duration_seconds',
    help: 'Time from sending one upstream request (one attempt) to its response headers',
    labelNames: ['upstream'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  })

  readonly upstreamErrors = new Counter({
    name: 'customs_upstream_errors_total',
    help: `Failed upstream requests by kind: ${UPSTREAM_ERROR_KINDS.join(', ')}`,
    labelNames: ['upstream', 'kind'] as const,
    registers: [this.registry],
  })

  readonly inspections = new Counter({
    name: 'customs_inspections_total',
    help: 'Manifests inspected, by result: cleared, cleared-with-warnings, detained, artifact (a signature, not judged) or error',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })

  readonly inspectionDuration = new Histogram({
    name: 'customs_inspection_duration_seconds',
    help: 'Time to inspect one manifest: integrity, image config, signature discovery, policies',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  })

  readonly policyVerdicts = new Counter({
    name: 'customs_policy_verdicts_total',
    help: 'Outcome of each matching policy per inspection: passed, denied (enforce), warned (audit), waived',
    labelNames: ['policy', 'outcome'] as const,
    registers: [this.registry],
  })

  readonly verificationFailures = new Counter({
    name: 'customs_verification_failures_total',
    help: `Signatures and attestations that failed verification, by reason: ${VERIFICATION_FAILURES.join(', ')}`,
    labelNames: ['reason'] as const,
    registers: [this.registry],
  })

  /**
   * What the scrape-time gauges read. The parts they read are built after the metrics, so
   * services.ts fills these in.
   */
  readonly sources: {
    quarantineRecords?: () => Promise<number>
    singleFlightWaiters?: () => Readonly<Record<string, number>>
  } = {}

  readonly quarantineRecords: Gauge<string> = new Gauge({
    name: 'customs_quarantine_records',
    help: 'Quarantine records (digests whose pull was refused, released and cleared ones included), read from state on scrape',
    registers: [this.registry],
    collect: async () => {
      const read = this.sources.quarantineRecords
      // A state store that does not answer must not fail the whole scrape, nor pass for an empty
      // quarantine: the sample is NaN (a gap in graphs) until state answers again.
      const count = read === undefined ? undefined : await read().catch(() => undefined)
      this.quarantineRecords.set(count ?? Number.NaN)
    },
  })

  readonly singleFlightWaiters: Gauge<'kind'> = new Gauge({
    name: 'customs_singleflight_waiters',
    help: 'Callers waiting on an inspection or tag resolution another caller started, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
    collect: () => {
      const waiters = this.sources.singleFlightWaiters?.() ?? {}
      for (const [kind, n] of Object.entries(waiters)) this.singleFlightWaiters.set({ kind }, n)
    },
  })


  readonly tagMoves = new Counter({
    name: 'customs_tag_moves_total',
    help: 'Tags seen moving to another digest, by what changed of the signers: signer-changed, signature-lost, none',
    labelNames: ['upstream', 'change'] as const,
    registers: [this.registry],
  })

  readonly webhookDeliveries = new Counter({
    name: 'customs_webhook_deliveries_total',
    help: 'Webhook events by outcome: delivered, rejected (4xx), failed (gave up after maxAttempts), dropped (queue full or shutdown)',
    labelNames: ['webhook', 'outcome'] as const,
    registers: [this.registry],
  })

  readonly auditEvents = new Counter({
    name: 'customs_audit_events_total',
    help: 'Events taken into the audit log, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  })

  readonly auditDropped = new Counter({
    name: 'customs_audit_dropped_total',
    help: 'Audit events lost by a sink (store or file): queue full, or unwritten at shutdown',
    labelNames: ['sink'] as const,
    registers: [this.registry],
  })

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? false) collectDefaultMetrics({ register: this.registry })
  }

  /**
   * One answered request. Every request counts one, and prom-client's inc() builds and checks a
   * key from the label object each time: counted here in nested maps instead (no key built, no
   * object), and handed to the counter only when it is read.
   */
  countRequest(route: string, method: string, status: number): void {
    let methods = this.#requestCounts.get(route)
    if (methods === undefined) this.#requestCounts.set(route, (methods = new Map()))
    let statuses = methods.get(method)
    if (statuses === undefined) methods.set(method, (statuses = new Map()))
    statuses.set(status, (statuses.get(status) ?? 0) + 1)
  }
}
