// Prometheus metrics. One registry per app instance (not prom-client's global one), so that tests
// can run several apps in one process and read each one's counters.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export class Metrics {
  readonly registry = new Registry()

  readonly requests = new Counter({
    name: 'customs_http_requests_total',
    help: 'Requests answered, by route kind, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
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
    help: 'Blobs evicted to stay under storage.maxSize',
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
}
