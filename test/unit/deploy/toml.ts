// A strict parser for the small subset of TOML that the deploy/ snippets use (containerd
// hosts.toml, containers registries.conf): comments, `key = value` with basic strings, booleans,
// integers and one-line arrays, `[table."quoted key"]` and `[[array.of.tables]]`. Anything else
// is an error with its line, so a snippet cannot drift into syntax nobody checked.

export type TomlValue = string | number | boolean | TomlValue[] | TomlTable
export interface TomlTable {
  [key: string]: TomlValue
}

export class TomlError extends Error {
  constructor(
    readonly line: number,
    message: string
  ) {
    super(`line ${line}: ${message}`)
    this.name = 'TomlError'
  }
}

const BARE_KEY = /^[A-Za-z0-9_-]+/
const ESCAPES: Readonly<Record<string, string>> = { '"': '"', '\\': '\\', n: '\n', t: '\t' }

/** Parses the subset; throws TomlError naming the first line it does not accept. */
export function parseToml(text: string): TomlTable {
  const root: TomlTable = {}
  // Tables opened by a header, so that a second `[same]` is refused as TOML refuses it.
  const defined = new Set<TomlTable>()
  let current = root
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1
    const cursor = new Cursor(raw, line)
    cursor.skipSpace()
    if (cursor.atEnd()) return
    if (cursor.peek() === '[') {
      const array = cursor.text.startsWith('[[', cursor.pos)
      cursor.pos += array ? 2 : 1
      const path = cursor.keyPath()
      cursor.expect(array ? ']]' : ']')
      cursor.expectEnd()
      current = array ? appendTable(root, path, line) : openTable(root, path, line, defined)
      return
    }
    const key = cursor.key()
    cursor.skipSpace()
    if (cursor.peek() === '.')
      throw new TomlError(line, 'dotted keys are outside the checked subset')
    cursor.expect('=')
    const value = cursor.value()
    cursor.expectEnd()
    if (Object.hasOwn(current, key)) throw new TomlError(line, `duplicate key ${key}`)
    current[key] = value
  })
  return root
}

class Cursor {
  pos = 0
  constructor(
    readonly text: string,
    readonly line: number
  ) {}

  atEnd(): boolean {
    return this.pos >= this.text.length || this.text[this.pos] === '#'
  }

  peek(): string | undefined {
    return this.text[this.pos]
  }

  skipSpace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++
  }

  fail(message: string): never {
    throw new TomlError(this.line, `${message} at column ${this.pos + 1}`)
  }

  expect(token: string): void {
    this.skipSpace()
    if (!this.text.startsWith(token, this.pos)) this.fail(`expected ${token}`)
    this.pos += token.length
  }

  expectEnd(): void {
    this.skipSpace()
    if (!this.atEnd()) this.fail('unexpected text')
  }

  key(): string {
    this.skipSpace()
    if (this.peek() === '"') return this.string()
    const match = BARE_KEY.exec(this.text.slice(this.pos))
    if (match === null) this.fail('expected a key')
    this.pos += match[0].length
    return match[0]
  }

  keyPath(): string[] {
    const path = [this.key()]
    for (;;) {
      this.skipSpace()
      if (this.peek() !== '.') return path
      this.pos++
      path.push(this.key())
    }
  }

  string(): string {
    this.expect('"')
    let out = ''
    for (;;) {
      const c = this.peek()
      if (c === undefined) this.fail('unterminated string')
      this.pos++
      if (c === '"') return out
      if (c === '\\') {
        const escaped = ESCAPES[this.peek() ?? '']
        if (escaped === undefined) this.fail('unsupported escape')
        out += escaped
        this.pos++
      } else {
        out += c
      }
    }
  }

  value(): TomlValue {
    this.skipSpace()
    const c = this.peek()
    if (c === '"') {
      if (this.text.startsWith('"""', this.pos)) this.fail('multi-line strings are not supported')
      return this.string()
    }
    if (c === '[') return this.array()
    const word = /^(true|false|-?(0|[1-9][0-9]*))(?=[\s,\]#]|$)/.exec(this.text.slice(this.pos))
    if (word === null) this.fail('expected a string, boolean, integer or array')
    this.pos += word[0].length
    if (word[0] === 'true' || word[0] === 'false') return word[0] === 'true'
    return Number(word[0])
  }

  array(): TomlValue[] {
    this.expect('[')
    const items: TomlValue[] = []
    for (;;) {
      this.skipSpace()
      if (this.peek() === ']') break
      if (this.atEnd()) this.fail('arrays must close on the line they open')
      items.push(this.value())
      this.skipSpace()
      if (this.peek() === ',') this.pos++
      else if (this.peek() !== ']') this.fail('expected , or ]')
    }
    this.pos++
    return items
  }
}

function isTable(value: TomlValue | undefined): value is TomlTable {
  return typeof value === 'object' && !Array.isArray(value)
}

/** The table at path, created on the way; an array of tables stands for its last element. */
function walk(root: TomlTable, path: readonly string[], line: number): TomlTable {
  let table = root
  for (const key of path) {
    const next = table[key]
    if (next === undefined) {
      const created: TomlTable = {}
      table[key] = created
      table = created
    } else if (isTable(next)) {
      table = next
    } else if (Array.isArray(next) && isTable(next[next.length - 1])) {
      table = next[next.length - 1] as TomlTable
    } else {
      throw new TomlError(line, `${key} is not a table`)
    }
  }
  return table
}

function openTable(
  root: TomlTable,
  path: string[],
  line: number,
  defined: Set<TomlTable>
): TomlTable {
  const table = walk(root, path, line)
  if (defined.has(table)) throw new TomlError(line, `table [${path.join('.')}] defined twice`)
  defined.add(table)
  return table
}

function appendTable(root: TomlTable, path: string[], line: number): TomlTable {
  const parent = walk(root, path.slice(0, -1), line)
  const key = path[path.length - 1] as string
  const existing = parent[key] ?? []
  if (!Array.isArray(existing)) throw new TomlError(line, `${key} is not an array of tables`)
  const table: TomlTable = {}
  existing.push(table)
  parent[key] = existing
  return table
}
