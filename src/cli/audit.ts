// customs audit verify --file F | --config FILE: checks an audit chain from outside Customs.
// Exit 0 when intact, 1 at the first break (positioned: entry seq, line or stream id, and why),
// 2 when it cannot be checked (usage, unreadable file, Redis away, memory backend).

import { Redis } from 'ioredis'
import { ChainVerifier, describeReport, type VerifyReport } from '../audit/chain.js'
import { verifyAuditFile } from '../audit/file.js'
import { RedisAuditStore } from '../audit/redis-store.js'
import type { Config } from '../config/schema.js'
import { stateKeys } from '../state/keys.js'

export interface AuditIo {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

export const AUDIT_USAGE = `  customs audit verify --file FILE   check the hash chain of a JSON-lines audit file (audit.file)
  customs audit verify --config FILE check the audit stream in the configured Redis state
`

/** Verifies a JSON-lines audit file. */
export async function auditVerifyFile(path: string, io: AuditIo): Promise<number> {
  let report: VerifyReport
  try {
    report = await verifyAuditFile(path)
  } catch (err) {
    io.stderr.write(`customs audit verify: cannot read ${path}: ${(err as Error).message}\n`)
    return 2
  }
  return print(report, `audit file ${path}`, io)
}

/** Verifies the audit stream of the configured Redis state, up to the head read first. */
export async function auditVerifyConfig(config: Config, io: AuditIo): Promise<number> {
  if (config.state.backend !== 'redis') {
    const file = config.audit.file === undefined ? '' : `; verify its file instead: customs audit verify --file ${config.audit.file}`
    io.stderr.write(`customs audit verify: the memory state backend keeps the audit log inside the Customs process; it cannot be verified from outside${file}\n`)
    return 2
  }
  const client = new Redis(config.state.redis.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 5000,
    commandTimeout: 10_000,
    retryStrategy: () => null,
  })
  client.on('error', () => undefined)
  const store = new RedisAuditStore({ client, keys: stateKeys(config.state.redis.prefix), retention: config.audit.retention.events, owned: true })
  try {
    await client.connect()
    // The head first, then entries up to it: entries appended meanwhile are not this run's business.
    const head = await store.head()
    const verifier = new ChainVerifier({ allowTrimmedHead: true, head })
    for await (const { raw, where } of store.scan(head.seq)) {
      if (!verifier.push(raw, where)) break
    }
    return print(verifier.finish(), `audit stream ${store.streamKey}`, io)
  } catch (err) {
    io.stderr.write(`customs audit verify: cannot read the audit stream from redis: ${(err as Error).message}\n`)
    return 2
  } finally {
    await store.close()
  }
}

function print(report: VerifyReport, what: string, io: AuditIo): number {
  if (report.ok) {
    io.stdout.write(`${what}: intact, ${describeReport(report)}\n`)
    return 0
  }
  io.stdout.write(`${what}: not intact: ${describeReport(report)}\n`)
  if (report.verified > 0) io.stdout.write(`  ${report.verified} entries before it are linked (seq ${report.firstSeq} to ${report.lastSeq})\n`)
  return 1
}
