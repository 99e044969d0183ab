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
  const scheme = /\s*(bearer|basic)(?=\s|$)\s*/iy
  let basic: Challenge | undefined
  for (const start of challengeStarts(header)) {
    scheme.lastIndex = start
    const m = scheme.exec(header)
    if (m === null) continue
    const name = (m[1] as string).toLowerCase() as Challenge['scheme']
    const challenge = { scheme: name, params: parseParams(header.slice(scheme.lastIndex)) }
    if (name === 'bearer') return challenge
    basic ??= challenge
  }
  return basic
}

/** 0, and every index just after a comma outside a quoted string: where a challenge may start. */
function* challengeStarts(header: string): Generator<number> {
  yield 0
  let quoted = false
  for (let i = 0; i < header.length; i++) {
    const ch = header[i]
    if (quoted && ch === '\\') i++
    else if (ch === '"') quoted = !quoted
    else if (!quoted && ch === ',') yield i + 1
  }
}

function parseParams(text: string): Record<string, string> {
  // A Map, so that keys such as __proto__ or constructor are plain keys.
  const params = new Map<string, string>()
  let rest = text
  const param = /^([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,\s*|$)/
  while (rest.length > 0) {
    const p = param.exec(rest)
    if (p === null) break
    const key = (p[1] as string).toLowerCase()
    const value = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '')
    if (!params.has(key)) params.set(key, value)
    rest = rest.slice(p[0].length)
  }
  return Object.fromEntries(params)
}
