// Human-written durations ('30s', '5m', '7d', '1h30m') and sizes ('512MiB', '50GiB', '10GB'),
// parsed into milliseconds and bytes. Config values are strings so that operators can read them.

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}
const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/

/** Parses '30s', '1h30m', '250ms'; a bare number is milliseconds. Throws with the reason. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isFinite(value) || value < 0) throw new Error('must be a non-negative duration')
    return value
  }
  let rest = value.trim()
  if (rest === '') throw new Error('must be a duration such as 30s, 5m or 7d')
  if (/^\d+$/.test(rest)) return Number(rest)
  let total = 0
  while (rest !== '') {
    const m = DURATION_RE.exec(rest)
    if (m === null) throw new Error(`${JSON.stringify(value)} is not a duration such as 30s, 5m or 7d`)
    total += Number(m[1]) * (DURATION_UNITS[m[2] as string] as number)
    rest = rest.slice(m[0].length)
  }
  return Math.round(total)
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
}
const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/

/** Parses '512MiB', '50GiB', '10GB', '1024'; a bare number is bytes. Throws with the reason. */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error('must be a non-negative size in bytes')
    return value
  }
  const m = SIZE_RE.exec(value.trim())
  const unit = m === null ? undefined : SIZE_UNITS[(m[2] || 'b').toLowerCase()]
  if (m === null || unit === undefined) {
    throw new Error(`${JSON.stringify(value)} is not a size such as 512MiB, 50GiB or 10GB`)
  }
  const bytes = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes)) throw new Error(`${JSON.stringify(value)} is too large a size`)
  return bytes
}

/** Bytes in binary units, `1.5MiB`; `separator` goes between the number and the unit. */
export function formatBytes(bytes: number, separator = ''): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let n = bytes
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${n.toFixed(i === 0 ? 0 : 1)}${separator}${units[i]}`
}
