// Logs kept in memory, for tests that assert what Customs logged: a pino destination whose JSON
// lines are parsed as they are written.

import { Writable } from 'node:stream'

export type LogLine = Record<string, unknown>

/** A destination for createLogger, and the lines written to it so far (parsed, in order). */
export function logLines(): { destination: Writable; lines: LogLine[] } {
  const lines: LogLine[] = []
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine)
      cb()
    },
  })
  return { destination, lines }
}
