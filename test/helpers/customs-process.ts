// Runs Customs as its own process (the real `customs serve` entry point through tsx), for tests
// that need several replicas, or a process they can SIGKILL.

import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { freePort, waitForHttp } from './ports.js'
import { isolatedEnv, makeTempDir, spawnService, type ServiceProcess } from './processes.js'

const ROOT = resolve(import.meta.dirname, '../..')

export interface CustomsProcess {
  readonly url: string
  readonly host: string
  readonly process: ServiceProcess
  stop(): Promise<void>
  kill(): Promise<void>
}

/**
 * Starts `customs serve --config <file>` with `config` (YAML, without `listen`) on a free port,
 * and waits until /healthz answers.
 */
export async function startCustomsProcess(config: string, options: { name?: string; env?: NodeJS.ProcessEnv; logLevel?: string } = {}): Promise<CustomsProcess> {
  const dir = await makeTempDir('customs-proc-')
  const port = await freePort()
  const file = join(dir, 'customs.yaml')
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${port} }\nlog: { level: ${options.logLevel ?? 'info'} }\n${config}`)
  const child = spawnService({
    name: options.name ?? 'customs',
    command: process.execPath,
    args: ['--import', 'tsx', join(ROOT, 'src/main.ts'), 'serve', '--config', file],
    dir,
    cwd: ROOT,
    env: isolatedEnv(options.env),
  })
  const url = `http://127.0.0.1:${port}`
  try {
    await waitForHttp(`${url}/healthz`, 30_000, { abortIf: () => (child.isRunning() ? undefined : `customs exited:\n${child.tail()}`) })
  } catch (err) {
    await child.kill()
    throw err
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    process: child,
    async stop() {
      await child.stop()
    },
    async kill() {
      await child.kill()
    },
  }
}
