// Where Customs may connect on an upstream's behalf. An upstream on the internet may not send
// Customs inside the network (cloud metadata, the cluster network) by a redirect: the bytes would
// fail their digest, but the request would have been made. An upstream that is itself internal (a
// mirror on 10.x) may redirect within its network.

import type { LookupAddress, LookupOptions } from 'node:dns'
import dns from 'node:dns'
import { BlockList, isIP, type LookupFunction } from 'node:net'

/** A host name's addresses. */
export type HostLookup = (host: string) => Promise<readonly string[]>

/**
 * The system's resolver, as sockets use it by default: node's `dns.lookup` (getaddrinfo: /etc/hosts,
 * the search domains), read at each call so that the redirect rule and a socket ask the same one
 * (and a test that replaces it replaces it for both).
 */
export const systemLookup: HostLookup = (host) =>
  new Promise((resolve, reject) => {
    dns.lookup(host, { all: true, verbatim: true }, (err, addresses) => {
      if (err !== null) reject(err)
      else resolve(addresses.map((a) => a.address))
    })
  })

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
  // NAT64's local-use prefix (RFC 8215): a translator of the organisation's own, into its network.
  ['64:ff9b:1::', 48, 'ipv6'],
] as const
for (const [network, prefix, family] of RANGES) INTERNAL.addSubnet(network, prefix, family)

/**
 * IPv6 forms that carry an IPv4 address a translator or relay delivers to, by where it sits in
 * the 16 bytes: NAT64's well-known prefix 64:ff9b::/96 (RFC 6052; an IPv6-only cluster's DNS64
 * and NAT64 reach IPv4 this way, so `[64:ff9b::a9fe:a9fe]` is the cloud metadata address), the
 * deprecated IPv4-compatible ::/96, and 6to4's 2002::/16 (RFC 3056). Each is judged by the IPv4
 * address it carries; the prefixes themselves are public.
 */
const EMBEDDING: ReadonlyArray<{ readonly prefix: readonly number[]; readonly at: number }> = [
  { prefix: [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], at: 12 },
  // IPv4-compatible addresses never began with 0: `::` and `::1` are the ranges' own, `::2` nothing.
  { prefix: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], at: 12 },
  { prefix: [0x20, 0x02], at: 2 },
]

/** Whether a host is a loopback, private, link-local or unspecified IP literal, or `localhost`. */
export function isInternalAddress(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const version = isIP(host)
  if (version === 4) return INTERNAL.check(host, 'ipv4')
  if (version === 6) {
    if (INTERNAL.check(host, 'ipv6')) return true
    const embedded = embeddedIPv4(host)
    return embedded !== undefined && INTERNAL.check(embedded, 'ipv4')
  }
  return host === 'localhost' || host.endsWith('.localhost')
}

/** The IPv4 address an IPv6 literal carries for a translator or relay (EMBEDDING), if any. */
function embeddedIPv4(ipv6: string): string | undefined {
  const bytes = ipv6Bytes(ipv6)
  if (bytes === undefined) return undefined
  for (const { prefix, at } of EMBEDDING) {
    if (!prefix.every((b, i) => bytes[i] === b)) continue
    return at === 12 && prefix[0] === 0 && bytes[12] === 0 ? undefined : bytes.slice(at, at + 4).join('.')
  }
  return undefined
}

/** The 16 bytes of a valid IPv6 literal (isIP said 6): `::` expanded, a dotted IPv4 tail read. */
function ipv6Bytes(ipv6: string): number[] | undefined {
  let text = ipv6.split('%')[0] as string
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const groups = (part: string | undefined): string[] => (part === undefined || part === '' ? [] : part.split(':'))
  const left = groups(head)
  const right = groups(tail)
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  if (all.length !== 8) return undefined
  return all.flatMap((g) => {
    const n = Number.parseInt(g, 16)
    return [n >> 8, n & 0xff]
  })
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
  return lookupFunction(async (host) => {
    const addresses = await resolve(host)
    // Every address is judged, not only those of the family asked for: the same rule as the check.
    if (isInternalAddress(host) || addresses.some((a) => isInternalAddress(a))) {
      if (!(await resolvesInternal(upstreamHost, resolve))) throw refuse(host)
    }
    return addresses
  })
}

/**
 * A socket's `lookup` answering from `addresses(host)`, in the form the socket asks for: every
 * address, or the first, of one family or of any.
 */
export function lookupFunction(addresses: HostLookup): LookupFunction {
  return (hostname, options, callback) => {
    addresses(hostname).then((all) => ofFamily(hostname, all, options)).then(
      (found) => {
        if (options.all === true) callback(null, found)
        else callback(null, (found[0] as LookupAddress).address, (found[0] as LookupAddress).family)
      },
      (err: NodeJS.ErrnoException) => callback(err, '')
    )
  }
}

/** The addresses of the family the socket asked for, in the resolver's order; ENOTFOUND when none is. */
function ofFamily(host: string, addresses: readonly string[], options: LookupOptions): LookupAddress[] {
  const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0
  const found = addresses.map((address) => ({ address, family: isIP(address) })).filter((a) => a.family !== 0 && (family === 0 || a.family === family))
  if (found.length === 0) throw Object.assign(new Error(`${host} has no address to connect to`), { code: 'ENOTFOUND', hostname: host })
  return found
}
