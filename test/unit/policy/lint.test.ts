// `customs policy lint DIR`: a one-line summary and exit 0, or every positioned problem on stderr
// and exit 1; warnings go to stderr without failing.

import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { policyLint } from '../../../src/cli/policy.js'
import type { PolicyIo } from '../../../src/cli/policy.js'
import { exceptionDoc, minimalPolicy, OPTIONS } from './helpers.js'

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/policies')

function captureIo(): PolicyIo & { out: () => string; err: () => string } {
  let out = ''
  let err = ''
  return {
    stdout: { write: (text: string) => (out += text) },
    stderr: { write: (text: string) => (err += text) },
    out: () => out,
    err: () => err,
  }
}

describe('policyLint', () => {
  let root: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'customs-lint-'))
  })
  after(async () => {
    await rm(root, { recursive: true, force: true })
  })

  it('prints a one-line summary for a valid set and exits 0', async () => {
    const io = captureIo()
    assert.equal(await policyLint(join(FIXTURES, 'valid'), io, OPTIONS), 0)
    assert.match(io.out(), /^2 policies, 2 exceptions, revision [0-9a-f]{16}\n$/)
    assert.equal(io.err(), '')
  })

  it('prints every positioned problem and exits 1', async () => {
    const io = captureIo()
    const dir = join(FIXTURES, 'invalid', 'schema')
    assert.equal(await policyLint(dir, io, OPTIONS), 1)
    assert.equal(io.out(), '')
    const lines = io.err().trimEnd().split('\n')
    assert.equal(lines.length, 8 + 1)
    const file = join(dir, 'policy.yaml')
    for (const line of lines.slice(0, -1)) assert.ok(line.startsWith(`${file}:`), line)
    assert.ok(lines.some((l) => l.startsWith(`${file}:14:10 spec.rules.cel: `)))
    assert.equal(lines.at(-1), `${dir}: invalid policies (8 problems)`)
  })

  it('prints warnings on stderr and still exits 0', async () => {
    const dir = join(root, 'expired')
    await mkdir(dir)
    const exception = exceptionDoc(
      'old',
      'images: [{ repository: "a/*" }]\nwaives: [{ policy: baseline }]\nreason: r\nowner: o\nexpires: 2020-01-01'
    )
    await writeFile(join(dir, 'set.yaml'), `${minimalPolicy()}---\n${exception}`)
    const io = captureIo()
    assert.equal(await policyLint(dir, io, OPTIONS), 0)
    assert.match(io.out(), /^1 policy, 1 exception, revision [0-9a-f]{16}\n$/)
    assert.match(
      io.err(),
      /^warning: .*set\.yaml:16:12 spec\.expires: expired at 2020-01-01T23:59:59\.999Z/
    )
  })

  it('refuses a folder that does not exist', async () => {
    const io = captureIo()
    assert.equal(await policyLint(join(root, 'missing'), io, OPTIONS), 1)
    assert.match(io.err(), /missing:1:1: cannot read the policy folder \(ENOENT\)/)
  })
})
