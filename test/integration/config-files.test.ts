// `customs config check` and `customs serve`, through the real entry point, on a configuration
// whose files are unusable: the check exits 1 and serve exits 2, each with the same line naming
// the setting and the file, for an upstream's TLS file and for a trust key; relative paths are
// read from the configuration's folder, not the working directory.

import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { freePort } from '../helpers/ports.js'
import { makeTempDir, removeTempDir, run, type RunResult } from '../helpers/processes.js'
import { makeTestPki, type TestPki } from '../helpers/tls-pki.js'

const ROOT = resolve(import.meta.dirname, '../..')

let dir: string
let pki: TestPki

before(async () => {
  dir = await makeTempDir('config-files')
  pki = await makeTestPki(dir)
  await writeFile(join(dir, 'not-a-key.pub'), 'hello\n')
})
after(() => removeTempDir(dir))

/** `customs ARGS...` from the repository's root, never throwing on a non-zero exit. */
function customs(...args: string[]): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', join(ROOT, 'src/main.ts'), ...args], { cwd: ROOT, allowFailure: true, timeoutMs: 60_000 })
}

/** Writes a configuration with `body` (YAML) beside the PKI's files; its path. */
async function config(name: string, body: string): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, `listen: { host: 127.0.0.1, port: ${await freePort()} }\nstorage: { path: ${join(dir, 'data')} }\n${body}`)
  return file
}

for (const { kind, body, line } of [
  {
    kind: 'an upstream’s client certificate and a key that is not its own',
    body: 'upstreams:\n  - name: internal.corp\n    url: https://127.0.0.1:9\n    default: true\n    tls: { ca: ca.pem, cert: client.pem, key: server.key }\n',
    line: () => `upstreams[0].tls.key: ${pki.serverKeyFile} is not the key of the certificate in ${pki.clientCertFile}`,
  },
  {
    kind: 'a trust key file that holds no public key',
    body: 'trust:\n  keys:\n    - { name: release, file: not-a-key.pub }\n',
    line: () => `trust.keys[0].file: ${join(dir, 'not-a-key.pub')} is not a PEM public key`,
  },
]) {
  describe(`a configuration with ${kind}`, () => {
    it('fails config check with exit 1 and one line naming the setting and the file', async () => {
      const file = await config('check.yaml', body)
      const result = await customs('config', 'check', file)
      assert.equal(result.code, 1)
      assert.equal(result.stdout, '')
      assert.equal(result.stderr, `${line()}\n${file}: invalid configuration (1 problem)\n`)
    })

    it('stops serve with exit 2 and the same line', async () => {
      const result = await customs('serve', '--config', await config('serve.yaml', body))
      assert.equal(result.code, 2)
      assert.equal(result.stderr, `${line()}\n`)
    })
  })
}
