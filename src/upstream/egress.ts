// Where Customs may connect on an upstream's behalf. An upstream on the internet may not send
// Customs inside the network (cloud metadata, the cluster network) by a redirect: the bytes would
// fail their digest, but the request would have been made. An upstream that is itself internal (a
// mirror on 10.x) may redirect within its network.

import type { LookupAddress, LookupOptions } from 'node:dns'
import { lookup } from 'node:dns/promises'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/** A host name's addresses. */
export type HostLookup = (host: string) => Promise<readonly string[]>

export const systemLookup: HostLookup = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)

/** Whether a redirect from an upstream on `upstreamHost` to `targetHost` leads inside the network. */
export async function isInternalRedirect(upstreamHost: string, targetHost: string, resolve: HostLookup = systemLookup): Promise<boolean> {
  return (await resolvesInternal(targetHost, resolve)) && !(await resolvesInternal(upstreamHost, resolve))
}

/**
 * Whether a host is internal: an internal IP literal, or a name any of whose addresses is one. A
 * name that does not resolve is not internal: the request to it fails on its own.
 */
export async function resolvesInternal(hostname: string, resolve: HostLookup = systemLookup): Promise<boolean> {
  if (isInternalAddress(hostname)) return true
  const host = hostname.replace(/^\[|\]$/g, '')
  if (isIP(host) !== 0) return false
  let addresses: readonly string[]
  try {
    addresses = await resolve(host)
  } catch {
    return false
  }
  return addresses.some((a) => isInternalAddress(a))
}

/**
 * Loopback, private, link-local, shared (100.64/10) and unspecified addresses. A BlockList also
 * matches an IPv4-mapped IPv6 address, in any spelling, against the IPv4 ranges: a URL writes
 * `[::ffff:127.0.0.1]` as `[::ffff:7f00:1]`, which connects to loopback all the same.
 */
const INTERNAL = new BlockList()
const RANGES = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['::1', 128, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
] as const
for (const [network, prefix, family] of RANGES) INTERNAL.addSubnet(network, prefix, family)

/** Whether a host is a loopback, private, link-local or unspecified IP literal, or `localhost`. */
export function isInternalAddress(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const version = isIP(host)
  if (version !== 0) return INTERNAL.check(host, version === 4 ? 'ipv4' : 'ipv6')
  return host === 'localhost' || host.endsWith('.localhost')
}

/**
 * A `lookup` for the sockets (node:net, node:tls, node:http) of connections an upstream on
 * `upstreamHost` sends Customs to by a redirect. It resolves the name, judges by the redirect rule
 * the very addresses it then hands to the socket, and fails the connection with `refuse(host)`
 * when the rule says no. The check when the redirect arrives resolves the name on its own: had the
 * socket resolved it again, a name could answer a public address to the check and an internal one
 * to the connection (DNS rebinding). IP literals never reach a lookup; that check judges them.
 */
export function guardedLookup(upstreamHost: string, resolve: HostLookup, refuse: (host: string) => Error): LookupFunction {
  return (hostname, options, callback) => {
    connectable(hostname, options, upstreamHost, resolve, refuse).then(
      (found) => {
        if (options.all === true) callback(null, found)
        else callback(null, (found[0] as LookupAddress).address, (found[0] as LookupAddress).family)
      },
      (err: NodeJS.ErrnoException) => callback(err, '')
    )
  }
}

/** The addresses of `host` a socket may connect to, in the resolver's order; throws when none may be. */
async function connectable(host: string, options: LookupOptions, upstreamHost: string, resolve: HostLookup, refuse: (host: string) => Error): Promise<LookupAddress[]> {
  const addresses = await resolve(host)
  // Every address is judged, not only those of the family asked for: the same rule as the check.
  if (isInternalAddress(host) || addresses.some((a) => isInternalAddress(a))) {
    if (!(await resolvesInternal(upstreamHost, resolve))) throw refuse(host)
  }
  const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0
  const found = addresses.map((address) => ({ address, family: isIP(address) })).filter((a) => a.family !== 0 && (family === 0 || a.family === family))
  if (found.length === 0) throw Object.assign(new Error(`${host} has no address to connect to`), { code: 'ENOTFOUND', hostname: host })
  return found
}
