// Parsing `WWW-Authenticate` challenges (RFC 7235 auth-params: quoted values may hold commas and
// escaped quotes). Pure, so it can be tested against hostile headers on its own.

export interface Challenge {
  readonly scheme: 'bearer' | 'basic'
  readonly params: Readonly<Record<string, string>>
}

const MAX_HEADER = 8192

/** The first Bearer or Basic challenge in the header, or undefined when there is none. */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (header === null || header.length > MAX_HEADER) return undefined
  const m = /^\s*(bearer|basic)\b\s*/i.exec(header)
  if (m === null) return undefined
  const scheme = (m[1] as string).toLowerCase() as Challenge['scheme']
  const params: Record<string, string> = {}
  let rest = header.slice(m[0].length)
  const param = /^([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,\s*|$)/
  while (rest.length > 0) {
    const p = param.exec(rest)
    if (p === null) break
    const key = (p[1] as string).toLowerCase()
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '')
    if (!(key in params)) params[key] = value
    rest = rest.slice(p[0].length)
  }
  return { scheme, params }
}
