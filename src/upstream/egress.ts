// Where Customs may connect on an upstream's behalf. An upstream on the internet may not send
// Customs inside the network (cloud metadata, the cluster network) by a redirect: the bytes would
// fail their digest, but the request would have been made. An upstream that is itself internal (a
// mirror on 10.x) may redirect within its network.

import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'

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

/** Whether a host is a loopback, private, link-local or unspecified IP literal. */
export function isInternalAddress(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase()
  const version = isIP(host)
  if (version === 4) {
    const [a = 0, b = 0] = host.split('.').map(Number)
    return a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127)
  }
  if (version === 6) {
    if (host === '::' || host === '::1') return true
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host)
    if (mapped !== null) return isInternalAddress(mapped[1] as string)
    return /^f[cd]/.test(host) || /^fe[89ab]/.test(host)
  }
  return host === 'localhost' || host.endsWith('.localhost')
}
