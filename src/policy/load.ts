// Loading a policy set: every *.yaml/*.yml under a folder, each holding one or more documents,
// validated by policy/schema.ts, cross-checked as a set and compiled into a PolicySet. Every
// problem is reported at once, each at file:line:column; hostile input gets an issue, never a crash.

import { createHash } from 'node:crypto'
import { readdir, realpath, stat } from 'node:fs/promises'
import type { Dirent } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { isUtf8 } from 'node:buffer'
import { Composer, isScalar, LineCounter, Parser, visit } from 'yaml'
import type { Document } from 'yaml'
import { formatPath } from '../config/load.js'
import { formatBytes } from '../config/units.js'
import { FileTooLargeError, readBounded, readFailure } from '../files.js'
import { flattenZodIssues, lineColumn, locate, zodMessage } from '../config/yaml-positions.js'
import type { Path, RawIssue } from '../config/yaml-positions.js'
import {
  API_VERSION,
  DOCUMENT_KINDS,
  imagePolicySchema,
  policyExceptionSchema,
  policySettingsSchema,
} from './schema.js'
import type {
  DocumentKind,
  ImagePolicyDocument,
  PolicyExceptionDocument,
  PolicySettingsDocument,
  SchemaIssueCode,
} from './schema.js'
import type { CompiledAuthority, CompiledException, CompiledPolicy, PolicySet } from './types.js'

/** Why a policy set was refused, or (for warnings) what deserves a look. */
export type PolicyIssueCode =
  | SchemaIssueCode
  /** The folder or a file cannot be read (missing, permissions, a broken link, not a file). */
  | 'UNREADABLE'
  | 'TOO_LARGE'
  | 'TOO_MANY_FILES'
  | 'NOT_UTF8'
  /** YAML that does not parse: syntax, duplicate keys, tabs, unknown tags, non-string keys. */
  | 'YAML_SYNTAX'
  /** Collections nested deeper than MAX_NESTING. */
  | 'YAML_TOO_DEEP'
  /** More than MAX_DOCUMENTS documents in one file. */
  | 'TOO_MANY_DOCUMENTS'
  /** More problems in one file than MAX_ISSUES_PER_FILE: the rest are counted, not listed. */
  | 'TOO_MANY_ISSUES'
  /** An alias to no anchor, or more aliases than MAX_ALIASES (a "billion laughs"). */
  | 'YAML_ALIAS'
  /** A document whose kind is not ImagePolicy, PolicyException or PolicySettings. */
  | 'UNKNOWN_KIND'
  /** A key the schema does not have (a typo, or a field of another tool's policies). */
  | 'UNKNOWN_FIELD'
  /** A value of the wrong type or shape. */
  | 'INVALID'
  | 'DUPLICATE_SETTINGS'
  /** An exception waives a policy that is not in the set. */
  | 'UNKNOWN_POLICY'
  /** An exception waives a rule the policy does not have. */
  | 'UNKNOWN_RULE'
  /** A key authority names no key of the configuration's trust.keys. */
  | 'UNKNOWN_TRUST_KEY'
  /** An upstream that is not configured (only checked when the options list them). */
  | 'UNKNOWN_UPSTREAM'
  /** Warning: an exception whose date has passed; it loads and no longer applies. */
  | 'EXPIRED_EXCEPTION'
  /** Warning: a one-component Docker Hub name, which Customs always sees as library/<name>. */
  | 'DOCKER_HUB_NAME'
  /** Warning: `tagMoves.signerChange: detain` in an audit policy, which only flags. */
  | 'AUDIT_TAG_MOVES'

/** One problem, positioned: `policies/base.yaml:12:7 spec.match[0].repository: …`. */
export interface PolicyIssue {
  readonly file: string
  /** 1-based; 1:1 for a problem with the file as a whole. */
  readonly line: number
  readonly column: number
  /** Where in the document: `spec.match[0].repository`; '' for the document or file as a whole. */
  readonly path: string
  readonly code: PolicyIssueCode
  readonly message: string
}

/** A policy set was refused; `issues` holds every problem found, in file order. */
export class PolicyError extends Error {
  readonly issues: readonly PolicyIssue[]

  constructor(issues: readonly PolicyIssue[]) {
    super(issues.map(formatPolicyIssue).join('\n'))
    this.name = 'PolicyError'
    this.issues = issues
  }
}

/** `policies/base.yaml:12:7 spec.match[0].repository: must not be empty` */
export function formatPolicyIssue(issue: Omit<PolicyIssue, 'code'>): string {
  const where = `${issue.file}:${issue.line}:${issue.column}`
  return issue.path === ''
    ? `${where}: ${issue.message}`
    : `${where} ${issue.path}: ${issue.message}`
}

export interface PolicyLoadOptions {
  /** The names of the configuration's trust.keys; a key authority naming another is an error. */
  readonly keyNames: ReadonlySet<string>
  /** The configured upstream names; when given, a policy naming another upstream is an error. */
  readonly upstreams?: ReadonlySet<string>
  /** The clock that decides which exceptions have expired (warnings only); Date.now by default. */
  readonly now?: () => number
}

/** One policy file's path (as it should appear in messages) and content. */
export interface PolicyFile {
  readonly path: string
  /** Bytes are checked to be UTF-8; a string is taken as decoded. */
  readonly text: string | Uint8Array
}

/** Policy files are written by people: anything larger is refused unread. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024
/** At most this many policy files in one folder (recursively). */
export const MAX_POLICY_FILES = 1000
/** Aliases expanded per document (yaml's maxAliasCount): stops exponential "billion laughs". */
export const MAX_ALIASES = 100
/** Collections nested deeper than this are refused before composing (which recurses per level). */
export const MAX_NESTING = 64
/** Documents in one file: a set is a few dozen; a million `---` would only burn time. */
export const MAX_DOCUMENTS = 1000
/** Problems listed per file; the rest are counted in one last issue. */
export const MAX_ISSUES_PER_FILE = 100
/**
 * A cheap scan refuses text whose brackets or compact `- - -` nest deeper than this before yaml
 * parses it (parsing slows with depth: a megabyte of `[` takes seconds). It is rough, so it is
 * generous; the exact limit, MAX_NESTING, is checked on the parsed tokens.
 */
const ROUGH_NESTING = 256

/** Bumped when the loader's semantics change, so that cached verdicts are not reused. */
const REVISION_FORMAT = 'customs.dev/v1 loader 1'

const POLICY_FILE_RE = /\.ya?ml$/

/**
 * Validates and compiles policy documents given as text: the pure core of loadPolicies. Files are
 * taken in path order whatever their order in the array. Throws PolicyError.
 */
export function parsePolicyDocuments(
  files: readonly PolicyFile[],
  options: PolicyLoadOptions
): PolicySet {
  return compileSet(files, options, [])
}

/**
 * Loads every `*.yaml` and `*.yml` file under dir, recursively, in path order. Names starting with
 * a dot are skipped (editor files, and Kubernetes ConfigMap mounts' `..data` folders, whose files
 * are reached through the links beside them); symbolic links are followed, loops ignored. A
 * folder with no policy files is an empty set; a folder that does not exist is an error.
 * Throws PolicyError.
 */
export async function loadPolicies(dir: string, options: PolicyLoadOptions): Promise<PolicySet> {
  const { paths, issues } = await listPolicyFiles(dir)
  const files: PolicyFile[] = []
  for (const path of paths) {
    const read = await readPolicyFile(path)
    if ('issue' in read) issues.push(read.issue)
    else files.push({ path, text: read.bytes })
  }
  return compileSet(files, options, issues)
}

/**
 * The policy files under dir exactly as loadPolicies would read them, with paths relative to
 * dir (`customs policy diff` sends them to a running Customs). Throws PolicyError.
 */
export async function readPolicyFolder(dir: string): Promise<Array<{ path: string; text: string }>> {
  const { paths, issues } = await listPolicyFiles(dir)
  const files: Array<{ path: string; text: string }> = []
  for (const path of paths) {
    const read = await readPolicyFile(path)
    if ('issue' in read) issues.push(read.issue)
    else files.push({ path: relative(dir, path).split(sep).join('/'), text: read.bytes.toString('utf8') })
  }
  if (issues.length > 0) throw new PolicyError(issues)
  return files
}

// ---------------------------------------------------------------------------------------------
// The folder

function fileIssue(file: string, code: PolicyIssueCode, message: string): PolicyIssue {
  return { file, line: 1, column: 1, path: '', code, message }
}

async function listPolicyFiles(dir: string): Promise<{ paths: string[]; issues: PolicyIssue[] }> {
  try {
    if (!(await stat(dir)).isDirectory()) {
      throw new PolicyError([fileIssue(dir, 'UNREADABLE', 'is not a folder')])
    }
  } catch (err) {
    if (err instanceof PolicyError) throw err
    throw new PolicyError([
      fileIssue(dir, 'UNREADABLE', `cannot read the policy folder (${readFailure(err)})`),
    ])
  }
  const issues: PolicyIssue[] = []
  const found: string[] = []
  const visited = new Set<string>([await realpath(dir).catch(() => dir)])
  const walk = async (rel: string): Promise<void> => {
    let entries: Dirent[]
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true })
    } catch (err) {
      issues.push(
        fileIssue(join(dir, rel), 'UNREADABLE', `cannot read the folder (${readFailure(err)})`)
      )
      return
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue
      const relPath = rel === '' ? entry.name : `${rel}/${entry.name}`
      const full = join(dir, relPath)
      const isPolicy = POLICY_FILE_RE.test(entry.name)
      let kind: { isDirectory(): boolean; isFile(): boolean } = entry
      if (entry.isSymbolicLink()) {
        try {
          kind = await stat(full)
        } catch (err) {
          if (isPolicy) {
            issues.push(fileIssue(full, 'UNREADABLE', `is a link to nothing (${readFailure(err)})`))
          }
          continue
        }
      }
      if (kind.isDirectory()) {
        const real = await realpath(full).catch(() => full)
        if (visited.has(real)) continue
        visited.add(real)
        await walk(relPath)
      } else if (isPolicy) {
        // A FIFO or a device would block or never end: only regular files are read.
        if (kind.isFile()) found.push(relPath)
        else issues.push(fileIssue(full, 'UNREADABLE', 'is not a regular file'))
        if (found.length > MAX_POLICY_FILES) {
          const message = `holds more than ${MAX_POLICY_FILES} policy files`
          throw new PolicyError([fileIssue(dir, 'TOO_MANY_FILES', message)])
        }
      }
    }
  }
  await walk('')
  return { paths: found.sort(compareText).map((rel) => join(dir, rel)), issues }
}

async function readPolicyFile(path: string): Promise<{ bytes: Buffer } | { issue: PolicyIssue }> {
  try {
    return { bytes: await readBounded(path, MAX_POLICY_FILE_BYTES) }
  } catch (err) {
    if (err instanceof FileTooLargeError) return { issue: tooLarge(path, err.size) }
    return { issue: fileIssue(path, 'UNREADABLE', `cannot read the file (${readFailure(err)})`) }
  }
}

function tooLarge(file: string, size: number): PolicyIssue {
  const limit = formatBytes(MAX_POLICY_FILE_BYTES)
  return fileIssue(
    file,
    'TOO_LARGE',
    `is ${formatBytes(size)}, over the ${limit} limit for a policy file`
  )
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// Files -> YAML documents

/** One YAML document of a file, parsed, with the means to position issues in it. */
interface SourceDocument {
  readonly file: string
  readonly doc: Document
  readonly data: unknown
  /** `file:line` of the document's first node. */
  readonly source: string
  issueAt(path: Path, code: PolicyIssueCode, message: string, atKey?: boolean): PolicyIssue
}

function readDocuments(file: PolicyFile, issues: PolicyIssue[]): SourceDocument[] {
  const text = decode(file, issues)
  if (text === undefined) return []
  const lineCounter = new LineCounter()
  const at = (
    offset: number | undefined,
    code: PolicyIssueCode,
    message: string,
    path = ''
  ): PolicyIssue => ({
    file: file.path,
    ...lineColumn(lineCounter, offset),
    path,
    code,
    message,
  })
  // Lexing and parsing are iterative; composing recurses per nesting level, so depth is checked
  // on the token tree first (a stack overflow inside yaml can leave V8's regex engine broken).
  const rough = roughlyTooDeep(text)
  if (rough !== undefined) {
    const line = countLines(text, rough)
    const column = rough - text.lastIndexOf('\n', rough - 1)
    const message = `collections nested deeper than ${MAX_NESTING}`
    issues.push({ file: file.path, line, column, path: '', code: 'YAML_TOO_DEEP', message })
    return []
  }
  const tokens = Array.from(new Parser(lineCounter.addNewLine).parse(text))
  const deep = tooDeep(tokens)
  if (deep !== undefined) {
    issues.push(at(deep, 'YAML_TOO_DEEP', `collections nested deeper than ${MAX_NESTING}`))
    return []
  }
  // yaml's uniqueKeys compares each key with every other (a minute for 60,000 keys): duplicates
  // are found below, in one pass.
  const composer = new Composer({ uniqueKeys: false, stringKeys: true, logLevel: 'error' })
  const docs: Document[] = []
  for (const doc of composer.compose(tokens)) {
    if (docs.length === MAX_DOCUMENTS) {
      const message = `holds more than ${MAX_DOCUMENTS} documents`
      issues.push(at(doc.range[0], 'TOO_MANY_DOCUMENTS', message))
      return []
    }
    docs.push(doc)
  }
  const stream = composer.streamInfo()
  for (const e of [...stream.errors, ...stream.warnings]) {
    issues.push(at(e.pos[0], 'YAML_SYNTAX', yamlMessage(e.code, e.message)))
  }
  const out: SourceDocument[] = []
  for (const doc of docs) {
    // Warnings too (an unknown tag such as `!foo` is dropped with one): a policy means what it says.
    const problems = [...doc.errors, ...doc.warnings]
    for (const e of problems) {
      issues.push(at(e.pos[0], 'YAML_SYNTAX', yamlMessage(e.code, e.message)))
    }
    if (problems.length > 0 || doc.contents === null) continue
    const duplicates = duplicateKeys(doc)
    for (const { offset, key } of duplicates) {
      issues.push(at(offset, 'YAML_SYNTAX', `duplicate key ${JSON.stringify(key.slice(0, 100))}`))
    }
    if (duplicates.length > 0) continue
    let data: unknown
    try {
      data = doc.toJS({ maxAliasCount: MAX_ALIASES })
    } catch (err) {
      const message = (err as Error).message
      issues.push(at(aliasOffset(doc, message), 'YAML_ALIAS', aliasMessage(message)))
      continue
    }
    // `---` followed by nothing, or by comments only.
    if (data === null || data === undefined) continue
    const start = doc.contents.range?.[0]
    out.push({
      file: file.path,
      doc,
      data,
      source: `${file.path}:${lineColumn(lineCounter, start).line}`,
      issueAt: (path, code, message, atKey = false) =>
        at(locate(doc, path, atKey), code, message, formatPath(path)),
    })
  }
  return out
}

/** The text of a file; undefined (with an issue) when too large or not UTF-8. */
function decode(file: PolicyFile, issues: PolicyIssue[]): string | undefined {
  const bytes = typeof file.text === 'string' ? undefined : file.text
  const size = bytes?.length ?? Buffer.byteLength(file.text as string)
  if (size > MAX_POLICY_FILE_BYTES) {
    issues.push(tooLarge(file.path, size))
    return undefined
  }
  if (bytes === undefined) return file.text as string
  if (!isUtf8(bytes)) {
    const offset = firstInvalidUtf8(bytes)
    const lineStart = bytes.lastIndexOf(0x0a, offset - 1) + 1
    const line = countLines(bytes, lineStart)
    const column = new TextDecoder().decode(bytes.subarray(lineStart, offset)).length + 1
    issues.push({
      file: file.path,
      line,
      column,
      path: '',
      code: 'NOT_UTF8',
      message: `is not UTF-8 (byte 0x${(bytes[offset] ?? 0).toString(16).padStart(2, '0')} at offset ${offset})`,
    })
    return undefined
  }
  // TextDecoder drops a leading byte order mark.
  return new TextDecoder('utf-8').decode(bytes)
}

/** The 1-based line of an offset: one more than the newlines before it. */
function countLines(text: string | Uint8Array, offset: number): number {
  let line = 1
  if (typeof text === 'string') {
    for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++
  } else {
    for (let i = text.indexOf(0x0a); i !== -1 && i < offset; i = text.indexOf(0x0a, i + 1)) line++
  }
  return line
}

/** The offset of the first byte that does not start (or continue) a valid UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0
  while (i < bytes.length) {
    const b = bytes[i] as number
    let n: number
    let min: number
    if (b < 0x80) {
      i++
      continue
    } else if (b >= 0xc2 && b <= 0xdf) [n, min] = [1, 0x80]
    else if (b >= 0xe0 && b <= 0xef) [n, min] = [2, 0x800]
    else if (b >= 0xf0 && b <= 0xf4) [n, min] = [3, 0x10000]
    else return i
    let cp = b & (0x3f >> n)
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k]
      if (c === undefined || (c & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (c & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i
    i += n + 1
  }
  return bytes.length
}

interface CstNode {
  readonly type?: string
  readonly offset?: number
  readonly value?: unknown
  readonly key?: unknown
  readonly items?: ReadonlyArray<{ readonly key?: unknown; readonly value?: unknown }>
}

/** The offset of the first collection nested deeper than MAX_NESTING, walked without recursion. */
function tooDeep(tokens: readonly unknown[]): number | undefined {
  const stack: Array<[unknown, number]> = tokens.map((t) => [t, 0])
  while (stack.length > 0) {
    const [token, depth] = stack.pop() as [unknown, number]
    if (typeof token !== 'object' || token === null) continue
    const node = token as CstNode
    let d = depth
    if (node.type === 'block-map' || node.type === 'block-seq' || node.type === 'flow-collection') {
      if (++d > MAX_NESTING) return node.offset ?? 0
    }
    stack.push([node.value, d], [node.key, d])
    for (const item of node.items ?? []) stack.push([item.key, d], [item.value, d])
  }
  return undefined
}

/**
 * The offset where brackets (outside quotes and comments) plus compact block indicators (`- - -`)
 * first nest deeper than ROUGH_NESTING, in one pass over the characters.
 */
function roughlyTooDeep(text: string): number | undefined {
  let flow = 0
  let quote: string | undefined
  let lineStart = true
  let compact = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string
    if (quote !== undefined) {
      if (c === '\\' && quote === '"') i++
      else if (c === quote) quote = undefined
      continue
    }
    if (c === '\n') {
      lineStart = true
      compact = 0
      continue
    }
    const prev = text[i - 1]
    const boundary =
      prev === undefined || prev === ' ' || prev === '\t' || prev === '\n' || '[{,:'.includes(prev)
    if (c === '#' && (prev === undefined || prev === ' ' || prev === '\t' || prev === '\n')) {
      const end = text.indexOf('\n', i)
      if (end === -1) break
      i = end - 1
    } else if ((c === '"' || c === "'") && boundary) {
      quote = c
    } else if (c === '[' || c === '{') {
      if (++flow + compact > ROUGH_NESTING) return i
    } else if (c === ']' || c === '}') {
      flow = Math.max(0, flow - 1)
    } else if (
      lineStart &&
      (c === '-' || c === '?' || c === ':') &&
      (text[i + 1] === ' ' || text[i + 1] === '\t')
    ) {
      if (flow + ++compact > ROUGH_NESTING) return i
    } else if (c !== ' ' && c !== '\t') {
      lineStart = false
    }
  }
  return undefined
}

/** Keys that appear twice in one mapping, each at its second occurrence. */
function duplicateKeys(doc: Document): Array<{ offset: number; key: string }> {
  const found: Array<{ offset: number; key: string }> = []
  visit(doc, {
    Map(_, map) {
      const seen = new Set<string>()
      for (const pair of map.items) {
        // stringKeys has already refused keys that are not scalars.
        if (!isScalar(pair.key)) continue
        const key = String(pair.key.value)
        if (seen.has(key)) found.push({ offset: pair.key.range?.[0] ?? 0, key })
        seen.add(key)
      }
    },
  })
  return found
}

/** yaml's message, reworded where it speaks to programmers. */
function yamlMessage(code: string, message: string): string {
  if (code === 'NON_STRING_KEY') return 'keys must be plain strings'
  return message
}

function aliasMessage(message: string): string {
  if (/excessive alias count/i.test(message)) {
    return `more than ${MAX_ALIASES} aliases expanded: refused as a resource exhaustion attack`
  }
  return message
}

/** The alias a toJS error is about: the one it names, else the first. */
function aliasOffset(doc: Document, message: string): number | undefined {
  let first: number | undefined
  let named: number | undefined
  visit(doc, {
    Alias(_, node) {
      const offset = node.range?.[0]
      first ??= offset
      if (message.endsWith(`: ${node.source}`)) {
        named = offset
        return visit.BREAK
      }
      return undefined
    },
  })
  return named ?? first ?? doc.contents?.range?.[0]
}

// ---------------------------------------------------------------------------------------------
// Documents -> validated documents

type Validated =
  | {
      readonly kind: 'ImagePolicy'
      readonly src: SourceDocument
      readonly value: ImagePolicyDocument
    }
  | {
      readonly kind: 'PolicyException'
      readonly src: SourceDocument
      readonly value: PolicyExceptionDocument
    }
  | {
      readonly kind: 'PolicySettings'
      readonly src: SourceDocument
      readonly value: PolicySettingsDocument
    }

function validate(src: SourceDocument, issues: PolicyIssue[]): Validated | undefined {
  const data = src.data
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    const message = 'a policy document is a mapping of apiVersion, kind, metadata and spec'
    issues.push(src.issueAt([], 'INVALID', message))
    return undefined
  }
  const record = data as Record<string, unknown>
  const kind = Object.hasOwn(record, 'kind') ? record.kind : undefined
  if (!(DOCUMENT_KINDS as readonly unknown[]).includes(kind)) {
    const expected = `expected one of ${DOCUMENT_KINDS.join(', ')}`
    const message = kind === undefined ? `is required (${expected})` : `unknown kind (${expected})`
    issues.push(src.issueAt(['kind'], 'UNKNOWN_KIND', message))
    if (record.apiVersion !== API_VERSION) {
      issues.push(src.issueAt(['apiVersion'], 'INVALID', `must be ${JSON.stringify(API_VERSION)}`))
    }
    return undefined
  }
  switch (kind as DocumentKind) {
    case 'ImagePolicy': {
      const r = imagePolicySchema.safeParse(data, { error: zodMessage })
      if (r.success) return { kind: 'ImagePolicy', src, value: r.data }
      pushZodIssues(src, flattenZodIssues(r.error.issues, imagePolicySchema, data), issues)
      return undefined
    }
    case 'PolicyException': {
      const r = policyExceptionSchema.safeParse(data, { error: zodMessage })
      if (r.success) return { kind: 'PolicyException', src, value: r.data }
      pushZodIssues(src, flattenZodIssues(r.error.issues, policyExceptionSchema, data), issues)
      return undefined
    }
    case 'PolicySettings': {
      const r = policySettingsSchema.safeParse(data, { error: zodMessage })
      if (r.success) return { kind: 'PolicySettings', src, value: r.data }
      pushZodIssues(src, flattenZodIssues(r.error.issues, policySettingsSchema, data), issues)
      return undefined
    }
  }
}

function pushZodIssues(src: SourceDocument, raw: readonly RawIssue[], issues: PolicyIssue[]): void {
  for (const r of raw) {
    const code = (r.code ?? 'INVALID') as PolicyIssueCode
    issues.push(src.issueAt(r.path, code, r.message, r.atKey === true))
  }
}

// ---------------------------------------------------------------------------------------------
// The set

function compileSet(
  files: readonly PolicyFile[],
  options: PolicyLoadOptions,
  readIssues: readonly PolicyIssue[]
): PolicySet {
  const sorted = [...files].sort((a, b) => compareText(a.path, b.path))
  const issues: PolicyIssue[] = [...readIssues]
  const warnings: PolicyIssue[] = []
  const validated: Validated[] = []
  for (const file of sorted) {
    for (const src of readDocuments(file, issues)) {
      try {
        const v = validate(src, issues)
        if (v !== undefined) validated.push(v)
      } catch (err) {
        // Compiling recurses (zod, picomatch, CEL planning); depth is bounded above, but a stack
        // overflow must still be a positioned issue, never a crash.
        if (!(err instanceof RangeError)) throw err
        issues.push(src.issueAt([], 'INVALID', 'is too deeply nested or too large to compile'))
      }
    }
  }
  crossCheck(validated, options, issues, warnings)
  if (issues.length > 0) throw new PolicyError(capIssues(sortIssues(issues, sorted)))
  return assemble(validated, sortIssues(warnings, sorted))
}

/** What needs the whole set: unique names, known policies, rules, keys and upstreams. */
function crossCheck(
  docs: readonly Validated[],
  options: PolicyLoadOptions,
  issues: PolicyIssue[],
  warnings: PolicyIssue[]
): void {
  const policies = new Map<string, Extract<Validated, { kind: 'ImagePolicy' }>>()
  const exceptions = new Map<string, Validated>()
  let settings: Validated | undefined
  const now = (options.now ?? Date.now)()

  const duplicate = (doc: Validated, what: string, first: Validated): void => {
    const message = `${what} ${doc.value.metadata.name} is also defined at ${first.src.source}`
    issues.push(doc.src.issueAt(['metadata', 'name'], 'DUPLICATE_NAME', message))
  }
  const checkUpstream = (src: SourceDocument, path: Path, upstream: unknown): void => {
    if (typeof upstream !== 'string' || options.upstreams === undefined) return
    if (!options.upstreams.has(upstream)) {
      const known = [...options.upstreams].sort().join(', ')
      issues.push(src.issueAt(path, 'UNKNOWN_UPSTREAM', `is not a configured upstream (${known})`))
    }
  }
  const checkRepository = (src: SourceDocument, path: Path, entry: unknown): void => {
    const e = entry as { upstream?: unknown; repository?: unknown }
    checkUpstream(src, [...path, 'upstream'], e.upstream)
    const repository = e.repository
    if (
      e.upstream === 'docker.io' &&
      typeof repository === 'string' &&
      !repository.includes('/') &&
      !repository.includes('**')
    ) {
      const message = `docker.io names have two components: Customs sees ${repository} as library/${repository}`
      warnings.push(src.issueAt([...path, 'repository'], 'DOCKER_HUB_NAME', message))
    }
  }
  const checkKeys = (
    src: SourceDocument,
    path: Path,
    list: readonly CompiledAuthority[] | undefined
  ): void => {
    for (const [i, a] of (list ?? []).entries()) {
      if (a.kind === 'key' && a.pem === undefined && !options.keyNames.has(a.key)) {
        const known =
          options.keyNames.size === 0
            ? 'none are configured'
            : `known: ${[...options.keyNames].sort().join(', ')}`
        issues.push(
          src.issueAt(
            [...path, i, 'key', 'name'],
            'UNKNOWN_TRUST_KEY',
            `is not a key of trust.keys (${known})`
          )
        )
      }
    }
  }

  for (const doc of docs) {
    const raw = doc.src.data as { spec?: { match?: unknown[]; images?: unknown[] } }
    if (doc.kind === 'ImagePolicy') {
      const first = policies.get(doc.value.metadata.name)
      if (first !== undefined) duplicate(doc, 'policy', first)
      else policies.set(doc.value.metadata.name, doc)
      for (const [i, entry] of (raw.spec?.match ?? []).entries()) {
        checkRepository(doc.src, ['spec', 'match', i], entry)
      }
      checkKeys(doc.src, ['spec', 'authorities'], doc.value.spec.authorities)
      if (doc.value.spec.tagMoves?.signerChange === 'detain' && doc.value.spec.mode === 'audit') {
        const message = 'an audit policy does not detain: a signer change on a tag move is only flagged'
        warnings.push(doc.src.issueAt(['spec', 'tagMoves', 'signerChange'], 'AUDIT_TAG_MOVES', message))
      }
      for (const [j, att] of (doc.value.spec.attestations ?? []).entries()) {
        checkKeys(doc.src, ['spec', 'attestations', j, 'authorities'], att.authorities)
      }
    } else if (doc.kind === 'PolicyException') {
      const first = exceptions.get(doc.value.metadata.name)
      if (first !== undefined) duplicate(doc, 'exception', first)
      else exceptions.set(doc.value.metadata.name, doc)
      for (const [i, entry] of (raw.spec?.images ?? []).entries()) {
        checkRepository(doc.src, ['spec', 'images', i], entry)
      }
      if (doc.value.spec.expires < now) {
        const when = new Date(doc.value.spec.expires).toISOString()
        const message = `expired at ${when}: the exception no longer applies`
        warnings.push(doc.src.issueAt(['spec', 'expires'], 'EXPIRED_EXCEPTION', message))
      }
    } else if (settings !== undefined) {
      const message = `a set has at most one PolicySettings; another is at ${settings.src.source}`
      issues.push(doc.src.issueAt(['kind'], 'DUPLICATE_SETTINGS', message))
    } else {
      settings = doc
    }
  }

  // Exceptions name policies, which may be defined in any file, so they are checked last.
  for (const doc of docs) {
    if (doc.kind !== 'PolicyException') continue
    for (const [i, waive] of doc.value.spec.waives.entries()) {
      const policy = policies.get(waive.policy)
      if (policy === undefined) {
        const message = `names no policy of the set${nearest(waive.policy, [...policies.keys()])}`
        issues.push(doc.src.issueAt(['spec', 'waives', i, 'policy'], 'UNKNOWN_POLICY', message))
        continue
      }
      const has = rulesOf(policy.value)
      for (const [k, rule] of (waive.rules ?? []).entries()) {
        if (!has.has(rule)) {
          const message = `policy ${waive.policy} has no ${rule} to waive (it has ${[...has].join(', ') || 'nothing'})`
          issues.push(doc.src.issueAt(['spec', 'waives', i, 'rules', k], 'UNKNOWN_RULE', message))
        }
      }
    }
  }
}

/** The waivable names a policy has: its authorities, attestations and each of its rules. */
function rulesOf(policy: ImagePolicyDocument): Set<string> {
  const has = new Set<string>()
  if ((policy.spec.authorities ?? []).length > 0) has.add('authorities')
  if ((policy.spec.attestations ?? []).length > 0) has.add('attestations')
  const rules = policy.spec.rules ?? {}
  for (const [key, value] of Object.entries(rules)) {
    if (value === undefined) continue
    // CompiledRules' fields carry units (maxAgeMs); the YAML names them without.
    has.add(key === 'maxAgeMs' ? 'maxAge' : key === 'maxSizeBytes' ? 'maxSize' : key)
  }
  return has
}

function nearest(name: string, names: readonly string[]): string {
  const near = names.find((n) => n.replaceAll('-', '') === name.replaceAll('-', ''))
  return near === undefined ? '' : ` (did you mean ${near}?)`
}

function sortIssues(issues: readonly PolicyIssue[], files: readonly PolicyFile[]): PolicyIssue[] {
  const rank = new Map(files.map((f, i) => [f.path, i]))
  const key = (i: PolicyIssue): number => rank.get(i.file) ?? -1
  return issues
    .map((issue, order) => ({ issue, order }))
    .sort(
      (a, b) =>
        key(a.issue) - key(b.issue) ||
        a.issue.line - b.issue.line ||
        a.issue.column - b.issue.column ||
        a.order - b.order
    )
    .map(({ issue }) => issue)
}

/** At most MAX_ISSUES_PER_FILE per file, then one issue counting the rest (issues sorted). */
function capIssues(issues: readonly PolicyIssue[]): PolicyIssue[] {
  const out: PolicyIssue[] = []
  const perFile = new Map<string, number>()
  for (const issue of issues) {
    const n = (perFile.get(issue.file) ?? 0) + 1
    perFile.set(issue.file, n)
    if (n <= MAX_ISSUES_PER_FILE) out.push(issue)
    else if (n === MAX_ISSUES_PER_FILE + 1)
      out.push({ ...issue, path: '', code: 'TOO_MANY_ISSUES', message: '' })
  }
  return out.map((issue) => {
    if (issue.code !== 'TOO_MANY_ISSUES') return issue
    const more = (perFile.get(issue.file) ?? 0) - MAX_ISSUES_PER_FILE
    return {
      ...issue,
      message: `and ${more} more ${more === 1 ? 'problem' : 'problems'} in this file`,
    }
  })
}

function assemble(docs: readonly Validated[], warnings: readonly PolicyIssue[]): PolicySet {
  const policies: CompiledPolicy[] = []
  const exceptions: CompiledException[] = []
  let unmatched: PolicySet['unmatched'] = 'allow'
  for (const doc of docs) {
    if (doc.kind === 'ImagePolicy') {
      const spec = doc.value.spec
      const authorities = spec.authorities ?? []
      policies.push({
        name: doc.value.metadata.name,
        source: doc.src.source,
        mode: spec.mode,
        onVerifierUnavailable: spec.onVerifierUnavailable,
        match: spec.match,
        authorities,
        // No authorities: none are required (0 of 0), so a rules-only policy needs no signature.
        authoritiesRequired: spec.authoritiesRequired ?? (authorities.length > 0 ? 1 : 0),
        attestations: spec.attestations ?? [],
        rules: spec.rules ?? {},
        ...(spec.tagMoves !== undefined ? { tagMoves: { signerChange: spec.tagMoves.signerChange } } : {}),
      })
    } else if (doc.kind === 'PolicyException') {
      const spec = doc.value.spec
      exceptions.push({
        name: doc.value.metadata.name,
        source: doc.src.source,
        images: spec.images,
        waives: spec.waives.map((w) => ({
          policy: w.policy,
          ...(w.rules !== undefined ? { rules: w.rules } : {}),
        })),
        reason: spec.reason,
        owner: spec.owner,
        expires: spec.expires,
      })
    } else {
      unmatched = doc.value.spec.unmatched
    }
  }
  const set: PolicySet = {
    policies,
    exceptions,
    unmatched,
    revision: revisionOf(docs.map((d) => d.src.data)),
    ...(warnings.length > 0 ? { warnings } : {}),
  }
  return deepFreeze(set)
}

/**
 * sha256 over the canonical JSON (sorted keys) of every document in file and document order,
 * with the loader's format: the same documents give the same revision on every run and replica.
 * File names are left out: renaming a file changes no verdict. The trust keys' names are left
 * out too: they are only checked here, and the keys' material is not the policy's to hash.
 */
function revisionOf(documents: readonly unknown[]): string {
  const hash = createHash('sha256')
  hash.update(canonicalJson({ format: REVISION_FORMAT, documents }))
  return hash.digest('hex').slice(0, 16)
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value instanceof Date) return JSON.stringify(value.toISOString())
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value).sort(([a], [b]) => compareText(a, b))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/** Freezes plain objects and arrays; functions and Sets are left as they are. */
function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value
  if (!Array.isArray(value) && Object.getPrototypeOf(value) !== Object.prototype) return value
  Object.freeze(value)
  for (const child of Object.values(value)) deepFreeze(child)
  return value
}
