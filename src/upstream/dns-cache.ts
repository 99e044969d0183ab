// The addresses of an upstream's own host, kept a short while. Every large blob is fetched on a
// connection of its own (wire.ts), and each connection resolved the name again: for a cold image
// of ten layers, ten lookups of the same name. In a Kubernetes pod a lookup of
// registry-1.docker.io is several DNS queries (ndots:5 tries the cluster's search domains first),
// and node's resolver keeps nothing. Only names the operator chose are kept here: the upstream's
// own host, and a token realm's (checked against tokenRealmHosts before it is asked). A redirect's
// target is resolved afresh each time, and judged by the redirect rule on the very addresses the
// socket is given (egress.ts).

import type { LookupFunction } from 'node:net'
import { Lru } from '../lru.js'
import { lookupFunction, systemLookup, type HostLookup } from './egress.js'

/**
 * How long an answer is used. The resolver does not say a record's TTL; 30 s is the JVM's default
 * for the same cache, short enough that a registry moving its addresses is followed within it.
 */
export const DNS_CACHE_MS = 30_000
/** Names kept: one per upstream host in practice; bounded all the same. */
const MAX_NAMES = 64

/**
 * `resolve`, with each name's answer kept for `ttlMs` and lookups of a name already under way
 * shared. A failed lookup is not kept: the next connection asks again.
 */
export function cachingLookup(resolve: HostLookup = systemLookup, options: { ttlMs?: number; now?: () => number } = {}): HostLookup {
  const ttlMs = options.ttlMs ?? DNS_CACHE_MS
  const now = options.now ?? Date.now
  const answers = new Lru<{ readonly at: number; readonly addresses: Promise<readonly string[]> }>(MAX_NAMES)
  return (host) => {
    const kept = answers.get(host)
    if (kept !== undefined && now() - kept.at < ttlMs) return kept.addresses
    const addresses = resolve(host)
    const entry = { at: now(), addresses }
    answers.set(host, entry)
    addresses.catch(() => {
      if (answers.get(host) === entry) answers.delete(host)
    })
    return addresses
  }
}

/** A socket `lookup` over {@link cachingLookup} of the system's resolver. */
export function cachedSocketLookup(options: { ttlMs?: number; now?: () => number } = {}): LookupFunction {
  return lookupFunction(cachingLookup(systemLookup, options))
}
