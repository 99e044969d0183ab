// The audit chain in Redis: one stream shared by every replica, trimmed to the retention, and the
// chain head in its own key. Several replicas appending at once still make ONE linear chain: each
// hashes its entries on the head it last saw, and a script appends them only if that head is
// still the head (compare-and-set); otherwise it answers the current head and the replica hashes
// again on it. Stream ids are `<seq>-0`, so pages by seq are range reads.

import type { Redis } from 'ioredis'
import { CustomsError } from '../errors.js'
import { Script } from '../state/redis.js'
import type { StateKeys } from '../state/keys.js'
import { EMPTY_HEAD, canonical, chainEvents, entryText, type AuditEntry, type ChainHead } from './chain.js'
import type { CustomsEvent } from './events.js'
import { collectPage, type AuditPage, type AuditQuery, type AuditStore, type StoredEntry } from './store.js'

// KEYS: head, stream. ARGV: expected head ('' for none), new head, max length, then id and entry
// JSON for each entry. Answers {1, new head} when appended, {0, current head} when the head moved.
const APPEND = new Script(`
local head = redis.call('GET', KEYS[1]) or ''
if head ~= ARGV[1] then return {0, head} end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], ARGV[i], 'e', ARGV[i + 1])
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
`)

/**
 * How many times an append hashes again on a head another replica moved. Each retry follows an
 * append that succeeded elsewhere, so running out means a storm of appenders, not a fault.
 */
export const APPEND_ATTEMPTS = 32
/** Entries read per round trip when listing or scanning. */
const PAGE = 500

export interface RedisAuditStoreOptions {
  readonly client: Redis
  readonly keys: Pick<StateKeys, 'auditStream' | 'auditHead'>
  /** Entries kept; older ones are trimmed (approximately: Redis trims whole stream nodes). */
  readonly retention: number
  /** Quit the client on close(): true only when this store created it. */
  readonly owned?: boolean
  /**
   * Told when the head in Redis is behind the one this replica last saw: Redis lost data (a
   * restart without persistence) and the chain starts again from what is left.
   */
  readonly onRewind?: (seen: ChainHead, found: ChainHead) => void
}

export class RedisAuditStore implements AuditStore {
  readonly #client: Redis
  readonly #stream: string
  readonly #headKey: string
  readonly #retention: number
  readonly #owned: boolean
  readonly #onRewind: ((seen: ChainHead, found: ChainHead) => void) | undefined
  /** The head this replica last saw; a guess that the script corrects. */
  #head: ChainHead | undefined

  constructor(options: RedisAuditStoreOptions) {
    this.#client = options.client
    this.#stream = options.keys.auditStream()
    this.#headKey = options.keys.auditHead()
    this.#retention = options.retention
    this.#owned = options.owned ?? false
    this.#onRewind = options.onRewind
  }

  /** The stream's key, for messages. */
  get streamKey(): string {
    return this.#stream
  }

  async append(events: readonly CustomsEvent[]): Promise<AuditEntry[]> {
    if (events.length === 0) return []
    let head = this.#head ?? (await this.head())
    // Each event is encoded once, for its hash and its stored text, however many attempts it takes.
    const encoded = events.map(canonical)
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const chained = chainEvents(head, events, encoded)
      const args: string[] = [encodeHead(head), encodeHead(chained.head), String(this.#retention)]
      chained.entries.forEach((entry, i) => args.push(`${entry.seq}-0`, entryText(entry, encoded[i] as string)))
      const [done, current] = (await APPEND.run(this.#client, [this.#headKey, this.#stream], args)) as [number, string]
      if (done === 1) {
        this.#head = chained.head
        return chained.entries
      }
      const found = decodeHead(current)
      if (found.seq < head.seq) this.#onRewind?.(head, found)
      head = found
    }
    this.#head = undefined
    throw new CustomsError('STATE_UNAVAILABLE', `audit append lost the race for the chain head ${APPEND_ATTEMPTS} times`)
  }

  async head(): Promise<ChainHead> {
    return decodeHead((await this.#client.get(this.#headKey)) ?? '')
  }

  async list(query: AuditQuery): Promise<AuditPage> {
    try {
      return await collectPage(this.#newestFirst(query.before), query)
    } catch (err) {
      if (err instanceof CustomsError) throw err
      throw new CustomsError('STATE_UNAVAILABLE', `redis audit read failed: ${(err as Error).message}`, { cause: err })
    }
  }

  async *scan(until?: number): AsyncIterable<StoredEntry> {
    let start = '-'
    const end = until === undefined ? '+' : `${until}`
    for (;;) {
      const reply = await this.#client.xrange(this.#stream, start, end, 'COUNT', PAGE)
      for (const [id, fields] of reply) yield { raw: parseEntry(fields), where: `stream id ${id}` }
      const last = reply[reply.length - 1]
      if (last === undefined || reply.length < PAGE) return
      start = `(${last[0]}`
    }
  }

  async close(): Promise<void> {
    if (this.#owned && this.#client.status !== 'end') {
      await this.#client.quit().catch(() => this.#client.disconnect())
    }
  }

  async *#newestFirst(before: number | undefined): AsyncIterable<AuditEntry[]> {
    // '+' is the newest entry; a bare seq as the end of a range means `<seq>-<any>`.
    let end = before === undefined ? '+' : String(before - 1)
    while (end === '+' || Number(end) >= 1) {
      const reply = await this.#client.xrevrange(this.#stream, end, '-', 'COUNT', PAGE)
      yield reply.map(([, fields]) => parseEntry(fields)).filter(isListable)
      const last = reply[reply.length - 1]
      if (last === undefined || reply.length < PAGE) return
      end = String(Number(last[0].split('-')[0]) - 1)
    }
  }
}

function encodeHead(head: ChainHead): string {
  return head.seq === 0 ? '' : `${head.seq} ${head.hash}`
}

function decodeHead(value: string): ChainHead {
  if (value === '') return EMPTY_HEAD
  const match = /^(\d{1,15}) ([0-9a-f]{64})$/.exec(value)
  if (match === null) throw new CustomsError('STATE_UNAVAILABLE', 'the audit chain head in redis is not "<seq> <hash>"')
  return { seq: Number(match[1]), hash: match[2] as string }
}

/** The entry JSON of a stream entry's fields, parsed; what does not parse is kept as the text. */
function parseEntry(fields: string[]): unknown {
  const i = fields.indexOf('e')
  const text = i >= 0 && i % 2 === 0 ? fields[i + 1] : undefined
  if (text === undefined) return fields
  try {
    return JSON.parse(text) as unknown
  } catch {
    return text
  }
}

/** Listing shows entries as stored; one that is not even shaped like an entry is left out. */
function isListable(value: unknown): value is AuditEntry {
  const v = value as Partial<AuditEntry> | null
  return typeof v === 'object' && v !== null && typeof v.seq === 'number' && typeof v.event === 'object' && v.event !== null && typeof v.event.time === 'string'
}
