// `customs certs init|renew|client` run in process: the files written and their modes, exit codes,
// --force, renewal keeping the hosts with a new key, and the messages of every refusal.

import assert from 'node:assert/strict'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdtemp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { certsCommand } from '../../../src/cli/certs.js'
import type { CertsIo } from '../../../src/cli/certs.js'
import { createCa, pemCertificates } from '../../../src/tls/certs.js'

interface Run {
  code: number
  stdout: string
  stderr: string
}

async function certs(...args: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const io: CertsIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
  }
  const code = await certsCommand(args, io)
  return { code, stdout, stderr }
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777
}

async function leaf(path: string): Promise<X509Certificate> {
  const [first] = pemCertificates(await readFile(path, 'utf8'))
  assert.ok(first !== undefined, `no certificate in ${path}`)
  return new X509Certificate(first)
}

let root: string
let n = 0
/** A fresh output folder (not created). */
const outDir = (): string => join(root, `out-${n++}`)

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'customs-certs-cli-'))
})

after(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('customs certs init', () => {
  describe('when the folder is new', () => {
    let out: string
    let run: Run

    before(async () => {
      out = outDir()
      run = await certs('init', '--hosts', 'customs.internal,10.0.0.5', '--out', out)
    })

    it('returns 0 and names every file it wrote', () => {
      assert.equal(run.code, 0, run.stderr)
      assert.equal(run.stderr, '')
      for (const name of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) {
        assert.ok(run.stdout.includes(join(out, name)), `${name} in ${run.stdout}`)
      }
    })
    it('writes the private keys 0600 and the certificates 0644, and nothing else', async () => {
      assert.deepEqual((await readdir(out)).sort(), [
        'ca.crt',
        'ca.key',
        'server.crt',
        'server.key',
      ])
      assert.equal(await mode(join(out, 'ca.key')), 0o600)
      assert.equal(await mode(join(out, 'server.key')), 0o600)
      assert.equal(await mode(join(out, 'ca.crt')), 0o644)
      assert.equal(await mode(join(out, 'server.crt')), 0o644)
    })
    it('writes server.crt as the chain: the server certificate, then the CA', async () => {
      const chain = pemCertificates(await readFile(join(out, 'server.crt'), 'utf8'))
      const caPem = await readFile(join(out, 'ca.crt'), 'utf8')
      assert.equal(chain.length, 2)
      const server = new X509Certificate(chain[0] ?? '')
      const ca = new X509Certificate(caPem)
      assert.equal(new X509Certificate(chain[1] ?? '').fingerprint256, ca.fingerprint256)
      assert.equal(server.checkIssued(ca), true)
      assert.equal(server.verify(ca.publicKey), true)
      assert.equal(server.subjectAltName, 'DNS:customs.internal, IP Address:10.0.0.5')
    })
    it('writes a server key that belongs to the server certificate', async () => {
      const key = createPrivateKey(await readFile(join(out, 'server.key'), 'utf8'))
      assert.equal((await leaf(join(out, 'server.crt'))).checkPrivateKey(key), true)
    })
  })

  describe('when a CA is already there', () => {
    let out: string
    let before1: string

    before(async () => {
      out = outDir()
      assert.equal((await certs('init', '--hosts', 'a.io', '--out', out)).code, 0)
      before1 = await readFile(join(out, 'ca.crt'), 'utf8')
    })

    it('returns 1, says why and what to do, and changes nothing', async () => {
      const run = await certs('init', '--hosts', 'b.io', '--out', out)
      assert.equal(run.code, 1)
      assert.match(
        run.stderr,
        /ca\.crt already exists: a CA is there already.*certs renew.*--force/
      )
      assert.doesNotMatch(run.stderr, /\n\s+at /)
      assert.equal(await readFile(join(out, 'ca.crt'), 'utf8'), before1)
    })
    it('with --force returns 0 and replaces the CA and the server certificate', async () => {
      const run = await certs('init', '--hosts', 'b.io', '--out', out, '--force')
      assert.equal(run.code, 0, run.stderr)
      assert.notEqual(await readFile(join(out, 'ca.crt'), 'utf8'), before1)
      assert.equal((await leaf(join(out, 'server.crt'))).subjectAltName, 'DNS:b.io')
      assert.equal(await mode(join(out, 'ca.key')), 0o600)
    })
  })

  describe('when --days and --ca-days are given', () => {
    it('returns certificates valid that long', async () => {
      const out = outDir()
      const run = await certs(
        'init',
        '--hosts',
        'a.io',
        '--out',
        out,
        '--days',
        '30',
        '--ca-days',
        '60'
      )
      assert.equal(run.code, 0, run.stderr)
      const days = async (file: string) =>
        Math.round(
          (new Date((await leaf(join(out, file))).validTo).getTime() - Date.now()) / 86_400_000
        )
      assert.equal(await days('server.crt'), 30)
      assert.equal(await days('ca.crt'), 60)
    })
  })

  describe('when the arguments are wrong', () => {
    const cases: [string[], RegExp][] = [
      [['--hosts', '', '--out', 'X'], /--hosts: no hosts given/],
      [['--hosts', 'a.io, b.io', '--out', 'X'], /--hosts: "a\.io, b\.io" contains whitespace/],
      [
        ['--hosts', 'http://x', '--out', 'X'],
        /--hosts: "http:\/\/x" is a URL; give the host name alone: write x/,
      ],
      [['--hosts', 'a.io:5000', '--out', 'X'], /has a port/],
      [['--out', 'X'], /--hosts HOSTS is required/],
      [['--hosts', 'a.io'], /--out DIR is required/],
      [
        ['--hosts', 'a.io', '--out', 'X', '--days', 'ten'],
        /--days must be a whole number of days from 1 to 825, got "ten"/,
      ],
      [['--hosts', 'a.io', '--out', 'X', '--days', '900'], /--days must be .* got 900/],
      [['--hosts', 'a.io', '--out', 'X', '--ca-days', '0'], /--ca-days must be/],
      [['--hosts', 'a.io', '--out', 'X', '--colour'], /Unknown option '--colour'/],
      [['--hosts', 'a.io', '--out', 'X', 'extra'], /positional/i],
    ]
    for (const [args, message] of cases) {
      it(`returns 2 for ${args.join(' ')} with a one-line reason`, async () => {
        const out = outDir()
        const run = await certs('init', ...args.map((a) => (a === 'X' ? out : a)))
        assert.equal(run.code, 2)
        assert.match(run.stderr, message)
        assert.match(run.stderr, /^customs certs: /)
        assert.doesNotMatch(run.stderr, /\n\s+at /)
        await assert.rejects(stat(out), { code: 'ENOENT' })
      })
    }
  })
})

describe('customs certs renew', () => {
  describe('when a CA and a server certificate are there', () => {
    let out: string
    let oldKey: string
    let oldCa: string
    let run: Run

    before(async () => {
      out = outDir()
      assert.equal(
        (await certs('init', '--hosts', 'customs.internal,10.0.0.5', '--out', out)).code,
        0
      )
      oldKey = await readFile(join(out, 'server.key'), 'utf8')
      oldCa = await readFile(join(out, 'ca.crt'), 'utf8')
      run = await certs('renew', '--out', out, '--days', '90')
    })

    it('returns 0 and keeps the hosts of the current certificate', async () => {
      assert.equal(run.code, 0, run.stderr)
      assert.equal(
        (await leaf(join(out, 'server.crt'))).subjectAltName,
        'DNS:customs.internal, IP Address:10.0.0.5'
      )
      assert.match(run.stdout, /customs\.internal,10\.0\.0\.5/)
    })
    it('makes a new key, 0600, that belongs to the new certificate', async () => {
      const key = await readFile(join(out, 'server.key'), 'utf8')
      assert.notEqual(key, oldKey)
      assert.equal(await mode(join(out, 'server.key')), 0o600)
      assert.equal(
        (await leaf(join(out, 'server.crt'))).checkPrivateKey(createPrivateKey(key)),
        true
      )
    })
    it('signs with the same CA and leaves it alone', async () => {
      assert.equal(await readFile(join(out, 'ca.crt'), 'utf8'), oldCa)
      assert.equal(
        (await leaf(join(out, 'server.crt'))).checkIssued(new X509Certificate(oldCa)),
        true
      )
    })
    it('with --hosts uses the hosts given instead', async () => {
      assert.equal((await certs('renew', '--out', out, '--hosts', 'mirror.lan')).code, 0)
      assert.equal((await leaf(join(out, 'server.crt'))).subjectAltName, 'DNS:mirror.lan')
    })
  })

  describe('when there is no CA', () => {
    it('returns 1 and says to run certs init', async () => {
      const run = await certs('renew', '--out', outDir())
      assert.equal(run.code, 1)
      assert.match(
        run.stderr,
        /no CA: .*ca\.crt does not exist\. Make one with `customs certs init/
      )
    })
  })

  describe('when the CA has expired', () => {
    it('returns 1, says when it expired and what to do, and writes nothing', async () => {
      const out = outDir()
      const old = await createCa({ days: 1, now: new Date(Date.now() - 5 * 86_400_000) })
      await certs('init', '--hosts', 'a.io', '--out', out)
      await writeFile(join(out, 'ca.crt'), old.certPem)
      await writeFile(join(out, 'ca.key'), old.keyPem)
      const before1 = await readFile(join(out, 'server.crt'), 'utf8')
      const run = await certs('renew', '--out', out)
      assert.equal(run.code, 1)
      assert.match(run.stderr, /ca\.crt expired on \d{4}-\d\d-\d\d: .*certs init --force/)
      assert.equal(await readFile(join(out, 'server.crt'), 'utf8'), before1)
    })
  })

  describe('when the current certificate names no hosts', () => {
    it('returns 1 and asks for --hosts', async () => {
      const out = outDir()
      await certs('init', '--hosts', 'a.io', '--out', out)
      await certs('client', '--name', 'node-1', '--out', out)
      await writeFile(join(out, 'server.crt'), await readFile(join(out, 'node-1.crt')))
      const run = await certs('renew', '--out', out)
      assert.equal(run.code, 1)
      assert.match(run.stderr, /server\.crt names no hosts \(no subjectAltName\): pass --hosts/)
    })
  })

  describe('when the CA certificate file is over the bound for such files', () => {
    it('returns 1 and names the file and the bound, without reading it whole', async () => {
      const out = outDir()
      await certs('init', '--hosts', 'a.io', '--out', out)
      // Sparse: 64 MiB that take no disk, as a file put there by mistake.
      await truncate(join(out, 'ca.crt'), 64 * 1024 * 1024)
      const run = await certs('renew', '--out', out)
      assert.equal(run.code, 1)
      assert.match(run.stderr, /^customs certs: .*ca\.crt is over the 4\.0 MiB limit for this file\n$/)
    })
  })

  describe('when there is a CA but no server certificate', () => {
    it('returns 1 and asks for --hosts', async () => {
      const out = outDir()
      await certs('init', '--hosts', 'a.io', '--out', out)
      await rm(join(out, 'server.crt'))
      const run = await certs('renew', '--out', out)
      assert.equal(run.code, 1)
      assert.match(run.stderr, /server\.crt to take the hosts from: pass --hosts/)
    })
  })
})

describe('customs certs client', () => {
  let out: string

  before(async () => {
    out = outDir()
    assert.equal((await certs('init', '--hosts', 'a.io', '--out', out)).code, 0)
  })

  describe('when given a name', () => {
    it('writes NAME.crt and NAME.key (0600), a clientAuth certificate from the CA', async () => {
      const run = await certs('client', '--name', 'node-1', '--out', out)
      assert.equal(run.code, 0, run.stderr)
      const cert = await leaf(join(out, 'node-1.crt'))
      assert.equal(cert.subject, 'CN=node-1')
      assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2'])
      assert.equal(cert.checkIssued(new X509Certificate(await readFile(join(out, 'ca.crt')))), true)
      assert.equal(await mode(join(out, 'node-1.key')), 0o600)
    })
  })
  describe('when the client files exist', () => {
    it('returns 1 without --force, and 0 with it', async () => {
      await certs('client', '--name', 'node-2', '--out', out)
      const first = await readFile(join(out, 'node-2.crt'), 'utf8')
      const refused = await certs('client', '--name', 'node-2', '--out', out)
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /node-2\.(key|crt) already exists: use --force/)
      assert.equal(await readFile(join(out, 'node-2.crt'), 'utf8'), first)
      assert.equal((await certs('client', '--name', 'node-2', '--out', out, '--force')).code, 0)
      assert.notEqual(await readFile(join(out, 'node-2.crt'), 'utf8'), first)
    })
  })
  describe('when the name is not usable', () => {
    it('returns 2 and says what a name may hold', async () => {
      const run = await certs('client', '--name', '../etc/passwd', '--out', out)
      assert.equal(run.code, 2)
      assert.match(run.stderr, /client name "\.\.\/etc\/passwd" must be 1-64 letters/)
    })
  })
  describe('when there is no CA', () => {
    it('returns 1', async () => {
      assert.equal((await certs('client', '--name', 'x', '--out', outDir())).code, 1)
    })
  })
})

describe('customs certs', () => {
  describe('when the subcommand is missing or unknown', () => {
    it('returns 2 with the usage', async () => {
      for (const args of [[], ['issue']]) {
        const run = await certs(...args)
        assert.equal(run.code, 2)
        assert.match(run.stderr, /usage:\n {2}customs certs init --hosts HOSTS --out DIR/)
      }
    })
  })
  describe('when asked for help', () => {
    it('returns 0 with the usage on stdout', async () => {
      const run = await certs('--help')
      assert.equal(run.code, 0)
      assert.match(run.stdout, /customs certs renew --out DIR/)
    })
  })
})
