// A Dockerfile reader for the deploy/ tests: instructions with their line, continuation lines
// joined, comments and parser directives dropped, grouped into build stages, with the `${ARG}`
// defaults of the global ARGs substituted into FROM.

export interface Instruction {
  /** Upper-case keyword: FROM, RUN, COPY... */
  readonly keyword: string
  /** The rest of the instruction, continuations joined with a space. */
  readonly args: string
  readonly line: number
}

export interface Stage {
  /** The base image with global ARG defaults substituted. */
  readonly base: string
  readonly name: string | undefined
  readonly instructions: Instruction[]
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  readonly globalArgs: ReadonlyMap<string, string | undefined>
  readonly stages: Stage[]
}

/** Splits the text into instructions; a line ending in `\` continues on the next. */
export function instructions(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending: { parts: string[]; line: number } | undefined
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim()
    // Comment lines inside a continuation are dropped, as Docker does.
    if (trimmed.startsWith('#') || (trimmed === '' && pending === undefined)) return
    const continues = trimmed.endsWith('\\')
    const body = continues ? trimmed.slice(0, -1).trim() : trimmed
    if (pending === undefined) pending = { parts: [], line: index + 1 }
    if (body !== '') pending.parts.push(body)
    if (continues) return
    const joined = pending.parts.join(' ')
    const match = /^(\S+)\s*(.*)$/.exec(joined)
    if (match !== null) {
      out.push({
        keyword: (match[1] as string).toUpperCase(),
        args: match[2] as string,
        line: pending.line,
      })
    }
    pending = undefined
  })
  if (pending !== undefined) throw new Error(`line ${pending.line}: continuation never ends`)
  return out
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs = new Map<string, string | undefined>()
  const stages: Stage[] = []
  for (const instruction of instructions(text)) {
    if (instruction.keyword === 'FROM') {
      const match = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)
      if (match === null) throw new Error(`line ${instruction.line}: cannot read FROM`)
      stages.push({
        base: substitute(match[1] as string, globalArgs),
        name: match[2],
        instructions: [],
      })
      continue
    }
    const stage = stages[stages.length - 1]
    if (stage === undefined) {
      if (instruction.keyword !== 'ARG') {
        throw new Error(`line ${instruction.line}: only ARG may come before FROM`)
      }
      const [name, value] = instruction.args.split('=', 2)
      globalArgs.set((name as string).trim(), value?.trim())
      continue
    }
    stage.instructions.push(instruction)
  }
  return { globalArgs, stages }
}

function substitute(text: string, args: ReadonlyMap<string, string | undefined>): string {
  return text.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (whole, name: string) => {
    const value = args.get(name)
    if (value === undefined) throw new Error(`${whole} has no default`)
    return value
  })
}

/** `--from=build --chown=0:0 a b dst` -> flags and the words after them (exec form too). */
export function copyArgs(args: string): {
  flags: Map<string, string>
  sources: string[]
  dest: string
} {
  const words = args.trim().startsWith('[')
    ? (JSON.parse(args) as string[])
    : args.split(/\s+/).filter((w) => w !== '')
  const flags = new Map<string, string>()
  while (words[0]?.startsWith('--')) {
    const [flag, value = ''] = (words.shift() as string).slice(2).split('=', 2)
    flags.set(flag as string, value)
  }
  const dest = words.pop()
  if (dest === undefined || words.length === 0)
    throw new Error(`COPY needs a source and a dest: ${args}`)
  return { flags, sources: words, dest }
}

/** The exec form (`["node", "x"]`) as its words; undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith('[')) return undefined
  const parsed: unknown = JSON.parse(args)
  if (!Array.isArray(parsed) || !parsed.every((w) => typeof w === 'string')) {
    throw new Error(`not an exec form: ${args}`)
  }
  return parsed
}

/** ENV in both forms (`ENV A=1 B=2`, `ENV A 1`) as a map; quotes around values removed. */
export function envOf(stage: Stage): Map<string, string> {
  const env = new Map<string, string>()
  for (const { keyword, args } of stage.instructions) {
    if (keyword !== 'ENV') continue
    if (!args.includes('=')) {
      const [name, ...rest] = args.split(/\s+/)
      env.set(name as string, rest.join(' '))
      continue
    }
    for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) {
      env.set(match[1] as string, (match[2] as string).replace(/^"(.*)"$/, '$1'))
    }
  }
  return env
}
