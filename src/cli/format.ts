// Output for people: aligned columns, relative times, shortened digests. Everything shown comes
// from the server, and some of it from pulling clients (user agents, references), so control
// characters are made visible rather than sent to the terminal.

/** Text safe to print: control characters (escape sequences included) become \xNN. */
export function printable(value: unknown): string {
  const text = typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value)
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

/** `sha256:` and the first 12 hex digits: enough to tell digests apart in a table. */
export function shortDigest(digest: unknown): string {
  const text = printable(digest)
  const m = /^(sha256|sha512):([0-9a-f]{12})[0-9a-f]+$/.exec(text)
  return m === null ? text : `${m[1]}:${m[2]}`
}

/** `12s ago`, `5m ago`, `3h ago`, `2d ago`, or `in 6d` for a time ahead of now. */
export function relativeTime(at: number | string | undefined, now: number): string {
  const ms = typeof at === 'string' ? Date.parse(at) : at
  if (ms === undefined || !Number.isFinite(ms)) return '-'
  const delta = now - ms
  // A time ahead is a moment behind by the time it is shown: a release of 2d reads `in 2d`.
  const abs = delta >= 0 ? delta : -delta + 999
  const units: Array<[number, string]> = [
    [86_400_000, 'd'],
    [3_600_000, 'h'],
    [60_000, 'm'],
    [1000, 's'],
  ]
  const [size, unit] = units.find(([size]) => abs >= size) ?? [1000, 's']
  const amount = `${Math.floor(abs / size)}${unit}`
  return delta >= 0 ? `${amount} ago` : `in ${amount}`
}

/** Rows under a header, each column as wide as its widest cell; the last column is not padded. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

/** A cell of at most `max` characters, with an ellipsis when cut. */
export function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}
