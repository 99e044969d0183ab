// The quick start's way in: with the console on and no admin.tokens configured, Customs makes one
// admin token so a person can sign in. Only its SHA-256 joins the token list (the admin API checks
// it like any configured token); the token itself is written once, mode 0600, under the storage
// folder, where the person who started Customs can read it. A restart reuses the file, and
// replicas sharing the folder share the token. Configuring admin.tokens turns this off.

import { createHash, randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Config } from '../config/schema.js'
import { FileTooLargeError, readTextBounded } from '../files.js'
import type { Logger } from '../observability/logger.js'

export const BOOTSTRAP_TOKEN_FILE = 'console-admin-token'
/** A token file is one line; anything much larger is not one, and is not read whole. */
const MAX_TOKEN_FILE_BYTES = 4096
export const BOOTSTRAP_TOKEN_NAME = 'console-bootstrap'

export interface Bootstrap {
  /** The configuration with the generated token's hash as its one admin token. */
  readonly config: Config
  /** Where the token is. */
  readonly file: string
  /** The token, when this start made it (to be shown once); undefined when it was reused. */
  readonly created: string | undefined
}

/** The configuration unchanged when no token is needed, or with the bootstrap token added. */
export async function bootstrapConsoleToken(config: Config, logger: Logger): Promise<Bootstrap | undefined> {
  if (!config.console.enabled || config.admin.tokens.length > 0) return undefined
  await mkdir(config.storage.path, { recursive: true })
  const file = join(config.storage.path, BOOTSTRAP_TOKEN_FILE)
  let token: string
  let created: string | undefined
  try {
    // 'wx': never overwrite a token another start (or replica) already handed out.
    token = randomBytes(32).toString('base64url')
    await writeFile(file, `${token}\n`, { flag: 'wx', mode: 0o600 })
    created = token
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const text = await readTextBounded(file, MAX_TOKEN_FILE_BYTES).catch((err: unknown) => {
      if (err instanceof FileTooLargeError) return ''
      throw err
    })
    token = text.trim()
    if (!/^[A-Za-z0-9_-]{43}$/.test(token)) {
      throw new Error(`${file} does not hold a console token; delete it to have a new one made`)
    }
  }
  const sha256 = createHash('sha256').update(token).digest('hex')
  logger.warn(
    { file, role: 'admin', name: BOOTSTRAP_TOKEN_NAME },
    'no admin.tokens configured: the console accepts the generated admin token in this file'
  )
  return {
    config: { ...config, admin: { ...config.admin, tokens: [{ name: BOOTSTRAP_TOKEN_NAME, sha256, role: 'admin' }] } },
    file,
    created,
  }
}
