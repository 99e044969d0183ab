// `customs config check <file>`: validates a configuration as `serve` would load it, and prints
// the positioned problems, or a summary and the effective configuration with secrets redacted.
// The files it names that `serve` reads at start (the listener's and upstreams' TLS files, trust
// keys and roots) are read and checked too, by serve's own loaders, so that a configuration that
// passes here does not stop `serve` on one of them. Nothing is listened on or connected to.

import { dirname, resolve } from 'node:path'
import { stringify } from 'yaml'
import { ConfigError, loadConfig, redactConfig } from '../config/load.js'
import type { Env } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { TlsError } from '../tls/errors.js'
import { loadTlsMaterial } from '../tls/server.js'
import { loadUpstreamTls, upstreamTlsSetting } from '../upstream/tls-settings.js'
import { loadTrustKey, loadTrustRoot, TrustFileError, type TrustedKey } from '../verify/trust.js'

export interface CheckIo {
  stdout: { write(text: string): unknown }
  stderr: { write(text: string): unknown }
}

/**
 * Checks the configuration file with the environment overrides in `options.env` (pass process.env
 * to check what `serve` would run with), and the files it names, relative to its folder. Returns
 * the exit code: 0 valid, 1 invalid.
 */
export async function configCheck(
  file: string,
  io: CheckIo,
  options: { env?: Env } = {}
): Promise<number> {
  let config: Config
  try {
    config = await loadConfig({ file, env: options.env ?? {} })
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    io.stderr.write(`${err.message}\n${file}: invalid configuration (${problems(err.issues.length)})\n`)
    return 1
  }
  const unusable = await fileProblems(config, dirname(resolve(file)))
  if (unusable.length > 0) {
    io.stderr.write(`${unusable.join('\n')}\n${file}: invalid configuration (${problems(unusable.length)})\n`)
    return 1
  }
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
}

function problems(count: number): string {
  return count === 1 ? '1 problem' : `${count} problems`
}

/**
 * Why `serve` could not use the files `config` names, one message per unusable setting (each
 * names the setting and the file). Each listener, upstream, key and root is loaded on its own so
 * that one bad file does not hide the next; the loaders are serve's, which stop at the first.
 */
async function fileProblems(config: Config, base: string): Promise<string[]> {
  const found: string[] = []
  async function check<T>(load: () => Promise<T>): Promise<T | undefined> {
    try {
      return await load()
    } catch (err) {
      if (err instanceof TlsError) found.push(...err.problems)
      else if (err instanceof TrustFileError) found.push(err.message)
      else throw err
      return undefined
    }
  }
  const { tls } = config
  if (tls !== undefined) await check(() => loadTlsMaterial(tls, { base }))
  for (const [i, u] of config.upstreams.entries()) {
    const settings = u.tls
    if (settings !== undefined) await check(() => loadUpstreamTls(settings, { setting: upstreamTlsSetting(i), base }))
  }
  const keys: TrustedKey[] = []
  for (const [i, k] of config.trust.keys.entries()) {
    const key = await check(() => loadTrustKey(k, i, base))
    if (key !== undefined) keys.push(key)
  }
  for (const [i, r] of config.trust.roots.entries()) await check(() => loadTrustRoot(r, i, base, keys))
  return found
}
