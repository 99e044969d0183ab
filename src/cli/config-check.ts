// `customs config check <file>`: validates a configuration as `serve` would load it, and prints
// the positioned problems, or a summary and the effective configuration with secrets redacted.

import { stringify } from 'yaml'
import { ConfigError, loadConfig, redactConfig } from '../config/load.js'
import type { Env } from '../config/load.js'

export interface CheckIo {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
}

/**
 * Checks the configuration file with the environment overrides in `options.env` (pass process.env
 * to check what `serve` would run with). Returns the exit code: 0 valid, 1 invalid.
 */
export async function configCheck(
  file: string,
  io: CheckIo,
  options: { env?: Env } = {}
): Promise<number> {
  try {
    const config = await loadConfig({ file, env: options.env ?? {} })
    const { listen, upstreams, state } = config
    const fallback = upstreams.find((u) => u.default)?.name ?? 'none'
    io.stdout.write(
      `${file}: valid; listens on ${listen.host}:${listen.port}, ` +
        `${upstreams.length} upstreams (default ${fallback}), state ${state.backend}\n`
    )
    // Durations and sizes print as the numbers they parsed to, which read back as the same values.
    io.stdout.write('# effective configuration: durations in milliseconds, sizes in bytes\n')
    io.stdout.write(stringify(redactConfig(config), { lineWidth: 0 }))
    return 0
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    const count = err.issues.length === 1 ? '1 problem' : `${err.issues.length} problems`
    io.stderr.write(`${err.message}\n${file}: invalid configuration (${count})\n`)
    return 1
  }
}
