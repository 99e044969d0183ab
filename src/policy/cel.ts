// CEL expressions in policies (`rules.cel`): parsed, checked and planned once at load with
// @bufbuild/cel; evaluated per image over the facts. Load rejects what would only fail later: syntax
// errors, unknown variables and functions, and nesting deep enough to exhaust the stack.

import { createRequire } from 'node:module'
import type { CelInput, CelResult } from '@bufbuild/cel'

/** The variables an expression may use; the evaluator binds each from the facts. */
export const CEL_VARIABLES = Object.freeze(['image', 'signatures', 'attestations'] as const)

/** The longest expression accepted: policies are reviewed by people, and parsing is recursive. */
export const MAX_CEL_LENGTH = 4096
/** Brackets nested deeper than this are refused before parsing (the parser recurses per level). */
const MAX_BRACKET_DEPTH = 64
/** The deepest expression tree planned (the planner and evaluator recurse per level). */
const MAX_TREE_DEPTH = 256

/** Names that are CEL types, valid as bare identifiers (`type(x) == string`). */
const TYPE_NAMES: ReadonlySet<string> = new Set([
  'bool',
  'bytes',
  'double',
  'dyn',
  'int',
  'list',
  'map',
  'null_type',
  'string',
  'type',
  'uint',
  'google',
])

/** A compiled expression: what CompiledRules.cel holds. */
export interface CelProgram {
  readonly source: string
  /**
   * Evaluates over `{ image, signatures, attestations }` (see toCelFacts). Returns the result as
   * plain JSON-safe JavaScript (`true` when the rule passes; ints as numbers, lists as arrays,
   * maps as objects); throws CelEvaluationError when evaluation fails (a missing map key, a type
   * mismatch), which the evaluator counts as a failed rule.
   */
  readonly evaluate: (facts: Record<string, unknown>) => unknown
}

/** Why an expression was refused at load; line and column are within the expression. */
export class CelCompileError extends Error {
  readonly line: number
  readonly column: number

  constructor(message: string, line: number, column: number) {
    super(message)
    this.name = 'CelCompileError'
    this.line = line
    this.column = column
  }
}

/** An expression failed on these facts. */
export class CelEvaluationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CelEvaluationError'
  }
}

type CelLibrary = typeof import('@bufbuild/cel')
type CelPlan = ReturnType<CelLibrary['plan']>

interface CelRuntime {
  readonly lib: CelLibrary
  readonly env: ReturnType<CelLibrary['celEnv']>
  readonly toTimestamp: CelPlan
  readonly toText: CelPlan
}

let loaded: CelRuntime | undefined

/**
 * The CEL library, loaded with the first expression: @bufbuild/cel, its protobuf runtime and RE2
 * hold about 4 MB of heap for the life of the process, and most policy sets have no `cel` rule.
 * Compiling runs inside the policy schema's synchronous validation, hence require() of the
 * package's CommonJS build rather than import(). Nothing else imports the package, so its classes
 * and values all come from this one copy.
 */
function cel(): CelRuntime {
  if (loaded === undefined) {
    const require = createRequire(import.meta.url)
    const lib = require('@bufbuild/cel') as CelLibrary
    const { strings } = require('@bufbuild/cel/ext') as typeof import('@bufbuild/cel/ext')
    // One environment for every program: the standard library and the strings extension
    // (lowerAscii, split, ...), as Kubernetes' CEL offers it.
    const env = lib.celEnv({ funcs: strings })
    loaded = {
      lib,
      env,
      toTimestamp: lib.plan(env, lib.parse('timestamp(s)')),
      toText: lib.plan(env, lib.parse('string(v)')),
    }
  }
  return loaded
}

/**
 * Parses, checks and plans an expression. Throws CelCompileError with the position in the
 * expression of the first problem.
 */
export function compileCel(source: string): CelProgram {
  if (source.length > MAX_CEL_LENGTH) {
    throw new CelCompileError(`is longer than ${MAX_CEL_LENGTH} characters`, 1, 1)
  }
  const deep = deepBracket(source)
  if (deep !== undefined) {
    const { line, column } = linePos(source, deep)
    throw new CelCompileError(`nests brackets deeper than ${MAX_BRACKET_DEPTH}`, line, column)
  }
  const { lib, env } = cel()
  let parsed: ReturnType<CelLibrary['parse']>
  try {
    parsed = lib.parse(source)
  } catch (err) {
    throw syntaxError(err)
  }
  const positions = parsed.sourceInfo?.positions ?? {}
  const at = (id: bigint): { line: number; column: number } =>
    linePos(source, positions[String(id)] ?? 0)
  const problem = checkTree(parsed.expr, env)
  if (problem !== undefined) {
    const { line, column } = at(problem.id)
    throw new CelCompileError(problem.message, line, column)
  }
  let program: (ctx: Record<string, CelInput>) => CelResult
  try {
    program = lib.plan(env, parsed)
  } catch (err) {
    throw new CelCompileError(`cannot be planned: ${messageOf(err)}`, 1, 1)
  }
  return Object.freeze({
    source,
    evaluate(facts: Record<string, unknown>): unknown {
      const result = program(toCelFacts(facts))
      if (lib.isCelError(result)) throw new CelEvaluationError(result.message, { cause: result })
      return fromCel(result)
    },
  })
}

/**
 * The facts as CEL values: objects become maps (never protobuf messages, whatever their keys),
 * integers become CEL ints, absent fields are left out (so `has(image.created)` works), and
 * `image.created` becomes a timestamp when it is an RFC 3339 string or a Date (else it stays a
 * string, and comparing it with a timestamp fails the rule).
 */
export function toCelFacts(facts: Record<string, unknown>): Record<string, CelInput> {
  const out: Record<string, CelInput> = {}
  for (const name of CEL_VARIABLES) {
    const value = facts[name]
    if (value === undefined) continue
    const converted = toCel(value)
    if (name === 'image' && isPlainObject(value) && converted instanceof Map) {
      const created = timestampOf(value.created)
      if (created !== undefined) converted.set('created', created)
    }
    out[name] = converted
  }
  return out
}

function toCel(value: unknown): CelInput {
  if (value === null || value === undefined) return null
  if (typeof value === 'boolean' || typeof value === 'string' || typeof value === 'bigint')
    return value
  // Facts hold counts and sizes: CEL ints, so that `image.layers + 1` and `size(x) == n` type-check.
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : value
  if (Array.isArray(value)) return value.map(toCel)
  if (value instanceof Date) return timestampOf(value) ?? value.toISOString()
  const entries =
    value instanceof Map ? [...value] : isPlainObject(value) ? Object.entries(value) : undefined
  if (entries === undefined) return String(value)
  const map = new Map<string, CelInput>()
  for (const [k, v] of entries) if (v !== undefined) map.set(String(k), toCel(v))
  return map
}

/** A CEL result as plain data, so that callers can print it (JSON.stringify throws on bigint). */
function fromCel(value: unknown, depth = 0): unknown {
  const { lib, toText } = cel()
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value
  if (typeof value === 'number') return value
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : String(value)
  if (lib.isCelUint(value)) return fromCel(value.value, depth)
  // Results are a few levels deep at most; a deeper one is summarised rather than walked.
  if (depth > 16) return '…'
  if (lib.isCelList(value)) return [...value].map((v) => fromCel(v, depth + 1))
  if (lib.isCelMap(value)) {
    return Object.fromEntries([...value].map(([k, v]) => [String(fromCel(k, depth + 1)), fromCel(v, depth + 1)]))
  }
  // Timestamps, durations and bytes, as CEL's string() writes them.
  const text = toText({ v: value as CelInput })
  return typeof text === 'string' ? text : String(value)
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

/** A CEL timestamp for an RFC 3339 string or a Date, made by CEL's own timestamp(). */
function timestampOf(value: unknown): CelInput | undefined {
  let ms: number
  if (value instanceof Date) ms = value.getTime()
  else if (typeof value === 'string' && RFC3339.test(value))
    ms = Date.parse(value.replace(' ', 'T'))
  else return undefined
  if (!Number.isFinite(ms)) return undefined
  const { lib, toTimestamp } = cel()
  const result = toTimestamp({ s: new Date(ms).toISOString() })
  return lib.isCelError(result) ? undefined : (result as CelInput)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto: unknown = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

// ---------------------------------------------------------------------------------------------
// Load-time checks

/** The offset of the first bracket nested deeper than the limit, outside string literals. */
function deepBracket(source: string): number | undefined {
  let depth = 0
  let quote: string | undefined
  for (let i = 0; i < source.length; i++) {
    const c = source[i] as string
    if (quote !== undefined) {
      if (c === '\\') i++
      else if (source.startsWith(quote, i)) {
        i += quote.length - 1
        quote = undefined
      }
    } else if (c === '"' || c === "'") {
      quote = source.startsWith(c.repeat(3), i) ? c.repeat(3) : c
      i += quote.length - 1
    } else if (c === '(' || c === '[' || c === '{') {
      if (++depth > MAX_BRACKET_DEPTH) return i
    } else if (c === ')' || c === ']' || c === '}') {
      depth = Math.max(0, depth - 1)
    }
  }
  return undefined
}

interface ExprNode {
  readonly id: bigint
  readonly exprKind: { readonly case: string | undefined; readonly value?: unknown }
}

interface TreeProblem {
  readonly id: bigint
  readonly message: string
}

/**
 * Walks the parsed tree without recursion: too deep a tree, a variable that is not one of
 * CEL_VARIABLES (or a comprehension's own), or a function the environment does not have.
 */
function checkTree(root: ExprNode, env: CelRuntime['env']): TreeProblem | undefined {
  const stack: Array<{ node: ExprNode; depth: number; bound: ReadonlySet<string> }> = [
    { node: root, depth: 1, bound: new Set() },
  ]
  while (stack.length > 0) {
    const { node, depth, bound } = stack.pop() as (typeof stack)[number]
    if (depth > MAX_TREE_DEPTH)
      return { id: node.id, message: `is nested deeper than ${MAX_TREE_DEPTH}` }
    const push = (child: unknown, scope = bound): void => {
      if (isExprNode(child)) stack.push({ node: child, depth: depth + 1, bound: scope })
    }
    const { case: kind, value } = node.exprKind
    const v = (value ?? {}) as Record<string, unknown>
    switch (kind) {
      case 'identExpr': {
        const name = String(v.name)
        const known =
          bound.has(name) ||
          TYPE_NAMES.has(name) ||
          (CEL_VARIABLES as readonly string[]).includes(name)
        if (!known) {
          return {
            id: node.id,
            message: `unknown variable ${name} (expected ${CEL_VARIABLES.join(', ')})`,
          }
        }
        break
      }
      case 'selectExpr':
        push(v.operand)
        break
      case 'callExpr': {
        const fn = String(v.function)
        const qualified = qualifiedName(v.target)
        if (qualified !== undefined && env.funcs.find(`${qualified}.${fn}`) !== undefined) {
          // A namespaced function (strings.quote): the target is its namespace, not a variable.
        } else {
          // Operators (_+_, @in) are resolved by the planner; only named functions are looked up.
          if (/^[A-Za-z]/.test(fn) && env.funcs.find(fn) === undefined) {
            return { id: node.id, message: `unknown function ${fn}` }
          }
          push(v.target)
        }
        for (const arg of asArray(v.args)) push(arg)
        break
      }
      case 'listExpr':
        for (const element of asArray(v.elements)) push(element)
        break
      case 'structExpr':
        for (const entry of asArray(v.entries)) {
          const e = (entry ?? {}) as Record<string, unknown>
          const key = (e.keyKind ?? {}) as { case?: string; value?: unknown }
          if (key.case === 'mapKey') push(key.value)
          push(e.value)
        }
        break
      case 'comprehensionExpr': {
        const inner = new Set(bound)
        for (const name of [v.iterVar, v.iterVar2, v.accuVar]) {
          if (typeof name === 'string' && name !== '') inner.add(name)
        }
        push(v.iterRange)
        push(v.accuInit, inner)
        push(v.loopCondition, inner)
        push(v.loopStep, inner)
        push(v.result, inner)
        break
      }
      default:
        break
    }
  }
  return undefined
}

/** `a.b.c` for a chain of identifiers and selections; undefined for anything else. */
function qualifiedName(expr: unknown): string | undefined {
  const parts: string[] = []
  let node = expr
  while (isExprNode(node)) {
    const { case: kind, value } = node.exprKind
    const v = (value ?? {}) as Record<string, unknown>
    if (kind === 'identExpr') return [String(v.name), ...parts].join('.')
    if (kind !== 'selectExpr' || v.testOnly === true) return undefined
    parts.unshift(String(v.field))
    node = v.operand
  }
  return undefined
}

function isExprNode(value: unknown): value is ExprNode {
  return typeof value === 'object' && value !== null && 'exprKind' in value && 'id' in value
}

function asArray(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : []
}

/** The parser's error, positioned where it stopped; its message without the `<input>:1:2:` prefix. */
function syntaxError(err: unknown): CelCompileError {
  if (err instanceof RangeError) return new CelCompileError('is nested too deeply', 1, 1)
  const location = (err as { location?: { start?: { line?: unknown; column?: unknown } } }).location
  const line = typeof location?.start?.line === 'number' ? location.start.line : 1
  const column = typeof location?.start?.column === 'number' ? location.start.column : 1
  const message = messageOf(err).replace(/^<input>:\d+:\d+:\s*/, '')
  return new CelCompileError(`syntax error: ${message}`, line, column)
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function linePos(source: string, offset: number): { line: number; column: number } {
  const before = source.slice(0, offset)
  const line = before.split('\n').length
  return { line, column: offset - before.lastIndexOf('\n') }
}
