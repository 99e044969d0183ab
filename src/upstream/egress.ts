// Where Customs may connect on an upstream's behalf. An upstream on the internet may not send
// Customs inside the network (cloud metadata, the cluster network) by a redirect: the bytes would
// fail their digest, but the request would have been made. An upstream that is itself internal (a
// mirror on 10.x) may redirect within its network.

import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

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
