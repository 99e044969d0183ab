// YAML positions and wording for validation issues, shared by the configuration and policy loaders:
// the node at a path in a parsed document, and zod's issues flattened into one issue per problem,
// reworded for a YAML author.

import { isAlias, isMap, isNode, isScalar, isSeq } from 'yaml'
import type { Document, LineCounter } from 'yaml'
import { z } from 'zod'

export type Path = readonly PropertyKey[]

/** A problem found at a path of one document, before it is positioned. */
export interface RawIssue {
  readonly path: Path
  readonly message: string
  /** A machine-readable reason, set by the schema's custom checks (`params.code`). */
  readonly code?: string
  /** The issue is about the key itself (an unknown key), not its value. */
  readonly atKey?: boolean
}

/** The offset of the node at path, or of its nearest ancestor present in the document. */
export function locate(doc: Document, path: Path, atKey = false): number | undefined {
  let node: unknown = doc.contents
  let offset = isNode(node) ? node.range?.[0] : undefined
  for (const [i, segment] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc)
    if (isMap(node)) {
      // Compared as text: a YAML key `1:` is the number 1, and zod names it '1'.
      const keyText = (key: unknown): string => String(isScalar(key) ? key.value : key)
      const pair = node.items.find((p) => keyText(p.key) === String(segment))
      if (pair === undefined) break
      const keyOffset = isNode(pair.key) ? pair.key.range?.[0] : undefined
      // A key with no value (or one asked about itself) is found at the key.
      if ((atKey && i === path.length - 1) || !isNode(pair.value) || isNullScalar(pair.value)) {
        return keyOffset ?? offset
      }
      node = pair.value
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment]
      if (!isNode(node)) break
    } else {
      break
    }
    offset = isNode(node) ? (node.range?.[0] ?? offset) : offset
  }
  return offset
}

function isNullScalar(node: unknown): boolean {
  return isScalar(node) && node.value === null
}

/** 1-based line and column of an offset; 1:1 when there is none (a problem with the whole file). */
export function lineColumn(
  lineCounter: LineCounter,
  offset: number | undefined
): { line: number; column: number } {
  if (offset === undefined) return { line: 1, column: 1 }
  const { line, col } = lineCounter.linePos(offset)
  return { line, column: col }
}

// ---------------------------------------------------------------------------------------------
// Zod issues -> our issues

/**
 * How much of zod's wording is replaced. 'full' (policy files): every message of zodMessage, with
 * `integer` for zod's `int` and for a whole number. 'types' (the configuration, whose messages
 * predate this module): missing values, wrong types (`got null` too) and choices among several
 * only, in zod's type names `int` and `number`; bounds and single values keep zod's own words.
 */
export type Wording = 'full' | 'types'

/**
 * Zod's messages in the words of a YAML author; pass as `safeParse(data, { error })`, or with a
 * wording as `{ error: (issue) => zodMessage(issue, 'types') }`.
 */
export function zodMessage(
  issue: z.core.$ZodRawIssue,
  wording: Wording = 'full'
): string | undefined {
  const full = wording === 'full'
  if (issue.code === 'invalid_type') {
    const expected = expectedName(issue.expected, wording)
    if (issue.input === undefined) return 'is required'
    if (issue.input === null && full) return `has no value (expected ${expected})`
    return `expected ${expected}, got ${typeName(issue.input, wording)}`
  }
  if (issue.code === 'invalid_value' && (full || issue.values.length > 1)) {
    if (issue.values.length === 1) return `must be ${JSON.stringify(issue.values[0])}`
    return `must be one of ${issue.values.map(String).join(', ')}`
  }
  if (!full) return undefined
  if (issue.code === 'too_small' || issue.code === 'too_big') {
    const small = issue.code === 'too_small'
    const bound = Number(small ? issue.minimum : issue.maximum)
    if (issue.origin === 'array') {
      return small ? `must list at least ${bound}` : `must list at most ${bound}`
    }
    if (issue.origin === 'string') {
      if (small && bound === 1) return 'must not be empty'
      return small ? `must be at least ${bound} characters` : `must be at most ${bound} characters`
    }
    return small ? `must be at least ${bound}` : `must be at most ${bound}`
  }
  return undefined
}

/** Zod's type names in the words of YAML. */
function expectedName(expected: string, wording: Wording): string {
  if (expected === 'object') return 'mapping'
  if (expected === 'array') return 'list'
  if (expected === 'int' && wording === 'full') return 'integer'
  return expected
}

function typeName(value: unknown, wording: Wording): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'list'
  if (typeof value === 'number' && Number.isInteger(value) && wording === 'full') return 'integer'
  if (typeof value === 'object') return 'mapping'
  return typeof value
}

/**
 * One issue per problem: an unknown key is reported at the key itself, with the keys that are
 * allowed there; a union reports the issues of the branch whose type the value has.
 */
export function flattenZodIssues(
  issues: readonly z.core.$ZodIssue[],
  schema: z.core.$ZodType,
  data: unknown,
  wording: Wording = 'full'
): RawIssue[] {
  const flatten = (list: readonly z.core.$ZodIssue[], base: Path): RawIssue[] =>
    list.flatMap((issue): RawIssue[] => {
      const path = [...base, ...issue.path]
      if (issue.code === 'unrecognized_keys') {
        const known = objectKeysAt(schema, path)
        return issue.keys.map((key) => ({
          path: [...path, key],
          message: unknownKeyMessage(key, known),
          code: 'UNKNOWN_FIELD',
          atKey: true,
        }))
      }
      if (issue.code === 'invalid_union') {
        const wrongType = (branch: readonly z.core.$ZodIssue[]): boolean =>
          branch.length === 1 && branch[0]?.code === 'invalid_type' && branch[0].path.length === 0
        const matching = issue.errors.filter((branch) => !wrongType(branch))
        const [only] = matching
        if (matching.length === 1 && only !== undefined) return flatten(only, path)
        const expected = issue.errors.flatMap((b) =>
          b[0]?.code === 'invalid_type' ? [b[0].expected] : []
        )
        if (matching.length === 0 && expected.length > 0) {
          const got = typeName(valueAt(data, path), wording)
          const names = [...new Set(expected.map((e) => expectedName(e, wording)))]
          return [{ path, message: `expected ${names.join(' or ')}, got ${got}` }]
        }
      }
      const code = issue.code === 'custom' ? customCode(issue.params) : undefined
      return [{ path, message: issue.message, ...(code !== undefined ? { code } : {}) }]
    })
  return flatten(issues, [])
}

function customCode(params: unknown): string | undefined {
  const code = (params as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const near = known.find((k) => k.toLowerCase() === key.toLowerCase())
  if (near !== undefined) return `unknown key (did you mean ${near}?)`
  return known.length > 0 ? `unknown key (expected one of ${known.join(', ')})` : 'unknown key'
}

function valueAt(data: unknown, path: Path): unknown {
  let value = data
  for (const segment of path) {
    if (value === null || typeof value !== 'object') return undefined
    if (!Object.hasOwn(value, segment)) return undefined
    value = (value as Record<PropertyKey, unknown>)[segment]
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// Walking the schema

export type Schema = z.core.$ZodType

/** The schema that decides the value's shape: defaults, optionals and transforms peeled off. */
export function unwrap(schema: Schema): Schema {
  if (
    schema instanceof z.ZodDefault ||
    schema instanceof z.ZodPrefault ||
    schema instanceof z.ZodOptional
  ) {
    return unwrap(schema._zod.def.innerType)
  }
  if (schema instanceof z.ZodPipe) return unwrap(schema._zod.def.in)
  return schema
}

/** The keys an object in the schema allows at path, for the unknown-key message. */
export function objectKeysAt(schema: Schema, path: Path): string[] {
  const s = unwrap(schema)
  const [head, ...rest] = path
  if (s instanceof z.ZodUnion) {
    const options = s._zod.def.options.map((o) => objectKeysAt(o, path))
    return options.find((keys) => keys.length > 0) ?? []
  }
  if (s instanceof z.ZodObject) {
    if (head === undefined) return Object.keys(s._zod.def.shape)
    const child =
      typeof head === 'string' && Object.hasOwn(s._zod.def.shape, head)
        ? s._zod.def.shape[head]
        : undefined
    return child === undefined ? [] : objectKeysAt(child, rest)
  }
  if (s instanceof z.ZodArray && typeof head === 'number') {
    return objectKeysAt(s._zod.def.element, rest)
  }
  return []
}
