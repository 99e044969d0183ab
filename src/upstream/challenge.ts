// Parsing `WWW-Authenticate` challenges (RFC 7235 auth-params: quoted values may hold commas and
// escaped quotes). Pure, so it can be tested against hostile headers on its own.

export interface Challenge {
  readonly scheme: 'bearer' | 'basic'
  readonly params: Readonly<Record<string, string>>
}

const MAX_HEADER = 8192

/**
 * The first Bearer or Basic challenge in the header, or undefined when there is none. Other
 * schemes before it (`Negotiate, Bearer realm=...`) are skipped, Bearer preferred over Basic.
 */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (header === null || header.length > MAX_HEADER) return undefined
  const starts = [...header.matchAll(/(?:^|,)\s*(bearer|basic)(?=\s|$)\s*/gi)]
  const m = starts.find((s) => (s[1] as string).toLowerCase() === 'bearer') ?? starts[0]
  if (m === undefined) return undefined
  const scheme = (m[1] as string).toLowerCase() as Challenge['scheme']
  // A Map, so that keys such as __proto__ or constructor are plain keys.
  const params = new Map<string, string>()
  let rest = header.slice((m.index ?? 0) + m[0].length)
  const param = /^([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,\s*|$)/
  while (rest.length > 0) {
    const p = param.exec(rest)
    if (p === null) break
    const key = (p[1] as string).toLowerCase()
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '')
    if (!params.has(key)) params.set(key, value)
    rest = rest.slice(p[0].length)
  }
  return { scheme, params: Object.fromEntries(params) }
}
