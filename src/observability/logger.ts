// The JSON logger. Messages are static and lower case; values go in fields (STYLE §3.11). Secrets
// never reach it: authorization headers and credentials are redacted by path as a last line.

import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level: LevelWithSilent
  /** Where lines go; standard output by default. Tests pass a stream to read them back. */
  destination?: NodeJS.WritableStream
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'customs' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['authorization', '*.authorization', 'headers.authorization', 'password', '*.password', 'token', '*.token'],
        censor: '***',
      },
    },
    options.destination ?? pino.destination({ sync: false })
  )
}
